//! One client session of a stdio server: its process, the requests waiting for answers and
//! where each line the process prints goes.
//!
//! Owns: routing the process's stdout lines (a response to the exchange that sent its
//! request; a progress notification to the exchange whose request carries its token; any
//! other server message to the newest open event stream, else the GET stream, else a bounded
//! backlog for the next GET stream), and failing every waiting request when the process is
//! gone. Must not: do I/O or wait; it only moves lines between mailboxes.

use super::mailbox::Mailbox;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::process::Child;
use std::time::Instant;

/// Server messages kept for a GET stream that is not open yet; older ones are dropped.
const BACKLOG: usize = 1000;

/// JSON-RPC error code for requests the gateway answers in the process's place.
pub const INTERNAL_ERROR: i64 = -32603;

/// What an exchange (one HTTP request to the host) receives.
pub enum Event {
    /// A server message that is not an answer to this exchange's requests.
    Message(Vec<u8>),
    /// The process's response to one of this exchange's requests (its id as JSON text).
    Response { id: String, line: Vec<u8> },
    /// The gateway's JSON-RPC error in place of a response (the process is gone).
    Failed { id: String, line: Vec<u8> },
}

/// A request of the client still waiting for the process's response.
struct Pending {
    sink: Mailbox<Event>,
    progress: Option<String>,
}

/// A request the client sent: its id and progress token as JSON text (the map keys).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: String,
    pub progress: Option<String>,
    /// Left unanswered, it is cancelled with `notifications/cancelled`.
    pub cancellable: bool,
}

pub struct Session {
    pub server: usize,
    pub pid: u32,
    pub child: Child,
    pub started: Instant,
    pub last_active: Instant,
    /// Exchanges waiting on this session; it is not idle while any is.
    pub in_flight: usize,
    /// Lines for the process's stdin (the writer task drains it).
    pub stdin: Mailbox<Vec<u8>>,
    pending: HashMap<String, Pending>,
    progress: HashMap<String, Mailbox<Event>>,
    /// Open event-stream exchanges, oldest first, by stream number.
    streams: Vec<(u64, Mailbox<Event>)>,
    get: Option<(u64, Mailbox<Event>)>,
    backlog: VecDeque<Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct Light<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

impl Session {
    pub fn new(server: usize, child: Child, stdin: Mailbox<Vec<u8>>) -> Session {
        let now = Instant::now();
        Session {
            server,
            pid: child.id(),
            child,
            started: now,
            last_active: now,
            in_flight: 0,
            stdin,
            pending: HashMap::new(),
            progress: HashMap::new(),
            streams: Vec::new(),
            get: None,
            backlog: VecDeque::new(),
        }
    }

    /// Makes `sink` the receiver of the responses to `requests` (and of the progress
    /// notifications for their tokens), and of unrelated server messages when `stream` is
    /// given. Refuses an id that is already waiting, registering nothing.
    pub fn register(
        &mut self,
        requests: &[Outgoing],
        sink: &Mailbox<Event>,
        stream: Option<u64>,
    ) -> Result<(), String> {
        for (i, r) in requests.iter().enumerate() {
            let repeated = requests[..i].iter().any(|o| o.id == r.id);
            if repeated || self.pending.contains_key(&r.id) {
                return Err(r.id.clone());
            }
        }
        for r in requests {
            if let Some(token) = &r.progress {
                self.progress.insert(token.clone(), sink.clone());
            }
            self.pending.insert(
                r.id.clone(),
                Pending {
                    sink: sink.clone(),
                    progress: r.progress.clone(),
                },
            );
        }
        if let Some(n) = stream {
            self.streams.push((n, sink.clone()));
        }
        self.in_flight += 1;
        self.last_active = Instant::now();
        Ok(())
    }

    /// Undoes [`register`](Self::register) for an exchange that ended (answered, timed
    /// out, or its client went away); responses that still come are dropped.
    pub fn unregister(
        &mut self,
        requests: &[Outgoing],
        sink: &Mailbox<Event>,
        stream: Option<u64>,
    ) {
        for r in requests {
            if self.pending.get(&r.id).is_some_and(|p| p.sink.same(sink)) {
                self.pending.remove(&r.id);
                // Still unanswered: its client gave up (or time ran out). Tell the server, so
                // it stops the work; a late response then finds nobody waiting and is dropped.
                if r.cancellable {
                    self.stdin.push(cancel_line(&r.id));
                }
            }
            if let Some(token) = &r.progress {
                if self.progress.get(token).is_some_and(|s| s.same(sink)) {
                    self.progress.remove(token);
                }
            }
        }
        if let Some(n) = stream {
            self.streams.retain(|(m, _)| *m != n);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_active = Instant::now();
    }

    /// Makes `sink` the GET stream (a newer GET replaces an older one, whose client may be
    /// gone unnoticed) and hands it the backlog.
    pub fn attach_get(&mut self, n: u64, sink: &Mailbox<Event>) {
        if let Some((_, old)) = self.get.take() {
            old.close();
        }
        for line in self.backlog.drain(..) {
            sink.push(Event::Message(line));
        }
        self.get = Some((n, sink.clone()));
    }

    pub fn detach_get(&mut self, n: u64) {
        if self.get.as_ref().is_some_and(|(m, _)| *m == n) {
            self.get = None;
        }
    }

    /// Delivers one line the process printed.
    pub fn route(&mut self, line: Vec<u8>) {
        let Ok(msg) = serde_json::from_slice::<Light<'_>>(&line) else {
            tracing::warn!(
                pid = self.pid,
                line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                "stdio server printed a line that is not a JSON-RPC message; dropped"
            );
            return;
        };
        if msg.method.is_none() {
            if let Some(id) = &msg.id {
                let id = id.to_string();
                if let Some(p) = self.pending.remove(&id) {
                    if let Some(token) = &p.progress {
                        self.progress.remove(token);
                    }
                    p.sink.push(Event::Response { id, line });
                    return;
                }
                tracing::debug!(pid = self.pid, %id, "response nobody waits for; dropped");
                return;
            }
        }
        if msg.method.as_deref() == Some("notifications/progress") {
            let token = msg
                .params
                .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                .and_then(|p| p.get("progressToken").map(Value::to_string));
            if let Some(sink) = token.and_then(|t| self.progress.get(&t)) {
                sink.push(Event::Message(line));
                return;
            }
        }
        let newest = self
            .streams
            .last()
            .map(|(_, s)| s)
            .or(self.get.as_ref().map(|(_, s)| s));
        if let Some(sink) = newest {
            sink.push(Event::Message(line));
            return;
        }
        if self.backlog.len() == BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(line);
    }

    /// The process is gone: every waiting request gets a JSON-RPC error, the GET stream
    /// ends, stdin closes.
    pub fn fail_all(&mut self, message: &str) {
        for (id, p) in self.pending.drain() {
            let line = error_line(&id, INTERNAL_ERROR, message);
            p.sink.push(Event::Failed { id, line });
        }
        self.progress.clear();
        self.streams.clear();
        if let Some((_, get)) = self.get.take() {
            get.close();
        }
        self.stdin.close();
    }
}

/// `notifications/cancelled` for the request with this id (JSON text), as one stdin line.
fn cancel_line(id: &str) -> Vec<u8> {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{{\"requestId\":{id},\"reason\":\"the client went away\"}}}}\n"
    )
    .into_bytes()
}

/// A JSON-RPC error response; `id` is JSON text (`null` when unknown).
pub fn error_line(id: &str, code: i64, message: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_string());
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#)
        .into_bytes()
}

/// As [`error_line`], for an error that is the whole HTTP answer: `data.status` says its
/// status, as on the gateway's other JSON-RPC errors.
pub fn error_body(id: &str, code: i64, message: &str, status: u16) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_string());
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message},"data":{{"status":{status}}}}}}}"#
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let child = std::process::Command::new("true").spawn().unwrap();
        Session::new(0, child, Mailbox::default())
    }

    fn request(id: &str, progress: Option<&str>) -> Outgoing {
        Outgoing {
            id: id.to_string(),
            progress: progress.map(str::to_string),
            cancellable: true,
        }
    }

    #[test]
    fn requests_left_unanswered_are_cancelled_on_the_servers_stdin() {
        let stdin = Mailbox::default();
        let child = std::process::Command::new("true").spawn().unwrap();
        let mut s = Session::new(0, child, stdin.clone());
        let sink = Mailbox::default();
        let (answered, abandoned) = (request("1", None), request(r#""b""#, None));
        s.register(&[answered.clone(), abandoned.clone()], &sink, None)
            .unwrap();
        s.route(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec());
        s.unregister(&[answered, abandoned], &sink, None);
        let line = stdin.try_recv().expect("a cancellation");
        let msg: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(msg["method"], "notifications/cancelled");
        assert_eq!(msg["params"]["requestId"], "b");
        assert!(line.ends_with(b"\n"));
        assert!(
            stdin.try_recv().is_none(),
            "the answered request was cancelled too"
        );
    }

    fn kind(event: Option<Event>) -> String {
        match event {
            Some(Event::Message(l)) => format!("message {}", String::from_utf8_lossy(&l)),
            Some(Event::Response { id, .. }) => format!("response {id}"),
            Some(Event::Failed { id, .. }) => format!("failed {id}"),
            None => "nothing".to_string(),
        }
    }

    const NOTE: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;

    #[test]
    fn lines_reach_the_exchange_they_belong_to() {
        let mut s = session();
        let (a, b, get) = (Mailbox::default(), Mailbox::default(), Mailbox::default());
        s.register(&[request("1", Some(r#""tok""#))], &a, Some(1))
            .unwrap();
        s.register(&[request(r#""x""#, None)], &b, Some(2)).unwrap();
        assert!(
            s.register(&[request("1", None)], &b, None).is_err(),
            "id 1 is in flight"
        );
        assert_eq!(s.in_flight, 2);

        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}"#;
        s.route(progress.to_vec());
        assert!(kind(a.try_recv()).contains("notifications/progress"));
        // Not a progress of a known token: the newest open stream.
        s.route(NOTE.to_vec());
        assert!(kind(b.try_recv()).contains("notifications/message"));
        s.route(br#"{"jsonrpc":"2.0","id":"x","result":{}}"#.to_vec());
        assert_eq!(kind(b.try_recv()), r#"response "x""#);
        s.unregister(&[request(r#""x""#, None)], &b, Some(2));
        s.route(NOTE.to_vec());
        assert!(kind(a.try_recv()).contains("notifications/message"));
        s.route(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec());
        assert_eq!(kind(a.try_recv()), "response 1");
        s.unregister(&[request("1", Some(r#""tok""#))], &a, Some(1));
        assert_eq!(s.in_flight, 0);

        // Nobody listening: kept for the GET stream, then handed to it.
        s.route(NOTE.to_vec());
        s.route(b"not json".to_vec());
        s.attach_get(3, &get);
        assert!(kind(get.try_recv()).contains("notifications/message"));
        assert_eq!(kind(get.try_recv()), "nothing");
        s.route(NOTE.to_vec());
        assert!(kind(get.try_recv()).contains("notifications/message"));
        assert_eq!(kind(a.try_recv()), "nothing");
        let _ = s.child.wait();
    }

    #[test]
    fn a_dead_process_fails_every_waiting_request() {
        let mut s = session();
        let (a, get) = (Mailbox::default(), Mailbox::default());
        s.register(&[request("7", None), request(r#""eight""#, None)], &a, None)
            .unwrap();
        s.attach_get(1, &get);
        s.fail_all("stdio server exited");
        let mut got = vec![kind(a.try_recv()), kind(a.try_recv())];
        got.sort();
        assert_eq!(got, [r#"failed "eight""#, "failed 7"]);
        assert!(get.is_closed() && s.stdin.is_closed());
        let line = error_line("7", INTERNAL_ERROR, "stdio server exited");
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], INTERNAL_ERROR);
        let _ = s.child.wait();
    }
}
