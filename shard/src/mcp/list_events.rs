//! The event-stream half of list filtering (`lists` has the rules): a stream's payload is
//! cut into whole events; an event whose data is a JSON-RPC response goes out with its
//! lists filtered (its `event`, `id` and `retry` lines kept), every other event byte for
//! byte.
//!
//! Owns: that rewrite. Must not: do I/O or framing (`list_response` does), or decide what
//! a list keeps (`lists`).

use super::lists::{ListFilter, Unfilterable, MAX_LIST_BYTES};
use super::sse_event::{Decoder, Event};

/// Rewrites an event stream's payload as it passes: whole events come out, those carrying a
/// response with its lists filtered, the rest unchanged.
#[derive(Debug)]
pub struct EventFilter<'a> {
    filter: ListFilter<'a>,
    decoder: Decoder,
}

impl<'a> EventFilter<'a> {
    pub fn new(filter: ListFilter<'a>) -> Self {
        EventFilter {
            filter,
            decoder: Decoder::default(),
        }
    }

    /// Takes payload bytes; appends to `out` the events they complete.
    pub fn feed(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Unfilterable> {
        self.decoder.push(payload);
        while let Some((raw, block)) = self.decoder.next_block() {
            self.rewrite(&raw, block, out);
        }
        if self.decoder.pending() > MAX_LIST_BYTES {
            return Err(Unfilterable::TooLarge);
        }
        Ok(())
    }

    /// At the stream's end, an unfinished last event (which a client discards, as the
    /// event-stream rules say, but a lenient one may not): a response is filtered and ended;
    /// data that is not JSON (a response cut short, perhaps) is dropped; anything else
    /// passes unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let rest = self.decoder.take_rest();
        let Some(data) = Event::parse(&rest).data else {
            out.extend_from_slice(&rest);
            return;
        };
        match self.filter.filter_data(&data) {
            Ok(Some(filtered)) => write_rewritten(&rest, &filtered, out),
            Ok(None) => out.extend_from_slice(&rest),
            Err(_) => {}
        }
    }

    /// Whether no event is partly held (the output so far ends between events).
    pub fn between_events(&self) -> bool {
        self.decoder.pending() == 0
    }

    /// A whole event: data that is not JSON cannot be a list a client reads, and passes.
    fn rewrite(&self, raw: &[u8], block: usize, out: &mut Vec<u8>) {
        let data = Event::parse(&raw[..block]).data;
        match data.map(|d| self.filter.filter_data(&d)) {
            Some(Ok(Some(filtered))) => write_rewritten(&raw[..block], &filtered, out),
            _ => out.extend_from_slice(raw),
        }
    }
}

/// An event with its `data` replaced: the line ends before it kept (they may end the event
/// before it, as after a legacy stream's rewritten `endpoint` event), its other lines
/// (`event`, `id`, `retry`, comments) kept in order, then the new data on one line (encoded
/// JSON has no line breaks), then the blank line that ends it.
fn write_rewritten(block: &[u8], data: &[u8], out: &mut Vec<u8>) {
    let lead = block
        .iter()
        .take_while(|b| **b == b'\n' || **b == b'\r')
        .count();
    out.extend_from_slice(&block[..lead]);
    for line in block[lead..].split(|b| *b == b'\n' || *b == b'\r') {
        if line.is_empty() {
            continue;
        }
        let name = line.split(|b| *b == b':').next().unwrap_or(line);
        if name == b"data" {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::lists::tests::{rules, test_filter, tools_answer};
    use crate::mcp::lists::ListKinds;
    use mcp_gateway_config::Policy;

    #[test]
    fn events_are_rewritten_whole_however_they_arrive() {
        let roles = rules(&["tools/call:echo"]);
        let policy = Policy::default();
        let filter = test_filter(
            ListKinds::of_method("tools/list"),
            Some(&roles),
            &policy,
            false,
        );
        let answer = serde_json::to_string(&tools_answer()).unwrap_or_default();
        let stream = format!(
            ": hello\r\n\r\nevent: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\r\n\r\n\
             id: 7\nevent: message\nretry: 50\ndata: {answer}\n\ndata: not json\n\n"
        );
        for size in [1, 3, 17, stream.len()] {
            let mut f = EventFilter::new(filter);
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(size) {
                assert!(f.feed(piece, &mut out).is_ok());
            }
            f.finish(&mut out);
            assert!(f.between_events());
            let text = String::from_utf8_lossy(&out).into_owned();
            assert!(
                text.starts_with(": hello\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n"),
                "{size}: {text}"
            );
            assert!(text.ends_with("\n\ndata: not json\n\n"), "{size}: {text}");
            assert!(
                text.contains("id: 7\nevent: message\nretry: 50\ndata: {"),
                "{text}"
            );
            assert!(text.contains("\"echo\""), "{text}");
            assert!(
                !text.contains("search_web") && !text.contains("delete_all"),
                "{text}"
            );
        }
    }

    #[test]
    fn line_ends_before_a_rewritten_event_are_kept() {
        let roles = rules(&["tools/call:echo"]);
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, Some(&roles), &policy, false);
        let answer = serde_json::to_string(&tools_answer()).unwrap_or_default();
        let mut f = EventFilter::new(filter);
        let mut out = b"event: endpoint\ndata: /m".to_vec();
        let rest = format!("\r\n\r\nid: 1\ndata: {answer}\n\n");
        assert!(f.feed(rest.as_bytes(), &mut out).is_ok());
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("event: endpoint\ndata: /m\r\n\r\nid: 1\ndata: {"),
            "{text}"
        );
    }

    #[test]
    fn an_unfinished_last_event_is_filtered_too() {
        let roles = rules(&["tools/call:echo"]);
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, Some(&roles), &policy, false);
        let answer = serde_json::to_string(&tools_answer()).unwrap_or_default();
        let mut f = EventFilter::new(filter);
        let mut out = Vec::new();
        assert!(f
            .feed(format!("data: {answer}").as_bytes(), &mut out)
            .is_ok());
        assert!(out.is_empty() && !f.between_events());
        f.finish(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.ends_with("}\n\n") && !text.contains("delete_all"),
            "{text}"
        );
        let mut f = EventFilter::new(filter);
        let mut out = Vec::new();
        assert!(f.feed(b": only a comment", &mut out).is_ok());
        f.finish(&mut out);
        assert_eq!(out, b": only a comment");
        // Cut short: not JSON, dropped rather than passed with names in it.
        let mut f = EventFilter::new(filter);
        let mut out = Vec::new();
        let cut = &answer[..answer.len() - 20];
        assert!(f.feed(format!("data: {cut}").as_bytes(), &mut out).is_ok());
        f.finish(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn an_overlong_event_is_refused() {
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, None, &policy, false);
        let mut f = EventFilter::new(filter);
        let mut out = Vec::new();
        let piece = vec![b'x'; 1024 * 1024];
        let mut refused = false;
        for _ in 0..=MAX_LIST_BYTES / piece.len() {
            refused |= f.feed(&piece, &mut out).is_err();
        }
        assert!(refused && out.is_empty());
    }
}
