//! One exchange with an upstream: take a pooled connection (or connect), send the request
//! head and body, read the response head, write it to the client, relay the body, and put
//! the connection back when both sides allow it.
//!
//! Owns: connect/request timeouts (the response head's wait starts once the request is
//! sent), the one retry of a request that met a stale pooled connection (only while the
//! whole request is in hand, and after its bytes were written only for idempotent methods:
//! a tool call must never run twice), and which connections may go back to the pool (the
//! response head itself is `upstream_response`, the filtering of a list answer
//! `list_response`). Must not: route, or answer errors to the client (the pipeline does,
//! from the [`Failure`] it gets).

use crate::client::Conn;
use crate::error::GatewayError;
use crate::hangup::{self, HeadRead};
use crate::legacy_sse;
use crate::list_response::{self, JsonFailure};
use crate::mcp::list_events::EventFilter;
use crate::mcp::lists::Unfilterable;
use crate::pool::{Checkout, Grant, PooledConn, WaitForGrant};
use crate::relay::{self, BodyLeft, Pace, RelayError};
use crate::state::BUFFER_SIZE;
use crate::stream::{self, StreamLimits};
use crate::upstream_response::{HeadStep, ListBody, ResponseFacts};
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::io;

use crate::exchange::{Completed, Exchange, Failure};

/// Why one attempt failed, before a retry decision.
enum Attempt {
    /// Writing the request head failed: the upstream had closed the connection, so it can
    /// have processed nothing. Safe to retry on a fresh one while the request is in hand.
    Unsent(io::Error),
    /// The request was written, then the connection closed before any response byte: the
    /// upstream may have acted on it, so only an idempotent request is sent again.
    Unanswered(io::Error),
    Fatal(Failure),
}

impl Exchange<'_> {
    pub async fn run(
        &self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        ubuf: &mut Vec<u8>,
        body_left: BodyLeft,
    ) -> Result<Completed, Failure> {
        let replayable = body_left.is_done();
        let mut body_left = Some(body_left);
        let mut retried = false;
        loop {
            let mut pooled = self.acquire().await.map_err(|e| match e {
                // Only a first attempt that could not connect left the upstream unaware.
                GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamTimeout(_)
                    if !retried =>
                {
                    Failure::Unreached(e)
                }
                e => Failure::BeforeResponse(e),
            })?;
            let reused = pooled.reused;
            let left = body_left.take().unwrap_or(BodyLeft::Done);
            match self.attempt(conn, &mut pooled, out, ubuf, left).await {
                Ok(done) => return Ok(done),
                Err(Attempt::Unsent(e)) | Err(Attempt::Unanswered(e))
                    if reused && replayable && !retried && self.idempotent =>
                {
                    tracing::debug!(upstream = %self.upstream.id, error = %e, "stale pooled connection, retrying once");
                    retried = true;
                    ubuf.clear();
                    self.shard.metrics.borrow_mut().upstream_retry();
                }
                Err(Attempt::Unsent(e)) if reused && replayable && !retried => {
                    tracing::debug!(upstream = %self.upstream.id, error = %e, "pooled connection closed before the request was sent, retrying once");
                    retried = true;
                    ubuf.clear();
                    self.shard.metrics.borrow_mut().upstream_retry();
                }
                Err(Attempt::Unsent(e)) | Err(Attempt::Unanswered(e)) => {
                    return Err(Failure::BeforeResponse(GatewayError::UpstreamConnect {
                        upstream: self.upstream.id.clone(),
                        reason: format!("connection closed before a response: {e}"),
                    }))
                }
                Err(Attempt::Fatal(f)) => return Err(f),
            }
        }
    }

    async fn acquire(&self) -> Result<PooledConn, GatewayError> {
        if let Some(addr) = self.via {
            let connect = TcpStream::connect_addr(addr);
            return match monoio::time::timeout_at(self.deadline, connect).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let pool = self.shard.pool.clone();
                    Ok(PooledConn::new(pool, crate::pool::UNPOOLED, stream, false))
                }
                Ok(Err(e)) => Err(GatewayError::UpstreamConnect {
                    upstream: self.upstream.id.clone(),
                    reason: format!("sse bridge: {e}"),
                }),
                Err(_) => Err(GatewayError::UpstreamTimeout(self.upstream.id.clone())),
            };
        }
        let checkout = self
            .shard
            .pool
            .borrow_mut()
            .checkout(self.index, std::time::Instant::now());
        let pool = self.shard.pool.clone();
        let grant = match checkout {
            Checkout::Reused(stream) => Grant::Stream(stream),
            Checkout::Connect => Grant::Capacity,
            Checkout::Unknown => return Err(GatewayError::UpstreamBusy(self.upstream.id.clone())),
            Checkout::Wait(waiter) => {
                // At the cap: queue for a connection until the request's deadline.
                let wait = WaitForGrant {
                    waiter,
                    pool: pool.clone(),
                    upstream: self.index,
                };
                match monoio::time::timeout_at(self.deadline, wait).await {
                    Ok(grant) => grant,
                    Err(_) => return Err(GatewayError::UpstreamBusy(self.upstream.id.clone())),
                }
            }
        };
        match grant {
            Grant::Stream(stream) => {
                self.shard.metrics.borrow_mut().upstream_connect(true);
                Ok(PooledConn::new(pool, self.index, stream, true))
            }
            Grant::Capacity => match monoio::time::timeout_at(
                self.deadline,
                TcpStream::connect_addr(self.upstream.addr),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.shard.metrics.borrow_mut().upstream_connect(false);
                    Ok(PooledConn::new(pool, self.index, stream, false))
                }
                Ok(Err(e)) => {
                    pool.borrow_mut().release(self.index);
                    Err(GatewayError::UpstreamConnect {
                        upstream: self.upstream.id.clone(),
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    pool.borrow_mut().release(self.index);
                    Err(GatewayError::UpstreamTimeout(self.upstream.id.clone()))
                }
            },
        }
    }

    async fn attempt(
        &self,
        conn: &mut Conn,
        pooled: &mut PooledConn,
        out: &mut Vec<u8>,
        ubuf: &mut Vec<u8>,
        mut body_left: BodyLeft,
    ) -> Result<Completed, Attempt> {
        let Some(up) = pooled.stream() else {
            return Err(Attempt::Unsent(io::ErrorKind::NotConnected.into()));
        };
        let bytes_in = out.len() as u64;
        // Send the head (and the body part that came with it).
        let timeout = self.upstream.timeout;
        match monoio::time::timeout(timeout, relay::write_all(up, out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Attempt::Unsent(e)),
            Err(_) => return Err(self.timeout()),
        }
        // The upstream's time for the response starts once it has the whole request.
        let mut deadline = Instant::now() + timeout;
        // Stream the rest of the request body; bytes after it stay in the read buffer.
        if !body_left.is_done() {
            conn.rbuf.clear();
            conn.rpos = 0;
            if conn.rbuf.capacity() < BUFFER_SIZE {
                conn.rbuf.reserve(BUFFER_SIZE);
            }
            let limits = &self.server.limits;
            let pace = Pace::request_body(limits, self.upstream.timeout);
            let limit = self.max_body;
            match relay::relay(
                &mut conn.stream,
                up,
                &mut conn.rbuf,
                &mut body_left,
                pace,
                limit,
                false,
            )
            .await
            {
                Ok(_) => deadline = Instant::now() + timeout,
                Err(RelayError::Read(_)) => return Err(Attempt::Fatal(Failure::ClientGone)),
                Err(RelayError::Timeout) | Err(RelayError::TooSlow) => {
                    return Err(Attempt::Fatal(Failure::BeforeResponse(
                        GatewayError::BodyTimeout,
                    )))
                }
                Err(RelayError::TooLarge) => {
                    return Err(Attempt::Fatal(Failure::BeforeResponse(
                        GatewayError::BodyTooLarge { limit },
                    )))
                }
                Err(RelayError::Framing) => {
                    return Err(Attempt::Fatal(Failure::BeforeResponse(
                        GatewayError::BadRequest("malformed chunked body"),
                    )))
                }
                Err(RelayError::Write(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(self.timeout())
                }
                Err(RelayError::Write(e)) => return Err(Attempt::Fatal(self.unreachable(e))),
            }
        }
        // Read the response head, skipping interim 1xx responses.
        if ubuf.capacity() == 0 {
            *ubuf = self.shard.take_buffer();
        }
        ubuf.clear();
        let mut seen_any = false;
        let mut watch_client = true;
        let ResponseFacts {
            status,
            mut resp_left,
            upstream_keep_alive,
            event_stream,
            client_keep_alive,
            unchunk,
            rewrite_endpoint,
            list_body,
        } = loop {
            match self.take_response_head(ubuf, out) {
                HeadStep::Complete(facts) => break facts,
                HeadStep::Interim => continue,
                HeadStep::Bad => return Err(Attempt::Fatal(self.protocol())),
                HeadStep::Unfilterable(reason) => return Err(self.unfilterable(reason)),
                HeadStep::Partial => {
                    let read = hangup::read_unless_client_leaves(
                        up,
                        ubuf,
                        conn,
                        deadline,
                        &mut watch_client,
                    );
                    match read.await {
                        HeadRead::TimedOut => return Err(self.timeout()),
                        HeadRead::ClientGone => return Err(Attempt::Fatal(Failure::ClientGone)),
                        HeadRead::Read(Ok(0)) | HeadRead::Read(Err(_)) if !seen_any => {
                            return Err(Attempt::Unanswered(io::ErrorKind::ConnectionReset.into()))
                        }
                        HeadRead::Read(Ok(0)) => return Err(Attempt::Fatal(self.protocol())),
                        HeadRead::Read(Err(e)) => return Err(Attempt::Fatal(self.unreachable(e))),
                        HeadRead::Read(Ok(_)) => seen_any = true,
                    }
                }
            }
        };
        if self.mcp.is_some_and(|m| m.stateless) {
            self.shard.learn_revision(self.index, status);
        }
        // A list answer's events are filtered on their way (`list_response`).
        let mut events = self
            .list
            .filter(|_| list_body == Some(ListBody::Events))
            .map(EventFilter::new);
        let chunked_to_client = matches!(resp_left, BodyLeft::Chunked(_)) && !unchunk;
        // The body part that came with the head goes out in the same write.
        let json = self.list.filter(|_| list_body == Some(ListBody::Json));
        let mut extra = match (
            self.legacy.filter(|_| rewrite_endpoint),
            json,
            events.as_mut(),
        ) {
            (Some(legacy), _, events) => {
                let idle = self.upstream.timeout;
                let left = &mut resp_left;
                legacy_sse::endpoint_prefix(self.shard, legacy, up, ubuf, out, left, idle, events)
                    .await
                    .map_err(|e| match e {
                        RelayError::Timeout => self.timeout(),
                        RelayError::TooLarge => self.unfilterable(Unfilterable::TooLarge.reason()),
                        _ => Attempt::Fatal(self.protocol()),
                    })?
            }
            (None, Some(list), _) => {
                let idle = self.upstream.timeout;
                list_response::read_json(&list, up, ubuf, &mut resp_left, idle, out)
                    .await
                    .map_err(|e| match e {
                        JsonFailure::Relay(RelayError::Timeout) => self.timeout(),
                        JsonFailure::Relay(_) => Attempt::Fatal(self.protocol()),
                        JsonFailure::Unfilterable(u) => self.unfilterable(u.reason()),
                    })?
            }
            (None, None, Some(events)) => {
                let left = &mut resp_left;
                let n = list_response::pass_events(events, ubuf, left, chunked_to_client, out)
                    .map_err(|e| match e {
                        RelayError::TooLarge => self.unfilterable(Unfilterable::TooLarge.reason()),
                        _ => Attempt::Fatal(self.protocol()),
                    })?;
                ubuf.len() - n
            }
            (None, None, None) => {
                let (n, send) = if unchunk {
                    resp_left.take_unchunked(ubuf)
                } else {
                    resp_left.take(ubuf).map(|n| (n, n))
                }
                .map_err(|_| Attempt::Fatal(self.protocol()))?;
                out.extend_from_slice(&ubuf[..send]);
                ubuf.len() - n
            }
        };
        let mut bytes_out = out.len() as u64;
        if let Err(e) = conn.send(out).await {
            return Err(Attempt::Fatal(client_failure(&e)));
        }
        if !resp_left.is_done() {
            crate::socket::quick_ack(up);
            // A tool call's stream is timed by progress; a subscription stream is not.
            let timed = self.is_post && !self.mcp.is_some_and(|m| m.listen);
            let relayed = if event_stream {
                let limits = StreamLimits {
                    keep_alive: self.server.sse_keep_alive,
                    progress_timeout: timed.then_some(self.upstream.timeout),
                    hard_deadline: timed.then(|| self.started + self.upstream.max_timeout),
                };
                let events = events.as_mut();
                stream::relay_events(up, conn, ubuf, &mut resp_left, unchunk, &limits, events).await
            } else {
                let pace = Pace {
                    read_idle: Some(self.upstream.timeout),
                    write_idle: Some(conn.send_timeout),
                    min_rate: None,
                };
                relay::relay(
                    up,
                    &mut conn.stream,
                    ubuf,
                    &mut resp_left,
                    pace,
                    u64::MAX,
                    unchunk,
                )
                .await
            };
            match relayed {
                Ok(r) => {
                    bytes_out += r.bytes;
                    extra = r.leftover;
                }
                Err(RelayError::Write(e)) => return Err(Attempt::Fatal(client_failure(&e))),
                Err(RelayError::Timeout) => {
                    return Err(Attempt::Fatal(Failure::AfterResponse {
                        status,
                        reason: "upstream idle timeout",
                    }))
                }
                Err(_) => {
                    return Err(Attempt::Fatal(Failure::AfterResponse {
                        status,
                        reason: "upstream body cut short",
                    }))
                }
            }
        }
        if upstream_keep_alive && extra == 0 && resp_left.is_done() {
            pooled.keep(std::time::Instant::now());
        }
        Ok(Completed {
            status,
            bytes_in,
            bytes_out,
            client_keep_alive,
        })
    }

    fn timeout(&self) -> Attempt {
        Attempt::Fatal(Failure::BeforeResponse(GatewayError::UpstreamTimeout(
            self.upstream.id.clone(),
        )))
    }

    /// A list answer that must be filtered but cannot be: refused, never passed on.
    fn unfilterable(&self, reason: &'static str) -> Attempt {
        tracing::warn!(upstream = %self.upstream.id, reason, "list answer not filtered: refused");
        Attempt::Fatal(Failure::BeforeResponse(GatewayError::UnfilterableList {
            upstream: self.upstream.id.clone(),
            reason,
        }))
    }

    fn protocol(&self) -> Failure {
        Failure::BeforeResponse(GatewayError::UpstreamProtocol(self.upstream.id.clone()))
    }

    fn unreachable(&self, e: io::Error) -> Failure {
        Failure::BeforeResponse(GatewayError::UpstreamConnect {
            upstream: self.upstream.id.clone(),
            reason: e.to_string(),
        })
    }
}

/// Why a write to the client failed: it read nothing for the send timeout, or it left.
fn client_failure(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::TimedOut {
        Failure::SendTimeout
    } else {
        Failure::ClientGone
    }
}
