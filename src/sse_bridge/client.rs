//! A small HTTP/1.1 client on monoio for the bridge: connect, write a request, read the
//! response head (`httparse`, through the shard crate's response parser) and the body by
//! its framing (Content-Length, chunked, or until close), one read at a time.
//!
//! Also reads the bridge's own incoming requests (the same framing rules apply to bodies).
//!
//! Owns: bytes on the wire of the bridge's connections. Must not: block, or know MCP.

use mcp_gateway_shard::http::{request, response, BodyFraming};
use mcp_gateway_shard::relay::{read_append, BodyLeft};
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

const READ_SIZE: usize = 8 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

pub async fn connect(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

pub async fn write_all(stream: &mut TcpStream, bytes: Vec<u8>) -> io::Result<()> {
    let mut bytes = bytes;
    mcp_gateway_shard::relay::write_all(stream, &mut bytes).await
}

/// A response head, owned.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
    pub event_stream: bool,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// An incoming request to the bridge, owned.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: BodyFraming,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

fn parse_response(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match response::parse(buf, &mut headers, false) {
        Ok(Some(h)) => Ok(Some((
            Head {
                status: h.status,
                headers: owned(h.headers),
                framing: h.framing,
                event_stream: h.event_stream,
            },
            h.head_len,
        ))),
        Ok(None) => Ok(None),
        Err(_) => Err(invalid("malformed response head")),
    }
}

fn parse_request(buf: &[u8]) -> io::Result<Option<(Request, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match request::parse(buf, &mut headers) {
        Ok(Some(h)) => Ok(Some((
            Request {
                method: h.method.to_string(),
                path: h.target.to_string(),
                headers: owned(h.headers),
                framing: h.framing,
            },
            h.head_len,
        ))),
        Ok(None) => Ok(None),
        Err(_) => Err(invalid("malformed request head")),
    }
}

/// Parses a head from the start of a buffer: the head and its length, or `None` for "read
/// more".
type ParseHead<T> = fn(&[u8]) -> io::Result<Option<(T, usize)>>;

/// Reads until a complete head parses (interim 1xx responses skipped); returns it and a
/// reader for the body, holding the bytes that came after the head.
async fn read_head<T>(
    stream: &mut TcpStream,
    deadline: Instant,
    parse: ParseHead<T>,
    skip: fn(&T) -> bool,
) -> io::Result<(T, Vec<u8>)> {
    let mut buf = Vec::with_capacity(READ_SIZE);
    loop {
        if let Some((head, len)) = parse(&buf)? {
            buf.drain(..len);
            if skip(&head) {
                continue;
            }
            return Ok((head, buf));
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("head too large"));
        }
        match monoio::time::timeout_at(deadline, read_append(stream, &mut buf, READ_SIZE)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

pub async fn read_response(
    stream: &mut TcpStream,
    deadline: Instant,
) -> io::Result<(Head, BodyReader)> {
    let (head, rest) = read_head(stream, deadline, parse_response, |h| {
        (100..200).contains(&h.status)
    })
    .await?;
    let reader = BodyReader::new(head.framing, rest);
    Ok((head, reader))
}

pub async fn read_request(
    stream: &mut TcpStream,
    deadline: Instant,
) -> io::Result<(Request, BodyReader)> {
    let (req, rest) = read_head(stream, deadline, parse_request, |_| false).await?;
    let framing = match req.framing {
        BodyFraming::UntilClose => BodyFraming::Empty,
        f => f,
    };
    Ok((req, BodyReader::new(framing, rest)))
}

/// A message body, read one piece at a time.
pub struct BodyReader {
    left: BodyLeft,
    buf: Vec<u8>,
}

impl BodyReader {
    pub fn new(framing: BodyFraming, already_read: Vec<u8>) -> BodyReader {
        let left = match framing {
            BodyFraming::Empty => BodyLeft::Done,
            BodyFraming::Length(n) => BodyLeft::Bytes(n),
            BodyFraming::Chunked => BodyLeft::Chunked(Default::default()),
            BodyFraming::UntilClose => BodyLeft::UntilClose,
        };
        BodyReader {
            left,
            buf: already_read,
        }
    }

    /// The next piece of payload (framing removed); `None` at the body's end. `idle` bounds
    /// the wait for each read.
    pub async fn next(
        &mut self,
        stream: &mut TcpStream,
        idle: Option<Duration>,
    ) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.left.is_done() {
                return Ok(None);
            }
            if !self.buf.is_empty() {
                let (n, send) = self
                    .left
                    .take_unchunked(&mut self.buf[..])
                    .map_err(|_| invalid("bad body framing"))?;
                let piece = self.buf[..send].to_vec();
                self.buf.drain(..n);
                if !piece.is_empty() {
                    return Ok(Some(piece));
                }
                continue;
            }
            let read = read_append(stream, &mut self.buf, READ_SIZE);
            let n = match idle {
                Some(idle) => monoio::time::timeout(idle, read)
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
                None => read.await?,
            };
            if n == 0 {
                if matches!(self.left, BodyLeft::UntilClose) {
                    self.left = BodyLeft::Done;
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The whole rest of the body, refused past `max` bytes.
    pub async fn read_all(
        &mut self,
        stream: &mut TcpStream,
        idle: Duration,
        max: u64,
    ) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(piece) = self.next(stream, Some(idle)).await? {
            body.extend_from_slice(&piece);
            if body.len() as u64 > max {
                return Err(invalid("body too large"));
            }
        }
        Ok(body)
    }
}
