//! Phase 9, the cache lookup: a stored answer for this request, served without going
//! upstream.
//!
//! Not built yet (the config's `cache` section is read but not used, and the README says
//! so): every request continues to the upstream. This module is where the lookup plugs in
//! (storing answers would be a response phase).
//!
//! Owns: the place of the cache lookup in the order. Must not: cache MCP exchanges that
//! carry a session.

use super::{Request, Step};
use crate::context::RequestCtx;

pub fn lookup(_req: &Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    Step::Continue
}
