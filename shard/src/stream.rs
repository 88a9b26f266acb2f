//! Relaying a `text/event-stream` response body (MCP's SSE streams).
//!
//! Events pass as they arrive. Silence is filled with `: keep-alive` comments, written only
//! between events (and between chunks), so intermediaries do not cut idle streams. A client
//! that goes away is noticed at once (its socket turns readable at EOF) and the upstream
//! connection is dropped, which closes it: the upstream sees the cancellation. A streamed
//! POST response (a long tool call) ends with 504-like failure after `timeout` of silence
//! between progress notifications, and at `maxTimeout` in any case.
//!
//! A stream whose list answers are filtered (`mcp::lists`) passes through an
//! [`EventFilter`] instead: whole events go out, rewritten where they carry a response, and
//! chunked again when the client gets chunks (`list_response::pass_events`).
//!
//! Owns: the event-stream copy loop. Must not: parse events beyond finding their ends and
//! spotting progress notifications (the filter reads them).

use crate::client::Conn;
use crate::hangup::{client_woke, ClientWoke};
use crate::mcp::list_events::EventFilter;
use crate::relay::{pass_on, BodyLeft, RelayError, Relayed};
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::time::Duration;

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";
/// The same comment as one chunk, for clients receiving chunked framing.
const KEEP_ALIVE_CHUNK: &[u8] = b"e\r\n: keep-alive\n\n\r\n";
const PROGRESS: &[u8] = b"notifications/progress";
const READ_SIZE: usize = 8 * 1024;

pub struct StreamLimits {
    /// Write a keep-alive comment after this much silence.
    pub keep_alive: Option<Duration>,
    /// A streamed POST response: the longest silence between progress notifications.
    pub progress_timeout: Option<Duration>,
    /// A streamed POST response: the end, whatever progress says.
    pub hard_deadline: Option<Instant>,
}

enum Woke {
    Upstream,
    Client,
    Timer,
}

/// Copies the rest of an event-stream body from `up` to the client of `conn`, through
/// `events` when its lists are filtered (the client then gets no upstream framing: chunks
/// the gateway writes when the upstream's were chunks and `unchunk` is off, else the
/// stream ends by closing).
pub async fn relay_events(
    up: &mut TcpStream,
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    left: &mut BodyLeft,
    unchunk: bool,
    limits: &StreamLimits,
    mut events: Option<&mut EventFilter<'_>>,
) -> Result<Relayed, RelayError> {
    let chunked_to_client = matches!(left, BodyLeft::Chunked(_)) && !unchunk;
    let can_comment =
        events.is_some() || matches!(left, BodyLeft::Chunked(_) | BodyLeft::UntilClose);
    let mut rewritten = Vec::new();
    // The last four payload bytes sent, to tell whether an event just ended.
    let mut tail = [b'\n'; 4];
    let mut last_write = Instant::now();
    let mut progress_deadline = limits.progress_timeout.map(|t| Instant::now() + t);
    let mut watch_client = true;
    let mut progress = ProgressSpotter::default();
    let mut copied = 0u64;
    while !left.is_done() {
        let keep_alive_at = limits
            .keep_alive
            .filter(|_| can_comment)
            .map(|k| last_write + k);
        let wake_at = [keep_alive_at, progress_deadline, limits.hard_deadline]
            .into_iter()
            .flatten()
            .min();
        let woke = {
            let upstream_ready = up.readable(false);
            let client_ready = async {
                if watch_client {
                    conn.stream.readable(false).await
                } else {
                    std::future::pending().await
                }
            };
            let timer = async {
                match wake_at {
                    Some(at) => monoio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            monoio::select! {
                _ = upstream_ready => Woke::Upstream,
                _ = client_ready => Woke::Client,
                _ = timer => Woke::Timer,
            }
        };
        match woke {
            Woke::Client => match client_woke(conn).await {
                ClientWoke::Pipelined => watch_client = false,
                ClientWoke::Gone => {
                    return Err(RelayError::Write(
                        std::io::ErrorKind::ConnectionAborted.into(),
                    ))
                }
            },
            Woke::Timer => {
                let now = Instant::now();
                if limits.hard_deadline.is_some_and(|d| now >= d)
                    || progress_deadline.is_some_and(|d| now >= d)
                {
                    return Err(RelayError::Timeout);
                }
                // Rewritten events go out whole, in whole chunks.
                let at_boundary = event_ended(&tail)
                    && match left {
                        _ if events.is_some() => true,
                        BodyLeft::Chunked(t) => unchunk || t.between_chunks(),
                        _ => true,
                    };
                if at_boundary {
                    let comment = if chunked_to_client {
                        KEEP_ALIVE_CHUNK
                    } else {
                        KEEP_ALIVE_COMMENT
                    };
                    let mut out = comment.to_vec();
                    conn.send(&mut out).await.map_err(RelayError::Write)?;
                }
                last_write = now;
            }
            Woke::Upstream => {
                let mut chunk = std::mem::take(buf);
                chunk.clear();
                if chunk.capacity() < READ_SIZE {
                    chunk.reserve(READ_SIZE);
                }
                let (res, chunk) = up.read(chunk).await;
                *buf = chunk;
                let n = res.map_err(RelayError::Read)?;
                if n == 0 {
                    if matches!(left, BodyLeft::UntilClose) {
                        // The end of the stream ends a last unfinished event too.
                        if let Some(events) = events.as_deref_mut() {
                            rewritten.clear();
                            events.finish(&mut rewritten);
                            if !rewritten.is_empty() {
                                copied += rewritten.len() as u64;
                                conn.send(&mut rewritten).await.map_err(RelayError::Write)?;
                            }
                        }
                        break;
                    }
                    return Err(RelayError::Read(std::io::ErrorKind::UnexpectedEof.into()));
                }
                crate::socket::quick_ack(up);
                if let Some(events) = events.as_deref_mut() {
                    rewritten.clear();
                    let body = crate::list_response::pass_events(
                        events,
                        &mut buf[..n],
                        left,
                        chunked_to_client,
                        &mut rewritten,
                    )?;
                    for &b in rewritten.iter().rev().take(4).rev() {
                        tail = [tail[1], tail[2], tail[3], b];
                    }
                    if progress.saw(&rewritten) {
                        progress_deadline = limits.progress_timeout.map(|t| Instant::now() + t);
                    }
                    if !rewritten.is_empty() {
                        copied += rewritten.len() as u64;
                        last_write = Instant::now();
                        conn.send(&mut rewritten).await.map_err(RelayError::Write)?;
                    }
                    if let Some(leftover) = pass_on(&mut conn.stream, buf, 0, body, n, None).await?
                    {
                        return Ok(Relayed {
                            bytes: copied,
                            leftover,
                        });
                    }
                    continue;
                }
                let mut saw_progress = false;
                let mut note = |payload: &[u8]| {
                    for &b in payload.iter().rev().take(4).rev() {
                        tail = [tail[1], tail[2], tail[3], b];
                    }
                    saw_progress |= progress.saw(payload);
                };
                let (body, send) = if unchunk {
                    let (body, send) = left.take_unchunked(&mut buf[..n])?;
                    note(&buf[..send]);
                    (body, send)
                } else {
                    let body = left.take_observed(&buf[..n], &mut note)?;
                    (body, body)
                };
                if saw_progress {
                    progress_deadline = limits.progress_timeout.map(|t| Instant::now() + t);
                }
                if send > 0 {
                    copied += send as u64;
                    last_write = Instant::now();
                }
                let write_idle = Some(conn.send_timeout);
                if let Some(leftover) =
                    pass_on(&mut conn.stream, buf, send, body, n, write_idle).await?
                {
                    return Ok(Relayed {
                        bytes: copied,
                        leftover,
                    });
                }
            }
        }
    }
    buf.clear();
    Ok(Relayed {
        bytes: copied,
        leftover: 0,
    })
}

/// Spots `notifications/progress` in the payload as it passes, also where the name is split
/// across reads or chunks (the end of the last piece is kept for the next).
#[derive(Default)]
struct ProgressSpotter {
    carry: [u8; PROGRESS.len() - 1],
    carried: usize,
}

impl ProgressSpotter {
    fn saw(&mut self, piece: &[u8]) -> bool {
        const KEEP: usize = PROGRESS.len() - 1;
        let mut found = piece.windows(PROGRESS.len()).any(|w| w == PROGRESS);
        if !found && self.carried > 0 {
            let mut joined = [0u8; 2 * KEEP];
            let head = &piece[..piece.len().min(KEEP)];
            joined[..self.carried].copy_from_slice(&self.carry[..self.carried]);
            joined[self.carried..self.carried + head.len()].copy_from_slice(head);
            let joined = &joined[..self.carried + head.len()];
            found = joined.windows(PROGRESS.len()).any(|w| w == PROGRESS);
        }
        if piece.len() >= KEEP {
            self.carry.copy_from_slice(&piece[piece.len() - KEEP..]);
            self.carried = KEEP;
        } else {
            // Keep the newest KEEP bytes of what was carried plus this piece.
            let total = self.carried + piece.len();
            let drop = total.saturating_sub(KEEP);
            self.carry.copy_within(drop..self.carried, 0);
            let kept = self.carried - drop;
            self.carry[kept..kept + piece.len()].copy_from_slice(piece);
            self.carried = kept + piece.len();
        }
        found
    }
}

/// Whether the bytes sent so far end with a blank line, i.e. between events. Servers end
/// lines with LF or CRLF (the Python SDK: CRLF), so "\n\n", "\r\n\r\n" and the mixed
/// "\n\r\n" count; a trailing CR does not, as the LF of a CRLF may still be coming.
fn event_ended(tail: &[u8; 4]) -> bool {
    tail.ends_with(b"\n\n") || tail.ends_with(b"\n\r\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_is_spotted_when_split_across_pieces() {
        let event = b"data: {\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        for cut in 0..event.len() {
            let mut s = super::ProgressSpotter::default();
            let first = s.saw(&event[..cut]);
            let second = s.saw(&event[cut..]);
            assert!(first || second, "missed with a cut at {cut}");
        }
        // Byte by byte.
        let mut s = super::ProgressSpotter::default();
        assert!(event.iter().any(|b| s.saw(std::slice::from_ref(b))));
        let mut s = super::ProgressSpotter::default();
        assert!(!s.saw(b"data: {\"method\":\"notifications/"));
        assert!(!s.saw(b"message\"}\n\n"));
    }

    #[test]
    fn events_end_at_a_blank_line_with_lf_or_crlf_line_ends() {
        use super::event_ended;
        assert!(event_ended(b"x}\n\n"));
        assert!(event_ended(b"}\r\n\n"));
        assert!(event_ended(b"\r\n\r\n"));
        assert!(event_ended(b"}\n\r\n"));
        assert!(event_ended(&[b'\n'; 4]));
        assert!(!event_ended(b"a: b"));
        assert!(!event_ended(b"\"}\r\n"));
        // CRLF, then the CR of a second CRLF whose LF has not come yet.
        assert!(!event_ended(b"x\r\n\r"));
    }

    #[test]
    fn keep_alive_chunk_is_well_framed() {
        let mut t = crate::http::chunked::ChunkedTracker::new();
        assert_eq!(
            t.feed(super::KEEP_ALIVE_CHUNK),
            Ok(super::KEEP_ALIVE_CHUNK.len())
        );
        assert!(t.between_chunks());
        assert_eq!(t.payload_bytes(), super::KEEP_ALIVE_COMMENT.len() as u64);
    }
}
