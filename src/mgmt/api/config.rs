//! `GET /api/config`, `PUT /api/config`, `POST /api/config/validate`.
//!
//! Owns: showing the running config with its secrets redacted, and replacing or dry-running
//! a whole config. Must not: edit parts of it (that is `upstreams`).

use super::{error, invalid, Answer, Call};
use crate::mgmt::reload::loader::{Outcome, Source};
use crate::mgmt::render::iso8601;
use crate::mgmt::State;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// What stands in for a secret.
const REDACTED: &str = "[redacted]";

pub fn show(state: &Rc<RefCell<State>>) -> Answer {
    let s = state.borrow();
    let r = &s.reload;
    let mut config = serde_json::to_value(&r.effective).unwrap_or(Value::Null);
    redact(&mut config, "");
    (
        200,
        json!({
            "generation": r.generation,
            "loadedAt": iso8601(r.loaded_at),
            "sha256": r.sha256,
            "path": r.path.as_ref().map(|p| p.display().to_string()),
            "config": config,
        }),
    )
}

pub async fn replace(call: &Call<'_>, body: Vec<u8>) -> Answer {
    let Ok(text) = String::from_utf8(body) else {
        return error(400, "the config must be UTF-8 JSON");
    };
    let _turn = call.turn().await;
    call.apply(text, "PUT /api/config").await
}

pub async fn validate(call: &Call<'_>, body: Vec<u8>) -> Answer {
    let Ok(text) = String::from_utf8(body) else {
        return error(400, "the config must be UTF-8 JSON");
    };
    let loader = call.state.borrow().reload.loader.clone();
    match loader.load(Source::Text(text)).await {
        Outcome::Parsed(parsed) => (
            200,
            json!({"valid": true, "upstreams": parsed.loaded.config.upstreams.len()}),
        ),
        Outcome::Failed(e, _) => invalid(e.errors()),
        Outcome::Unchanged => (200, json!({"valid": true})),
    }
}

/// Replaces secrets in a config's JSON: keys naming a secret, token, password or key, every
/// value of an upstream's `headers`, and the password in a URL's user part.
fn redact(v: &mut Value, key: &str) {
    let lower = key.to_ascii_lowercase();
    // `key`: an API key written plainly (`keyHash` is only its hash).
    let secret_key = lower == "key"
        || ["secret", "token", "password"]
            .iter()
            .any(|k| lower.contains(k));
    match v {
        Value::Object(map) if key == "headers" => {
            for value in map.values_mut() {
                *value = json!(REDACTED);
            }
        }
        Value::Object(map) => {
            for (k, value) in map.iter_mut() {
                redact(value, k);
            }
        }
        Value::Array(items) => {
            for item in items {
                redact(item, key);
            }
        }
        Value::String(_) if secret_key => *v = json!(REDACTED),
        Value::String(s) => {
            if let Some(clean) = without_url_password(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host...` with the password replaced, if there is one.
fn without_url_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    let user = userinfo.split(':').next().unwrap_or("");
    Some(format!("{scheme}://{user}:{REDACTED}@{}", &rest[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let mut v = json!({
            "sessions": {"secret": "s3cret", "adminToken": "t0k", "ttl": 5},
            "security": {"authentication": {"jwtSecret": "j", "apiKeyHeader": "X-API-Key"}},
            "cache": {"layers": {"redis": {"url": "redis://me:pw@host:6379/0", "password": "pw"}}},
            "upstream": {"servers": [{"id": "a", "url": "http://h/mcp", "headers": {"Authorization": "Bearer x"}}]},
        });
        redact(&mut v, "");
        let text = v.to_string();
        for secret in ["s3cret", "t0k", "\"j\"", "pw", "Bearer x"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["security"]["authentication"]["apiKeyHeader"], "X-API-Key");
        assert_eq!(v["sessions"]["ttl"], 5);
        assert_eq!(
            v["cache"]["layers"]["redis"]["url"],
            "redis://me:[redacted]@host:6379/0"
        );
        assert_eq!(v["upstream"]["servers"][0]["url"], "http://h/mcp");
    }
}
