//! The SSE event splitter and field reader (`mcp::sse_event`): `event_end`, `fields`,
//! `Event::parse`, the incremental `Decoder`, and `write_event`.
//!
//! Properties: no panic; the decoder fed in pieces (cut points from the first bytes) yields
//! the same events and leaves the same bytes pending as `event_end` walked over the whole
//! stream; what `write_event` writes decodes back to the same event name and data (line
//! ends normalized to LF).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::{pieces, split};
use mcp_gateway_shard::mcp::sse_event::{event_end, fields, write_event, Decoder, Event};

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split(data);

    // The whole stream, block by block.
    let mut expected = Vec::new();
    let mut from = 0;
    while let Some((end, after)) = event_end(stream, from) {
        assert!(from <= end && end < after && after <= stream.len());
        let block = &stream[from..end];
        for (name, value) in fields(block) {
            assert!(!name.is_empty() && !name.starts_with(b":"));
            let line_end = |b: &u8| *b == b'\n' || *b == b'\r';
            assert!(!name.iter().any(line_end) && !value.iter().any(line_end));
        }
        expected.push(Event::parse(block));
        from = after;
    }

    // The same stream in pieces.
    let mut decoder = Decoder::default();
    let mut got = Vec::new();
    for piece in pieces(stream, &cuts) {
        decoder.push(piece);
        while let Some(event) = decoder.next_event() {
            got.push(event);
        }
    }
    assert_eq!(expected, got, "cuts {cuts:?}");
    assert_eq!(decoder.pending(), stream.len() - from);

    round_trip(stream);
});

/// `write_event(name, data)` then decode: the name back, and the data with CR, LF and CRLF
/// all read as LF. The name is the input's first line when that is UTF-8.
fn round_trip(input: &[u8]) {
    let cut = input
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(input.len());
    let Ok(name) = std::str::from_utf8(&input[..cut]) else {
        return;
    };
    if name.contains('\r') {
        return;
    }
    let data = input.get(cut + 1..).unwrap_or(b"");
    let mut out = Vec::new();
    write_event(&mut out, name, data);
    let mut decoder = Decoder::default();
    decoder.push(&out);
    let event = decoder.next_event().expect("a written event decodes");
    assert_eq!(decoder.pending(), 0);
    assert_eq!(event.event.as_deref(), Some(name.as_bytes()));
    let mut normalized = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                normalized.push(b'\n');
                i += 1;
            }
            b'\r' => normalized.push(b'\n'),
            b => normalized.push(b),
        }
        i += 1;
    }
    assert_eq!(event.data.as_deref(), Some(&normalized[..]));
}
