//! Per-user credentials for an upstream (`credentials.tokenExchange`): MCP forbids passing
//! the client's token through, so the gateway exchanges it at the issuer (RFC 8693) for a
//! token whose audience is that server, and sends that one. Exchanged tokens are cached
//! per shard, per client token and server, until they (or the client's token) expire.
//!
//! Owns: the exchange call, its cache, and reading its answer. Must not: answer the client
//! or edit the upstream head (the pipeline does both).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mcp_gateway_config::{GatewayConfig, TokenExchange};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::introspect::{form, post_form, Failed};
use super::{AuthFailure, AuthKeys, Principal};

/// How long a token is kept when the issuer gives no `expires_in`.
const NO_EXPIRY_KEEP_MS: u64 = 60_000;

/// (client token digest, upstream slot).
type Key = ([u8; 32], usize);

/// Exchanged tokens of one shard and generation: key → (token, valid until, Unix ms).
pub struct ExchangeCache {
    capacity: usize,
    tokens: RefCell<HashMap<Key, (Rc<str>, u64)>>,
}

impl ExchangeCache {
    pub fn new(capacity: usize) -> ExchangeCache {
        ExchangeCache {
            capacity,
            tokens: RefCell::new(HashMap::new()),
        }
    }

    fn get(&self, key: &Key, now_ms: u64) -> Option<Rc<str>> {
        let tokens = self.tokens.borrow();
        let (token, until) = tokens.get(key)?;
        (now_ms < *until).then(|| token.clone())
    }

    fn put(&self, key: Key, token: Rc<str>, until: u64, now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= self.capacity {
            tokens.retain(|_, (_, until)| *until > now_ms);
            if tokens.len() >= self.capacity {
                // Still full of live tokens: start over rather than grow.
                tokens.clear();
            }
        }
        tokens.insert(key, (token, until));
    }
}

/// The token to send to the server in `slot` for a client that sent `subject_token`.
#[allow(clippy::too_many_arguments)]
pub async fn token_for(
    config: &GatewayConfig,
    keys: &AuthKeys,
    cache: &ExchangeCache,
    principal: &Principal,
    subject_token: &str,
    slot: usize,
    exchange: &TokenExchange,
    now_ms: u64,
) -> Result<Rc<str>, Failed> {
    let digest: [u8; 32] = Sha256::digest(subject_token.as_bytes()).into();
    let key = (digest, slot);
    if let Some(token) = cache.get(&key, now_ms) {
        return Ok(token);
    }
    let unavailable = |why: &str| Failed::Unavailable(why.to_string());
    let issuer = config
        .security
        .auth
        .oauth2
        .as_ref()
        .and_then(|o| o.issuers.get(exchange.issuer))
        .ok_or_else(|| unavailable("no such issuer"))?;
    let mut body = format!(
        "grant_type={}&subject_token={}&subject_token_type={}&requested_token_type={}&audience={}&resource={}",
        form("urn:ietf:params:oauth:grant-type:token-exchange"),
        form(subject_token),
        form("urn:ietf:params:oauth:token-type:access_token"),
        form("urn:ietf:params:oauth:token-type:access_token"),
        form(&exchange.audience),
        form(&exchange.audience),
    );
    if let Some(scope) = &exchange.scope {
        body.push_str(&format!("&scope={}", form(scope)));
    }
    let endpoint = issuer.token_endpoint.as_ref();
    let answer = post_form((exchange.issuer, issuer), endpoint, keys, &body).await?;
    match answer.status {
        200 => {}
        // invalid_grant, unauthorized_client, invalid_target: the issuer will not let this
        // client's token reach that server.
        400..=499 => return Err(Failed::Refused(AuthFailure::WrongAudience)),
        other => {
            return Err(Failed::Unavailable(format!(
                "token exchange answered {other}"
            )))
        }
    }
    let answer: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| unavailable("token exchange answer is not JSON"))?;
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        // Sent as a header value: visible ASCII only, so no answer can add a header.
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| unavailable("token exchange answer has no usable access_token"))?;
    let bearer = answer
        .get("token_type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("n_a"));
    if !bearer {
        return Err(unavailable("token exchange gave no bearer token"));
    }
    let lifetime = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .map_or(NO_EXPIRY_KEEP_MS, |s| s.saturating_mul(1000));
    let until = (now_ms + lifetime).min(principal.expires_ms.unwrap_or(u64::MAX));
    let token: Rc<str> = Rc::from(token);
    cache.put(key, token.clone(), until, now_ms);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_expires() {
        let cache = ExchangeCache::new(2);
        cache.put(([1; 32], 0), Rc::from("a"), 100, 0);
        cache.put(([2; 32], 0), Rc::from("b"), 100, 0);
        assert_eq!(cache.get(&([1; 32], 0), 50).as_deref(), Some("a"));
        assert_eq!(cache.get(&([1; 32], 0), 100), None, "expired");
        cache.put(([3; 32], 0), Rc::from("c"), 100, 50);
        assert!(cache.tokens.borrow().len() <= 2);
        assert_eq!(cache.get(&([3; 32], 0), 60).as_deref(), Some("c"));
    }
}
