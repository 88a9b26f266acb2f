//! The gateway as an OAuth 2.1 resource server, as the MCP authorization spec (2025-06-18
//! and later) asks: access tokens from configured issuers, checked against the issuer's
//! keys, whose audience must name this gateway's `resource` (RFC 8707); the RFC 9728
//! metadata that tells clients where to get such a token.
//!
//! The resource is the whole gateway (`oauth2.resource`): the metadata served at
//! `/.well-known/oauth-protected-resource` and under it (`.../mcp/{id}`) names it, and every
//! token's `aud` must. A token minted for another resource is refused with 401.
//!
//! Owns: the issuer's part of token checks, and the metadata document. Must not: fetch
//! keys (the management thread does) or cache (the caller does).

use mcp_gateway_config::{AuthMethod, GatewayConfig, OAuth2Settings, OAuthIssuer};
use serde_json::{json, Value};

use super::jwt::{self, KeyRing, TokenRules};
use super::{peek_claims, AuthFailure, AuthKeys, Principal};

/// The well-known path of RFC 9728 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The keys known for an issuer (its `jwksFile`, its `jwksUrl` once fetched). Only
/// public keys: an HMAC (`oct`) key in a published set is a secret everyone can read.
pub fn issuer_ring(issuer: &OAuthIssuer) -> KeyRing {
    let mut ring = KeyRing::default();
    if let Some(set) = &issuer.jwks {
        ring.add_jwks(set, &ASYMMETRIC);
    }
    ring
}

/// The algorithms an issuer's keys may verify.
const ASYMMETRIC: [jsonwebtoken::Algorithm; 9] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// The TLS settings of calls to `issuer`, when shards call it (introspection, token
/// exchange).
pub fn issuer_tls(issuer: &OAuthIssuer) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    if issuer.introspection.is_none() && issuer.token_endpoint.is_none() {
        return None;
    }
    crate::outbound::tls_config(issuer.ca_certs.as_deref())
        .map_err(|e| tracing::error!(issuer = %issuer.issuer, error = %e, "no TLS client for the issuer"))
        .ok()
}

/// The issuer asked about opaque tokens: the first with an introspection endpoint.
pub fn introspecting_issuer(config: &GatewayConfig) -> Option<usize> {
    let oauth = config.security.auth.oauth2.as_ref()?;
    oauth.issuers.iter().position(|i| i.introspection.is_some())
}

/// Which configured issuer a JWT names in its (unverified) `iss`.
pub fn issuer_of(token: &str, config: &GatewayConfig) -> Option<usize> {
    let oauth = config.security.auth.oauth2.as_ref()?;
    let claims = peek_claims(token)?;
    let iss = claims.get("iss")?.as_str()?;
    oauth.issuers.iter().position(|i| i.issuer == iss)
}

/// An access token's principal: signed by its issuer, for this resource, with the
/// required scopes.
pub fn verify(
    token: &str,
    config: &GatewayConfig,
    keys: &AuthKeys,
    now_ms: u64,
) -> Result<Principal, AuthFailure> {
    let oauth = config
        .security
        .auth
        .oauth2
        .as_ref()
        .ok_or(AuthFailure::WrongIssuer)?;
    let index = match issuer_of(token, config) {
        Some(index) => index,
        None if peek_claims(token).is_some() => return Err(AuthFailure::WrongIssuer),
        None => return Err(AuthFailure::Malformed),
    };
    let issuer = &oauth.issuers[index];
    let ring = keys.oauth.get(index).ok_or(AuthFailure::UnknownKey)?;
    let principal = jwt::verify(token, ring, &rules(oauth, issuer), now_ms)?;
    check_scopes(oauth, principal)
}

/// What a token of `issuer` must satisfy: its `iss`, this gateway's resource in `aud`.
pub fn rules<'a>(oauth: &'a OAuth2Settings, issuer: &'a OAuthIssuer) -> TokenRules<'a> {
    TokenRules {
        issuer: Some(&issuer.issuer),
        audience: Some(&oauth.resource),
        leeway_ms: oauth.leeway.as_millis() as u64,
        claims: &oauth.claims,
        method: AuthMethod::OAuth2,
    }
}

/// The principal, if it has every `requiredScopes` scope.
pub fn check_scopes(
    oauth: &OAuth2Settings,
    principal: Principal,
) -> Result<Principal, AuthFailure> {
    if oauth
        .required_scopes
        .iter()
        .any(|scope| !principal.has_scope(scope))
    {
        return Err(AuthFailure::InsufficientScope);
    }
    Ok(principal)
}

/// Where the metadata of `resource` is (RFC 9728 §3.1: the well-known path goes between
/// the host and the resource's own path).
pub fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("https", resource));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    format!(
        "{scheme}://{host}{METADATA_PATH}{}",
        path.trim_end_matches('/')
    )
}

/// The RFC 9728 document.
pub fn resource_metadata(oauth: &OAuth2Settings) -> Vec<u8> {
    let servers: Vec<Value> = oauth.issuers.iter().map(|i| json!(i.issuer)).collect();
    let mut doc = json!({
        "resource": oauth.resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-gateway",
    });
    if !oauth.scopes_supported.is_empty() {
        doc["scopes_supported"] = json!(oauth.scopes_supported);
    }
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

/// The `WWW-Authenticate` line of a 403 for a missing scope (RFC 6750 §3.1).
pub fn insufficient_scope(oauth: &OAuth2Settings) -> String {
    format!(
        "WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
        oauth.required_scopes.join(" "),
        metadata_url(&oauth.resource)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_path() {
        assert_eq!(
            metadata_url("https://gw.example"),
            "https://gw.example/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/mcp/"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
        );
    }
}
