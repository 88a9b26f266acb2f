//! Refusing a JSON key given twice in one object: `serde_json::Value` keeps the last one
//! silently, so a file that sets `timeout` twice would run with a value the user may not
//! have meant.
//!
//! Owns: one pass over the text with a deserializer that only checks keys; its error carries
//! serde_json's line and column. Must not: build any value.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Checks `json` (comments already stripped) for duplicate keys.
pub fn check(json: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    NoDuplicates.deserialize(&mut de)?;
    de.end()
}

/// Walks any JSON value, failing at the first object key seen twice.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}` (the last one would win silently)"
                )));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn duplicates_are_found_with_their_line() {
        assert!(super::check(r#"{"a": {"b": 1, "c": [1, {"d": 2}]}, "e": null}"#).is_ok());
        let err = super::check("{\n  \"server\": {\"port\": 1,\n  \"port\": 2}\n}").unwrap_err();
        assert_eq!(err.line(), 3);
        assert!(err.to_string().contains("duplicate key `port`"), "{err}");
        // The same key in different objects is fine.
        assert!(super::check(r#"[{"id": 1}, {"id": 2}]"#).is_ok());
    }
}
