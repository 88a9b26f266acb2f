//! The gateway's own answers: its pages, CORS preflights, and its errors (JSON, or JSON-RPC
//! error objects on MCP paths), each with the metrics it counts.
//!
//! Owns: how those responses are written. Must not: decide what to answer (the pipeline
//! does) or talk to upstreams.

use crate::client::Conn;
use crate::context::RequestCtx;
use crate::error::GatewayError;
use crate::http::encode::{self, LocalResponse};
use crate::mcp;
use crate::request_id::RequestId;

use crate::router::LocalPage;
use crate::state::Shard;

pub async fn respond_page(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    page: LocalPage,
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let keep_open = p.keep_alive && body_skipped;
    // Encoded while borrowed: cloning the `Arc` of pages the management shard sends every
    // shard would touch a shared counter per request.
    let Some(status) = encode_page(shard, p, page, keep_open, out) else {
        let err = GatewayError::BadRequest("page unavailable");
        return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
    };
    let written = out.len() as u64;
    let ok = conn.send(out).await.is_ok();
    let latency = p.started.elapsed().as_micros() as u64;
    let mut m = shard.metrics.borrow_mut();
    m.response(status, latency, p.head_len as u64, written);
    m.page_served();
    ok && keep_open
}

/// Writes the page's response into `out`; its status, or `None` if it is not rendered.
fn encode_page(
    shard: &Shard,
    p: &RequestCtx,
    page: LocalPage,
    keep_open: bool,
    out: &mut Vec<u8>,
) -> Option<u16> {
    let pages = shard.pages.borrow();
    let page = pages.get(page)?;
    out.clear();
    encode::local_response(
        out,
        shard.date.borrow().as_bytes(),
        &LocalResponse {
            status: page.status,
            content_type: page.content_type,
            body: &page.body,
            close: !keep_open,
            request_id: p.request_id.as_bytes(),
            extra: &["Cache-Control: no-store"],
        },
    );
    if p.is_head {
        out.truncate(out.len() - page.body.len());
    }
    Some(page.status)
}

/// CORS headers for a response to an allowed browser origin.
pub fn cors_lines(origin: &[u8]) -> Vec<String> {
    vec![
        format!(
            "Access-Control-Allow-Origin: {}",
            String::from_utf8_lossy(origin)
        ),
        format!(
            "Access-Control-Expose-Headers: {}",
            mcp::headers::CORS_EXPOSE_HEADERS
        ),
        "Vary: Origin".to_string(),
    ]
}

/// How the gateway's own error is written.
pub struct ErrorStyle<'a> {
    pub request_id: &'a RequestId,
    /// A JSON-RPC error object (MCP paths) rather than `{"error":{...}}`.
    pub jsonrpc: bool,
    /// An allowed browser origin: CORS headers too.
    pub cors_origin: Option<&'a [u8]>,
    /// The answer to a HEAD request: the head only (its `Content-Length` still the body's).
    pub head_only: bool,
}

impl<'a> ErrorStyle<'a> {
    pub fn plain(request_id: &'a RequestId) -> Self {
        ErrorStyle {
            request_id,
            jsonrpc: false,
            cors_origin: None,
            head_only: false,
        }
    }
}

/// Answers a CORS preflight for an MCP endpoint from an allowed origin.
pub async fn respond_preflight(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    origin: &[u8],
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let mut lines = cors_lines(origin);
    lines.extend([
        format!(
            "Access-Control-Allow-Methods: {}",
            mcp::headers::CORS_ALLOW_METHODS
        ),
        format!(
            "Access-Control-Allow-Headers: {}",
            mcp::headers::CORS_ALLOW_HEADERS
        ),
        "Access-Control-Max-Age: 86400".to_string(),
    ]);
    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
    respond_no_content(shard, conn, p, &extra, out, body_skipped).await
}

/// Answers `OPTIONS *` (a question about the gateway, not about any upstream's resource).
pub async fn respond_options(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let allow = ["Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"];
    respond_no_content(shard, conn, p, &allow, out, body_skipped).await
}

/// A 204 with the `extra` header lines; returns whether the connection stays open.
async fn respond_no_content(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    extra: &[&str],
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let keep_open = p.keep_alive && body_skipped;
    out.clear();
    let date = shard.date.borrow().clone();
    encode::local_response(
        out,
        date.as_bytes(),
        &LocalResponse {
            status: 204,
            content_type: "text/plain",
            body: b"",
            close: !keep_open,
            request_id: p.request_id.as_bytes(),
            extra,
        },
    );
    let written = out.len() as u64;
    let ok = conn.send(out).await.is_ok();
    let latency = p.started.elapsed().as_micros() as u64;
    shard
        .metrics
        .borrow_mut()
        .response(204, latency, p.head_len as u64, written);
    ok && keep_open
}

/// Writes the gateway's own JSON error (a JSON-RPC error object on MCP paths); returns
/// whether the connection stays open.
pub async fn respond_error(
    shard: &Shard,
    conn: &mut Conn,
    err: &GatewayError,
    style: &ErrorStyle<'_>,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> bool {
    let request_id = style.request_id;
    let status = err.status();
    let keep_open = keep_alive && !err.closes_connection();
    let detail = err.detail().unwrap_or("");
    tracing::info!(shard = shard.id, request_id = %String::from_utf8_lossy(request_id.as_bytes()), status, error = %err, detail, peer = %conn.peer_ip, "request refused");
    let message = err.to_string();
    let body = if style.jsonrpc {
        encode::jsonrpc_error_body(err.jsonrpc_code(), &message, status, request_id.as_bytes())
    } else {
        encode::error_body(status, &message, request_id.as_bytes())
    };
    out.clear();
    let date = shard.date.borrow().clone();
    let mut lines: Vec<String> = err
        .retry_after()
        .into_iter()
        .chain(err.allow())
        .map(str::to_string)
        .collect();
    if let Some(origin) = style.cors_origin {
        // A browser page must be able to read the error (e.g. "re-initialize").
        lines.extend(cors_lines(origin));
    }
    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
    encode::local_response(
        out,
        date.as_bytes(),
        &LocalResponse {
            status,
            content_type: "application/json",
            body: &body,
            close: !keep_open,
            request_id: request_id.as_bytes(),
            extra: &extra,
        },
    );
    if style.head_only {
        out.truncate(out.len() - body.len());
    }
    let written = out.len() as u64;
    let ok = conn.send(out).await.is_ok();
    {
        let mut m = shard.metrics.borrow_mut();
        m.error(err.kind());
        m.response(status, 0, 0, written);
    }
    ok && keep_open
}
