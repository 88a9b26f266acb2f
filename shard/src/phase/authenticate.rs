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
//! Owns: the place of authentication in the order, its metric and log line. Must not:
//! decide what a principal may do (`authorize`, and RBAC in `choose`).

use super::{Request, Step};
use crate::auth::{self, oauth, AuthFailure};
use crate::context::{Action, RequestCtx};
use crate::error::GatewayError;
use crate::router::Route;
use crate::state::Shard;

pub fn run(req: &Request<'_, '_, '_>, shard: &Shard, ctx: &mut RequestCtx) -> Step {
    let snap = ctx.snap.clone();
    let settings = &snap.config.security.auth;
    if !needs_credentials(settings, req.head.path()) {
        return Step::Continue;
    }
    let (method, result) = auth::authenticate(req.head, &snap.config, &snap.auth);
    let outcome = result.as_ref().map(|_| ()).map_err(|f| *f);
    shard
        .metrics
        .borrow_mut()
        .auth(auth::method_row(method), auth::result_column(outcome));
    match result {
        Ok(principal) => {
            tracing::debug!(
                shard = shard.id,
                subject = &*principal.subject,
                method = principal.method.name(),
                roles = %principal.roles_text(),
                "authenticated"
            );
            ctx.principal = Some(principal);
            match req.route {
                Route::Local(page) => Step::Answer(Action::Local(page)),
                _ => Step::Continue,
            }
        }
        Err(AuthFailure::InsufficientScope) => {
            let challenge = settings
                .oauth2
                .as_ref()
                .map(oauth::insufficient_scope)
                .unwrap_or_default();
            Step::Answer(Action::Reject(GatewayError::InsufficientScope {
                challenge,
            }))
        }
        Err(failure) => Step::Answer(Action::Reject(GatewayError::Unauthorized {
            failure,
            challenge: snap.auth.keys.challenges.join("\r\n"),
        })),
    }
}

/// Whether a request for `path` must carry credentials.
pub fn needs_credentials(settings: &mcp_gateway_config::Authentication, path: &str) -> bool {
    settings.enabled && !settings.is_public(path)
}
