//! The chunked body tracker (`http::chunked::ChunkedTracker`), fed the input whole and in
//! pieces (cut points from the first bytes, see `mcp_gateway_fuzz::split`).
//!
//! Properties: no panic; pieces and whole agree on how many bytes belong to the body, on
//! the error, on `is_done` and on `payload_bytes`; `feed_payload` reports in-bounds,
//! ordered ranges that add up to `payload_bytes` and carry the same bytes either way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::{pieces, split};
use mcp_gateway_shard::http::chunked::ChunkedTracker;

/// What one way of feeding the body found.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Bytes that belonged to the body, or the error.
    consumed: Result<usize, String>,
    done: bool,
    payload_bytes: u64,
    payload: Vec<u8>,
}

fn feed_pieces(parts: &[&[u8]], with_payload: bool) -> Outcome {
    let mut tracker = ChunkedTracker::new();
    let mut payload = Vec::new();
    let mut offset = 0;
    let mut consumed = Ok(0);
    for part in parts {
        let before = tracker.payload_bytes();
        let result = if with_payload {
            let mut last_end = 0;
            let mut sum = 0u64;
            let r = tracker.feed_payload(part, |range| {
                assert!(range.start >= last_end && range.start <= range.end);
                assert!(range.end <= part.len());
                last_end = range.end;
                sum += (range.end - range.start) as u64;
                payload.extend_from_slice(&part[range]);
            });
            if r.is_ok() {
                assert_eq!(tracker.payload_bytes() - before, sum);
            }
            if let Ok(n) = r {
                assert!(last_end <= n);
            }
            r
        } else {
            tracker.feed(part)
        };
        match result {
            Ok(n) => {
                assert!(n <= part.len());
                offset += n;
                consumed = Ok(offset);
                if n < part.len() {
                    assert!(tracker.is_done(), "stopped early without being done");
                    break;
                }
            }
            Err(err) => {
                consumed = Err(err.to_string());
                break;
            }
        }
    }
    if !with_payload {
        payload.clear();
    }
    Outcome {
        consumed,
        done: tracker.is_done(),
        payload_bytes: tracker.payload_bytes(),
        payload,
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, body) = split(data);
    let whole = feed_pieces(&[body], true);
    let split_feed = feed_pieces(&pieces(body, &cuts), true);
    assert_eq!(whole, split_feed, "cuts {cuts:?}");
    let plain = feed_pieces(&pieces(body, &cuts), false);
    assert_eq!(whole.consumed, plain.consumed);
    assert_eq!(whole.done, plain.done);
    assert_eq!(whole.payload_bytes, plain.payload_bytes);
    if whole.consumed.is_ok() {
        assert_eq!(whole.payload.len() as u64, whole.payload_bytes);
    }
    // Byte by byte, for short bodies.
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let one_by_one = feed_pieces(&bytes, true);
        assert_eq!(whole, one_by_one, "byte by byte");
    }
});
