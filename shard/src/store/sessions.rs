//! A shard's view of the session store. New sessions are written to Redis in the
//! background; a request with a token is let through once Redis confirmed (and refreshed,
//! `PEXPIRE`) its record, and the answer is cached on the shard for a few seconds, so Redis
//! sees at most one check per session per shard per `CACHE_FOR`. Revocations from this
//! process's admin API arrive as commands and apply at once; other processes' revocations
//! within `CACHE_FOR`.
//!
//! Owns: the per-shard cache, the small connection pool, the record format. Must not:
//! block, or refuse sessions when Redis is unreachable (the token itself is authenticated:
//! the store fails open, with a warning at most every `WARN_EVERY`, and is left alone for
//! `CACHE_FOR` after a failure so a dead store adds no wait to requests).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use mcp_gateway_config::RedisStore;
use monoio::time::Instant;

use super::redis::{as_int, RedisConn, StoreError};

/// A session's id in the store and the admin API: the first 16 characters of its token
/// (the base64url of the token's random nonce, so unique per session and not secret-bearing).
pub type SessionKey = [u8; 16];

/// Redis key prefix of session records.
pub const KEY_PREFIX: &str = "mcpgw:session:";
/// How long a shard trusts what Redis said about a session.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Every Redis exchange's time limit: a slow store must not hold requests long.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections a shard keeps to Redis; more concurrent checks than this fail open.
const MAX_CONNECTIONS: usize = 4;
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Cached answers kept at most; the cache is cleared when it grows past this.
const MAX_CACHED: usize = 100_000;

/// The session's key, from its token.
pub fn key_of(token: &[u8]) -> Option<SessionKey> {
    token.get(..16)?.try_into().ok()
}

/// The Redis key of a session.
pub fn record_key(key: &[u8]) -> String {
    format!("{KEY_PREFIX}{}", String::from_utf8_lossy(key))
}

pub struct SessionStore {
    config: RedisStore,
    ttl_ms: u64,
    idle: RefCell<Vec<RedisConn>>,
    open: Cell<usize>,
    /// Sessions Redis confirmed, until when.
    confirmed: RefCell<HashMap<SessionKey, Instant>>,
    /// Sessions revoked through this process's admin API, until their tokens expire.
    revoked: RefCell<HashMap<SessionKey, Instant>>,
    last_warning: Cell<Option<Instant>>,
    /// After a failed exchange, Redis is left alone until then, so an unreachable store
    /// costs requests nothing (they go on as if it had confirmed them).
    down_until: Cell<Option<Instant>>,
}

impl SessionStore {
    pub fn new(config: RedisStore, ttl: Duration) -> SessionStore {
        SessionStore {
            config,
            ttl_ms: ttl.as_millis() as u64,
            idle: RefCell::new(Vec::new()),
            open: Cell::new(0),
            confirmed: RefCell::new(HashMap::new()),
            revoked: RefCell::new(HashMap::new()),
            last_warning: Cell::new(None),
            down_until: Cell::new(None),
        }
    }

    /// Records a new session in the background (`record` is its JSON).
    pub fn record(self: &Rc<Self>, key: SessionKey, record: String) {
        self.confirm(key);
        let store = self.clone();
        monoio::spawn(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(record_key(&key))
                .arg(record)
                .arg("PX")
                .arg(store.ttl_ms);
            if let Err(e) = store.call(&cmd).await {
                store.warn("recording a session", &e);
            }
        });
    }

    /// Whether a session may go on: not revoked here, and its record still in Redis
    /// (refreshed on the way). Unreachable Redis: yes.
    pub async fn check(&self, key: SessionKey) -> bool {
        let now = Instant::now();
        if self
            .revoked
            .borrow()
            .get(&key)
            .is_some_and(|until| *until > now)
        {
            return false;
        }
        let confirmed = self
            .confirmed
            .borrow()
            .get(&key)
            .is_some_and(|until| *until > now);
        if confirmed || self.down_until.get().is_some_and(|until| until > now) {
            return true;
        }
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(record_key(&key)).arg(self.ttl_ms);
        match self.call(&cmd).await.and_then(|v| as_int(&v)) {
            Ok(1) => {
                self.confirm(key);
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.warn("checking a session", &e);
                true
            }
        }
    }

    /// The client ended its session (`DELETE`): the record goes too.
    pub fn forget(self: &Rc<Self>, key: SessionKey) {
        self.confirmed.borrow_mut().remove(&key);
        let store = self.clone();
        monoio::spawn(async move {
            if let Err(e) = store.call(redis::cmd("DEL").arg(record_key(&key))).await {
                store.warn("removing a session", &e);
            }
        });
    }

    /// Revoked through the admin API: refused from now on, on this shard.
    pub fn revoke(&self, key: SessionKey) {
        self.confirmed.borrow_mut().remove(&key);
        let mut revoked = self.revoked.borrow_mut();
        let now = Instant::now();
        revoked.retain(|_, until| *until > now);
        revoked.insert(key, now + Duration::from_millis(self.ttl_ms));
    }

    fn confirm(&self, key: SessionKey) {
        let mut confirmed = self.confirmed.borrow_mut();
        if confirmed.len() >= MAX_CACHED {
            confirmed.clear();
        }
        confirmed.insert(key, Instant::now() + CACHE_FOR);
    }

    /// One command on a pooled (or new) connection; a failed connection is dropped, and a
    /// failure to reach Redis marks the store down for `CACHE_FOR`.
    async fn call(&self, cmd: &redis::Cmd) -> Result<redis::Value, StoreError> {
        let result = self.call_once(cmd).await;
        if matches!(result, Err(StoreError::Io(_) | StoreError::Timeout)) {
            self.down_until.set(Some(Instant::now() + CACHE_FOR));
        }
        result
    }

    async fn call_once(&self, cmd: &redis::Cmd) -> Result<redis::Value, StoreError> {
        let pooled = self.idle.borrow_mut().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None if self.open.get() >= MAX_CONNECTIONS => {
                return Err(StoreError::Protocol("all store connections busy".into()))
            }
            None => {
                self.open.set(self.open.get() + 1);
                match RedisConn::connect(&self.config, CALL_TIMEOUT).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        self.open.set(self.open.get() - 1);
                        return Err(e);
                    }
                }
            }
        };
        let result = conn.call(cmd).await;
        match &result {
            Ok(_) | Err(StoreError::Server(_)) => self.idle.borrow_mut().push(conn),
            Err(_) => self.open.set(self.open.get() - 1),
        }
        result
    }

    fn warn(&self, doing: &str, e: &StoreError) {
        let now = Instant::now();
        if self
            .last_warning
            .get()
            .is_none_or(|t| now >= t + WARN_EVERY)
        {
            self.last_warning.set(Some(now));
            tracing::warn!(store = %self.config.display, error = %e, "session store: {doing} failed; sessions continue without it");
        }
    }
}
