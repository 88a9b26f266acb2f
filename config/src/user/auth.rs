//! `security.authentication`, `security.rbac` and `security.headers`: who may call the
//! gateway, what each role may reach, and the headers the gateway adds to answers.
//!
//! Owns: the keys and defaults (the original's `enabled`, `methods`, `jwtSecret`,
//! `apiKeyHeader` kept; the rest added beside them). Must not: check values (`validate/`)
//! or read key files (validation does, off the shards).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `security.authentication`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationSection {
    pub enabled: bool,
    /// Any of apikey | jwt | oauth2 | mtls, tried in this order.
    pub methods: Vec<String>,
    /// `JWT_SECRET`: HS256/384/512 tokens.
    pub jwt_secret: Option<String>,
    /// `API_KEY_HEADER`.
    pub api_key_header: String,
    pub api_keys: Vec<ApiKeyEntry>,
    pub jwt: JwtSection,
    pub oauth2: OAuth2Section,
    /// Paths served without credentials: exact, or a prefix when ending in `*`.
    pub public: Vec<String>,
    /// Pass the principal to upstreams as `X-Auth-Subject`, `X-Auth-Method`, `X-Auth-Roles`.
    pub forward_identity: bool,
    /// How many verified tokens each shard remembers (0: none).
    pub token_cache_size: i64,
}

impl Default for AuthenticationSection {
    fn default() -> Self {
        AuthenticationSection {
            enabled: false,
            methods: vec!["jwt".to_string(), "apikey".to_string()],
            jwt_secret: None,
            api_key_header: "X-API-Key".to_string(),
            api_keys: Vec::new(),
            jwt: JwtSection::default(),
            oauth2: OAuth2Section::default(),
            public: vec!["/health".to_string()],
            forward_identity: false,
            token_cache_size: 10_000,
        }
    }
}

/// One element of `security.authentication.apiKeys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The principal's subject.
    pub name: String,
    /// `sha256:` and the lowercase hex SHA-256 of the key.
    pub key_hash: Option<String>,
    /// The key itself (a warning suggests `keyHash`).
    pub key: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

/// `security.authentication.jwt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtSection {
    /// PEM files: RSA, EC or Ed25519 public keys.
    pub public_keys: Vec<String>,
    /// A JSON Web Key Set file.
    pub jwks_file: Option<String>,
    /// A JSON Web Key Set URL (https, or http on loopback), fetched at load and when a
    /// token names an unknown `kid` (at most once a minute).
    pub jwks_url: Option<String>,
    /// `iss` tokens must carry, when set.
    pub issuer: Option<String>,
    /// `aud` tokens must name, when set.
    pub audience: Option<String>,
    /// Allowed `alg` values; empty: every family the configured keys can verify.
    pub algorithms: Vec<String>,
    /// Milliseconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: i64,
    /// The claim holding the principal's roles (an array of strings, or one string).
    pub roles_claim: String,
    /// The claim holding its scopes (a space-separated string, or an array).
    pub scopes_claim: String,
}

impl Default for JwtSection {
    fn default() -> Self {
        JwtSection {
            public_keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            algorithms: Vec::new(),
            leeway: 30_000,
            roles_claim: "roles".to_string(),
            scopes_claim: "scope".to_string(),
        }
    }
}

/// `security.authentication.oauth2`: the gateway as an OAuth 2.1 resource server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Section {
    pub issuers: Vec<OAuthIssuerEntry>,
    /// This gateway's resource identifier (RFC 8707), which tokens' `aud` must name.
    pub resource: Option<String>,
    pub scopes_supported: Vec<String>,
    /// Scopes every token must carry (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
    /// Introspections each shard may wait on at once; more get 503.
    pub max_pending_introspections: i64,
}

impl Default for OAuth2Section {
    fn default() -> Self {
        OAuth2Section {
            issuers: Vec::new(),
            resource: None,
            scopes_supported: Vec::new(),
            required_scopes: Vec::new(),
            max_pending_introspections: 64,
        }
    }
}

/// One authorization server whose tokens the gateway accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthIssuerEntry {
    pub issuer: String,
    pub jwks_url: Option<String>,
    /// A JWKS file, for issuers whose keys are distributed out of band.
    pub jwks_file: Option<String>,
    pub introspection_url: Option<String>,
    /// Its token endpoint, for token exchange (RFC 8693).
    pub token_endpoint: Option<String>,
    /// PEM CA certificates to trust for this issuer's https endpoints instead of the
    /// Mozilla roots (a private CA).
    pub ca_file: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// `security.rbac`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RbacSection {
    pub enabled: bool,
    /// Role name → what it may reach.
    pub roles: BTreeMap<String, Vec<RoleRuleEntry>>,
    /// Roles of a principal whose credential names none.
    pub default_roles: Vec<String>,
}

/// One grant of a role: these servers, these MCP methods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRuleEntry {
    /// Server ids, globs (`search-*`), `group:NAME`, or `*`.
    pub servers: Vec<String>,
    /// `method` or `method:name` globs, as in a server's `policy`.
    pub allow: Vec<String>,
}

/// `security.headers`: response headers the gateway sets. An empty value leaves one out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadersSection {
    pub enabled: bool,
    /// Also add them to proxied responses that lack them.
    pub upstream: bool,
    /// Sent only on answers over TLS.
    pub strict_transport_security: String,
    pub x_content_type_options: String,
    pub x_frame_options: String,
    pub x_xss_protection: String,
    pub content_security_policy: String,
    pub referrer_policy: String,
}

impl Default for HeadersSection {
    fn default() -> Self {
        HeadersSection {
            enabled: true,
            upstream: false,
            strict_transport_security: "max-age=31536000; includeSubDomains".to_string(),
            x_content_type_options: "nosniff".to_string(),
            x_frame_options: "DENY".to_string(),
            x_xss_protection: "0".to_string(),
            content_security_policy: "default-src 'none'; frame-ancestors 'none'".to_string(),
            referrer_policy: "no-referrer".to_string(),
        }
    }
}
