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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
    Done,
}

/// Walks a chunked body; feed it every byte of the body in order.
#[derive(Debug, Clone)]
pub struct ChunkedTracker {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    payload: u64,
}

impl Default for ChunkedTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedTracker {
    pub fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            payload: 0,
        }
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
                return Ok(i);
            }
            if self.state == State::Data {
                let take =
                    (bytes.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                payload(i..i + take);
                i += take;
                self.remaining -= take as u64;
                self.payload += take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(bytes[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
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
                b';' | b' ' | b'\t' if self.digits > 0 => State::Extension,
                b'\r' if self.digits > 0 => State::SizeLf,
                b'\n' if self.digits > 0 => self.end_of_size_line(),
                _ => return Err(ChunkError::BadSize),
            },
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b'\n' => self.end_of_size_line(),
                _ => State::Extension,
            },
            State::SizeLf => match b {
                b'\n' => self.end_of_size_line(),
                _ => return Err(ChunkError::BadSize),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => State::Size,
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::DataLf => match b {
                b'\n' => State::Size,
                _ => return Err(ChunkError::MissingCrlf),
            },
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => State::Done,
                _ => State::TrailerLine,
            },
            State::TrailerLine => match b {
                b'\n' => State::TrailerStart,
                _ => State::TrailerLine,
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
            State::TrailerStart
        } else {
            self.remaining = size;
            State::Data
        }
    }
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
}
