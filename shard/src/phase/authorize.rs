//! Phase 5, authorization: whether the principal may reach the route (403 otherwise).
//!
//! Nothing is decided here yet: what a principal may reach depends on the server, so RBAC
//! (`security.rbac`) is checked with the chosen server in `choose` (and on each message of
//! a body in the body check), as are per-server MCP policies. This module is where
//! route-level authorization (by path, before a server is chosen) would plug in.
//!
//! Owns: the place of authorization in the order. Must not: authenticate.

use super::{Request, Step};
use crate::context::RequestCtx;

pub fn run(_req: &Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    Step::Continue
}
