//! Opaque access tokens, asked about at their issuer's introspection endpoint (RFC 7662)
//! from the shard, without blocking it (`outbound`): the answer must say `active`, name this
//! gateway's resource in `aud` and not be expired; its `sub` (or `client_id`), roles and
//! scopes make the principal, remembered in the shard's token cache until `exp` (a minute
//! when the answer gives none).
//!
//! Owns: the call and reading its answer. Must not: cache (the caller does) or answer.

use std::time::Duration;

use base64::Engine;
use mcp_gateway_config::{GatewayConfig, OAuthIssuer, Outbound};
use serde_json::{json, Map, Value};

use super::jwt;
use super::{AuthFailure, AuthKeys, Principal};

/// How long one introspection may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// How long an answer without `exp` is trusted.
const NO_EXP_TRUST_MS: u64 = 60_000;

/// Why an introspection gave no principal.
#[derive(Debug)]
pub enum Failed {
    /// The issuer said no (inactive, another audience, ...).
    Refused(AuthFailure),
    /// The issuer could not be asked (down, slow, garbled): 503, not the client's fault.
    Unavailable(String),
}

/// Asks issuer `index` about `token`.
pub async fn introspect(
    config: &GatewayConfig,
    keys: &AuthKeys,
    index: usize,
    token: &str,
    now_ms: u64,
) -> Result<Principal, Failed> {
    let unavailable = |why: &str| Failed::Unavailable(why.to_string());
    let oauth = config
        .security
        .auth
        .oauth2
        .as_ref()
        .ok_or_else(|| unavailable("no OAuth configuration"))?;
    let issuer = oauth
        .issuers
        .get(index)
        .ok_or_else(|| unavailable("no such issuer"))?;
    let body = format!("token={}&token_type_hint=access_token", form(token));
    let endpoint = issuer.introspection.as_ref();
    let answer = post_form((index, issuer), endpoint, keys, &body).await?;
    if answer.status != 200 {
        return Err(Failed::Unavailable(format!(
            "introspection answered {}",
            answer.status
        )));
    }
    let mut claims: Map<String, Value> = serde_json::from_slice(&answer.body)
        .map_err(|_| unavailable("introspection answer is not a JSON object"))?;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(Failed::Refused(AuthFailure::Inactive));
    }
    // The issuer answered about its own token; an answer may leave these out.
    claims.entry("iss").or_insert_with(|| json!(issuer.issuer));
    claims
        .entry("exp")
        .or_insert_with(|| json!((now_ms + NO_EXP_TRUST_MS) / 1000));
    if !claims.contains_key("sub") {
        if let Some(name) = claims.get("username").cloned() {
            claims.insert("sub".into(), name);
        }
    }
    let rules = super::oauth::rules(oauth, issuer);
    let principal = jwt::check_claims(&claims, &rules, now_ms).map_err(Failed::Refused)?;
    super::oauth::check_scopes(oauth, principal).map_err(Failed::Refused)
}

/// POSTs a form to one of `issuer`'s endpoints, as the gateway's own client.
pub async fn post_form(
    (index, issuer): (usize, &OAuthIssuer),
    endpoint: Option<&Outbound>,
    keys: &AuthKeys,
    body: &str,
) -> Result<crate::outbound::Answer, Failed> {
    let unavailable = |why: &str| Failed::Unavailable(why.to_string());
    let to = endpoint.ok_or_else(|| unavailable("no such endpoint"))?;
    let tls = keys
        .issuer_tls
        .get(index)
        .and_then(Option::as_ref)
        .ok_or_else(|| unavailable("no TLS client"))?;
    crate::outbound::post(
        to,
        tls,
        &client_basic(issuer),
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        MAX_ANSWER,
        TIMEOUT,
    )
    .await
    .map_err(Failed::Unavailable)
}

/// The gateway's own credentials at `issuer`, as an `Authorization` line: RFC 6749
/// §2.3.1, id and secret form-encoded, then HTTP Basic.
pub fn client_basic(issuer: &OAuthIssuer) -> String {
    let credentials = format!(
        "{}:{}",
        form(issuer.client_id.as_deref().unwrap_or("")),
        form(issuer.client_secret.as_deref().unwrap_or(""))
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Authorization: Basic {basic}\r\n")
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
