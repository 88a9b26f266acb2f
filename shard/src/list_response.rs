//! The I/O half of filtering list answers (see `mcp::lists` for what is kept): a JSON answer
//! is read whole (up to `MAX_LIST_BYTES`), filtered, and sent with its new
//! `Content-Length`; an event stream's payload goes through an [`EventFilter`] and out in
//! whole events, chunk-framed again when the client gets chunks. The upstream's framing
//! never describes the new body.
//!
//! Owns: those reads and the framing of rewritten bytes. Must not: decide what is kept
//! (`mcp::lists`), or answer errors (the pipeline does, from the exchange's failure).

use crate::client_head::end_with_length;
use crate::mcp::list_events::EventFilter;
use crate::mcp::lists::{ListFilter, Unfilterable, MAX_LIST_BYTES};
use crate::relay::{read_append, BodyLeft, RelayError};
use crate::state::BUFFER_SIZE;
use monoio::net::TcpStream;
use std::time::Duration;

/// Why a JSON list answer was not sent.
#[derive(Debug)]
pub enum JsonFailure {
    /// Reading it failed (timeout, framing, the upstream closed early).
    Relay(RelayError),
    Unfilterable(Unfilterable),
}

/// Reads the rest of a JSON answer (what came with the head is in `ubuf`), filters it, and
/// appends it to `out`, whose head `end_with_length` ends. Returns how many bytes were read
/// past the body's end (left at the front of `ubuf`).
pub async fn read_json(
    filter: &ListFilter<'_>,
    up: &mut TcpStream,
    ubuf: &mut Vec<u8>,
    left: &mut BodyLeft,
    idle: Duration,
    out: &mut Vec<u8>,
) -> Result<usize, JsonFailure> {
    if matches!(left, BodyLeft::Bytes(n) if *n > MAX_LIST_BYTES as u64) {
        return Err(JsonFailure::Unfilterable(Unfilterable::TooLarge));
    }
    let mut body = Vec::new();
    loop {
        let (n, send) = left
            .take_unchunked(&mut ubuf[..])
            .map_err(JsonFailure::Relay)?;
        body.extend_from_slice(&ubuf[..send]);
        let extra = ubuf.len() - n;
        ubuf.copy_within(n.., 0);
        ubuf.truncate(extra);
        if body.len() > MAX_LIST_BYTES {
            return Err(JsonFailure::Unfilterable(Unfilterable::TooLarge));
        }
        if left.is_done() {
            let filtered = filter
                .filter_json(&body)
                .map_err(JsonFailure::Unfilterable)?;
            end_with_length(out, filtered.len());
            out.extend_from_slice(&filtered);
            return Ok(extra);
        }
        match monoio::time::timeout(idle, read_append(up, ubuf, BUFFER_SIZE)).await {
            Err(_) => return Err(JsonFailure::Relay(RelayError::Timeout)),
            Ok(Err(e)) => return Err(JsonFailure::Relay(RelayError::Read(e))),
            Ok(Ok(0)) if matches!(left, BodyLeft::UntilClose) => *left = BodyLeft::Done,
            Ok(Ok(0)) => {
                let eof = std::io::ErrorKind::UnexpectedEof.into();
                return Err(JsonFailure::Relay(RelayError::Read(eof)));
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Takes the body bytes at the front of `bytes` (a read from the upstream), passes their
/// payload through `events`, and appends what goes to the client to `out`: the whole events
/// they complete, as one chunk when `chunked`, then the last chunk once the body ends.
/// Returns how many bytes of `bytes` were body. An event over `MAX_LIST_BYTES` is
/// `TooLarge`.
pub fn pass_events(
    events: &mut EventFilter<'_>,
    bytes: &mut [u8],
    left: &mut BodyLeft,
    chunked: bool,
    out: &mut Vec<u8>,
) -> Result<usize, RelayError> {
    let (n, send) = left.take_unchunked(bytes)?;
    let done = left.is_done();
    if !chunked {
        events
            .feed(&bytes[..send], out)
            .map_err(|_| RelayError::TooLarge)?;
        if done {
            events.finish(out);
        }
        return Ok(n);
    }
    let mut payload = Vec::new();
    events
        .feed(&bytes[..send], &mut payload)
        .map_err(|_| RelayError::TooLarge)?;
    if done {
        events.finish(&mut payload);
    }
    write_chunk(out, &payload);
    if done {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(n)
}

/// One chunk holding `payload` (nothing for none: an empty chunk would end the body).
fn write_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    let mut size = [0u8; 16];
    let mut at = size.len();
    let mut n = payload.len();
    loop {
        at -= 1;
        size[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&size[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::ChunkedTracker;
    use crate::mcp::lists::tests::test_filter;
    use crate::mcp::lists::ListKinds;
    use mcp_gateway_config::{Policy, PolicyRule};

    #[test]
    fn chunk_sizes_are_hex() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[b'x'; 300]);
        assert!(out.starts_with(b"12c\r\nxxx"));
        let mut t = ChunkedTracker::new();
        assert_eq!(t.feed(&out), Ok(out.len()));
        assert!(t.between_chunks());
        let mut none = Vec::new();
        write_chunk(&mut none, b"");
        assert!(none.is_empty());
    }

    #[test]
    fn a_chunked_stream_comes_out_filtered_and_well_framed() {
        let roles = vec![PolicyRule::parse("tools/call:echo")];
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, Some(&roles), &policy, false);
        let events = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"echo\"},{\"name\":\"delete_all\"}]}}\n\n";
        let mut upstream = Vec::new();
        for piece in events.chunks(10) {
            write_chunk(&mut upstream, piece);
        }
        upstream.extend_from_slice(b"0\r\n\r\nNEXT");
        for size in [1, 7, upstream.len()] {
            let mut f = EventFilter::new(filter);
            let mut left = BodyLeft::Chunked(ChunkedTracker::new());
            let mut out = Vec::new();
            let mut extra = Vec::new();
            for piece in upstream.chunks(size) {
                let mut piece = piece.to_vec();
                if left.is_done() {
                    extra.extend_from_slice(&piece);
                    continue;
                }
                let n = pass_events(&mut f, &mut piece, &mut left, true, &mut out);
                let n = n.unwrap_or(usize::MAX);
                extra.extend_from_slice(piece.get(n..).unwrap_or_default());
            }
            assert!(left.is_done());
            assert_eq!(extra, b"NEXT");
            let mut t = ChunkedTracker::new();
            let mut payload = Vec::new();
            assert_eq!(
                t.feed_payload(&out, |r| payload.extend_from_slice(&out[r])),
                Ok(out.len())
            );
            assert!(t.is_done(), "{size}");
            let text = String::from_utf8_lossy(&payload);
            assert!(
                text.contains("echo") && !text.contains("delete_all"),
                "{text}"
            );
        }
    }
}
