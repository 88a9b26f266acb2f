//! The upstream response head parser (`http::response::parse`), then the body as the relay
//! would see it: chunked bodies through the tracker, event streams through the SSE decoder.
//! The first byte chooses whether the request was a HEAD.
//!
//! Properties: no panic; `head_len` within the input; a head cut short is "read more";
//! HEAD, 1xx, 204 and 304 carry no body; read-until-close never keeps the connection.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_shard::http::chunked::ChunkedTracker;
use mcp_gateway_shard::http::response;
use mcp_gateway_shard::http::BodyFraming;
use mcp_gateway_shard::mcp::sse_event::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let request_was_head = flags & 1 == 1;
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let head = match response::parse(buf, &mut headers, request_was_head) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    assert!(head.head_len > 0 && head.head_len <= buf.len());
    let no_body = request_was_head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    if no_body {
        assert_eq!(head.framing, BodyFraming::Empty);
    }
    if head.framing == BodyFraming::UntilClose {
        assert!(!head.keep_alive);
    }
    check_prefixes(buf, head.head_len, request_was_head);
    let body = &buf[head.head_len..];
    let body = match head.framing {
        BodyFraming::Empty => return,
        BodyFraming::Length(n) => &body[..usize::try_from(n).unwrap_or(usize::MAX).min(body.len())],
        BodyFraming::UntilClose => body,
        BodyFraming::Chunked => {
            let mut tracker = ChunkedTracker::new();
            let mut payload = Vec::new();
            let _ = tracker.feed_payload(body, |range| payload.extend_from_slice(&body[range]));
            if head.event_stream {
                decode_events(&payload);
            }
            return;
        }
    };
    if head.event_stream {
        decode_events(body);
    }
});

fn decode_events(body: &[u8]) {
    let mut decoder = Decoder::default();
    decoder.push(body);
    while let Some(event) = decoder.next_event() {
        let _ = event.is_message();
    }
    assert!(decoder.pending() <= body.len());
}

fn check_prefixes(buf: &[u8], head_len: usize, request_was_head: bool) {
    let step = (head_len / 16).max(1);
    let cuts = (0..head_len).step_by(step).chain([head_len - 1]);
    for cut in cuts {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        match response::parse(&buf[..cut], &mut headers, request_was_head) {
            Ok(None) => {}
            Ok(Some(h)) => panic!("prefix of {cut} bytes parsed as a {}-byte head", h.head_len),
            Err(err) => panic!("prefix of {cut} bytes refused ({err}); the whole head parses"),
        }
    }
}
