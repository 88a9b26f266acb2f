//! The gateway's own answers: its pages (those that show counts once the management shard
//! has merged what came before the read), CORS preflights, and its errors (JSON, or JSON-RPC
//! error objects on MCP paths), each with the configured security headers
//! (`security.headers`) and the metrics it counts.
//!
//! Owns: how those responses are written. Must not: decide what to answer (the pipeline
//! does) or talk to upstreams.

use crate::client::Conn;
use crate::context::{ErrorStyle, RequestCtx};
use crate::error::GatewayError;
use crate::http::encode::{self, LocalResponse};
use crate::mcp;
use crate::state::Counted;

use crate::router::LocalPage;
use crate::snapshot::Snapshot;
use crate::state::Shard;
use std::time::{Duration, Instant};

/// How often a page read that waits for a merge looks for newer pages.
const PAGE_POLL: Duration = Duration::from_millis(10);
/// How many ticks a page read waits at most for pages merged after it arrived. Two are
/// expected at worst (its shard's next tick asks for a render, the management shard's next
/// tick after that renders); the other two are slack for slow renders and busy cores.
const PAGE_WAIT_TICKS: u32 = 4;
/// ...and at most this long whatever `monitoring.metricsInterval` is: an HTTP client may not
/// wait longer, and an older page is better than none.
const PAGE_WAIT_MAX: Duration = Duration::from_secs(10);

/// Serves one of the gateway's pages. Those that show counts first wait (`await_merge`)
/// for pages merged after the read arrived, so they show every request that completed a
/// tick before it, on any shard, and the read itself.
pub async fn respond_page(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    page: LocalPage,
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let keep_open = p.keep_alive && body_skipped;
    let waits = page.waits_for_merge();
    let waited = if waits {
        await_merge(shard).await
    } else {
        Duration::ZERO
    };
    // Encoded while borrowed: cloning the `Arc` of pages the management shard sends every
    // shard would touch a shared counter per request.
    let Some(status) = encode_page(shard, p, page, keep_open, out) else {
        let err = GatewayError::BadRequest("page unavailable");
        return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
    };
    let written = out.len() as u64;
    let ok = conn.send(out).await.is_ok();
    // The wait for a merge is not the gateway's latency: counted, a scrape every 15 s
    // would set the p99 of an idle gateway to a tick.
    let latency = p.started.elapsed().saturating_sub(waited).as_micros() as u64;
    let mut m = shard.metrics.borrow_mut();
    m.response(status, latency, p.head_len as u64, written);
    if !waits {
        // Keeps the next read's counts of `/health` about as old as the reads are apart.
        m.page_wanted();
    }
    ok && keep_open
}

/// Waits until this shard holds pages whose merge began after its first tick since the
/// read arrived: those count everything this shard counted before that tick (the read
/// itself too), and every request another shard completed a tick before the read (each
/// shard sends its counts up at every tick). While it waits, its shard's ticks ask the
/// management shard for a render (`Shard::page_waiters`) and it applies the commands sent
/// down itself, so a render is served within `PAGE_POLL`. Gives up when the shard drains
/// or after `PAGE_WAIT_TICKS` ticks (at most `PAGE_WAIT_MAX`); then the pages it has are
/// served. Returns how long it waited.
async fn await_merge(shard: &Shard) -> Duration {
    let asked = Instant::now();
    let tick = shard.snapshot().config.monitoring.metrics_tick;
    let bound = (tick * PAGE_WAIT_TICKS).min(PAGE_WAIT_MAX);
    let _waiting = Counted::new(&shard.page_waiters);
    // When this shard's first tick after the read sent its counts up.
    let mut reported: Option<Instant> = None;
    loop {
        shard.apply_commands();
        let last_report = shard.reported_at.get();
        if reported.is_none() && last_report > asked {
            reported = Some(last_report);
        }
        let merged = reported.is_some_and(|r| shard.pages.borrow().merged_at >= r);
        let waited = asked.elapsed();
        if merged || shard.draining.get() {
            return waited;
        }
        if waited >= bound {
            tracing::debug!(
                shard = shard.id,
                waited_ms = waited.as_millis() as u64,
                "no pages merged after a page read arrived: serving older ones"
            );
            return waited;
        }
        monoio::time::sleep(PAGE_POLL).await;
    }
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
            security: security_lines(&p.snap),
        },
    );
    if p.is_head {
        out.truncate(out.len() - page.body.len());
    }
    Some(page.status)
}

/// The `security.headers` lines of the gateway's own answers (empty when turned off).
fn security_lines(snap: &Snapshot) -> &[String] {
    // `security.headers.hsts` joins these on answers over TLS, once TLS is served.
    &snap.config.security.headers.lines
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

/// Answers RFC 9728 protected-resource metadata: public, cacheable, readable from any
/// origin (browser-based MCP clients discover it before they have a token).
pub async fn respond_metadata(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    out: &mut Vec<u8>,
    body_skipped: bool,
) -> bool {
    let Some(body) = p.snap.auth.keys.resource_metadata.as_deref() else {
        let err = GatewayError::BadRequest("no OAuth configuration");
        return respond_error(shard, conn, &err, &p.error_style(), false, out).await;
    };
    let extra = [
        "Cache-Control: max-age=300",
        "Access-Control-Allow-Origin: *",
    ];
    let answer = Answer {
        status: 200,
        content_type: "application/json",
        body,
        extra: &extra,
    };
    respond_local(shard, conn, p, &answer, out, body_skipped).await
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
    let answer = Answer {
        status: 204,
        content_type: "text/plain",
        body: b"",
        extra,
    };
    respond_local(shard, conn, p, &answer, out, body_skipped).await
}

/// One of the gateway's own answers, besides pages and errors.
struct Answer<'a> {
    status: u16,
    content_type: &'static str,
    body: &'a [u8],
    extra: &'a [&'a str],
}

/// Writes `answer` (its head only to a HEAD request), with the security headers, and
/// counts it; returns whether the connection stays open.
async fn respond_local(
    shard: &Shard,
    conn: &mut Conn,
    p: &RequestCtx,
    answer: &Answer<'_>,
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
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            close: !keep_open,
            request_id: p.request_id.as_bytes(),
            extra: answer.extra,
            security: security_lines(&p.snap),
        },
    );
    if p.is_head {
        out.truncate(out.len() - answer.body.len());
    }
    let written = out.len() as u64;
    let ok = conn.send(out).await.is_ok();
    let latency = p.started.elapsed().as_micros() as u64;
    shard
        .metrics
        .borrow_mut()
        .response(answer.status, latency, p.head_len as u64, written);
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
        .chain(err.extra_lines())
        .map(str::to_string)
        .collect();
    if let Some(origin) = style.cors_origin {
        // A browser page must be able to read the error (e.g. "re-initialize").
        lines.extend(cors_lines(origin));
    }
    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
    // The current generation: a refusal before any request was parsed has none of its own.
    let snap = shard.snapshot();
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
            security: security_lines(&snap),
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
