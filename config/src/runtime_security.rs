//! The compiled `security` settings: who may call the gateway (`Authentication`), what each
//! role may reach (`Rbac`), and the response headers it adds (`SecurityHeaders`).
//!
//! Owns: plain runtime types, with key material already read and parsed at load time (off
//! the shards). Must not: verify credentials (the shard's `auth` module does) or do I/O.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use crate::runtime::{Pattern, PolicyRule};

#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// `security.allowedOrigins` (default empty): `"*"`, or `scheme://host[:port]` lowercased,
    /// without a trailing slash or the scheme's default port, as browsers send `Origin`.
    /// Empty: `Origin` is only checked on loopback listeners, where only localhost origins
    /// are allowed.
    pub allowed_origins: Vec<String>,
    pub auth: Authentication,
    pub rbac: Rbac,
    pub headers: SecurityHeaders,
    pub ddos: Ddos,
}

/// `security.ddos`: addresses refused at accept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ddos {
    pub deny: Vec<crate::runtime::IpBlock>,
    pub allow: Vec<crate::runtime::IpBlock>,
    /// Open connections one address may hold (0: no cap); `allow` addresses are not capped.
    pub max_connections_per_ip: usize,
}

impl Ddos {
    /// Whether `ip` is in an `allow` block.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow.iter().any(|b| b.contains(ip))
    }

    /// Whether a connection from `ip` is closed at accept: in a `deny` block and in no
    /// `allow` one.
    pub fn refuses(&self, ip: std::net::IpAddr) -> bool {
        self.deny.iter().any(|b| b.contains(ip)) && !self.allow.iter().any(|b| b.contains(ip))
    }
}

/// A way a request proves who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    OAuth2,
    /// A verified client certificate (with TLS).
    Mtls,
}

impl AuthMethod {
    /// The name in config, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "apikey",
            AuthMethod::Jwt => "jwt",
            AuthMethod::OAuth2 => "oauth2",
            AuthMethod::Mtls => "mtls",
        }
    }

    pub fn parse(name: &str) -> Option<AuthMethod> {
        [
            AuthMethod::ApiKey,
            AuthMethod::Jwt,
            AuthMethod::OAuth2,
            AuthMethod::Mtls,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// `security.authentication`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authentication {
    pub enabled: bool,
    /// Tried in this order; the first whose credential the request carries decides.
    pub methods: Vec<AuthMethod>,
    /// `apiKeyHeader`, as written.
    pub api_key_header: String,
    pub api_keys: Vec<ApiKey>,
    /// `None` when no JWT key is configured.
    pub jwt: Option<JwtSettings>,
    /// `None` when no issuer is configured.
    pub oauth2: Option<OAuth2Settings>,
    /// Paths served without credentials.
    pub public: Vec<Pattern>,
    pub forward_identity: bool,
    /// Verified tokens each shard remembers.
    pub token_cache_size: usize,
}

impl Authentication {
    /// Whether `path` (without its query) is served without credentials. A path that an
    /// upstream could read as another one (dot segments, encoded `.` `/` `\\`, a
    /// backslash) is never public: `/open/../admin` must not pass as under `/open/`.
    pub fn is_public(&self, path: &str) -> bool {
        !is_ambiguous(path) && self.public.iter().any(|p| p.matches(path.as_bytes()))
    }

    pub fn accepts(&self, method: AuthMethod) -> bool {
        self.methods.contains(&method)
    }
}

/// Dot segments, percent-encoded `.`, `/` or `\\`, or a backslash: what upstreams may
/// normalize into another path.
fn is_ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.contains('\\')
        || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// One API key, known by its SHA-256 only.
#[derive(Clone, PartialEq)]
pub struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish()
    }
}

/// The family of a PEM public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Ed,
}

/// A public key read from a PEM file.
#[derive(Debug, Clone, PartialEq)]
pub struct PemKey {
    pub path: String,
    pub family: KeyFamily,
    pub pem: Vec<u8>,
}

/// `security.authentication.jwt` and `jwtSecret`.
#[derive(Clone, PartialEq)]
pub struct JwtSettings {
    pub secret: Option<String>,
    pub public_keys: Vec<PemKey>,
    pub jwks: Option<JwkSet>,
    /// Where `jwks` was read from: read again when a token names an unknown `kid`.
    pub jwks_file: Option<String>,
    /// Where more keys are fetched from (merged into `jwks` by the loader).
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Allowed `alg` names (`HS256`, ...); every family the keys can verify when unset.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    pub claims: ClaimNames,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_keys", &self.public_keys.len())
            .field("jwks", &self.jwks.as_ref().map(|s| s.keys.len()))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// Where roles and scopes are in a token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimNames {
    pub roles: String,
    pub scopes: String,
}

/// `security.authentication.oauth2`.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Settings {
    pub issuers: Vec<OAuthIssuer>,
    /// The resource identifier tokens' `aud` must name (RFC 8707), and the metadata shows.
    pub resource: String,
    pub scopes_supported: Vec<String>,
    pub required_scopes: Vec<String>,
    /// Introspections each shard may wait on at once.
    pub max_pending_introspections: usize,
    pub leeway: Duration,
    pub claims: ClaimNames,
}

#[derive(Clone, PartialEq)]
pub struct OAuthIssuer {
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    /// Keys known at load time: `jwksFile`'s, and `jwksUrl`'s once the loader fetched them.
    pub jwks: Option<JwkSet>,
    pub introspection_url: Option<String>,
    /// Where introspection requests go (resolved at load time).
    pub introspection: Option<Outbound>,
    /// Where token exchanges go (resolved at load time).
    pub token_endpoint: Option<Outbound>,
    /// `caFile`'s certificates (DER), trusted instead of the Mozilla roots.
    pub ca_certs: Option<Vec<Vec<u8>>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// An endpoint the gateway itself calls from a shard (introspection), resolved at load time
/// so that no shard resolves a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub tls: bool,
    /// Host as written (the TLS server name and the `Host` header).
    pub host: String,
    /// `host[:port]`, the `Host` header.
    pub authority: String,
    pub addr: std::net::SocketAddr,
    /// Path and query.
    pub path: String,
}

impl std::fmt::Debug for OAuthIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthIssuer")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// `upstream.servers[].credentials`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCredentials {
    /// Send the principal's identity headers to this server.
    pub identity: bool,
    pub exchange: Option<TokenExchange>,
}

/// The client's token exchanged (RFC 8693) for one meant for this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchange {
    /// Index in `oauth2.issuers`.
    pub issuer: usize,
    pub audience: String,
    pub scope: Option<String>,
}

/// `security.rbac`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rbac {
    pub enabled: bool,
    pub roles: Vec<Role>,
    pub default_roles: Vec<String>,
}

impl Rbac {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub grants: Vec<Grant>,
}

/// Some servers, some methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub servers: Vec<ServerMatch>,
    pub allow: Vec<PolicyRule>,
}

/// Which servers a grant covers.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMatch {
    /// An id, or ids with a prefix (`search-*`; `*` is every server).
    Id(Pattern),
    /// Every member of a replica group.
    Group(String),
}

impl ServerMatch {
    pub fn parse(text: &str) -> ServerMatch {
        match text.strip_prefix("group:") {
            Some(group) => ServerMatch::Group(group.to_string()),
            None => ServerMatch::Id(Pattern::parse(text)),
        }
    }

    /// Whether the server `id` (a member of `group`, if any) is covered. A group's own name
    /// on `/mcp/{group}` is covered by `group:NAME` and by id patterns naming it.
    pub fn covers(&self, id: &str, group: Option<&str>) -> bool {
        match self {
            ServerMatch::Id(pattern) => pattern.matches(id.as_bytes()),
            ServerMatch::Group(name) => group == Some(name.as_str()),
        }
    }
}

/// `security.headers`: header lines the gateway adds.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityHeaders {
    /// Lines (`Name: value`) added to the gateway's own answers.
    pub lines: Vec<String>,
    /// `Strict-Transport-Security: ...`, for answers over TLS only.
    pub hsts: Option<String>,
    /// Add the lines to proxied responses that lack them.
    pub upstream: bool,
}
