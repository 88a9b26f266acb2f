//! Streaming a message body from one socket to another with one bounded buffer.
//!
//! Owns: the copy loop for bodies that did not arrive with their head: each read is written
//! on at once (so `text/event-stream` events pass as they come), framing is tracked so the
//! body's end is found without buffering, and bytes past the end are handed back.
//! Must not: grow its buffer, or decide status codes.

use crate::http::chunked::ChunkedTracker;
use crate::http::BodyFraming;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;
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
    /// What is left of a request body framed so; a chunked one's size lines are bounded by
    /// `line_limit` bytes, and it may carry no trailers.
    pub fn of_request(framing: BodyFraming, line_limit: usize) -> BodyLeft {
        match framing {
            BodyFraming::Length(n) => BodyLeft::Bytes(n),
            BodyFraming::Chunked => BodyLeft::Chunked(ChunkedTracker::for_request(line_limit)),
            BodyFraming::Empty | BodyFraming::UntilClose => BodyLeft::Done,
        }
    }

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

    /// Takes the body bytes in `bytes` and rewrites them in place into what is forwarded:
    /// the payload alone when `unchunk` (a chunked body for an HTTP/1.0 peer), a request's
    /// chunked body without its trailer fields, otherwise unchanged. Returns (body bytes
    /// consumed, bytes to forward, at the front of `bytes`).
    pub fn take_forwarded(
        &mut self,
        bytes: &mut [u8],
        unchunk: bool,
    ) -> Result<(usize, usize), RelayError> {
        match self {
            _ if unchunk => self.take_unchunked(bytes),
            BodyLeft::Chunked(t) if t.strips_trailers() => {
                let mut ranges = Vec::new();
                let consumed = t
                    .feed_kept(bytes, |r| ranges.push(r))
                    .map_err(|_| RelayError::Framing)?;
                Ok((consumed, compact(bytes, ranges)))
            }
            _ => {
                let n = self.take(bytes)?;
                Ok((n, n))
            }
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
        Ok((consumed, compact(bytes, ranges)))
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

    /// Bytes of a chunked body seen so far, framing included (lengths of other bodies are
    /// checked from their head, before any byte is forwarded).
    pub fn chunked_bytes(&self) -> u64 {
        match self {
            BodyLeft::Chunked(t) => t.wire_bytes(),
            _ => 0,
        }
    }
}

/// Moves the `ranges` of `bytes` (in order, not overlapping) to its front; their total length.
fn compact(bytes: &mut [u8], ranges: Vec<std::ops::Range<usize>>) -> usize {
    let mut len = 0;
    for r in ranges {
        let n = r.len();
        bytes.copy_within(r, len);
        len += n;
    }
    len
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
    /// The sending side is slower than the minimum rate.
    TooSlow,
}

/// How long a relay may wait on each side.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// The longest wait for the next read.
    pub read_idle: Option<Duration>,
    /// The longest a write may make no progress (the receiver reads nothing).
    pub write_idle: Option<Duration>,
    /// A request body: the least the sender must average, per window.
    pub min_rate: Option<MinRate>,
}

impl Pace {
    /// A client's request body: at most `headerTimeout` of silence, at least `minBodyRate`
    /// over each `minBodyRateWindow`; the receiver may stall writes for `write_idle`.
    pub fn request_body(limits: &mcp_gateway_config::Limits, write_idle: Duration) -> Pace {
        Pace {
            read_idle: Some(limits.header_timeout),
            write_idle: Some(write_idle),
            min_rate: (limits.min_body_rate > 0).then_some(MinRate {
                bytes_per_sec: limits.min_body_rate,
                window: limits.min_body_rate_window,
            }),
        }
    }
}

/// `server.limits.minBodyRate` over `minBodyRateWindow`.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl MinRate {
    fn bytes_per_window(&self) -> u64 {
        (self.bytes_per_sec as u128 * self.window.as_millis() / 1000) as u64
    }
}

/// Tracks the rate of a body against its [`MinRate`], window by window.
struct RateWindow {
    rate: MinRate,
    ends: Instant,
    bytes: u64,
}

impl RateWindow {
    fn new(rate: MinRate) -> Self {
        RateWindow {
            rate,
            ends: Instant::now() + rate.window,
            bytes: 0,
        }
    }

    /// At the window's end: too slow, or a new window starts.
    fn roll(&mut self, now: Instant) -> Result<(), RelayError> {
        if now < self.ends {
            return Ok(());
        }
        if self.bytes < self.rate.bytes_per_window() {
            return Err(RelayError::TooSlow);
        }
        self.ends = now + self.rate.window;
        self.bytes = 0;
        Ok(())
    }
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
    pace: Pace,
    max: u64,
    unchunk: bool,
) -> Result<Relayed, RelayError> {
    let mut copied = 0u64;
    let mut window = pace.min_rate.map(RateWindow::new);
    while !left.is_done() {
        if let Some(window) = &mut window {
            // Wait for readiness, not for a read: a timer that fires here loses no data,
            // and the body goes on if the rate was met.
            let idle_ends = pace.read_idle.map(|d| Instant::now() + d);
            loop {
                let wake = idle_ends.map_or(window.ends, |at| at.min(window.ends));
                match monoio::time::timeout_at(wake, from.readable(false)).await {
                    Ok(ready) => {
                        ready.map_err(RelayError::Read)?;
                        break;
                    }
                    Err(_) if idle_ends.is_some_and(|at| Instant::now() >= at) => {
                        return Err(RelayError::Timeout)
                    }
                    Err(_) => window.roll(Instant::now())?,
                }
            }
        }
        let mut chunk = std::mem::take(buf);
        chunk.clear();
        if chunk.capacity() < MIN_RELAY_BUFFER {
            chunk.reserve(MIN_RELAY_BUFFER);
        }
        let read = from.read(chunk);
        let (res, chunk) = match pace.read_idle {
            Some(idle) => match monoio::time::timeout(idle, read).await {
                Ok(r) => r,
                Err(_) => return Err(RelayError::Timeout),
            },
            None => read.await,
        };
        *buf = chunk;
        let n = res.map_err(RelayError::Read)?;
        if let Some(window) = &mut window {
            window.bytes += n as u64;
            window.roll(Instant::now())?;
        }
        if n == 0 {
            if matches!(left, BodyLeft::UntilClose) {
                *left = BodyLeft::Done;
                break;
            }
            return Err(RelayError::Read(io::ErrorKind::UnexpectedEof.into()));
        }
        let (body, send) = left.take_forwarded(&mut buf[..n], unchunk)?;
        if left.chunked_bytes() > max {
            return Err(RelayError::TooLarge);
        }
        copied += send as u64;
        let writing = Instant::now();
        let passed = pass_on(to, buf, send, body, n, pace.write_idle).await?;
        if let Some(window) = &mut window {
            // Time the receiver kept us waiting is not the sender's.
            window.ends += writing.elapsed();
        }
        if let Some(leftover) = passed {
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

/// Writes `buf[..send]` to `to` (a write that makes no progress for `write_idle` fails
/// with `TimedOut`), then, if the body ended inside this read (`body < n`), moves the bytes
/// after it (`buf[body..n]`) to the front and returns their count.
pub(crate) async fn pass_on(
    to: &mut TcpStream,
    buf: &mut Vec<u8>,
    send: usize,
    body: usize,
    n: usize,
    write_idle: Option<Duration>,
) -> Result<Option<usize>, RelayError> {
    if send > 0 {
        let out = std::mem::take(buf).slice(0..send);
        let (res, out) = match write_idle {
            Some(idle) => write_all_progressing(to, out, idle).await,
            None => {
                let (res, out) = to.write_all(out).await;
                (res.map(|_| ()), Some(out))
            }
        };
        if let Some(out) = out {
            *buf = out.into_inner();
        }
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

/// [`write_all`], failing with `TimedOut` when it takes longer than `within` (a peer that
/// reads nothing). `buf` is left empty then.
pub async fn write_all_within(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
) -> io::Result<()> {
    let (res, owned) = write_all_progressing(stream, std::mem::take(buf), within).await;
    if let Some(owned) = owned {
        *buf = owned;
    }
    res
}

/// Writes all of `buf`, failing with `TimedOut` once the peer has taken none of it for
/// about `idle`. (The kernel wakes a blocked writer only once about a third of its queue
/// drained, so a single write can outlast `idle` for a slow but steady reader.) A write that
/// outlasts `idle` is not cut at once: the socket's send queue is looked at then and again a
/// quarter of `idle` later, and the wait goes on while it moves; so a peer that reads
/// nothing is cut after 1.25 x `idle`, and a write that ends in time costs no extra syscall.
/// The buffer comes back unless timed out.
pub async fn write_all_progressing<T: IoBuf>(
    stream: &mut TcpStream,
    buf: T,
    idle: Duration,
) -> (io::Result<()>, Option<T>) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    let mut write = std::pin::pin!(stream.write_all(buf));
    let mut wait = idle;
    let mut queued = None;
    loop {
        match monoio::time::timeout(wait, &mut write).await {
            Ok((res, buf)) => return (res.map(|_| ()), Some(buf)),
            Err(_) => {
                let now = crate::socket::unsent_bytes(fd);
                if now.is_none() || (queued.is_some() && now == queued) {
                    return (Err(io::ErrorKind::TimedOut.into()), None);
                }
                queued = now;
                wait = idle / 4;
            }
        }
    }
}
