//! Server-sent events as the MCP transports use them: finding where an event ends, reading
//! its fields, and writing one. Shared by the legacy transport's `endpoint` rewrite (shard),
//! the filter of list answers (`list_events`), and the legacy-to-Streamable-HTTP bridge (binary).
//!
//! Owns: the `text/event-stream` line rules (LF, CRLF or CR line ends; a blank line ends an
//! event; `data` lines joined with LF; a space after the colon dropped). Must not: do I/O or
//! know what an event means.

/// Where the first complete event in `buf[from..]` ends: `(end of its block, the last line's
/// line end included; index just past the blank line that ends it)`. `None` if no event is
/// complete yet. A CR at the very end of `buf` may be the first half of a CRLF, so it does
/// not end a line yet.
pub fn event_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    scan(buf, Scan::at(from)).ok()
}

/// How far an incomplete event has been read, so more bytes resume the scan where it
/// stopped instead of from the event's start (a big event arriving in small pieces would
/// otherwise be scanned again for every piece).
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Where the event's block starts (after blank lines that precede any field).
    block_start: usize,
    /// Where the line being read starts.
    line_start: usize,
    /// The next byte to look at.
    pos: usize,
}

impl Scan {
    fn at(from: usize) -> Scan {
        Scan {
            block_start: from,
            line_start: from,
            pos: from,
        }
    }
}

fn scan(buf: &[u8], mut s: Scan) -> Result<(usize, usize), Scan> {
    while s.pos < buf.len() {
        let i = s.pos;
        let after = match buf[i] {
            b'\n' => i + 1,
            b'\r' if i + 1 == buf.len() => return Err(s),
            b'\r' if buf[i + 1] == b'\n' => i + 2,
            b'\r' => i + 1,
            _ => {
                s.pos += 1;
                continue;
            }
        };
        if i == s.line_start {
            if s.line_start > s.block_start {
                return Ok((i, after));
            }
            // Blank lines before any field are not an event of their own.
            s.block_start = after;
        }
        s.line_start = after;
        s.pos = after;
    }
    Err(s)
}

/// One field line of an event: (name, value), the value without the one optional space.
pub fn fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block
        .split(|b| *b == b'\n' || *b == b'\r')
        .filter(|line| !line.is_empty() && line[0] != b':')
        .map(|line| match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        })
}

/// An event's type (`message` when it names none), its data (lines joined with LF; `None`
/// when it has no `data` field, e.g. a comment) and its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
}

impl Event {
    pub fn parse(block: &[u8]) -> Event {
        let mut e = Event::default();
        for (name, value) in fields(block) {
            match name {
                b"event" => e.event = Some(value.to_vec()),
                b"id" if !value.contains(&0) => e.id = Some(value.to_vec()),
                b"data" => match &mut e.data {
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(value);
                    }
                    None => e.data = Some(value.to_vec()),
                },
                _ => {}
            }
        }
        e
    }

    /// Whether this is a `message` event (named so, or unnamed).
    pub fn is_message(&self) -> bool {
        match &self.event {
            None => true,
            Some(e) => e == b"message",
        }
    }
}

/// Writes one event; `data` may hold line breaks (pretty-printed JSON): each line becomes
/// its own `data` line, so a reader joins them back to the same text.
pub fn write_event(out: &mut Vec<u8>, event: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.push(b'\n');
    let mut rest = data;
    loop {
        let cut = rest.iter().position(|b| *b == b'\n' || *b == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..cut.unwrap_or(rest.len())]);
        out.push(b'\n');
        match cut {
            None => break,
            Some(c) => {
                let skip = if rest[c] == b'\r' && rest.get(c + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[c + skip..];
            }
        }
    }
    out.push(b'\n');
}

/// The most a bridge holds of one event before it gives up on the stream.
pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// Collects stream bytes and hands out whole events.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    scan: Scan,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not make a whole event yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole event as it came: its bytes up to and including the blank line that
    /// ends it, and the length of its block (its lines, without that blank line).
    pub fn next_block(&mut self) -> Option<(Vec<u8>, usize)> {
        match scan(&self.buf, self.scan) {
            Ok((end, after)) => {
                let raw = self.buf.drain(..after).collect();
                self.scan = Scan::default();
                Some((raw, end))
            }
            Err(progress) => {
                self.scan = progress;
                None
            }
        }
    }

    /// Hands out the bytes held that do not make a whole event (at the stream's end).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.scan = Scan::default();
        std::mem::take(&mut self.buf)
    }

    pub fn next_event(&mut self) -> Option<Event> {
        match scan(&self.buf, self.scan) {
            Ok((end, after)) => {
                let event = Event::parse(&self.buf[..end]);
                self.buf.drain(..after);
                self.scan = Scan::default();
                Some(event)
            }
            Err(progress) => {
                self.scan = progress;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_events() {
        // The block keeps its last line's end; the blank line follows it.
        assert_eq!(event_end(b"event: a\ndata: x\n\nrest", 0), Some((17, 18)));
        assert_eq!(event_end(b"data: x\r\n\r\n", 0), Some((9, 11)));
        assert_eq!(event_end(b"data: x\r\rZ", 0), Some((8, 9)));
        assert_eq!(event_end(b"data: x\r\r", 0), None);
        assert_eq!(event_end(b"data: x\r", 0), None);
        assert_eq!(event_end(b"data: x\r\n\r", 0), None);
        assert_eq!(event_end(b"data: x\n", 0), None);
        assert_eq!(event_end(b"\n\ndata: x\n\n", 0), Some((10, 11)));
        assert_eq!(event_end(b"a\n\nb\n\n", 3), Some((5, 6)));
    }

    #[test]
    fn decoder_resumes_across_pieces() {
        let stream = b"\r\n\nevent: a\r\ndata: 1\r\n\r\ndata: 2\n\n: c\n\ndata: 3\r\r\n";
        for size in 1..stream.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in stream.chunks(size) {
                d.push(piece);
                while let Some(e) = d.next_event() {
                    got.push((e.event, e.data));
                }
            }
            let data: Vec<_> = got.iter().filter_map(|(_, d)| d.clone()).collect();
            assert_eq!(
                data,
                vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()],
                "{size}"
            );
            assert_eq!(got[0].0.as_deref(), Some(&b"a"[..]), "{size}");
            assert_eq!(d.pending(), 0, "{size}");
        }
    }

    #[test]
    fn parses_fields() {
        let e = Event::parse(b"event: endpoint\r\ndata: /m?s=1\r\n: comment\r\nid:7");
        assert_eq!(e.event.as_deref(), Some(&b"endpoint"[..]));
        assert_eq!(e.data.as_deref(), Some(&b"/m?s=1"[..]));
        assert_eq!(e.id.as_deref(), Some(&b"7"[..]));
        assert!(!e.is_message());
        let e = Event::parse(b"data: {\ndata:  \"a\": 1\ndata: }");
        assert_eq!(e.data.as_deref(), Some(&b"{\n \"a\": 1\n}"[..]));
        assert!(e.is_message());
        assert_eq!(Event::parse(b": keep-alive").data, None);
    }

    #[test]
    fn writes_and_decodes_multiline_data() {
        let mut out = Vec::new();
        write_event(&mut out, "message", b"{\r\n  \"a\": 1\n}");
        assert_eq!(
            out,
            b"event: message\ndata: {\ndata:   \"a\": 1\ndata: }\n\n"
        );
        let mut d = Decoder::default();
        d.push(&out[..10]);
        assert_eq!(d.next_event(), None);
        d.push(&out[10..]);
        let e = d.next_event().unwrap();
        assert_eq!(e.data.as_deref(), Some(&b"{\n  \"a\": 1\n}"[..]));
        assert_eq!(d.pending(), 0);
    }
}
