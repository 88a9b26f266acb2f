//! The schema walk: every unknown key and every wrong JSON type in the user's file, at once.
//!
//! Owns: comparing the parsed JSON with a template, which is `UserConfig::default()` serialized
//! with serde_json, so the key lists live only in `user/`. Arrays of objects use a default
//! element as their template, and a template value of `null` (an `Option` defaulting to `None`)
//! accepts any type. Free maps (a server's `env` and `headers`) take any key with a string
//! value.
//!
//! Each problem found is also removed from the JSON (unknown keys dropped, wrong-typed values
//! replaced by their default) so that serde and validation can still run and report the rest;
//! the caller hides later errors under a path already reported here.
//!
//! Must not: judge ranges or meanings (`validate/`), or name a key that `user/` lacks,
//! except in the few exception lists below.

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::user::{ApiKeyEntry, OAuthIssuerEntry, RoleRuleEntry, UpstreamServer, UserConfig};

/// Template paths (`[]` for any array index) whose value may be a string or an integer.
const STRING_OR_INTEGER: &[&str] = &["server.workers"];

/// Template paths of string-to-string maps with free keys.
const FREE_STRING_MAPS: &[&str] = &["upstream.servers[].env", "upstream.servers[].headers"];

/// Template paths of arrays of strings that default to empty.
const STRING_ARRAYS: &[&str] = &[
    "upstream.servers[].tags",
    "upstream.servers[].args",
    "security.allowedOrigins",
    "server.trustedProxies",
    "security.authentication.apiKeys[].roles",
    "security.authentication.apiKeys[].scopes",
    "security.authentication.jwt.publicKeys",
    "security.authentication.jwt.algorithms",
    "security.authentication.oauth2.scopesSupported",
    "security.authentication.oauth2.requiredScopes",
    "security.rbac.defaultRoles",
    "security.ddos.deny",
    "security.ddos.allow",
    "security.rbac.roles{}[].servers",
    "security.rbac.roles{}[].allow",
];

/// Template paths of maps with free keys whose values are arrays of objects (`{}` in a
/// template path stands for any key).
const FREE_ARRAY_MAPS: &[&str] = &["security.rbac.roles"];

/// The most edits for a "did you mean" suggestion.
const MAX_SUGGESTION_DISTANCE: usize = 2;

struct Templates {
    server: Value,
    string: Value,
    /// Element templates of arrays of objects that default to empty, by template path.
    elements: Vec<(&'static str, Value)>,
}

/// Checks `value` against the user schema, fixing it up as it goes (see the module doc).
pub fn check(value: &mut Value) -> Vec<ConfigError> {
    let root = serde_json::to_value(UserConfig::default()).unwrap_or(Value::Null);
    let element = |value: Result<Value, serde_json::Error>| value.unwrap_or(Value::Null);
    let templates = Templates {
        server: serde_json::to_value(UpstreamServer::default()).unwrap_or(Value::Null),
        string: Value::String(String::new()),
        elements: vec![
            (
                "security.authentication.apiKeys",
                element(serde_json::to_value(ApiKeyEntry::default())),
            ),
            (
                "security.authentication.oauth2.issuers",
                element(serde_json::to_value(OAuthIssuerEntry::default())),
            ),
            (
                "security.rbac.roles{}",
                element(serde_json::to_value(RoleRuleEntry::default())),
            ),
        ],
    };
    let mut errors = Vec::new();
    walk(value, &root, "", "", &templates, &mut errors);
    errors
}

fn walk(
    value: &mut Value,
    template: &Value,
    path: &str,
    template_path: &str,
    templates: &Templates,
    errors: &mut Vec<ConfigError>,
) {
    if STRING_OR_INTEGER.contains(&template_path) {
        if !(value.is_string() || value.is_i64()) {
            errors.push(type_error(path, "a string or an integer", value));
            *value = template.clone();
        }
        return;
    }
    if FREE_STRING_MAPS.contains(&template_path) {
        walk_free_map(value, template, path, errors);
        return;
    }
    if FREE_ARRAY_MAPS.contains(&template_path) {
        let Value::Object(map) = value else {
            mismatch(value, template, path, "an object of arrays", errors);
            return;
        };
        let any_key = format!("{template_path}{{}}");
        let array = Value::Array(Vec::new());
        for (key, child) in map.iter_mut() {
            walk(child, &array, &join(path, key), &any_key, templates, errors);
        }
        return;
    }

    match template {
        Value::Null => {}
        Value::Object(fields) => match value {
            Value::Object(map) => walk_object(map, fields, path, template_path, templates, errors),
            _ => mismatch(value, template, path, "an object", errors),
        },
        Value::Array(defaults) => match value {
            Value::Array(items) => {
                let element = element_template(template_path, defaults, templates);
                if let Some(element) = element {
                    let element_path = format!("{template_path}[]");
                    for (index, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}[{index}]");
                        walk(item, element, &item_path, &element_path, templates, errors);
                    }
                }
            }
            _ => mismatch(value, template, path, "an array", errors),
        },
        Value::Bool(_) => {
            if !value.is_boolean() {
                mismatch(value, template, path, "a boolean", errors);
            }
        }
        Value::Number(number) => {
            let wants_integer = number.is_i64() || number.is_u64();
            if wants_integer && !value.is_i64() {
                mismatch(value, template, path, "an integer", errors);
            } else if !value.is_number() {
                mismatch(value, template, path, "a number", errors);
            }
        }
        Value::String(_) => {
            if !value.is_string() {
                mismatch(value, template, path, "a string", errors);
            }
        }
    }
}

fn walk_object(
    map: &mut Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    template_path: &str,
    templates: &Templates,
    errors: &mut Vec<ConfigError>,
) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let key_path = join(path, &key);
        match (fields.get(&key), map.get_mut(&key)) {
            (Some(field), Some(child)) => {
                let child_template_path = join(template_path, &key);
                walk(
                    child,
                    field,
                    &key_path,
                    &child_template_path,
                    templates,
                    errors,
                );
            }
            _ => {
                errors.push(unknown_key(&key_path, &key, fields));
                map.remove(&key);
            }
        }
    }
}

fn walk_free_map(value: &mut Value, template: &Value, path: &str, errors: &mut Vec<ConfigError>) {
    let Value::Object(map) = value else {
        mismatch(value, template, path, "an object of strings", errors);
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if map.get(&key).is_some_and(|v| !v.is_string()) {
            if let Some(bad) = map.remove(&key) {
                errors.push(type_error(&join(path, &key), "a string", &bad));
            }
        }
    }
}

fn element_template<'a>(
    template_path: &str,
    defaults: &'a [Value],
    templates: &'a Templates,
) -> Option<&'a Value> {
    if template_path == "upstream.servers" {
        Some(&templates.server)
    } else if let Some((_, element)) = templates.elements.iter().find(|(p, _)| *p == template_path)
    {
        Some(element)
    } else if STRING_ARRAYS.contains(&template_path) {
        Some(&templates.string)
    } else {
        defaults.first()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn mismatch(
    value: &mut Value,
    template: &Value,
    path: &str,
    expected: &str,
    errors: &mut Vec<ConfigError>,
) {
    errors.push(type_error(path, expected, value));
    *value = template.clone();
}

fn type_error(path: &str, expected: &str, found: &Value) -> ConfigError {
    ConfigError::new(
        path,
        format!("expected {expected}, found {}", describe(found)),
    )
}

/// "a string (`\"100\"`)", "a floating-point number (`1.5`)", "an array", ...
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean (`{b}`)"),
        Value::Number(n) if n.is_f64() => format!("a floating-point number (`{n}`)"),
        Value::Number(n) if n.is_u64() && !n.is_i64() => format!("a number out of range (`{n}`)"),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::String(s) if s.chars().count() <= 40 => format!("a string (`{value}`)"),
        Value::String(_) => "a string".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn unknown_key(path: &str, key: &str, fields: &Map<String, Value>) -> ConfigError {
    let known: Vec<&str> = fields.keys().map(|k| k.as_str()).collect();
    let message = match suggest(key, &known) {
        Some(close) => format!("unknown key `{key}`, did you mean `{close}`?"),
        None => format!("unknown key `{key}`"),
    };
    ConfigError::new(path, message).with_allowed(known.join(", "))
}

/// The known key closest to `key`: a case-insensitive match first, else the one within
/// `MAX_SUGGESTION_DISTANCE` edits (and fewer edits than its own length).
pub fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some(same);
    }
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (levenshtein(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(distance, k)| *distance <= MAX_SUGGESTION_DISTANCE && *distance < k.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(mut value: Value) -> Vec<String> {
        check(&mut value).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("weight", "weight"), 0);
        assert_eq!(levenshtein("wieght", "weight"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["weight", "url", "id", "maxConnections"];
        assert_eq!(suggest("wieght", &known), Some("weight"));
        assert_eq!(suggest("maxconnections", &known), Some("maxConnections"));
        assert_eq!(suggest("MAXCONNECTIONS", &known), Some("maxConnections"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(suggest("xy", &known), None);
    }

    #[test]
    fn unknown_key_in_array_element_has_full_path_and_suggestion() {
        let errors = errors_of(json!({
            "upstream": {"servers": [{"id": "a", "url": "http://h", "wieght": 2}]}
        }));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with(
            "upstream.servers[0].wieght: unknown key `wieght`, did you mean `weight`?"
        ));
        assert!(errors[0].contains("(allowed: "));
    }

    #[test]
    fn wrong_types_are_reported_and_replaced_by_defaults() {
        let mut value = json!({
            "server": {"port": "8080", "ssl": []},
            "upstream": {"servers": [{"timeout": 1.5}, "not an object"]},
            "loadBalancer": {"sticky": "yes"}
        });
        let errors: Vec<String> = check(&mut value).iter().map(|e| e.to_string()).collect();
        assert!(errors.contains(
            &"server.port: expected an integer, found a string (`\"8080\"`)".to_string()
        ));
        assert!(errors.contains(&"server.ssl: expected an object, found an array".to_string()));
        assert!(errors.contains(
            &"upstream.servers[0].timeout: expected an integer, found a floating-point number (`1.5`)"
                .to_string()
        ));
        assert!(errors.contains(
            &"upstream.servers[1]: expected an object, found a string (`\"not an object\"`)"
                .to_string()
        ));
        assert!(errors.contains(
            &"loadBalancer.sticky: expected a boolean, found a string (`\"yes\"`)".to_string()
        ));
        assert_eq!(errors.len(), 5);
        assert_eq!(value["server"]["port"], 8080);
        assert!(serde_json::from_value::<UserConfig>(value).is_ok());
    }

    #[test]
    fn options_accept_any_type_and_free_maps_any_key() {
        let errors = errors_of(json!({
            "logging": {"file": "/tmp/x.log"},
            "monitoring": {"dashboard": {"host": "127.0.0.1"}},
            "upstream": {"servers": [{"env": {"ANY_NAME": "1", "other": "2"}, "tags": ["a"]}]}
        }));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn free_map_values_and_string_arrays_are_checked() {
        let errors = errors_of(json!({
            "upstream": {"servers": [{"env": {"A": 1}, "tags": ["a", 2]}]}
        }));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("upstream.servers[0].env.A: expected a string"));
        assert!(errors[1].starts_with("upstream.servers[0].tags[1]: expected a string"));
    }

    #[test]
    fn new_keys_are_known_and_typed() {
        let errors = errors_of(json!({
            "sessions": {"secret": "0123456789abcdef", "ttl": 1000, "store": "none"},
            "security": {"allowedOrigins": ["*"]},
            "upstream": {"servers": [{"forwardAuth": true, "headers": {"X-Any": "${A}"}}]}
        }));
        assert!(errors.is_empty(), "{errors:?}");
        let errors = errors_of(json!({
            "sessions": {"ttl": "1d", "stroe": "none"},
            "security": {"allowedOrigins": ["*", 1]},
            "upstream": {"servers": [{"forwardAuth": "yes", "headers": {"X-A": 1}}]}
        }));
        assert_eq!(errors.len(), 5, "{errors:?}");
        let starts = [
            "sessions.ttl: expected an integer",
            "sessions.stroe: unknown key `stroe`, did you mean `store`?",
            "security.allowedOrigins[1]: expected a string",
            "upstream.servers[0].forwardAuth: expected a boolean",
            "upstream.servers[0].headers.X-A: expected a string",
        ];
        for start in starts {
            assert!(
                errors.iter().any(|e| e.starts_with(start)),
                "{start}: {errors:?}"
            );
        }
    }

    #[test]
    fn workers_takes_a_string_or_an_integer() {
        assert!(errors_of(json!({"server": {"workers": "auto"}})).is_empty());
        assert!(errors_of(json!({"server": {"workers": 4}})).is_empty());
        let errors = errors_of(json!({"server": {"workers": true}}));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("server.workers: expected a string or an integer"));
    }

    #[test]
    fn root_must_be_an_object() {
        let errors = errors_of(json!([1, 2]));
        assert_eq!(errors, vec!["(root): expected an object, found an array"]);
    }
}
