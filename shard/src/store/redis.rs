//! One Redis connection driven over a monoio socket: commands encoded and replies parsed by
//! the `redis` crate, one command in flight at a time, every step under a timeout.
//!
//! Owns: connecting (with `AUTH` and `SELECT`), and one request/reply exchange. Must not:
//! pool or retry (callers decide), or use the `redis` crate's own (blocking) client.

use std::io;
use std::time::Duration;

use mcp_gateway_config::RedisStore;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use redis::Value;
use thiserror::Error;

/// Replies larger than this are refused (a `SCAN` page or a session record is far smaller).
const MAX_REPLY: usize = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("redis unreachable: {0}")]
    Io(#[from] io::Error),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("redis refused the command: {0}")]
    Server(String),
    #[error("unexpected redis reply: {0}")]
    Protocol(String),
}

pub struct RedisConn {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl RedisConn {
    /// Connects, authenticates and selects the database.
    pub async fn connect(store: &RedisStore, timeout: Duration) -> Result<RedisConn, StoreError> {
        let stream = monoio::time::timeout(timeout, TcpStream::connect_addr(store.addr))
            .await
            .map_err(|_| StoreError::Timeout)??;
        let _ = stream.set_nodelay(true);
        let mut conn = RedisConn {
            stream,
            buf: Vec::with_capacity(1024),
            timeout,
        };
        if let Some(password) = &store.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &store.username {
                auth.arg(user);
            }
            auth.arg(password);
            conn.call(&auth).await?;
        }
        if store.db != 0 {
            conn.call(redis::cmd("SELECT").arg(store.db)).await?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; a Redis error reply is `StoreError::Server`.
    pub async fn call(&mut self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        let packed = cmd.get_packed_command();
        let (res, _) = monoio::time::timeout(self.timeout, self.stream.write_all(packed))
            .await
            .map_err(|_| StoreError::Timeout)?;
        res?;
        self.buf.clear();
        loop {
            match redis::parse_redis_value(&self.buf) {
                Ok(Value::ServerError(e)) => return Err(StoreError::Server(format!("{e:?}"))),
                Ok(value) => return Ok(value),
                // Not all of the reply is here yet.
                Err(e) if e.is_io_error() => {}
                Err(e) => return Err(StoreError::Protocol(e.to_string())),
            }
            if self.buf.len() > MAX_REPLY {
                return Err(StoreError::Protocol("reply too large".into()));
            }
            let read = crate::relay::read_append(&mut self.stream, &mut self.buf, 16 * 1024);
            match monoio::time::timeout(self.timeout, read).await {
                Err(_) => return Err(StoreError::Timeout),
                Ok(Ok(0)) => return Err(StoreError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(StoreError::Io(e)),
            }
        }
    }
}

/// An integer reply.
pub fn as_int(value: &Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => Err(StoreError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

/// A bulk or simple string reply; `None` for nil.
pub fn as_text(value: &Value) -> Result<Option<String>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        Value::Okay => Ok(Some("OK".into())),
        other => Err(StoreError::Protocol(format!(
            "expected a string, got {other:?}"
        ))),
    }
}
