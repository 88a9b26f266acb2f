//! `security`: authentication methods and rate limiting, as the original gateway has them,
//! and the browser origins allowed to call the gateway.
//!
//! Owns: the keys and defaults, so the original's files load unchanged. The runtime config
//! carries only `allowedOrigins` so far. Must not: check values (`validate/`).

use serde::{Deserialize, Serialize};

/// `security`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SecuritySection {
    pub authentication: AuthenticationSection,
    pub rate_limit: RateLimitSection,
    /// `"*"` or `http(s)://host[:port]` each. Empty: the `Origin` header is only checked on
    /// loopback listeners, where only localhost origins are allowed.
    pub allowed_origins: Vec<String>,
}

/// `security.authentication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationSection {
    pub enabled: bool,
    /// Any of jwt | apikey | oauth2 | mtls.
    pub methods: Vec<String>,
    /// `JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// `API_KEY_HEADER`.
    pub api_key_header: String,
}

impl Default for AuthenticationSection {
    fn default() -> Self {
        AuthenticationSection {
            enabled: false,
            methods: vec!["jwt".to_string(), "apikey".to_string()],
            jwt_secret: None,
            api_key_header: "X-API-Key".to_string(),
        }
    }
}

/// `security.rateLimit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSection {
    pub enabled: bool,
    /// Milliseconds.
    pub window_ms: i64,
    /// Requests per window.
    pub max: i64,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            enabled: false,
            window_ms: 60_000,
            max: 1_000,
        }
    }
}
