//! A phase that awaits: with `sessions.store: "redis"`, a request resuming a session must
//! find it still recorded (another gateway process, or the admin API, may have ended it);
//! a `DELETE` ends it in the store too. Runs in `pipeline::run`, on the owned context,
//! after the phases that read the head.
//!
//! Owns: that check. Must not: block: the store answers over the shard's own connection,
//! with a cached verdict for recently confirmed sessions.

use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::mcp::session::TokenError;
use crate::state::Shard;

pub async fn confirm(shard: &Shard, ctx: &RequestCtx) -> Result<(), GatewayError> {
    let (Some(key), Some(store)) = (ctx.store_key, &shard.store) else {
        return Ok(());
    };
    if !store.check(key).await {
        return Err(GatewayError::SessionNotFound(TokenError::Revoked));
    }
    if ctx.is_delete {
        store.forget(key);
    }
    Ok(())
}
