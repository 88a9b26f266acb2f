//! Chunked transfer-coding framing, tracked as bytes pass through unchanged.
//!
//! Owns: finding where a chunked body ends and how many payload bytes it carried, so the
//! gateway can relay chunked bodies verbatim (no re-encoding, no buffering) in both
//! directions. Must not: allocate or copy; it only looks at the bytes it is shown.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    /// A chunk-size line (its extensions) or the trailer section is over the limit.
    #[error("chunk extension or trailers too large")]
    TooLong,
    #[error("invalid trailer field")]
    BadTrailer,
}

/// The default bound on one chunk-size line and on the whole trailer section (upstream
/// responses; requests use `server.limits.maxHeaderBytes`).
pub const DEFAULT_LINE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    /// Whitespace after the size: only more of it, `;` or the line end may follow.
    SizeWs,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Walks a chunked body; feed it every byte of the body in order.
///
/// Strict, so that what it relays verbatim is read the same way by any next hop: every line
/// ends in CRLF (a bare LF or CR is an error), extensions hold only visible characters,
/// spaces and tabs, trailer lines are `name: value` fields, and a chunk-size line and the
/// trailer section are each bounded.
#[derive(Debug, Clone)]
pub struct ChunkedTracker {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    payload: u64,
    /// Every byte of the body, framing included.
    wire: u64,
    /// Bytes of the current size line, or of the trailer section so far.
    line: usize,
    line_limit: usize,
    /// Trailer fields are left out of what [`feed_kept`](Self::feed_kept) keeps (request
    /// bodies, so fields like `Authorization` cannot ride past the gateway's header rules).
    strip_trailers: bool,
}

impl Default for ChunkedTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedTracker {
    pub fn new() -> Self {
        Self::with_line_limit(DEFAULT_LINE_LIMIT)
    }

    /// A tracker bounding each chunk-size line and the trailer section to `limit` bytes.
    pub fn with_line_limit(limit: usize) -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            payload: 0,
            wire: 0,
            line: 0,
            line_limit: limit.max(16),
            strip_trailers: false,
        }
    }

    /// A tracker for a request body: bounded as [`with_line_limit`](Self::with_line_limit),
    /// and its trailer fields are dropped on the way (see [`feed_kept`](Self::feed_kept)).
    pub fn for_request(limit: usize) -> Self {
        Self {
            strip_trailers: true,
            ..Self::with_line_limit(limit)
        }
    }

    /// Whether trailer fields are left out of what is forwarded.
    pub fn strips_trailers(&self) -> bool {
        self.strip_trailers
    }

    /// As [`feed`](Self::feed), also reporting (in order) the ranges of `bytes` to forward:
    /// all of them, less the trailer fields when this tracker strips them (the last chunk's
    /// line and the final CRLF stay, so what is forwarded is a complete chunked body).
    pub fn feed_kept(
        &mut self,
        bytes: &[u8],
        mut keep: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut run: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            if self.state == State::Data {
                run.get_or_insert(i);
                i += self.take_data(bytes.len() - i);
                continue;
            }
            let trailer_field = matches!(
                self.state,
                State::TrailerName | State::TrailerValue | State::TrailerLf
            ) || (self.state == State::TrailerStart && bytes[i] != b'\r');
            self.step(bytes[i])?;
            if trailer_field && self.strip_trailers {
                if let Some(start) = run.take() {
                    keep(start..i);
                }
            } else {
                run.get_or_insert(i);
            }
            i += 1;
        }
        if let Some(start) = run {
            keep(start..i);
        }
        self.wire += i as u64;
        Ok(i)
    }

    /// True once the terminating zero chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Between two chunks (where a whole chunk may be inserted).
    pub fn between_chunks(&self) -> bool {
        self.state == State::Size && self.digits == 0
    }

    /// Payload bytes (chunk data, without framing) seen so far.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Bytes of the body seen so far, framing included (what a body limit must count).
    pub fn wire_bytes(&self) -> u64 {
        self.wire
    }

    /// Consumes bytes of the body; returns how many belong to it. Fewer than `bytes.len()`
    /// means the body ended and the rest belongs to the next message.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        self.feed_payload(bytes, |_| {})
    }

    /// As [`feed`](Self::feed), also reporting where chunk data lies in `bytes` (in order), for
    /// removing the framing when a peer cannot read it (an HTTP/1.0 client).
    pub fn feed_payload(
        &mut self,
        bytes: &[u8],
        mut payload: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let take = self.take_data(bytes.len() - i);
                payload(i..i + take);
                i += take;
                continue;
            }
            self.step(bytes[i])?;
            i += 1;
        }
        self.wire += i as u64;
        Ok(i)
    }

    /// In a chunk's data, with `available` bytes at hand: how many of them are data.
    fn take_data(&mut self, available: usize) -> usize {
        let take = available.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.remaining -= take as u64;
        self.payload += take as u64;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
        take
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        if matches!(
            self.state,
            State::Size
                | State::SizeWs
                | State::Extension
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerStart
        ) {
            self.line += 1;
            if self.line > self.line_limit {
                return Err(ChunkError::TooLong);
            }
        }
        self.state = match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                    if self.digits >= 15 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    self.size = self.size * 16 + digit;
                    self.digits += 1;
                    State::Size
                }
                b';' if self.digits > 0 => State::Extension,
                b' ' | b'\t' if self.digits > 0 => State::SizeWs,
                b'\r' if self.digits > 0 => State::SizeLf,
                _ => return Err(ChunkError::BadSize),
            },
            State::SizeWs => match b {
                b' ' | b'\t' => State::SizeWs,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                _ => return Err(ChunkError::BadSize),
            },
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b' ' | b'\t' | 0x21..=0x7e => State::Extension,
                _ => return Err(ChunkError::BadSize),
            },
            State::SizeLf => match b {
                b'\n' => self.end_of_size_line(),
                _ => return Err(ChunkError::BadSize),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::DataLf => match b {
                b'\n' => {
                    self.line = 0;
                    State::Size
                }
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b if is_token(b) => State::TrailerName,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::TrailerName => match b {
                b':' => State::TrailerValue,
                b if is_token(b) => State::TrailerName,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::TrailerValue => match b {
                b'\r' => State::TrailerLf,
                b' ' | b'\t' | 0x21..=0x7e | 0x80..=0xff => State::TrailerValue,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::TrailerLf => match b {
                b'\n' => State::TrailerStart,
                _ => return Err(ChunkError::BadTrailer),
            },
            State::FinalLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::Data | State::Done => self.state,
        };
        Ok(())
    }

    fn end_of_size_line(&mut self) -> State {
        let size = self.size;
        self.size = 0;
        self.digits = 0;
        if size == 0 {
            // The trailer section is bounded as a whole, from here.
            self.line = 0;
            State::TrailerStart
        } else {
            self.remaining = size;
            State::Data
        }
    }
}

/// An HTTP token character (RFC 9110 §5.6.2), as field names are made of.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_body_in_one_piece() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1";
        let mut t = ChunkedTracker::new();
        let n = t.feed(body).unwrap();
        assert!(t.is_done());
        assert_eq!(&body[n..], b"GET / HTTP/1.1");
        assert_eq!(t.payload_bytes(), 11);
    }

    #[test]
    fn byte_by_byte_with_trailers() {
        let body = b"a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut t = ChunkedTracker::new();
        for b in body.iter() {
            assert_eq!(t.feed(std::slice::from_ref(b)).unwrap(), 1);
        }
        assert!(t.is_done());
        assert_eq!(t.payload_bytes(), 10);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            ChunkedTracker::new().feed(b"zz\r\n"),
            Err(ChunkError::BadSize)
        );
        assert_eq!(
            ChunkedTracker::new().feed(b"\r\n"),
            Err(ChunkError::BadSize)
        );
        assert_eq!(
            ChunkedTracker::new().feed(b"1\r\nab"),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(
            ChunkedTracker::new().feed(b"ffffffffffffffffff\r\n"),
            Err(ChunkError::SizeOverflow)
        );
    }

    #[test]
    fn bare_line_ends_refused() {
        for body in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(ChunkedTracker::new().feed(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn extensions_and_trailers_bounded() {
        let mut t = ChunkedTracker::with_line_limit(100);
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(t.feed(&body), Err(ChunkError::TooLong));
        let mut t = ChunkedTracker::with_line_limit(100);
        let mut body = b"1\r\nx\r\n0\r\n".to_vec();
        for _ in 0..20 {
            body.extend_from_slice(b"X-T: aaaa\r\n");
        }
        assert_eq!(t.feed(&body), Err(ChunkError::TooLong));
        // Within the bound, the wire count includes the framing.
        let mut t = ChunkedTracker::with_line_limit(100);
        let body = b"3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(t.feed(body), Ok(body.len()));
        assert!(t.is_done());
        assert_eq!((t.payload_bytes(), t.wire_bytes()), (3, body.len() as u64));
        assert_eq!(
            ChunkedTracker::new().feed(b"0\r\nbad trailer\r\n\r\n"),
            Err(ChunkError::BadTrailer)
        );
        // A request's trailers are dropped; a size line has only whitespace before `;`.
        let body = b"1\r\nx\r\n0\r\nAuthorization: x\r\nX-T: 2\r\n\r\nNEXT";
        let mut kept = Vec::new();
        let mut t = ChunkedTracker::for_request(100);
        let n = t
            .feed_kept(body, |r| kept.extend_from_slice(&body[r]))
            .unwrap();
        assert_eq!(&body[n..], b"NEXT");
        assert_eq!(kept, b"1\r\nx\r\n0\r\n\r\n");
        // Byte by byte, the same.
        let mut kept = Vec::new();
        let mut t = ChunkedTracker::for_request(100);
        for i in 0..n {
            t.feed_kept(&body[i..=i], |r| kept.extend_from_slice(&body[i..=i][r]))
                .unwrap();
        }
        assert_eq!(kept, b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            ChunkedTracker::for_request(100).feed(b"1 ;a\r\nx\r\n0\r\n\r\n"),
            Ok(14)
        );
        assert_eq!(
            ChunkedTracker::new().feed(b"5 x\r\nhello\r\n"),
            Err(ChunkError::BadSize)
        );
    }
}
