//! Authentication: from a request's credential (an API key, a JWT, an OAuth 2.1 access
//! token) to its [`Principal`], or a refusal saying why.
//!
//! Per config generation, the management shard builds one [`AuthKeys`] (parsed keys,
//! `WWW-Authenticate` challenges) shared read-only by every shard; each shard builds its own
//! [`ShardAuth`] beside it (API-key principals behind `Rc`, the verified-token cache), so
//! nothing here touches a shared counter per request.
//!
//! Methods are tried in the configured order; the first whose credential the request
//! carries decides (its failure is final, never passed to the next method). A bearer token
//! goes to `oauth2` when its `iss` names a configured issuer, else to `jwt`.
//!
//! Owns: credentials, their checks and the principal cache. Must not: decide what a
//! principal may do (`rbac`), or write answers.

pub mod apikey;
pub mod cache;
pub mod exchange;
pub mod introspect;
pub mod jwt;
pub mod oauth;
pub mod principal;
pub mod rbac;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use base64::Engine;
use mcp_gateway_config::{AuthMethod, Authentication, GatewayConfig};
use sha2::{Digest, Sha256};

pub use cache::TokenCache;
pub use principal::Principal;

use crate::http::request::RequestHead;
use jwt::{KeyRing, TokenRules};

/// Why a request was not authenticated: its metric label, and the message the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential any accepted method reads.
    Missing,
    /// Not a well-formed credential (not a JWT, no `exp` or `sub`, ...).
    Malformed,
    /// An API key nobody has.
    UnknownApiKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    /// Issued for another resource or audience.
    WrongAudience,
    /// No key with the token's `kid`.
    UnknownKey,
    /// An algorithm no configured key may verify.
    Algorithm,
    /// The token lacks a scope the gateway requires (403, not 401).
    InsufficientScope,
    /// Its issuer says the token is not active (revoked, expired, unknown).
    Inactive,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 12] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::UnknownApiKey,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::UnknownKey,
        AuthFailure::Algorithm,
        AuthFailure::InsufficientScope,
        AuthFailure::Inactive,
    ];

    /// The `result` label of `mcp_gateway_auth_total`.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownApiKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::UnknownKey => "unknown_kid",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::InsufficientScope => "insufficient_scope",
            AuthFailure::Inactive => "inactive",
        }
    }

    /// What the client is told (RFC 6750's `error_description`, without secrets).
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "credentials required",
            AuthFailure::Malformed => "malformed credentials",
            AuthFailure::UnknownApiKey => "unknown API key",
            AuthFailure::BadSignature => "token signature does not verify",
            AuthFailure::Expired => "token expired",
            AuthFailure::NotYetValid => "token not valid yet",
            AuthFailure::WrongIssuer => "token from an issuer this gateway does not accept",
            AuthFailure::WrongAudience => "token issued for another resource",
            AuthFailure::UnknownKey => "token signed with an unknown key",
            AuthFailure::Algorithm => "token algorithm not accepted",
            AuthFailure::InsufficientScope => "token lacks a required scope",
            AuthFailure::Inactive => "token is not active",
        }
    }
}

/// Metric rows of `mcp_gateway_auth_total`: one per method, then one for requests that
/// carried no credential any method reads.
pub const AUTH_METHOD_ROWS: usize = 5;
/// Columns: `ok`, then each [`AuthFailure`].
pub const AUTH_RESULT_COLUMNS: usize = AuthFailure::ALL.len() + 1;

/// The metric row of a method (`None`: no credential).
pub fn method_row(method: Option<AuthMethod>) -> usize {
    match method {
        Some(AuthMethod::ApiKey) => 0,
        Some(AuthMethod::Jwt) => 1,
        Some(AuthMethod::OAuth2) => 2,
        Some(AuthMethod::Mtls) => 3,
        None => 4,
    }
}

/// The label of a metric row.
pub fn row_label(row: usize) -> &'static str {
    ["apikey", "jwt", "oauth2", "mtls", "none"]
        .get(row)
        .copied()
        .unwrap_or("none")
}

/// The metric column of a result.
pub fn result_column(result: Result<(), AuthFailure>) -> usize {
    match result {
        Ok(()) => 0,
        Err(f) => 1 + AuthFailure::ALL.iter().position(|a| *a == f).unwrap_or(0),
    }
}

/// The label of a metric column.
pub fn column_label(column: usize) -> &'static str {
    match column {
        0 => "ok",
        c => AuthFailure::ALL.get(c - 1).map_or("other", |f| f.label()),
    }
}

/// One generation's keys and challenges, shared read-only by every shard.
pub struct AuthKeys {
    /// The `jwt` method's keys.
    pub jwt: KeyRing,
    /// Per OAuth issuer (in config order), the keys known for it.
    pub oauth: Vec<KeyRing>,
    /// `WWW-Authenticate` lines of a 401.
    pub challenges: Vec<String>,
    /// RFC 9728 metadata (JSON), when OAuth is configured.
    pub resource_metadata: Option<Vec<u8>>,
    /// Per OAuth issuer, the TLS settings of calls to it (introspection, token exchange):
    /// its `caFile`, else the Mozilla roots; `None` when it has no endpoint shards call.
    pub issuer_tls: Vec<Option<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKeys")
            .field("jwt_keys", &self.jwt.keys.len())
            .field("oauth_issuers", &self.oauth.len())
            .finish()
    }
}

impl AuthKeys {
    pub fn new(config: &GatewayConfig) -> AuthKeys {
        let auth = &config.security.auth;
        let jwt = auth
            .jwt
            .as_ref()
            .map(KeyRing::from_settings)
            .unwrap_or_default();
        let oauth = auth
            .oauth2
            .as_ref()
            .map(|o| o.issuers.iter().map(oauth::issuer_ring).collect())
            .unwrap_or_default();
        AuthKeys {
            jwt,
            oauth,
            challenges: challenges(auth),
            resource_metadata: auth.oauth2.as_ref().map(oauth::resource_metadata),
            issuer_tls: auth
                .oauth2
                .as_ref()
                .map(|o| o.issuers.iter().map(oauth::issuer_tls).collect())
                .unwrap_or_default(),
        }
    }
}

/// One `WWW-Authenticate` line per scheme accepted (RFC 9110 §11.6.1).
fn challenges(auth: &Authentication) -> Vec<String> {
    let mut lines = Vec::new();
    if auth.accepts(AuthMethod::Jwt) || auth.accepts(AuthMethod::OAuth2) {
        let mut line = "WWW-Authenticate: Bearer realm=\"mcp-gateway\"".to_string();
        if let (true, Some(oauth)) = (auth.accepts(AuthMethod::OAuth2), &auth.oauth2) {
            line.push_str(&format!(
                ", resource_metadata=\"{}\"",
                oauth::metadata_url(&oauth.resource)
            ));
        }
        lines.push(line);
    }
    if auth.accepts(AuthMethod::ApiKey) {
        lines.push(format!(
            "WWW-Authenticate: ApiKey realm=\"mcp-gateway\", header=\"{}\"",
            auth.api_key_header
        ));
    }
    lines
}

/// A shard's authentication state for one generation.
pub struct ShardAuth {
    pub keys: Arc<AuthKeys>,
    api_keys: apikey::ApiKeys,
    cache: RefCell<TokenCache>,
    /// Tokens exchanged for upstreams (`credentials.tokenExchange`).
    pub exchanged: exchange::ExchangeCache,
    /// Opaque tokens an issuer refused lately (digest → until when, Unix ms): asked about
    /// again only after `REFUSAL_MEMORY_MS`, so garbage tokens cannot keep issuers busy.
    refused: RefCell<std::collections::HashMap<[u8; 32], u64>>,
    /// Unix milliseconds as of the shard's last tick: what cached principals' expiry is
    /// checked against (a clock read per request costs more than the lookup; a tick is far
    /// inside any leeway).
    pub clock_ms: std::cell::Cell<u64>,
    /// Key sources a token named an unknown `kid` of since the last tick (see
    /// [`key_source_bit`]); sent up with the metrics, so the management shard refreshes them.
    pub key_misses: std::cell::Cell<u64>,
}

/// The bit of a key source in `key_misses`: 0 for the `jwt` method's JWKS, 1 + i for OAuth
/// issuer i (issuers past 62 share the last bit).
pub fn key_source_bit(oauth_issuer: Option<usize>) -> u64 {
    match oauth_issuer {
        None => 1,
        Some(i) => 1 << (1 + i.min(62)),
    }
}

impl ShardAuth {
    pub fn new(config: &GatewayConfig, keys: Arc<AuthKeys>) -> ShardAuth {
        let auth = &config.security.auth;
        ShardAuth {
            keys,
            api_keys: apikey::ApiKeys::new(&auth.api_keys),
            cache: RefCell::new(TokenCache::new(auth.token_cache_size)),
            exchanged: exchange::ExchangeCache::new(auth.token_cache_size),
            refused: RefCell::new(std::collections::HashMap::new()),
            key_misses: std::cell::Cell::new(0),
            clock_ms: std::cell::Cell::new(now_ms()),
        }
    }
}

/// Who sent `head`; `Ok(None)` never happens with authentication on (a request without
/// credentials is `Missing`). The method is returned with the result for the metrics.
/// What a credential says about its request.
pub enum Verdict {
    Known(Rc<Principal>),
    Refused(AuthFailure),
    /// An opaque token the issuer at this index must be asked about (RFC 7662); the
    /// request waits for it (`pipeline::settle`).
    Introspect(usize),
}

impl Verdict {
    fn of(result: Result<Rc<Principal>, AuthFailure>) -> Verdict {
        match result {
            Ok(principal) => Verdict::Known(principal),
            Err(failure) => Verdict::Refused(failure),
        }
    }
}

/// Who sent `head`, by the first configured method whose credential it carries, and that
/// method (`None`: no credential at all).
pub fn authenticate(
    head: &RequestHead<'_, '_>,
    config: &GatewayConfig,
    state: &ShardAuth,
) -> (Option<AuthMethod>, Verdict) {
    let auth = &config.security.auth;
    let bearer = bearer_token(head);
    for &method in &auth.methods {
        match method {
            AuthMethod::ApiKey => {
                if let Some(key) = header(head, &auth.api_key_header) {
                    return (Some(method), Verdict::of(state.api_keys.find(key)));
                }
            }
            AuthMethod::Jwt | AuthMethod::OAuth2 => {
                if let Some(token) = bearer {
                    return bearer_principal(token, config, state);
                }
            }
            AuthMethod::Mtls => {}
        }
    }
    (None, Verdict::Refused(AuthFailure::Missing))
}

/// The SHA-256 of a bearer token: how caches and principals know it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Remembers a principal an introspection vouched for (marked as that token's), until its
/// token expires or `INTROSPECTION_TRUST_MS` passes, whichever comes first.
pub fn remember(state: &ShardAuth, token: &str, mut principal: Principal) -> Rc<Principal> {
    let trust_until = now_ms() + INTROSPECTION_TRUST_MS;
    principal.expires_ms = Some(
        principal
            .expires_ms
            .map_or(trust_until, |e| e.min(trust_until)),
    );
    cache_principal(state, token, token_digest(token), principal)
}

/// Marks a verified principal as `token`'s and keeps it in the shard's cache.
fn cache_principal(
    state: &ShardAuth,
    token: &str,
    digest: [u8; 32],
    mut principal: Principal,
) -> Rc<Principal> {
    principal.token_digest = Some(digest);
    let principal = Rc::new(principal);
    state
        .cache
        .borrow_mut()
        .insert(token.as_bytes(), principal.clone());
    principal
}

/// How long a token an issuer refused is refused without asking again.
pub const REFUSAL_MEMORY_MS: u64 = 10_000;

/// Remembers that an issuer refused `token` (bounded like the token cache).
pub fn remember_refusal(state: &ShardAuth, token: &str, capacity: usize) {
    let now = now_ms();
    let mut refused = state.refused.borrow_mut();
    if refused.len() >= capacity.max(1) {
        refused.retain(|_, until| *until > now);
        if refused.len() >= capacity.max(1) {
            refused.clear();
        }
    }
    refused.insert(token_digest(token), now + REFUSAL_MEMORY_MS);
}

/// How long an introspection's "active" is believed: a token revoked at its issuer stops
/// working here within this long.
pub const INTROSPECTION_TRUST_MS: u64 = 60_000;

/// The bearer token of a request, if it has one.
pub fn bearer_of<'b>(head: &RequestHead<'_, 'b>) -> Option<&'b str> {
    bearer_token(head).and_then(|t| std::str::from_utf8(t).ok())
}

/// A bearer token's principal: from the shard's cache, or verified (by `oauth2` when its
/// `iss` names a configured issuer and that method is on, else by `jwt`) and cached.
fn bearer_principal(
    raw: &[u8],
    config: &GatewayConfig,
    state: &ShardAuth,
) -> (Option<AuthMethod>, Verdict) {
    let auth = &config.security.auth;
    let ticked = state.clock_ms.get();
    let leeway = |method: AuthMethod| {
        match method {
            AuthMethod::OAuth2 => auth.oauth2.as_ref().map(|o| o.leeway),
            _ => auth.jwt.as_ref().map(|j| j.leeway),
        }
        .unwrap_or_default()
        .as_millis() as u64
    };
    let cached = state.cache.borrow().peek_method(raw);
    if let Some(method) = cached {
        if let Some(principal) = state.cache.borrow_mut().get(raw, ticked, leeway(method)) {
            return (Some(method), Verdict::Known(principal));
        }
    }
    let now = now_ms();
    let Ok(token) = std::str::from_utf8(raw) else {
        return (None, Verdict::Refused(AuthFailure::Malformed));
    };
    // Not cached: the digest marks the principal as this token's (token exchange) and
    // keys the memory of refusals.
    let digest = token_digest(token);
    let opaque = || peek_claims(token).is_none() && oauth::introspecting_issuer(config).is_some();
    let oauth = auth.accepts(AuthMethod::OAuth2)
        && (!auth.accepts(AuthMethod::Jwt)
            || oauth::issuer_of(token, config).is_some()
            || opaque());
    let method = if oauth {
        AuthMethod::OAuth2
    } else {
        AuthMethod::Jwt
    };
    if oauth && peek_claims(token).is_none() {
        if let Some(issuer) = oauth::introspecting_issuer(config) {
            let refused = state
                .refused
                .borrow()
                .get(&digest)
                .is_some_and(|until| *until > now);
            if refused {
                return (Some(method), Verdict::Refused(AuthFailure::Inactive));
            }
            return (Some(method), Verdict::Introspect(issuer));
        }
    }
    let verified = match method {
        AuthMethod::OAuth2 => oauth::verify(token, config, &state.keys, now),
        _ => match auth.jwt.as_ref() {
            Some(jwt) => {
                let rules = TokenRules {
                    issuer: jwt.issuer.as_deref(),
                    audience: jwt.audience.as_deref(),
                    leeway_ms: leeway(method),
                    claims: &jwt.claims,
                    method,
                };
                jwt::verify(token, &state.keys.jwt, &rules, now)
            }
            None => Err(AuthFailure::UnknownKey),
        },
    };
    if matches!(verified, Err(AuthFailure::UnknownKey)) {
        let issuer = match method {
            AuthMethod::OAuth2 => oauth::issuer_of(token, config),
            _ => None,
        };
        let sourced = issuer.is_some()
            || auth
                .jwt
                .as_ref()
                .is_some_and(|j| j.jwks_file.is_some() || j.jwks_url.is_some());
        if sourced {
            let bit = key_source_bit(issuer);
            state.key_misses.set(state.key_misses.get() | bit);
        }
    }
    let result = verified.map(|principal| cache_principal(state, token, digest, principal));
    (Some(method), Verdict::of(result))
}

/// The first value of header `name`, trimmed.
fn header<'b>(head: &RequestHead<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| crate::http::trim_ascii(h.value))
}

/// `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 6750 §2.1).
/// Bytes, not `str`: a cached token is found without validating it as UTF-8 first.
fn bearer_token<'b>(head: &RequestHead<'_, 'b>) -> Option<&'b [u8]> {
    let value = header(head, "authorization")?;
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(token.trim_ascii())
}

/// The unverified claims of a JWT (for choosing who verifies it), or `None`.
pub fn peek_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
