//! Phase 6, rate limiting: whether the client (or principal, or route) is over its budget
//! (429 with `Retry-After`).
//!
//! Not built yet (the config's `security.rateLimit` is read but not enforced, and the
//! README says so): every request continues. This module is where it plugs in, keyed by
//! the client address or, when authenticated, the principal's `rate_key`.
//!
//! Owns: the place of rate limiting in the order. Must not: share counters between shards
//! per request.

use super::{Request, Step};
use crate::context::RequestCtx;

pub fn run(_req: &Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    Step::Continue
}
