//! `security`: rate limiting as the original gateway has it, the browser origins allowed to
//! call the gateway, and the sections of `auth.rs`.
//!
//! Owns: the keys and defaults, so the original's files load unchanged. The runtime config
//! carries only `allowedOrigins` so far. Must not: check values (`validate/`).

use serde::{Deserialize, Serialize};

use super::auth::{AuthenticationSection, HeadersSection, RbacSection};

/// `security`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SecuritySection {
    pub authentication: AuthenticationSection,
    pub rbac: RbacSection,
    pub headers: HeadersSection,
    pub rate_limit: RateLimitSection,
    pub ddos: DdosSection,
    /// `"*"` or `http(s)://host[:port]` each. Empty: the `Origin` header is only checked on
    /// loopback listeners, where only localhost origins are allowed.
    pub allowed_origins: Vec<String>,
}

/// `security.ddos`: who may connect at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DdosSection {
    /// Addresses or CIDR blocks whose connections are closed at accept, before a byte is
    /// read or written.
    pub deny: Vec<String>,
    /// Addresses or blocks always admitted, even inside a `deny` block, and not capped.
    pub allow: Vec<String>,
    /// Open connections one client address may hold (0: no cap); over it a connection is
    /// closed at accept.
    pub max_connections_per_ip: i64,
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
