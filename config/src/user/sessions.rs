//! `sessions`: the sessions the gateway issues to clients.
//!
//! Owns: the keys and defaults. Must not: check values (`validate/`).

use serde::{Deserialize, Serialize};

/// `sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionsSection {
    /// `SESSION_SECRET`; at least 16 bytes. `None`: the gateway generates one at start.
    pub secret: Option<String>,
    /// Milliseconds a session lives.
    pub ttl: i64,
    /// Where sessions are also recorded: "none" (tokens alone) or "redis" (listed and
    /// revocable through the admin API).
    pub store: String,
    /// `redis://[user:password@]host[:port][/db]` for `store: "redis"`; default:
    /// `cache.layers.redis.url` (`REDIS_URL`), whose `password` (`REDIS_PASSWORD`) is used
    /// when the URL has none.
    pub redis_url: Option<String>,
    /// `ADMIN_TOKEN`: bearer token for the admin API (`/admin/...` on the management port).
    /// Without one, the admin API answers only loopback clients.
    pub admin_token: Option<String>,
}

impl Default for SessionsSection {
    fn default() -> Self {
        SessionsSection {
            secret: None,
            ttl: 86_400_000,
            store: "none".to_string(),
            redis_url: None,
            admin_token: None,
        }
    }
}
