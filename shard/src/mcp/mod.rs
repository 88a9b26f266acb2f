//! MCP-specific rules on top of the HTTP proxy: stateless session affinity tokens, the
//! header checks of the MCP Streamable HTTP transport, and list answers narrowed to what a
//! caller may call.
//!
//! Owns: pure logic (no sockets). The pipeline calls it while it prepares a request and
//! while it rewrites a response head.

pub mod headers;
pub mod inspect;
pub mod legacy;
pub mod list_events;
pub mod lists;
pub mod route;
pub mod session;
pub mod sse_event;
pub mod stateless;
