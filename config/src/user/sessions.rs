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
    /// Where sessions are kept: only "none" (in the process) in this build.
    pub store: String,
}

impl Default for SessionsSection {
    fn default() -> Self {
        SessionsSection {
            secret: None,
            ttl: 86_400_000,
            store: "none".to_string(),
        }
    }
}
