//! Environment overrides, as the original gateway has them (`PORT`, `HOST`, `LOG_LEVEL`, ...).
//!
//! Owns: the table of variables, the JSON key each one sets and how its text is read. They are
//! written into the parsed JSON before the schema walk and validation, so an overridden value
//! is checked exactly like one from the file. Variables are read through an injected lookup,
//! so tests never touch the process environment. An empty value counts as unset.
//!
//! Must not: read `std::env` itself (see `process_env` in `lib.rs`), or check ranges beyond
//! what it takes to turn the text into JSON (validation does that).

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// How the text of a variable becomes JSON.
#[derive(Clone, Copy)]
enum Kind {
    /// 0..=65535.
    Port,
    /// A whole number (counts, milliseconds).
    Integer,
    /// "auto" or a whole number.
    Workers,
    /// true | false | 1 | 0 (any case).
    Bool,
    Text,
}

struct Override {
    var: &'static str,
    path: &'static [&'static str],
    kind: Kind,
}

const OVERRIDES: &[Override] = &[
    Override {
        var: "PORT",
        path: &["server", "port"],
        kind: Kind::Port,
    },
    Override {
        var: "HTTPS_PORT",
        path: &["server", "httpsPort"],
        kind: Kind::Port,
    },
    Override {
        var: "HOST",
        path: &["server", "host"],
        kind: Kind::Text,
    },
    Override {
        var: "CLUSTER_WORKERS",
        path: &["server", "workers"],
        kind: Kind::Workers,
    },
    Override {
        var: "MAX_CONNECTIONS",
        path: &["server", "maxConnections"],
        kind: Kind::Integer,
    },
    Override {
        var: "KEEP_ALIVE_TIMEOUT",
        path: &["server", "keepAliveTimeout"],
        kind: Kind::Integer,
    },
    Override {
        var: "DASHBOARD_PORT",
        path: &["monitoring", "dashboard", "port"],
        kind: Kind::Port,
    },
    Override {
        var: "DASHBOARD_HOST",
        path: &["monitoring", "dashboard", "host"],
        kind: Kind::Text,
    },
    Override {
        var: "MONITORING_ENABLED",
        path: &["monitoring", "enabled"],
        kind: Kind::Bool,
    },
    Override {
        var: "LOG_LEVEL",
        path: &["logging", "level"],
        kind: Kind::Text,
    },
    Override {
        var: "LOG_FILE",
        path: &["logging", "file"],
        kind: Kind::Text,
    },
    Override {
        var: "JWT_SECRET",
        path: &["security", "authentication", "jwtSecret"],
        kind: Kind::Text,
    },
    Override {
        var: "API_KEY_HEADER",
        path: &["security", "authentication", "apiKeyHeader"],
        kind: Kind::Text,
    },
    Override {
        var: "SESSION_SECRET",
        path: &["sessions", "secret"],
        kind: Kind::Text,
    },
    Override {
        var: "ADMIN_TOKEN",
        path: &["sessions", "adminToken"],
        kind: Kind::Text,
    },
    Override {
        var: "REDIS_URL",
        path: &["cache", "layers", "redis", "url"],
        kind: Kind::Text,
    },
    Override {
        var: "REDIS_PASSWORD",
        path: &["cache", "layers", "redis", "password"],
        kind: Kind::Text,
    },
];

/// A variable that was applied, and the config path it set (e.g. `server.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub var: &'static str,
    pub path: String,
}

/// Writes every set variable into `config`. Returns what was applied, and one error per
/// variable whose text could not be read (path `env NAME`).
pub fn apply(
    config: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<Applied>, Vec<ConfigError>) {
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    for item in OVERRIDES {
        let Some(raw) = env(item.var) else { continue };
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        match to_json(item.kind, text) {
            Ok(value) => {
                if set(config, item.path, value) {
                    applied.push(Applied {
                        var: item.var,
                        path: item.path.join("."),
                    });
                }
            }
            Err(expected) => {
                let path = format!("env {}", item.var);
                errors.push(ConfigError::new(
                    path,
                    format!("expected {expected}, found `{text}`"),
                ));
            }
        }
    }
    (applied, errors)
}

/// The JSON for `text`, or what was expected instead.
fn to_json(kind: Kind, text: &str) -> Result<Value, &'static str> {
    match kind {
        Kind::Port => text
            .parse::<u16>()
            .map(Value::from)
            .map_err(|_| "a port number (0..=65535)"),
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "an integer"),
        Kind::Workers => {
            if text.eq_ignore_ascii_case("auto") {
                Ok(Value::from("auto"))
            } else {
                text.parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| "`auto` or an integer")
            }
        }
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err("true, false, 1 or 0"),
        },
        Kind::Text => Ok(Value::from(text)),
    }
}

/// Sets `path` in `config`, creating missing objects. Where something on the way is not an
/// object, nothing is set: the schema walk reports that value's type.
fn set(config: &mut Value, path: &[&str], value: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = config;
    for key in parents {
        let Value::Object(map) = node else {
            return false;
        };
        node = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match node {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn sets_values_and_creates_sections() {
        let mut config = json!({"server": {"port": 1}});
        let env = lookup(&[
            ("PORT", "9000"),
            ("CLUSTER_WORKERS", "AUTO"),
            ("MONITORING_ENABLED", "0"),
            ("REDIS_PASSWORD", "s3cret"),
            ("LOG_LEVEL", " debug "),
            ("SESSION_SECRET", "0123456789abcdef"),
        ]);
        let (applied, errors) = apply(&mut config, &env);
        assert!(errors.is_empty());
        assert_eq!(applied.len(), 6);
        assert_eq!(config["sessions"]["secret"], "0123456789abcdef");
        assert_eq!(config["server"]["port"], 9000);
        assert_eq!(config["server"]["workers"], "auto");
        assert_eq!(config["monitoring"]["enabled"], false);
        assert_eq!(config["cache"]["layers"]["redis"]["password"], "s3cret");
        assert_eq!(config["logging"]["level"], "debug");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut config = json!({});
        let env = lookup(&[
            ("PORT", "80a"),
            ("DASHBOARD_PORT", "70000"),
            ("CLUSTER_WORKERS", "many"),
            ("MONITORING_ENABLED", "maybe"),
        ]);
        let (_, errors) = apply(&mut config, &env);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "env PORT",
                "env CLUSTER_WORKERS",
                "env DASHBOARD_PORT",
                "env MONITORING_ENABLED"
            ]
        );
        assert_eq!(
            errors[0].message,
            "expected a port number (0..=65535), found `80a`"
        );
        assert_eq!(config, json!({}));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let mut config = json!({});
        let (applied, errors) = apply(&mut config, &lookup(&[("PORT", ""), ("HOST", "  ")]));
        assert!(applied.is_empty() && errors.is_empty());
        assert_eq!(config, json!({}));
    }

    #[test]
    fn does_not_overwrite_a_section_of_the_wrong_type() {
        let mut config = json!({"server": "oops"});
        let (applied, _) = apply(&mut config, &lookup(&[("PORT", "1")]));
        assert!(applied.is_empty());
        assert_eq!(config, json!({"server": "oops"}));
    }
}
