//! Phase 4, authentication: who sent the request (an API key, a JWT, an OAuth 2.1 access
//! token), recorded in the context as its principal, or a 401 with the `WWW-Authenticate`
//! challenges of the schemes accepted (403 `insufficient_scope` for a token without a
//! required scope).
//!
//! With `security.authentication.enabled` off, or on a `public` path, every request
//! continues without a principal. The gateway's own pages on the data port need
//! credentials like any other path unless they are public (`/health` is by default): the
//! route phase leaves them to this one, which answers them once authenticated.
//!
//! An opaque token is not decided here: the request's action becomes
//! [`Action::Introspect`], `pipeline::settle` asks the issuer (awaiting), then runs the
//! phases again with the principal it vouched for.
//!
//! Owns: the place of authentication in the order, its metric and log line. Must not:
//! decide what a principal may do (`authorize`, and RBAC in `choose`).

use super::{Request, Step};
use crate::auth::{self, oauth, AuthFailure, Principal, Verdict};
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::router::Route;
use crate::snapshot::Snapshot;
use crate::state::Shard;
use mcp_gateway_config::AuthMethod;
use std::rc::Rc;

pub fn run(req: &Request<'_, '_, '_>, shard: &Shard, ctx: &mut RequestCtx) -> Step {
    // Off: one flag read, no snapshot clone.
    if !ctx.snap.config.security.auth.enabled {
        return Step::Continue;
    }
    let snap = ctx.snap.clone();
    let settings = &snap.config.security.auth;
    if !needs_credentials(settings, req.head.path(), &req.route) {
        return Step::Continue;
    }
    if ctx.principal.is_none() {
        let (method, verdict) = auth::authenticate(req.head, &snap.config, &snap.auth);
        match verdict {
            Verdict::Known(principal) => accepted(shard, ctx, principal),
            Verdict::Refused(failure) => {
                count(shard, method, Err(failure));
                return Step::Answer(Action::Reject(refusal(&snap, failure)));
            }
            Verdict::Introspect(issuer) => return Step::Answer(Action::Introspect(issuer)),
        }
    }
    match req.route {
        Route::Local(page) => Step::Answer(Action::Local(page)),
        Route::UnknownServer(id) => {
            Step::Answer(Action::Reject(GatewayError::UnknownServer(id.to_string())))
        }
        _ => Step::Continue,
    }
}

/// Records an authenticated principal (counted, logged at debug).
pub fn accepted(shard: &Shard, ctx: &mut RequestCtx, principal: Rc<Principal>) {
    count(shard, Some(principal.method), Ok(()));
    tracing::debug!(
        shard = shard.id,
        subject = &*principal.subject,
        method = principal.method.name(),
        roles = %principal.roles_text(),
        "authenticated"
    );
    ctx.principal = Some(principal);
}

/// Counts one outcome in `mcp_gateway_auth_total`.
pub fn count(shard: &Shard, method: Option<AuthMethod>, outcome: Result<(), AuthFailure>) {
    shard
        .metrics
        .borrow_mut()
        .auth(auth::method_row(method), auth::result_column(outcome));
}

/// The error a failure is answered with: 401 with the challenges, or 403 for a scope.
pub fn refusal(snap: &Snapshot, failure: AuthFailure) -> GatewayError {
    if failure == AuthFailure::InsufficientScope {
        let challenge = snap
            .config
            .security
            .auth
            .oauth2
            .as_ref()
            .map(oauth::insufficient_scope)
            .unwrap_or_default();
        return GatewayError::InsufficientScope { challenge };
    }
    GatewayError::Unauthorized {
        failure,
        challenge: snap.auth.keys.challenges.join("\r\n"),
    }
}

/// Whether a request for `path`, routed to `route`, must carry credentials. The path of one
/// of the gateway's pages is public only as that page (GET, HEAD): `POST /health` goes to an
/// upstream, and `public: ["/health"]` is not meant to open an upstream's path.
pub fn needs_credentials(
    settings: &mcp_gateway_config::Authentication,
    path: &str,
    route: &Route<'_>,
) -> bool {
    if !settings.enabled {
        return false;
    }
    let page_path = crate::router::LocalPage::from_path(path).is_some();
    let public = settings.is_public(path) && (!page_path || matches!(route, Route::Local(_)));
    !public
}
