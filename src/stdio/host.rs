//! The stdio host's state: the stdio servers, their live sessions, processes on their way
//! out, and the restart backoff of each server.
//!
//! Owns: ending sessions (and why), reaping exited processes without ever blocking
//! (`try_wait` on a tick), stopping idle sessions, and the backoff that spaces out new
//! processes of a server whose processes keep dying soon after they start. Must not: do
//! socket I/O or wait; callers hold its `RefCell` borrow only between awaits.

use super::session::Session;
use mcp_gateway_config::{GatewayConfig, StdioCommand, Transport};
use std::cell::RefCell;
use std::collections::HashMap;
use std::process::Child;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub type Shared = Rc<RefCell<Host>>;

/// First delay before a new process of a server whose last one died young; doubles.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that lived this long resets its server's backoff.
const LIVED_LONG: Duration = Duration::from_secs(10);
/// After stdin closed on a stopped session: SIGTERM, then SIGKILL, if still running.
const TERM_AFTER: Duration = Duration::from_secs(2);
const KILL_AFTER: Duration = Duration::from_secs(5);

pub struct Server {
    pub id: String,
    pub command: StdioCommand,
    /// The upstream's `timeout`: how long `initialize` or a JSON answer may take.
    pub timeout: Duration,
    /// The upstream's `maxTimeout`: the cap on any exchange.
    pub max_timeout: Duration,
    /// Sessions with a running process.
    pub live: usize,
    backoff: Backoff,
}

/// Spacing between new processes of a server whose processes die young.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    not_before: Instant,
}

impl Backoff {
    fn new(now: Instant) -> Backoff {
        Backoff {
            delay: Duration::ZERO,
            not_before: now,
        }
    }

    /// A process died (or never started) at `now` after living `lived`.
    fn record(&mut self, lived: Duration, now: Instant) {
        if lived >= LIVED_LONG {
            *self = Backoff::new(now);
            return;
        }
        self.delay = if self.delay.is_zero() {
            BACKOFF_FIRST
        } else {
            (self.delay * 2).min(BACKOFF_MAX)
        };
        self.not_before = now + self.delay;
    }

    fn left(&self, now: Instant) -> Duration {
        self.not_before.saturating_duration_since(now)
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ending {
    /// The process exited or broke its stdout (the text says how).
    Died(String),
    /// The client sent `DELETE`.
    Deleted,
    /// No request for the server's `idleTimeout`.
    Idle,
    /// It did not answer `initialize` in time.
    InitTimeout,
}

/// A process whose session ended, kept until it is reaped.
struct Dying {
    child: Child,
    server: String,
    session: String,
    since: Instant,
    termed: bool,
    killed: bool,
}

pub struct Host {
    pub servers: Vec<Server>,
    pub sessions: HashMap<String, Session>,
    dying: Vec<Dying>,
    next_stream: u64,
    /// `server.limits.maxBodyBytes`: also the longest line a process may print.
    pub max_line: usize,
}

impl Host {
    pub fn new(config: &GatewayConfig) -> Host {
        let now = Instant::now();
        let servers = config
            .upstreams
            .iter()
            .filter_map(|u| match &u.transport {
                Transport::Stdio(command) => Some(Server {
                    id: u.id.clone(),
                    command: command.clone(),
                    timeout: u.timeout,
                    max_timeout: u.max_timeout,
                    live: 0,
                    backoff: Backoff::new(now),
                }),
                _ => None,
            })
            .collect();
        Host {
            servers,
            sessions: HashMap::new(),
            dying: Vec::new(),
            next_stream: 0,
            max_line: usize::try_from(config.server.limits.max_body_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The server a request path (`/stdio/{id}`, query removed) names.
    pub fn server_for_path(&self, path: &str) -> Option<usize> {
        let id = path.strip_prefix("/stdio/")?;
        self.servers.iter().position(|s| s.id == id)
    }

    pub fn next_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    /// How long a new process of `server` must still wait (zero: start now).
    pub fn backoff_left(&self, server: usize, now: Instant) -> Duration {
        self.servers
            .get(server)
            .map_or(Duration::ZERO, |s| s.backoff.left(now))
    }

    /// A process of `server` died (or never started) after living `lived`.
    pub fn record_death(&mut self, server: usize, lived: Duration) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        s.backoff.record(lived, Instant::now());
        if s.backoff.delay.is_zero() {
            return;
        }
        tracing::warn!(
            server = %s.id,
            backoff_ms = s.backoff.delay.as_millis() as u64,
            "stdio server process died soon after start: next one waits"
        );
    }

    /// Ends a session: waiting requests get a JSON-RPC error, stdin closes, and the
    /// process is stopped and later reaped. A session already gone is left alone.
    pub fn end_session(&mut self, id: &str, ending: Ending) {
        let Some(mut session) = self.sessions.remove(id) else {
            return;
        };
        let server_id = self
            .servers
            .get(session.server)
            .map_or_else(String::new, |s| s.id.clone());
        // When stdout ended because the process exited, say how it exited.
        let ending = match ending {
            Ending::Died(why) => match session.child.try_wait() {
                Ok(Some(status)) if !why.contains("exit") && !why.contains("signal") => {
                    Ending::Died(format!("{why}; {status}"))
                }
                _ => Ending::Died(why),
            },
            other => other,
        };
        let message = match &ending {
            Ending::Died(why) => format!("stdio server exited ({why})"),
            Ending::Deleted => "session deleted".to_string(),
            Ending::Idle => "session stopped after idleTimeout".to_string(),
            Ending::InitTimeout => "stdio server did not answer initialize in time".to_string(),
        };
        session.fail_all(&message);
        if let Some(s) = self.servers.get_mut(session.server) {
            s.live = s.live.saturating_sub(1);
        }
        let lived = session.started.elapsed();
        tracing::info!(server = %server_id, session = %short(id), pid = session.pid,
            lived_ms = lived.as_millis() as u64, ending = ?ending, "stdio session ended");
        let mut dying = Dying {
            child: session.child,
            server: server_id,
            session: id.to_string(),
            since: Instant::now(),
            termed: false,
            killed: false,
        };
        match ending {
            Ending::Died(_) => {
                self.record_death(session.server, lived);
                // Its stdout is gone; whatever still runs is of no use.
                kill(&mut dying);
            }
            Ending::InitTimeout => kill(&mut dying),
            Ending::Deleted | Ending::Idle => {}
        }
        self.dying.push(dying);
    }

    /// Runs every tick: sessions whose process exited end, idle sessions stop, stopped
    /// processes are signalled on schedule and reaped.
    pub fn tick(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for (id, s) in &mut self.sessions {
            if let Ok(Some(status)) = s.child.try_wait() {
                ended.push((id.clone(), Ending::Died(status.to_string())));
            } else if s.in_flight == 0 {
                let idle = self.servers.get(s.server).map(|sv| sv.command.idle_timeout);
                if idle.is_some_and(|idle| now.saturating_duration_since(s.last_active) >= idle) {
                    ended.push((id.clone(), Ending::Idle));
                }
            }
        }
        for (id, ending) in ended {
            self.end_session(&id, ending);
        }
        self.dying.retain_mut(|d| match d.child.try_wait() {
            Ok(Some(status)) => {
                tracing::info!(server = %d.server, session = %short(&d.session),
                    pid = d.child.id(), %status, "stdio server process reaped");
                false
            }
            Ok(None) => {
                let waited = now.saturating_duration_since(d.since);
                if waited >= KILL_AFTER {
                    kill(d);
                } else if waited >= TERM_AFTER && !d.termed {
                    d.termed = true;
                    super::process::terminate(&d.child);
                }
                true
            }
            Err(e) => {
                tracing::warn!(server = %d.server, error = %e, "stdio server process: wait failed");
                false
            }
        });
    }
}

fn kill(d: &mut Dying) {
    if !d.killed {
        d.killed = true;
        // Fails only when it already exited, which the next tick reaps.
        let _ = d.child.kill();
    }
}

/// The first characters of a session id, enough to tell sessions apart in logs without
/// writing the whole (bearer-like) id.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_for_young_deaths_and_resets_after_a_long_life() {
        let t0 = Instant::now();
        let mut b = Backoff::new(t0);
        assert_eq!(b.left(t0), Duration::ZERO);
        let young = Duration::from_millis(50);
        b.record(young, t0);
        assert_eq!(b.left(t0), BACKOFF_FIRST);
        b.record(young, t0);
        assert_eq!(b.left(t0), BACKOFF_FIRST * 2);
        for _ in 0..20 {
            b.record(young, t0);
        }
        assert_eq!(b.left(t0), BACKOFF_MAX);
        assert_eq!(b.left(t0 + BACKOFF_MAX), Duration::ZERO);
        b.record(LIVED_LONG, t0);
        assert_eq!(b.left(t0), Duration::ZERO);
        b.record(young, t0);
        assert_eq!(
            b.left(t0),
            BACKOFF_FIRST,
            "a long life starts the doubling over"
        );
    }
}
