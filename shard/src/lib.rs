//! The per-core data plane of mcp-gateway.
//!
//! Each shard is one OS thread pinned to one allowed CPU, running its own monoio runtime
//! (io_uring, or epoll as a logged fallback) with its own `SO_REUSEPORT` listener, upstream
//! pools and metrics. Shards share nothing per request; they talk to the management shard
//! only through `crossbeam` channels at a tick (see [`messages`]).
// One audited exception: `socket`, the raw socket calls monoio does not expose.
#![deny(unsafe_code)]

pub mod admission;
pub mod answer;
pub mod auth;
pub mod balancer;
pub mod catch_panic;
pub mod client;
pub mod client_head;
pub mod connection;
pub mod context;
pub mod error;
pub mod exchange;
pub mod filter;
pub mod hangup;
pub mod http;
pub mod legacy_sse;
pub mod list_response;
pub mod mcp;
pub mod messages;
pub mod metrics;
pub mod outbound;
pub mod phase;
pub mod pipeline;
pub mod pool;
pub mod relay;
pub mod request_id;
pub mod response_rules;
pub mod router;
pub mod runtime;
pub mod snapshot;
pub mod socket;
pub mod state;
pub mod sticky;
pub mod store;
pub mod stream;
pub mod upstream;
pub mod upstream_head;
pub mod upstream_response;
pub mod worker;
