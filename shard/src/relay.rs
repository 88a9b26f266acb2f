//! Streaming a message body from one socket to another with one bounded buffer.
//!
//! Owns: the copy loop for bodies that did not arrive with their head: each read is written
//! on at once (so `text/event-stream` events pass as they come), framing is tracked so the
//! body's end is found without buffering, and bytes past the end are handed back.
//! Must not: grow its buffer, or decide status codes.

use crate::http::chunked::ChunkedTracker;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::io;
use std::time::Duration;

/// A relay never reads less than this at a time.
const MIN_RELAY_BUFFER: usize = 8 * 1024;

/// How much of a body is still to come.
#[derive(Debug, Clone)]
pub enum BodyLeft {
    Done,
    Bytes(u64),
    Chunked(ChunkedTracker),
    UntilClose,
}

impl BodyLeft {
    /// Feeds bytes that arrived; returns how many of them belong to the body.
    pub fn take(&mut self, bytes: &[u8]) -> Result<usize, RelayError> {
        match self {
            BodyLeft::Done => Ok(0),
            BodyLeft::Bytes(left) => {
                let n = (bytes.len() as u64).min(*left);
                *left -= n;
                if *left == 0 {
                    *self = BodyLeft::Done;
                }
                Ok(n as usize)
            }
            BodyLeft::Chunked(t) => {
                let n = t.feed(bytes).map_err(|_| RelayError::Framing)?;
                Ok(n)
            }
            BodyLeft::UntilClose => Ok(bytes.len()),
        }
    }

    pub fn is_done(&self) -> bool {
        match self {
            BodyLeft::Done => true,
            BodyLeft::Chunked(t) => t.is_done(),
            _ => false,
        }
    }

    /// Like [`take`](Self::take), but a chunked body's framing is removed in place: the
    /// payload is moved to the front of `bytes`. Returns (body bytes consumed, payload length).
    pub fn take_unchunked(&mut self, bytes: &mut [u8]) -> Result<(usize, usize), RelayError> {
        let BodyLeft::Chunked(t) = self else {
            let n = self.take(bytes)?;
            return Ok((n, n));
        };
        let mut ranges = Vec::new();
        let consumed = t
            .feed_payload(bytes, |r| ranges.push(r))
            .map_err(|_| RelayError::Framing)?;
        let mut len = 0;
        for r in ranges {
            let n = r.len();
            bytes.copy_within(r, len);
            len += n;
        }
        Ok((consumed, len))
    }

    /// Like [`take`](Self::take), also showing `payload` each run of payload bytes (for a
    /// chunked body, the chunk data without framing).
    pub fn take_observed(
        &mut self,
        bytes: &[u8],
        mut payload: impl FnMut(&[u8]),
    ) -> Result<usize, RelayError> {
        match self {
            BodyLeft::Chunked(t) => t
                .feed_payload(bytes, |r| payload(&bytes[r]))
                .map_err(|_| RelayError::Framing),
            _ => {
                let n = self.take(bytes)?;
                payload(&bytes[..n]);
                Ok(n)
            }
        }
    }

    /// Payload bytes of a chunked body seen so far (lengths of other bodies are checked
    /// from their head, before any byte is forwarded).
    pub fn chunked_payload(&self) -> u64 {
        match self {
            BodyLeft::Chunked(t) => t.payload_bytes(),
            _ => 0,
        }
    }
}

#[derive(Debug)]
pub enum RelayError {
    /// The sending side failed or closed before the body ended.
    Read(io::Error),
    /// The receiving side failed.
    Write(io::Error),
    /// No byte arrived within the idle timeout.
    Timeout,
    /// Bad chunked framing.
    Framing,
    /// More than the allowed body size.
    TooLarge,
}

/// What the relay saw at the end.
pub struct Relayed {
    /// Body bytes copied (framing included).
    pub bytes: u64,
    /// Bytes read past the body's end, left at the start of the buffer.
    pub leftover: usize,
}

/// Copies the rest of a body from `from` to `to` through `buf` (emptied first). On return
/// `buf[..leftover]` holds bytes that came after the body.
pub async fn relay(
    from: &mut TcpStream,
    to: &mut TcpStream,
    buf: &mut Vec<u8>,
    left: &mut BodyLeft,
    idle: Option<Duration>,
    max: u64,
    unchunk: bool,
) -> Result<Relayed, RelayError> {
    let mut copied = 0u64;
    while !left.is_done() {
        let mut chunk = std::mem::take(buf);
        chunk.clear();
        if chunk.capacity() < MIN_RELAY_BUFFER {
            chunk.reserve(MIN_RELAY_BUFFER);
        }
        let read = from.read(chunk);
        let (res, chunk) = match idle {
            Some(idle) => match monoio::time::timeout(idle, read).await {
                Ok(r) => r,
                Err(_) => return Err(RelayError::Timeout),
            },
            None => read.await,
        };
        *buf = chunk;
        let n = res.map_err(RelayError::Read)?;
        if n == 0 {
            if matches!(left, BodyLeft::UntilClose) {
                *left = BodyLeft::Done;
                break;
            }
            return Err(RelayError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        let (body, send) = if unchunk {
            left.take_unchunked(&mut buf[..n])?
        } else {
            let body = left.take(&buf[..n])?;
            (body, body)
        };
        if left.chunked_payload() > max {
            return Err(RelayError::TooLarge);
        }
        copied += send as u64;
        if let Some(leftover) = pass_on(to, buf, send, body, n).await? {
            return Ok(Relayed {
                bytes: copied,
                leftover,
            });
        }
    }
    buf.clear();
    Ok(Relayed {
        bytes: copied,
        leftover: 0,
    })
}

/// Writes `buf[..send]` to `to`, then, if the body ended inside this read (`body < n`),
/// moves the bytes after it (`buf[body..n]`) to the front and returns their count.
pub(crate) async fn pass_on(
    to: &mut TcpStream,
    buf: &mut Vec<u8>,
    send: usize,
    body: usize,
    n: usize,
) -> Result<Option<usize>, RelayError> {
    if send > 0 {
        let out = std::mem::take(buf);
        let (res, out) = to.write_all(out.slice(0..send)).await;
        *buf = out.into_inner();
        res.map_err(RelayError::Write)?;
    }
    if body < n {
        buf.copy_within(body..n, 0);
        buf.truncate(n - body);
        return Ok(Some(n - body));
    }
    Ok(None)
}

/// Reads into the free capacity of `buf` (growing it by at least `min_spare`), keeping what
/// is already there.
pub async fn read_append(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let mut owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.bytes_total();
    let (res, slice) = stream.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// Writes all of `buf` (taken and given back, so its allocation is reused).
pub async fn write_all(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(buf);
    let (res, owned) = stream.write_all(owned).await;
    *buf = owned;
    res.map(|_| ())
}

/// Acknowledges what was read from `stream` at once. An upstream that writes a response in
/// pieces without `TCP_NODELAY` (Nagle) holds each small piece until the previous one is
/// acknowledged, and Linux delays that ACK by up to 40 ms: every stalled piece of a response
/// or event stream would cost that much. Setting `TCP_QUICKACK` sends the pending ACK now;
/// the kernel clears it again by itself, so it is set after each partial read.
#[allow(unsafe_code)]
pub fn quick_ack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
