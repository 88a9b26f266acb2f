//! The awaiting part of authentication: an opaque bearer token (no JWT) is asked about at
//! its issuer's introspection endpoint (RFC 7662) before the request goes on. The
//! synchronous phases stop at [`Action::Introspect`]; this asks (awaiting, bounded per
//! shard by `oauth2.maxPendingIntrospections`), remembers the principal in the shard's
//! token cache, and runs the phases again on the head still in the read buffer with that
//! principal; the next request with the token is served from the cache without waiting.
//!
//! Owns: that detour. Must not: run for any other request (`connection` calls it only for
//! `Action::Introspect`), or decide what the principal may do.

use std::rc::Rc;

use mcp_gateway_config::AuthMethod;

use crate::auth::{introspect, AuthFailure};
use crate::client::Conn;
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::http::request::RequestHead;
use crate::pipeline::prepare_as;
use crate::state::Shard;

/// Settles what `prepare` left to an awaiting step: an opaque token is asked about at its
/// issuer (RFC 7662), then the phases run again with the principal it vouched for (the
/// request counted once); a refusal or an issuer that cannot answer becomes the action.
/// Anything else is returned as it is.
pub async fn settle(shard: &Rc<Shard>, conn: &mut Conn, mut p: RequestCtx) -> RequestCtx {
    let Action::Introspect(issuer) = p.action else {
        return p;
    };
    let token = with_head(conn, p.head_at, |head| {
        crate::auth::bearer_of(head).map(str::to_string)
    })
    .flatten();
    let snap = p.snap.clone();
    let limit = snap
        .config
        .security
        .auth
        .oauth2
        .as_ref()
        .map_or(0, |o| o.max_pending_introspections);
    let Some(token) = token else {
        p.action = Action::Reject(super::authenticate::refusal(&snap, AuthFailure::Malformed));
        return p;
    };
    if shard.introspections.get() >= limit {
        tracing::warn!(
            shard = shard.id,
            limit,
            "too many token introspections pending"
        );
        p.action = Action::Reject(GatewayError::AuthUnavailable);
        return p;
    }
    let asked = {
        let _pending = crate::state::Counted::new(&shard.introspections);
        let now = crate::auth::now_ms();
        introspect::introspect(&snap.config, &snap.auth.keys, issuer, &token, now).await
    };
    let oauth2 = Some(AuthMethod::OAuth2);
    match asked {
        Ok(principal) => {
            let principal = crate::auth::remember(&snap.auth, &token, principal);
            let again = with_head(conn, p.head_at, |head| {
                let mut ctx = RequestCtx::again(head, shard, p.head_at, snap.clone());
                super::authenticate::accepted(shard, &mut ctx, principal);
                prepare_as(ctx, head, shard, conn)
            });
            match again {
                Some(ctx) => {
                    shard.give_buffer(std::mem::take(&mut p.out));
                    ctx
                }
                None => {
                    p.action = Action::Reject(GatewayError::BadRequest("request head changed"));
                    p
                }
            }
        }
        Err(introspect::Failed::Refused(failure)) => {
            let capacity = snap.config.security.auth.token_cache_size;
            crate::auth::remember_refusal(&snap.auth, &token, capacity);
            super::authenticate::count(shard, oauth2, Err(failure));
            p.action = Action::Reject(super::authenticate::refusal(&snap, failure));
            p
        }
        Err(introspect::Failed::Unavailable(why)) => {
            tracing::warn!(shard = shard.id, error = %why, "token introspection failed");
            p.action = Action::Reject(GatewayError::AuthUnavailable);
            p
        }
    }
}

/// Parses the request head at `head_at` again and hands it to `f` (`None` if it no longer
/// parses, which cannot happen: it is the head `prepare` saw, still in the buffer).
fn with_head<T>(
    conn: &Conn,
    head_at: usize,
    f: impl FnOnce(&RequestHead<'_, '_>) -> T,
) -> Option<T> {
    let mut headers = [httparse::EMPTY_HEADER; crate::http::request::MAX_HEADERS];
    match crate::http::request::parse(conn.rbuf.get(head_at..)?, &mut headers) {
        Ok(Some(head)) => Some(f(&head)),
        _ => None,
    }
}
