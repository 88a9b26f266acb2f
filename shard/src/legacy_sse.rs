//! The I/O halves of the legacy HTTP+SSE transport (see `mcp::legacy` for the rules):
//! reading a pass-through stream up to its `endpoint` event to rewrite it (the events after
//! it filtered like any stream's when the caller's lists are narrowed), and passing a
//! bridged request to this process's SSE bridge and its answer back (with the gateway's
//! security headers: the bridge's answers are the gateway's own).
//!
//! Owns: those two copy loops. Must not: decide routes or tokens (`mcp::legacy`), or keep
//! state between requests.

use crate::client::Conn;
use crate::error::GatewayError;
use crate::http::BodyFraming;
use crate::mcp::legacy::{self, LegacyStream, Scan, MAX_ENDPOINT_PREFIX};
use crate::mcp::list_events::EventFilter;
use crate::relay::{self, read_append, BodyLeft, RelayError};
use crate::state::{Shard, BUFFER_SIZE};
use crate::stream::{self, StreamLimits};
use monoio::net::TcpStream;
use std::time::Duration;

/// Response heads from the bridge are small; a longer one is a bridge fault.
const MAX_BRIDGE_HEAD: usize = 16 * 1024;

/// Reads a pass-through stream's body until its `endpoint` event is complete, and appends
/// the payload so far to `out` (which holds the client's response head) with that event
/// rewritten; what follows it goes through `events` when the stream's list answers are
/// filtered. The body goes to the client without chunked framing, ended by closing, since
/// the rewrite changes its length. Returns how many bytes were read past the body's end.
#[allow(clippy::too_many_arguments)]
pub async fn endpoint_prefix(
    shard: &Shard,
    stream: &LegacyStream,
    up: &mut TcpStream,
    ubuf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    left: &mut BodyLeft,
    idle: Duration,
    mut events: Option<&mut EventFilter<'_>>,
) -> Result<usize, RelayError> {
    let mut pending = Vec::new();
    let mut from = 0;
    // The payload after the endpoint event (or all of it, without one).
    let mut rest = |bytes: &[u8], done: bool, out: &mut Vec<u8>| -> Result<(), RelayError> {
        match events.as_deref_mut() {
            Some(f) => {
                f.feed(bytes, out).map_err(|_| RelayError::TooLarge)?;
                if done {
                    f.finish(out);
                }
            }
            None => out.extend_from_slice(bytes),
        }
        Ok(())
    };
    loop {
        let (n, send) = left.take_unchunked(&mut ubuf[..])?;
        pending.extend_from_slice(&ubuf[..send]);
        let extra = ubuf.len() - n;
        ubuf.copy_within(n.., 0);
        ubuf.truncate(extra);
        match legacy::scan(&pending, from) {
            Scan::Endpoint { start, end } => {
                out.extend_from_slice(&pending[..start]);
                if legacy::rewrite_endpoint(&pending[start..end], stream, shard, out).is_none() {
                    tracing::warn!(shard = shard.id, upstream = %stream.id, "unusable endpoint event: passed unchanged");
                    out.extend_from_slice(&pending[start..end]);
                }
                rest(&pending[end..], left.is_done(), out)?;
                return Ok(extra);
            }
            Scan::More { from: next } => from = next,
        }
        if left.is_done() || pending.len() > MAX_ENDPOINT_PREFIX {
            tracing::warn!(shard = shard.id, upstream = %stream.id, "no endpoint event at the start of a legacy SSE stream");
            rest(&pending, left.is_done(), out)?;
            return Ok(extra);
        }
        match monoio::time::timeout(idle, read_append(up, ubuf, BUFFER_SIZE)).await {
            Err(_) => return Err(RelayError::Timeout),
            Ok(Err(e)) => return Err(RelayError::Read(e)),
            Ok(Ok(0)) if matches!(left, BodyLeft::UntilClose) => {
                *left = BodyLeft::Done;
                rest(&pending, true, out)?;
                return Ok(0);
            }
            Ok(Ok(0)) => return Err(RelayError::Read(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => {}
        }
    }
}

/// How a bridged exchange ended.
pub enum BridgeEnd {
    /// The bridge answered with this status; this many bytes went to the client.
    Answered { status: u16, bytes: u64 },
    /// Nothing went to the client yet: answer with this error.
    Failed(GatewayError),
    /// The client went away, or the relay broke after the head went out.
    Cut,
}

/// Sends the request (its head already in `out`, its body still on `conn`) to the bridge
/// and relays the bridge's answer until the bridge closes, a stream's events through
/// `events` when its list answers are filtered. The client connection closes after it: the
/// bridge's answers are ended by closing.
pub async fn bridge(
    shard: &Shard,
    conn: &mut Conn,
    snap: &crate::snapshot::Snapshot,
    framing: BodyFraming,
    expect_continue: bool,
    out: &mut Vec<u8>,
    events: Option<&mut EventFilter<'_>>,
) -> BridgeEnd {
    let limits = &snap.config.server.limits;
    let gone = |e: std::io::Error| {
        BridgeEnd::Failed(GatewayError::UpstreamConnect {
            upstream: "sse-bridge".into(),
            reason: e.to_string(),
        })
    };
    let Some(addr) = shard.sse_bridge else {
        return BridgeEnd::Failed(GatewayError::NoHealthyUpstream);
    };
    let mut bridge =
        match monoio::time::timeout(limits.header_timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return gone(e),
            Err(_) => return gone(std::io::ErrorKind::TimedOut.into()),
        };
    let _ = bridge.set_nodelay(true);
    let mut body_left = BodyLeft::of_request(framing, limits.max_header_bytes);
    let rpos = conn.rpos;
    let arrived = &mut conn.rbuf[rpos..];
    let Ok((n, send)) = body_left.take_forwarded(arrived, false) else {
        return BridgeEnd::Failed(GatewayError::BadRequest("malformed chunked body"));
    };
    out.extend_from_slice(&arrived[..send]);
    conn.rpos += n;
    if let Err(e) = relay::write_all(&mut bridge, out).await {
        return gone(e);
    }
    if !body_left.is_done() {
        if expect_continue {
            let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            if conn.send(&mut cont).await.is_err() {
                return BridgeEnd::Cut;
            }
        }
        conn.rbuf.clear();
        conn.rpos = 0;
        let max = limits.max_body_bytes;
        let pace = relay::Pace::request_body(limits, limits.header_timeout);
        let relayed = relay::relay(
            &mut conn.stream,
            &mut bridge,
            &mut conn.rbuf,
            &mut body_left,
            pace,
            max,
            false,
        )
        .await;
        match relayed {
            Ok(_) => {}
            Err(RelayError::TooLarge) => {
                return BridgeEnd::Failed(GatewayError::BodyTooLarge { limit: max })
            }
            Err(RelayError::Framing) => {
                return BridgeEnd::Failed(GatewayError::BadRequest("malformed chunked body"))
            }
            Err(RelayError::Timeout) | Err(RelayError::TooSlow) => {
                return BridgeEnd::Failed(GatewayError::BodyTimeout)
            }
            Err(RelayError::Write(e)) => return gone(e),
            Err(_) => return BridgeEnd::Cut,
        }
    }
    // The answer's head, for its status; then everything as it comes until the bridge closes.
    out.clear();
    loop {
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if out.len() > MAX_BRIDGE_HEAD {
            return gone(std::io::ErrorKind::InvalidData.into());
        }
        match read_append(&mut bridge, out, BUFFER_SIZE).await {
            Ok(0) => return gone(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) => return gone(e),
        }
    }
    let status = std::str::from_utf8(out.get(9..12).unwrap_or(b""))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    // The bridge answers for the gateway: its head gets the gateway's security headers.
    add_missing_lines(out, &snap.config.security.headers.lines);
    // What came after the head goes through the filter like the rest of a stream.
    let mut events = events.filter(|_| status == 200);
    if let Some(f) = events.as_deref_mut() {
        let head_end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |i| i + 4);
        let rest = out.split_off(head_end);
        if f.feed(&rest, out).is_err() {
            return BridgeEnd::Cut;
        }
    }
    let mut bytes = out.len() as u64;
    if conn.send(out).await.is_err() {
        return BridgeEnd::Cut;
    }
    let limits = StreamLimits {
        keep_alive: snap.config.server.sse_keep_alive,
        progress_timeout: None,
        hard_deadline: None,
    };
    let mut left = BodyLeft::UntilClose;
    match stream::relay_events(&mut bridge, conn, out, &mut left, false, &limits, events).await {
        Ok(r) => bytes += r.bytes,
        Err(_) => return BridgeEnd::Cut,
    }
    BridgeEnd::Answered { status, bytes }
}

/// Adds each of `lines` (`Name: value`) to the response head at the start of `out` that
/// has no header of that name.
fn add_missing_lines(out: &mut Vec<u8>, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let head = &out[..end];
    let has = |name: &str| {
        head.split(|&b| b == b'\n').skip(1).any(|l| {
            l.len() > name.len()
                && l[name.len()] == b':'
                && l[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        })
    };
    let mut add = Vec::new();
    for line in lines {
        let name = line.split(':').next().unwrap_or(line);
        if !has(name) {
            add.extend_from_slice(line.as_bytes());
            add.extend_from_slice(b"\r\n");
        }
    }
    // After the last header line's CRLF, before the blank line.
    out.splice(end + 2..end + 2, add);
}

#[cfg(test)]
mod tests {
    use super::add_missing_lines;

    #[test]
    fn missing_lines_go_before_the_blank_line() {
        let mut out = b"HTTP/1.1 200 OK\r\nx-frame-options: SAMEORIGIN\r\n\r\nbody".to_vec();
        let lines = [
            "X-Frame-Options: DENY".to_string(),
            "Referrer-Policy: no-referrer".to_string(),
        ];
        add_missing_lines(&mut out, &lines);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-frame-options: SAMEORIGIN\r\n\
              Referrer-Policy: no-referrer\r\n\r\nbody"
        );
    }
}
