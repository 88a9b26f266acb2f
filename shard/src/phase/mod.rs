//! The request phases, each a plain module with one contract: look at the request and its
//! context, then go on ([`Step::Continue`]) or answer now ([`Step::Answer`]). They run in
//! this order, called from one place (`pipeline::prepare`):
//!
//! 1. `route`: own page, `/mcp/{id}`, `/sse/{id}`, or the default group;
//! 2. `origin`: the browser rules of MCP endpoints (Origin, Host) and CORS preflights;
//! 3. custom filters registered for [`FilterPhase::AfterRoute`](crate::filter::FilterPhase);
//! 4. `authenticate`, 5. `authorize`, 6. `rate_limit`: where those features plug in;
//! 7. `mcp_rules`: the MCP header rules (revision, `Accept`, routing headers);
//! 8. custom filters registered for `BeforeUpstream`;
//! 9. `cache`: where a cached answer would be looked up;
//! 10. `choose`: the upstream (session replica, group pick, sticky cookie), its policy, the
//!     principal's roles there (RBAC), the body limit, and the upstream request head;
//!
//! then `pipeline::run` answers or proxies, and records the outcome (the log phase).
//!
//! Phases 1 to 10 read the parsed head, borrowed from the read buffer; they do not await.
//! A phase that must await runs on the owned [`RequestCtx`](crate::context::RequestCtx),
//! parsing the head again from `head_at` if it needs it: `introspect` (an opaque token
//! asked about at its issuer, then phases 1 to 10 again with the principal), and, in
//! `pipeline::proxy`, `session_store` (the Redis session check) and `upstream_token` (a
//! token exchanged for the chosen server).
//!
//! Owns: the order and the contract. Must not: write to sockets (answers are `Action`s that
//! `pipeline::run` carries out).

pub mod authenticate;
pub mod authorize;
pub mod cache;
pub mod choose;
pub mod filters;
pub mod introspect;
pub mod mcp_rules;
pub mod origin;
pub mod rate_limit;
pub mod route;
pub mod session_store;
pub mod upstream_token;

use crate::context::Action;
use crate::error::GatewayError;
use crate::http::request::RequestHead;
use crate::mcp::stateless::RoutingHeaders;
use crate::router::Route;

/// What a phase decides.
pub enum Step {
    Continue,
    Answer(Action),
}

impl Step {
    /// `Continue`, or the refusal `err`.
    pub fn refuse_if(result: Result<(), GatewayError>) -> Step {
        match result {
            Ok(()) => Step::Continue,
            Err(e) => Step::Answer(Action::Reject(e)),
        }
    }
}

/// What the phases of one request share while its head is parsed.
pub struct Request<'r, 'h, 'b> {
    pub head: &'r RequestHead<'h, 'b>,
    pub route: Route<'b>,
    /// `Mcp-Method` and `Mcp-Name`, once `mcp_rules` read them.
    pub routing: RoutingHeaders<'b>,
}
