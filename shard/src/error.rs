//! Errors the data plane answers with, each knowing its HTTP status, which side was at fault,
//! and its metric label.
//!
//! Owns: the mapping from failure to status code. Must not: format responses (see
//! `http::encode`) or log.

use thiserror::Error;

/// Which side of the proxy caused a failure (for logs, metrics and retry decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Gateway,
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("request header fields too large (limit {limit} bytes)")]
    HeadersTooLarge { limit: usize },
    #[error("request body too large (limit {limit} bytes)")]
    BodyTooLarge { limit: u64 },
    #[error("request head not received within the header timeout")]
    HeaderTimeout,
    #[error("unknown server `{0}`")]
    UnknownServer(String),
    #[error("no healthy upstream available")]
    NoHealthyUpstream,
    #[error("upstream `{0}` is at its connection limit")]
    UpstreamBusy(String),
    /// The reason (an OS error) goes to the log, never to the client.
    #[error("upstream `{upstream}` unreachable")]
    UpstreamConnect { upstream: String, reason: String },
    #[error("upstream `{0}` sent a malformed response")]
    UpstreamProtocol(String),
    /// A list answer the gateway must filter (the caller's roles or the server's policy
    /// narrow it) but cannot: not JSON, encoded, or too large. It is never passed unfiltered.
    #[error("upstream `{upstream}` sent a list answer the gateway cannot filter")]
    UnfilterableList {
        upstream: String,
        reason: &'static str,
    },
    #[error("upstream `{0}` timed out")]
    UpstreamTimeout(String),
    #[error("the gateway is at its connection limit")]
    TooManyConnections,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("unsupported MCP-Protocol-Version")]
    UnsupportedProtocolVersion,
    #[error(
        "Accept must allow application/json or text/event-stream (POST), text/event-stream (GET)"
    )]
    NotAcceptable,
    #[error("Session not found ({0})")]
    SessionNotFound(crate::mcp::session::TokenError),
    /// The 2026-07-28 routing headers disagree with each other or with the body.
    #[error("{0}")]
    HeaderMismatch(&'static str),
    #[error("denied by the gateway's policy for this server: {0}")]
    PolicyDenied(String),
    #[error("the request body is not valid JSON")]
    BadJson,
    /// A body the gateway must inspect came without a length.
    #[error("this server's policy needs a request body with Content-Length")]
    LengthRequired,
    /// The request body stalled, or came slower than `server.limits.minBodyRate`.
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("method not allowed: the gateway opens no tunnels")]
    MethodNotAllowed,
    /// 501: a method longer than any registered one, or a transfer coding other than chunked.
    #[error("not supported by the gateway (method or transfer coding)")]
    NotImplemented,
    /// Answered by a custom request filter (`filter::RequestFilter`); status 400..=599.
    #[error("{message}")]
    Filtered { status: u16, message: String },
    /// No credential, or one that does not verify: 401 with the `WWW-Authenticate` lines of
    /// the schemes accepted (`challenge`, lines joined by CRLF).
    #[error("unauthorized: {}", .failure.message())]
    Unauthorized {
        failure: crate::auth::AuthFailure,
        challenge: String,
    },
    /// A valid token without a scope the gateway requires: 403 (RFC 6750 §3.1).
    #[error("forbidden: {}", crate::auth::AuthFailure::InsufficientScope.message())]
    InsufficientScope { challenge: String },
    /// The principal's roles do not allow this server or call (`security.rbac`).
    #[error("forbidden by role: {0}")]
    RoleDenied(String),
    /// The token's issuer could not be asked about it (introspection down, slow, or too
    /// many pending): 503, not the client's fault.
    #[error("the authorization server could not be reached")]
    AuthUnavailable,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::UnsupportedProtocolVersion
            | GatewayError::HeaderMismatch(_)
            | GatewayError::BadJson => 400,
            GatewayError::Forbidden(_)
            | GatewayError::PolicyDenied(_)
            | GatewayError::InsufficientScope { .. }
            | GatewayError::RoleDenied(_) => 403,
            GatewayError::Unauthorized { .. } => 401,
            GatewayError::LengthRequired => 411,
            GatewayError::NotAcceptable => 406,
            GatewayError::SessionNotFound(_) => 404,
            GatewayError::HeadersTooLarge { .. } => 431,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::HeaderTimeout | GatewayError::BodyTimeout => 408,
            GatewayError::MethodNotAllowed => 405,
            GatewayError::NotImplemented => 501,
            GatewayError::UnknownServer(_) => 404,
            GatewayError::NoHealthyUpstream
            | GatewayError::UpstreamBusy(_)
            | GatewayError::TooManyConnections
            | GatewayError::AuthUnavailable => 503,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamProtocol(_)
            | GatewayError::UnfilterableList { .. } => 502,
            GatewayError::UpstreamTimeout(_) => 504,
            GatewayError::Filtered { status, .. } => *status,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::HeaderTimeout
            | GatewayError::UnknownServer(_)
            | GatewayError::Forbidden(_)
            | GatewayError::UnsupportedProtocolVersion
            | GatewayError::NotAcceptable
            | GatewayError::SessionNotFound(_)
            | GatewayError::HeaderMismatch(_)
            | GatewayError::PolicyDenied(_)
            | GatewayError::BadJson
            | GatewayError::LengthRequired
            | GatewayError::BodyTimeout
            | GatewayError::MethodNotAllowed
            | GatewayError::NotImplemented
            | GatewayError::Filtered { .. }
            | GatewayError::Unauthorized { .. }
            | GatewayError::InsufficientScope { .. }
            | GatewayError::RoleDenied(_) => Side::Downstream,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamProtocol(_)
            | GatewayError::UnfilterableList { .. }
            | GatewayError::UpstreamTimeout(_) => Side::Upstream,
            GatewayError::NoHealthyUpstream
            | GatewayError::UpstreamBusy(_)
            | GatewayError::TooManyConnections
            | GatewayError::AuthUnavailable => Side::Gateway,
        }
    }

    /// Whether the connection must be closed after the error response (the request's
    /// framing can no longer be trusted, or the client is too slow to keep).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::BadRequest(_)
                | GatewayError::HeadersTooLarge { .. }
                | GatewayError::BodyTooLarge { .. }
                | GatewayError::HeaderTimeout
                | GatewayError::BodyTimeout
                | GatewayError::MethodNotAllowed
                | GatewayError::NotImplemented
                | GatewayError::TooManyConnections
        )
    }

    /// `Retry-After` seconds for errors a client should retry later.
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            GatewayError::NoHealthyUpstream
            | GatewayError::UpstreamBusy(_)
            | GatewayError::TooManyConnections
            | GatewayError::AuthUnavailable => Some("Retry-After: 1"),
            _ => None,
        }
    }

    /// Label for the `mcp_gateway_errors_total{kind=...}` metric.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::BadRequest(_) => ErrorKind::BadRequest,
            GatewayError::HeadersTooLarge { .. } => ErrorKind::HeadersTooLarge,
            GatewayError::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            GatewayError::HeaderTimeout => ErrorKind::HeaderTimeout,
            GatewayError::UnknownServer(_) => ErrorKind::UnknownServer,
            GatewayError::NoHealthyUpstream => ErrorKind::NoHealthyUpstream,
            GatewayError::UpstreamBusy(_) => ErrorKind::UpstreamBusy,
            GatewayError::UpstreamConnect { .. } => ErrorKind::UpstreamConnect,
            GatewayError::UpstreamProtocol(_) | GatewayError::UnfilterableList { .. } => {
                ErrorKind::UpstreamProtocol
            }
            GatewayError::UpstreamTimeout(_) => ErrorKind::UpstreamTimeout,
            GatewayError::TooManyConnections => ErrorKind::TooManyConnections,
            GatewayError::Forbidden(_) => ErrorKind::Forbidden,
            GatewayError::UnsupportedProtocolVersion => ErrorKind::UnsupportedProtocolVersion,
            GatewayError::NotAcceptable => ErrorKind::NotAcceptable,
            GatewayError::SessionNotFound(_) => ErrorKind::SessionNotFound,
            GatewayError::HeaderMismatch(_) => ErrorKind::HeaderMismatch,
            GatewayError::PolicyDenied(_) => ErrorKind::PolicyDenied,
            GatewayError::BadJson | GatewayError::LengthRequired => ErrorKind::BadRequest,
            GatewayError::BodyTimeout => ErrorKind::BodyTimeout,
            GatewayError::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            GatewayError::NotImplemented => ErrorKind::NotImplemented,
            GatewayError::Filtered { .. } => ErrorKind::Filtered,
            GatewayError::Unauthorized { .. } => ErrorKind::Unauthorized,
            GatewayError::InsufficientScope { .. } | GatewayError::RoleDenied(_) => {
                ErrorKind::AccessDenied
            }
            GatewayError::AuthUnavailable => ErrorKind::AuthUnavailable,
        }
    }

    /// What the log line adds to the client's message (an OS error's text).
    pub fn detail(&self) -> Option<&str> {
        match self {
            GatewayError::UpstreamConnect { reason, .. } => Some(reason),
            GatewayError::UnfilterableList { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Extra header lines the answer carries (CRLF between lines, none after the last).
    pub fn extra_lines(&self) -> Option<&str> {
        match self {
            GatewayError::MethodNotAllowed => {
                Some("Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            }
            GatewayError::Unauthorized { challenge, .. }
            | GatewayError::InsufficientScope { challenge } => {
                Some(challenge.as_str()).filter(|c| !c.is_empty())
            }
            _ => None,
        }
    }

    /// The JSON-RPC error code used on MCP paths.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            GatewayError::SessionNotFound(_) => -32001,
            // The spec's HEADER_MISMATCH.
            GatewayError::HeaderMismatch(_) => -32020,
            GatewayError::BadJson => -32700,
            // Server-defined range: refused by the gateway's authorization.
            GatewayError::PolicyDenied(_)
            | GatewayError::Filtered { .. }
            | GatewayError::RoleDenied(_)
            | GatewayError::InsufficientScope { .. }
            | GatewayError::Unauthorized { .. } => -32003,
            GatewayError::LengthRequired
            | GatewayError::BadRequest(_)
            | GatewayError::UnsupportedProtocolVersion
            | GatewayError::NotAcceptable
            | GatewayError::MethodNotAllowed
            | GatewayError::NotImplemented => -32600,
            _ => -32603,
        }
    }
}

/// Error kinds as metric labels; `ALL` fixes their order in metric arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    HeadersTooLarge,
    BodyTooLarge,
    HeaderTimeout,
    UnknownServer,
    NoHealthyUpstream,
    UpstreamBusy,
    UpstreamConnect,
    UpstreamProtocol,
    UpstreamTimeout,
    TooManyConnections,
    Forbidden,
    UnsupportedProtocolVersion,
    NotAcceptable,
    SessionNotFound,
    HeaderMismatch,
    PolicyDenied,
    BodyTimeout,
    MethodNotAllowed,
    NotImplemented,
    /// A response the client did not read within `server.limits.sendTimeout` (no answer
    /// is possible: the response was under way).
    SendTimeout,
    /// Answered by a custom request filter.
    Filtered,
    /// No or bad credentials (401).
    Unauthorized,
    /// Authenticated, but its roles or scopes do not allow the request (403).
    AccessDenied,
    /// A token's issuer could not be asked about it (503).
    AuthUnavailable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 25] = [
        ErrorKind::BadRequest,
        ErrorKind::HeadersTooLarge,
        ErrorKind::BodyTooLarge,
        ErrorKind::HeaderTimeout,
        ErrorKind::UnknownServer,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::UpstreamBusy,
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamProtocol,
        ErrorKind::UpstreamTimeout,
        ErrorKind::TooManyConnections,
        ErrorKind::Forbidden,
        ErrorKind::UnsupportedProtocolVersion,
        ErrorKind::NotAcceptable,
        ErrorKind::SessionNotFound,
        ErrorKind::HeaderMismatch,
        ErrorKind::PolicyDenied,
        ErrorKind::BodyTimeout,
        ErrorKind::MethodNotAllowed,
        ErrorKind::NotImplemented,
        ErrorKind::SendTimeout,
        ErrorKind::Filtered,
        ErrorKind::Unauthorized,
        ErrorKind::AccessDenied,
        ErrorKind::AuthUnavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::HeaderTimeout => "header_timeout",
            ErrorKind::UnknownServer => "unknown_server",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::UpstreamBusy => "upstream_busy",
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::TooManyConnections => "too_many_connections",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::UnsupportedProtocolVersion => "unsupported_protocol_version",
            ErrorKind::NotAcceptable => "not_acceptable",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::HeaderMismatch => "header_mismatch",
            ErrorKind::PolicyDenied => "policy_denied",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::SendTimeout => "send_timeout",
            ErrorKind::Filtered => "filtered",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::AuthUnavailable => "auth_unavailable",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
