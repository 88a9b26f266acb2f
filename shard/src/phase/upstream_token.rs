//! A phase that awaits: for a server with `credentials.tokenExchange`, the client's bearer
//! token is exchanged at the issuer (RFC 8693, `auth::exchange`) for one whose audience is
//! that server, and the upstream head gets `Authorization: Bearer <it>` (the client's own
//! `Authorization` is never sent: `forwardAuth` and a token exchange exclude each other).
//! Runs in `pipeline::proxy`, once per attempt (a failover to another replica exchanges for
//! that one), before any of the body goes upstream.
//!
//! Owns: that step. Must not: block (the exchange is an outbound call on the shard's
//! runtime, cached per client token and server).

use crate::auth::exchange;
use crate::auth::introspect::Failed;
use crate::client::Conn;
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::http::request;
use crate::state::Shard;

/// Adds the exchanged token to the upstream head in `out` (which ends with its blank line).
pub async fn add(
    conn: &Conn,
    ctx: &RequestCtx,
    slot: usize,
    out: &mut Vec<u8>,
    shard: &Shard,
) -> Result<(), GatewayError> {
    let config = &ctx.snap.config;
    let Some(exchange) = config
        .upstreams
        .get(slot)
        .and_then(|u| u.credentials.exchange.as_ref())
    else {
        return Ok(());
    };
    let subject = {
        let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
        match conn
            .rbuf
            .get(ctx.head_at..)
            .map(|b| request::parse(b, &mut headers))
        {
            Some(Ok(Some(head))) => crate::auth::bearer_of(&head).map(str::to_string),
            _ => None,
        }
    };
    // Only the bearer token the principal was verified from is exchanged: not one sent
    // beside an API key that decided who the client is.
    let verified = |p: &&crate::auth::Principal| {
        subject.as_deref().map(crate::auth::token_digest) == p.token_digest
            && p.token_digest.is_some()
    };
    let (Some(principal), Some(subject)) = (ctx.principal.as_deref().filter(verified), subject)
    else {
        return Err(GatewayError::Forbidden(
            "this server takes exchanged tokens: authenticate with a bearer token",
        ));
    };
    let now = crate::auth::now_ms();
    let auth = &ctx.snap.auth;
    let token = exchange::token_for(
        config,
        &auth.keys,
        &auth.exchanged,
        principal,
        &subject,
        slot,
        exchange,
        now,
    )
    .await;
    match token {
        Ok(token) => {
            let at = out.len().saturating_sub(2);
            let line = format!("Authorization: Bearer {token}\r\n");
            out.splice(at..at, line.into_bytes());
            Ok(())
        }
        Err(Failed::Refused(_)) => Err(GatewayError::Forbidden(
            "the issuer gives this client no token for this server",
        )),
        Err(Failed::Unavailable(why)) => {
            tracing::warn!(shard = shard.id, error = %why, "token exchange failed");
            Err(GatewayError::AuthUnavailable)
        }
    }
}
