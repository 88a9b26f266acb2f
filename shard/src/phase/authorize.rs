//! Phase 5, authorization: whether the principal may reach the route (403 otherwise).
//!
//! Nothing to decide until authentication names principals; per-server MCP policies
//! (which methods and tools a server allows) are checked with the chosen server in
//! `choose`. This module is where route-level authorization plugs in.
//!
//! Owns: the place of authorization in the order. Must not: authenticate.

use super::{Request, Step};
use crate::context::RequestCtx;

pub fn run(_req: &Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    Step::Continue
}
