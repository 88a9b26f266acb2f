//! The waiting side of an exchange: a POST's requests registered with their session until
//! their responses are in (relayed as an event stream, or collected as JSON), and the GET
//! stream of server messages.
//!
//! Owns: the `Exchange` guard (whatever way an exchange ends, even by its connection
//! breaking, its registrations are undone and the requests still waiting are cancelled
//! with `notifications/cancelled`) and the event-stream loops with their keep-alive
//! comments. Must not: hold the host's borrow across an await.

use super::exchange::{find_session, not_found, refuse, Batch, Refusal, INVALID_REQUEST};
use super::host::Shared;
use super::http::{Conn, Request};
use super::mailbox::Mailbox;
use super::session::{error_line, Event, Outgoing, INTERNAL_ERROR};
use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

/// Silence on an event stream after which a comment is written (which also finds out
/// whether the shard hung up).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What answered one request.
pub enum Answer {
    Response(Vec<u8>),
    /// The gateway's JSON-RPC error in its place.
    Failed(Vec<u8>),
}

pub struct Exchange {
    host: Shared,
    session: String,
    requests: Vec<Outgoing>,
    sink: Mailbox<Event>,
    stream: Option<u64>,
    is_array: bool,
}

impl Exchange {
    /// Registers the batch's requests with the session, then writes its lines to stdin.
    /// `stream`: the exchange also takes server messages (it answers as an event stream).
    pub fn open(
        host: &Shared,
        session: &str,
        batch: Batch,
        stream: bool,
    ) -> Result<Exchange, Refusal> {
        let mut h = host.borrow_mut();
        let n = stream.then(|| h.next_stream());
        let s = h.sessions.get_mut(session).ok_or_else(not_found)?;
        if s.stdin.is_closed() {
            return Err(not_found());
        }
        let mut requests = batch.requests;
        if !stream {
            // A JSON answer cannot carry progress notifications.
            for r in &mut requests {
                r.progress = None;
            }
        }
        let sink = Mailbox::default();
        s.register(&requests, &sink, n).map_err(|id| {
            let why = format!("request id {id} is already in flight in this session");
            (400, INVALID_REQUEST, why.into())
        })?;
        s.stdin.push(batch.lines);
        drop(h);
        Ok(Exchange {
            host: host.clone(),
            session: session.to_string(),
            requests,
            sink,
            stream: n,
            is_array: batch.is_array,
        })
    }

    /// The next response (or the error in its place), passing over other messages; `None`
    /// at `deadline`.
    pub async fn answer(&self, deadline: Instant) -> Option<Answer> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, self.sink.recv()).await {
                Ok(Some(Event::Response { line, .. })) => return Some(Answer::Response(line)),
                Ok(Some(Event::Failed { line, .. })) => return Some(Answer::Failed(line)),
                Ok(Some(Event::Message(_))) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every response as one JSON body (an array for an array POST); `Err` when the shard
    /// hangs up first (the exchange is then dropped, which cancels what is still waiting).
    pub async fn collect_unless_gone(
        &self,
        conn: &Conn,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        monoio::select! {
            body = self.collect(timeout) => Ok(body),
            _ = hung_up(conn) => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }

    /// Every response as one JSON body (an array for an array POST); `None` at timeout.
    async fn collect(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::with_capacity(self.requests.len());
        while answers.len() < self.requests.len() {
            match self.answer(deadline).await? {
                Answer::Response(line) | Answer::Failed(line) => answers.push(line),
            }
        }
        if !self.is_array {
            return answers.pop();
        }
        let mut body = vec![b'['];
        for (i, a) in answers.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(a);
        }
        body.push(b']');
        Some(body)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Never borrowed here: exchanges end between awaits, outside any borrow.
        if let Ok(mut h) = self.host.try_borrow_mut() {
            if let Some(s) = h.sessions.get_mut(&self.session) {
                s.unregister(&self.requests, &self.sink, self.stream);
            }
        }
    }
}

/// Answers a POST as an event stream: every message for this exchange as it comes, until
/// each request has its response (or `max_timeout` passes: then errors in their place).
pub async fn relay_stream(
    conn: &mut Conn,
    exchange: &Exchange,
    max_timeout: Duration,
) -> io::Result<()> {
    conn.stream_head(&[]);
    conn.send().await?;
    let deadline = Instant::now() + max_timeout;
    let mut waiting: HashSet<&str> = exchange.requests.iter().map(|r| r.id.as_str()).collect();
    while !waiting.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            for id in &waiting {
                let why = "stdio server did not answer within maxTimeout";
                conn.event(&error_line(id, INTERNAL_ERROR, why));
            }
            break;
        }
        let next_event =
            monoio::time::timeout(KEEP_ALIVE.min(deadline - now), exchange.sink.recv());
        let received = monoio::select! {
            received = next_event => received,
            _ = hung_up(conn) => return Err(io::ErrorKind::ConnectionAborted.into()),
        };
        match received {
            Ok(Some(first)) => {
                let mut next = Some(first);
                while let Some(event) = next {
                    match event {
                        Event::Message(line) => conn.event(&line),
                        Event::Response { id, line } | Event::Failed { id, line } => {
                            waiting.remove(id.as_str());
                            conn.event(&line);
                        }
                    }
                    next = exchange.sink.try_recv();
                }
            }
            Ok(None) => break,
            Err(_) => conn.comment(),
        }
        conn.send().await?;
    }
    conn.stream_end();
    conn.send().await
}

/// Resolves when the shard's side of the connection turns readable. A shard sends nothing
/// while it waits for an answer, so that is its hang-up (its client left): noticed at once,
/// not at the next write.
async fn hung_up(conn: &Conn) {
    let _ = conn.stream.readable(false).await;
}

/// Undoes a GET stream's attachment when it ends.
struct GetGuard {
    host: Shared,
    session: String,
    n: u64,
}

impl Drop for GetGuard {
    fn drop(&mut self) {
        if let Ok(mut h) = self.host.try_borrow_mut() {
            if let Some(s) = h.sessions.get_mut(&self.session) {
                s.detach_get(self.n);
            }
        }
    }
}

/// The GET stream: server messages not tied to a request, until the session ends or a
/// newer GET of the same session replaces it.
pub async fn get(host: &Shared, conn: &mut Conn, server: usize, req: &Request) -> io::Result<()> {
    let session = match find_session(host, server, req) {
        Ok(s) => s,
        Err(refusal) => return refuse(conn, "null", refusal).await,
    };
    if !req.accepts_sse {
        let why = "Accept must allow text/event-stream".into();
        return refuse(conn, "null", (406, INVALID_REQUEST, why)).await;
    }
    let sink = Mailbox::default();
    let n = {
        let mut h = host.borrow_mut();
        let n = h.next_stream();
        if let Some(s) = h.sessions.get_mut(&session) {
            s.attach_get(n, &sink);
        }
        n
    };
    let _guard = GetGuard {
        host: host.clone(),
        session,
        n,
    };
    conn.stream_head(&[]);
    conn.send().await?;
    loop {
        match monoio::time::timeout(KEEP_ALIVE, sink.recv()).await {
            Ok(Some(first)) => {
                let mut next = Some(first);
                while let Some(event) = next {
                    if let Event::Message(line) = event {
                        conn.event(&line);
                    }
                    next = sink.try_recv();
                }
            }
            Ok(None) => break,
            Err(_) => conn.comment(),
        }
        conn.send().await?;
    }
    conn.stream_end();
    conn.send().await
}
