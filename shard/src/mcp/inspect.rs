//! Reading a whole request body into the connection's buffer so the gateway can check it
//! (a server with a `policy`, or roles that narrow what the caller may call) before any of
//! it goes upstream.
//!
//! Owns: that buffering, bounded in size and time. Must not: decide what is allowed
//! (`stateless.rs`) or answer the client (the pipeline does).

use std::time::Duration;

use super::lists::ListKinds;
use super::stateless::{self, BodyCheck, MAX_CHECKED_BODY};
use crate::client::{BufferError, Conn};
use crate::error::GatewayError;
use crate::http::BodyFraming;
use crate::state::Shard;

/// Why a checked body was not forwarded.
pub enum Refusal {
    /// The body was consumed: the connection can carry on after the error.
    Consumed(GatewayError),
    /// The body was not (fully) read: close after the error.
    Unread(GatewayError),
    /// The client went away.
    Gone,
}

/// Buffers the body (`conn.rbuf[conn.rpos..]` then holds all of it) and checks it; returns
/// the list methods it calls (their answers are filtered). On a refusal the body has been
/// consumed where possible.
pub async fn check(
    shard: &Shard,
    conn: &mut Conn,
    framing: BodyFraming,
    check: &BodyCheck,
    policy: &mcp_gateway_config::Policy,
    wait: Duration,
) -> Result<ListKinds, Refusal> {
    let len = match framing {
        BodyFraming::Empty => return Ok(ListKinds::NONE),
        BodyFraming::Length(n) if n > MAX_CHECKED_BODY => {
            let limit = MAX_CHECKED_BODY;
            return Err(Refusal::Unread(GatewayError::BodyTooLarge { limit }));
        }
        BodyFraming::Length(n) => n as usize,
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            return Err(Refusal::Unread(GatewayError::LengthRequired));
        }
    };
    let deadline = monoio::time::Instant::now() + wait;
    match conn.buffer_body(len, deadline).await {
        Ok(()) => {}
        Err(BufferError::Timeout) => return Err(Refusal::Unread(GatewayError::BodyTimeout)),
        Err(BufferError::Gone) => return Err(Refusal::Gone),
    }
    let body = &conn.rbuf[conn.rpos..conn.rpos + len];
    match stateless::check_body(body, check, policy) {
        Ok(checked) => {
            if let Some(slot) = checked.counted {
                shard.metrics.borrow_mut().mcp_method(slot);
            }
            Ok(checked.lists)
        }
        Err(err) => {
            conn.rpos += len;
            Err(Refusal::Consumed(err))
        }
    }
}
