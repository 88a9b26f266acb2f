//! The management port behind authentication. With `security.authentication.enabled`,
//! its pages, the dashboard and the admin API need the `admin` role: an API key or token
//! whose roles name it, checked as on the data port, or the admin token
//! (`sessions.adminToken`) as a bearer. `/health` stays open when it is in `public` (it is
//! by default); the rest of `public` is for the data port.
//! With authentication off the port is as before (pages open; the admin API behind its
//! token, or loopback-only).
//!
//! Owns: that decision, and the management thread's own authentication state (its token
//! cache), rebuilt with each config. Must not: answer, or decide what the admin API does.

use mcp_gateway_config::{GatewayConfig, ADMIN_ROLE};
use mcp_gateway_shard::auth::{self, AuthFailure, Verdict};
use mcp_gateway_shard::http::request::RequestHead;

use std::cell::RefCell;
use std::sync::Arc;

use mcp_gateway_shard::auth::ShardAuth;

use super::admin::constant_time_eq;

thread_local! {
    /// The management thread's authentication state: its token cache and API-key table.
    static AUTH: RefCell<Option<ShardAuth>> = const { RefCell::new(None) };
}
use super::State;

/// Why a request is refused: status, message, `WWW-Authenticate` lines (CRLF-joined).
pub struct Refused {
    pub status: u16,
    pub message: String,
    pub challenge: String,
}

/// `Ok(true)`: an `admin` principal (or the admin token); `Ok(false)`: authentication is
/// off or the path is public (the admin API then checks its token as before).
pub fn check(head: &RequestHead<'_, '_>, state: &State) -> Result<bool, Refused> {
    let config: &GatewayConfig = &state.config;
    let settings = &config.security.auth;
    // Of `public`, only `/health` opens here: the operator's pages show upstream URLs and
    // listener addresses that the data port's copies leave out.
    let path = head.path();
    if !settings.enabled || (path == "/health" && settings.is_public(path)) {
        return Ok(false);
    }
    if bears_admin_token(head, config) {
        return Ok(true);
    }
    let challenge = state.auth_keys.challenges.join("\r\n");
    let verdict = AUTH.with(|cell| {
        let mut held = cell.borrow_mut();
        // Built again when the keys changed (a reload, a key refresh).
        if !held
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(&a.keys, &state.auth_keys))
        {
            *held = Some(ShardAuth::new(config, state.auth_keys.clone()));
        }
        held.as_ref().map(|a| auth::authenticate(head, config, a).1)
    });
    // Opaque tokens are not introspected here (the management thread does not wait on
    // issuers): API keys, JWTs and the admin token are what the port takes.
    let result = match verdict {
        Some(Verdict::Known(principal)) => Ok(principal),
        Some(Verdict::Refused(failure)) => Err(failure),
        Some(Verdict::Introspect(_)) => Err(AuthFailure::Malformed),
        None => Err(AuthFailure::Missing),
    };
    match result {
        Ok(principal) if principal.has_role(ADMIN_ROLE) => Ok(true),
        Ok(principal) => {
            tracing::info!(
                subject = &*principal.subject,
                path = head.path(),
                "management port: not an admin"
            );
            Err(Refused {
                status: 403,
                message: format!("the management port needs the `{ADMIN_ROLE}` role"),
                challenge: String::new(),
            })
        }
        Err(AuthFailure::InsufficientScope) => Err(Refused {
            status: 403,
            message: AuthFailure::InsufficientScope.message().to_string(),
            challenge,
        }),
        Err(failure) => Err(Refused {
            status: 401,
            message: format!("unauthorized: {}", failure.message()),
            challenge,
        }),
    }
}

fn bears_admin_token(head: &RequestHead<'_, '_>, config: &GatewayConfig) -> bool {
    let Some(token) = &config.sessions.admin_token else {
        return false;
    };
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| h.value.strip_prefix(b"Bearer "))
        .is_some_and(|sent| constant_time_eq(sent.trim_ascii(), token.as_bytes()))
}
