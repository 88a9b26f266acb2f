//! The stdio host's HTTP/1.1 side: reading a request (head through the shard crate's parser,
//! `Content-Length` or chunked body) and writing JSON, empty and event-stream responses.
//!
//! Owns: bytes on the loopback connections from the shards. Must not: know about sessions
//! or processes; `exchange` decides what to answer.

use super::process::read_append;
use mcp_gateway_shard::http::chunked::ChunkedTracker;
use mcp_gateway_shard::http::encode;
use mcp_gateway_shard::http::{request, BodyFraming};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::io;

/// Longest request head read.
const MAX_HEAD: usize = 64 * 1024;

pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub session: Option<String>,
    /// `Accept` allows `text/event-stream`.
    pub accepts_sse: bool,
    /// `Accept` allows JSON (or is missing).
    pub accepts_json: bool,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

pub enum ReadError {
    /// The peer closed (or broke) the connection between requests.
    Closed,
    /// Answer this status and close.
    Refuse(u16, &'static str),
}

fn header(head: &request::RequestHead<'_, '_>, name: &str) -> Option<String> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
}

/// Reads one request from `stream`; `buf` keeps bytes of the next one.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max_body: u64,
) -> Result<Request, ReadError> {
    let (mut req, head_len, framing, expect_continue) = loop {
        {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            match request::parse(buf, &mut headers) {
                Ok(Some(head)) => {
                    let accept = header(&head, "accept").map(|a| a.to_ascii_lowercase());
                    let req = Request {
                        method: head.method.to_string(),
                        path: head.path().to_string(),
                        session: header(&head, "mcp-session-id"),
                        accepts_sse: accept
                            .as_deref()
                            .is_some_and(|a| a.contains("text/event-stream")),
                        accepts_json: accept
                            .as_deref()
                            .is_none_or(|a| a.contains("application/json") || a.contains("*/*")),
                        body: Vec::new(),
                        keep_alive: head.keep_alive,
                    };
                    break (req, head.head_len, head.framing, head.expect_continue);
                }
                Ok(None) => {}
                Err(_) => return Err(ReadError::Refuse(400, "malformed request")),
            }
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Refuse(431, "request head too large"));
        }
        match read_append(stream, buf, 8192).await {
            Ok(n) if n > 0 => {}
            _ => return Err(ReadError::Closed),
        }
    };
    let whole = match framing {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Empty => Some(0),
        _ => None,
    };
    if whole.is_some_and(|n| n > max_body) {
        return Err(ReadError::Refuse(413, "request body too large"));
    }
    let in_hand = buf.len() - head_len;
    if expect_continue && whole.is_none_or(|n| n > in_hand as u64) {
        let (res, _) = stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
            .await;
        if res.is_err() {
            return Err(ReadError::Closed);
        }
    }
    match whole {
        Some(n) => {
            let n = usize::try_from(n).map_err(|_| ReadError::Refuse(413, "too large"))?;
            while buf.len() < head_len + n {
                match read_append(stream, buf, (head_len + n - buf.len()).min(1 << 20)).await {
                    Ok(r) if r > 0 => {}
                    _ => return Err(ReadError::Closed),
                }
            }
            req.body = buf[head_len..head_len + n].to_vec();
            buf.drain(..head_len + n);
        }
        None => {
            let mut tracker = ChunkedTracker::new();
            let mut pos = head_len;
            loop {
                let base = pos;
                let body = &mut req.body;
                let used = tracker
                    .feed_payload(&buf[base..], |r| {
                        body.extend_from_slice(&buf[base + r.start..base + r.end]);
                    })
                    .map_err(|_| ReadError::Refuse(400, "malformed chunked body"))?;
                pos += used;
                if tracker.is_done() {
                    break;
                }
                if req.body.len() as u64 > max_body {
                    return Err(ReadError::Refuse(413, "request body too large"));
                }
                match read_append(stream, buf, 8192).await {
                    Ok(r) if r > 0 => {}
                    _ => return Err(ReadError::Closed),
                }
            }
            buf.drain(..pos);
        }
    }
    Ok(req)
}

/// A connection from a shard while one request is answered: the socket, the bytes to
/// write next, and whether the connection closes after this answer.
pub struct Conn {
    pub stream: TcpStream,
    out: Vec<u8>,
    pub close: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            out: Vec::with_capacity(8192),
            close: false,
        }
    }

    /// Writes what is queued, whole.
    pub async fn send(&mut self) -> io::Result<()> {
        let (res, back) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        self.out = back;
        self.out.clear();
        res.map(|_| ())
    }

    /// Sends a complete JSON response (`extra`: whole header lines).
    pub async fn json(&mut self, status: u16, body: &[u8], extra: &[&str]) -> io::Result<()> {
        encode::local_response(
            &mut self.out,
            b"",
            &encode::LocalResponse {
                status,
                content_type: "application/json",
                body,
                close: self.close,
                request_id: b"",
                extra,
                security: &[],
            },
        );
        self.send().await
    }

    /// Sends a response without a body (202, 204, 405).
    pub async fn empty(&mut self, status: u16, extra: &[&str]) -> io::Result<()> {
        let reason = encode::reason(status);
        self.out
            .extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
        self.out.extend_from_slice(b"Server: mcp-gateway\r\n");
        if status != 204 {
            self.out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        self.end_head(extra);
        self.send().await
    }

    /// Queues the head of an event stream; events follow as chunks.
    pub fn stream_head(&mut self, extra: &[&str]) {
        self.out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nServer: mcp-gateway\r\nContent-Type: text/event-stream\r\n\
              Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n",
        );
        self.end_head(extra);
    }

    fn end_head(&mut self, extra: &[&str]) {
        for line in extra {
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        if self.close {
            self.out.extend_from_slice(b"Connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Queues one `message` event carrying one JSON-RPC message (a line: no newline in it).
    pub fn event(&mut self, message: &[u8]) {
        let len = b"event: message\ndata: ".len() + message.len() + 2;
        self.out
            .extend_from_slice(format!("{len:x}\r\nevent: message\ndata: ").as_bytes());
        self.out.extend_from_slice(message);
        self.out.extend_from_slice(b"\n\n\r\n");
    }

    /// Queues a comment: keeps the stream warm and finds out whether the shard hung up.
    pub fn comment(&mut self) {
        self.out.extend_from_slice(b"e\r\n: keep-alive\n\n\r\n");
    }

    /// Queues the end of an event stream.
    pub fn stream_end(&mut self) {
        self.out.extend_from_slice(b"0\r\n\r\n");
    }
}
