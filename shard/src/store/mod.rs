//! The optional session store (`sessions.store: "redis"`): sessions recorded in Redis so
//! operators can list and revoke them, with the request path kept non-blocking.
//!
//! Owns: the async Redis connection (`redis`) and each shard's view of the store
//! (`sessions`). Must not: block a thread, or make a session depend on Redis being up
//! (tokens stay self-contained; the store only adds revocation and listing).

pub mod redis;
pub mod sessions;

pub use self::redis::{RedisConn, StoreError};
pub use sessions::{key_of, record_key, SessionKey, SessionStore, KEY_PREFIX};
