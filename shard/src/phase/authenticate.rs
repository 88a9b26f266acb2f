//! Phase 4, authentication: who sent the request (a JWT, an API key, an OAuth2 token, a
//! client certificate), recorded in the context as its principal, or a 401.
//!
//! No authentication method is built yet (the config's `security.authentication` is read
//! but not enforced, and the README says so): every request continues, without a
//! principal. This module is where it plugs in, so that feature adds a module, not a
//! branch elsewhere.
//!
//! Owns: the place of authentication in the order. Must not: decide what a principal may do
//! (that is `authorize`).

use super::{Request, Step};
use crate::context::RequestCtx;

pub fn run(_req: &Request<'_, '_, '_>, _ctx: &mut RequestCtx) -> Step {
    Step::Continue
}
