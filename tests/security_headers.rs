//! `security.headers`: the gateway's own answers on the data port (pages, errors, refusals
//! before a request, CORS preflights, `OPTIONS *`) and on the management port carry the
//! configured headers; the dashboard gets its own `Content-Security-Policy`; proxied
//! responses are untouched unless `upstream: true`, which fills in only the headers the
//! upstream did not set; answers of the process's own hosts (the SSE bridge, stdio servers)
//! count as the gateway's; custom and empty values, `enabled: false`, and a reload.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The defaults, as sent.
const DEFAULTS: [(&str, &str); 5] = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "0"),
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
];

fn count(r: &Response, name: &str) -> usize {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}

/// Every default header, once, with its value; never `Strict-Transport-Security` (no TLS).
fn assert_defaults(r: &Response, what: &str) {
    for (name, value) in DEFAULTS {
        assert_eq!(r.header(name), Some(value), "{what}: {name}: {r:?}");
        assert_eq!(count(r, name), 1, "{what}: {name} once: {r:?}");
    }
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "{what}: no HSTS without TLS: {r:?}"
    );
}

/// None of the security headers.
fn assert_none(r: &Response, what: &str) {
    for (name, _) in DEFAULTS {
        assert_eq!(r.header(name), None, "{what}: {name}: {r:?}");
    }
    assert_eq!(r.header("strict-transport-security"), None, "{what}: {r:?}");
}

fn with_headers(servers: Value, headers: Value) -> Value {
    let mut cfg = config(servers);
    cfg["security"] = json!({"headers": headers});
    cfg
}

fn mgmt_get(gw: &Gateway, path: &str) -> Response {
    Client::connect(gw.mgmt_addr()).request("GET", path, &[], b"")
}

/// An upstream that sets one security header itself (and a body, to check framing).
fn upstream_with_frame_options() -> Upstream {
    Upstream::start(|req, s| {
        if req.target.ends_with("/chunked") {
            let head = [
                ("Content-Type", "text/plain"),
                ("X-Frame-Options", "SAMEORIGIN"),
            ];
            if respond_chunked_head(s, 200, &head).is_err() {
                return Flow::Close;
            }
            let _ = write_chunk(s, b"chunk-one ");
            let _ = write_chunk(s, b"chunk-two");
            let _ = write_chunk(s, b"");
            return Flow::KeepAlive;
        }
        respond(
            s,
            req,
            200,
            &[
                ("Content-Type", "text/plain"),
                ("X-Frame-Options", "SAMEORIGIN"),
                // Made hop-by-hop: the client never sees it, so the gateway's is added.
                ("Referrer-Policy", "unsafe-url"),
                ("Connection", "Referrer-Policy"),
            ],
            b"from upstream",
        );
        Flow::KeepAlive
    })
}

#[test]
fn own_answers_on_the_data_port_carry_the_defaults() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([
        server("a", &up.url("")),
        server("down", &format!("http://127.0.0.1:{}", closed_port())),
    ])));

    let r = gw.get("/health");
    assert_eq!(r.status, 200, "{r:?}");
    assert_defaults(&r, "/health");
    let r = gw.client().request("HEAD", "/health", &[], b"");
    assert_defaults(&r, "HEAD /health");
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert_defaults(&r, "/metrics");

    // An error (unknown server: a JSON-RPC error on an MCP path), `OPTIONS *`, a preflight.
    let r = gw.get("/mcp/nope");
    assert_eq!(r.status, 404, "{r:?}");
    assert_defaults(&r, "404");
    let r = gw.client().request("OPTIONS", "*", &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_defaults(&r, "OPTIONS *");
    let r = gw.client().request(
        "OPTIONS",
        "/mcp/a",
        &[
            ("Origin", "http://localhost:5173"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173"),
        "{r:?}"
    );
    assert_defaults(&r, "CORS preflight");

    // A refusal before any request was parsed (garbage): 400 and close.
    let mut raw = gw.client();
    raw.send(b"\x00\x01hello\r\n\r\n");
    let r = raw.read_response().expect("a 400 response");
    assert_eq!(r.status, 400, "{r:?}");
    assert_defaults(&r, "refused head");

    // An upstream that cannot be reached: the gateway's 502.
    let r = gw.get("/mcp/down/x");
    assert_eq!(r.status, 502, "{r:?}");
    assert_defaults(&r, "502");
}

#[test]
fn proxied_responses_are_untouched_by_default() {
    let up = upstream_with_frame_options();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.get("/mcp/a/plain");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "from upstream");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{r:?}");
    assert_eq!(count(&r, "x-frame-options"), 1, "{r:?}");
    for name in [
        "X-Content-Type-Options",
        "X-XSS-Protection",
        "Content-Security-Policy",
        "Referrer-Policy",
    ] {
        assert_eq!(r.header(name), None, "{name}: {r:?}");
    }
    let r = c.get("/mcp/a/chunked");
    assert_eq!(r.text(), "chunk-one chunk-two");
    assert_eq!(r.header("content-security-policy"), None, "{r:?}");
}

#[test]
fn upstream_true_adds_what_the_upstream_lacks() {
    let up = upstream_with_frame_options();
    let gw = Gateway::start(&with_headers(
        json!([server("a", &up.url(""))]),
        json!({"upstream": true}),
    ));
    let mut c = gw.client();
    for _ in 0..2 {
        let r = c.get("/mcp/a/plain");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "from upstream", "framing unchanged");
        assert_eq!(r.header("content-length"), Some("13"), "{r:?}");
        // The upstream's own value wins.
        assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{r:?}");
        assert_eq!(count(&r, "x-frame-options"), 1, "{r:?}");
        // Dropped as hop-by-hop, so the gateway's is there instead.
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{r:?}");
        assert_eq!(count(&r, "referrer-policy"), 1, "{r:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
        assert_eq!(r.header("x-xss-protection"), Some("0"), "{r:?}");
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{r:?}"
        );
        assert!(!r.closes(), "keep-alive unchanged: {r:?}");
    }
    let r = c.get("/mcp/a/chunked");
    assert_eq!(r.text(), "chunk-one chunk-two");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    assert_eq!(
        up.accepted(),
        1,
        "one pooled upstream connection throughout"
    );
}

#[test]
fn custom_and_empty_values() {
    let up = Upstream::echo();
    let gw = Gateway::start(&with_headers(
        json!([server("a", &up.url(""))]),
        json!({
            "xFrameOptions": "SAMEORIGIN",
            "contentSecurityPolicy": "default-src 'self'",
            "referrerPolicy": "",
            "xXssProtection": "   "
        }),
    ));
    for (port, r) in [
        ("data", gw.get("/health")),
        ("data 404", gw.get("/mcp/nope")),
        ("management", mgmt_get(&gw, "/health")),
    ] {
        assert_eq!(
            r.header("x-frame-options"),
            Some("SAMEORIGIN"),
            "{port}: {r:?}"
        );
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'self'"),
            "{port}: {r:?}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{port}: {r:?}"
        );
        assert_eq!(r.header("referrer-policy"), None, "{port}: left out: {r:?}");
        assert_eq!(
            r.header("x-xss-protection"),
            None,
            "{port}: left out: {r:?}"
        );
    }
    // The dashboard's own policy still replaces the configured one.
    let r = mgmt_get(&gw, "/");
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{r:?}");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{r:?}");
}

#[test]
fn disabled_adds_nothing_anywhere() {
    let up = upstream_with_frame_options();
    let gw = Gateway::start(&with_headers(
        json!([server("a", &up.url(""))]),
        json!({"enabled": false, "upstream": true}),
    ));
    assert_none(&gw.get("/health"), "page");
    assert_none(&gw.get("/mcp/nope"), "404");
    let r = gw.get("/mcp/a/plain");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), None, "{r:?}");
    assert_none(&mgmt_get(&gw, "/health"), "management page");
    let r = mgmt_get(&gw, "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert_none(&r, "dashboard");
}

#[test]
fn management_port_answers_and_dashboard_policy() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    for path in ["/health", "/stats", "/api/openapi.json", "/nope"] {
        let r = mgmt_get(&gw, path);
        assert_defaults(&r, path);
    }
    let r = Client::connect(gw.mgmt_addr()).request("DELETE", "/health", &[], b"");
    assert_eq!(r.status, 405, "{r:?}");
    assert_defaults(&r, "405");

    for path in ["/", "/dashboard"] {
        let r = mgmt_get(&gw, path);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.text().contains("<script>"), "the dashboard page");
        assert_eq!(count(&r, "content-security-policy"), 1, "{r:?}");
        assert_eq!(
            r.header("content-security-policy"),
            Some(
                "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'"
            ),
            "{r:?}"
        );
        for (name, value) in DEFAULTS {
            if name != "Content-Security-Policy" {
                assert_eq!(r.header(name), Some(value), "dashboard {name}: {r:?}");
            }
        }
    }
}

#[test]
fn answers_of_the_gateways_own_hosts_carry_them() {
    // Neither host is an upstream of someone else: upstream stays false.
    let gw = Gateway::start(&config(json!([
        server("modern", &format!("http://127.0.0.1:{}", closed_port())),
        {"id": "missing", "transport": "stdio", "command": "/nonexistent/mcp-stdio-server"},
    ])));
    // The SSE bridge: a message for a bridged session it does not know.
    let r = gw.client().post(
        "/sse/modern/message?t=b.0123456789abcdef0123456789abcdef",
        &[("Content-Type", "application/json")],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_defaults(&r, "SSE bridge");

    // The stdio host: a program that cannot start.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let r = gw.client().post(
        "/mcp/missing",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        init.to_string().as_bytes(),
    );
    assert_eq!(r.status, 502, "{r:?}");
    assert_defaults(&r, "stdio host");
}

#[test]
fn a_reload_changes_them_on_both_ports() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    let gw = Gateway::start(&cfg);
    assert_eq!(gw.get("/health").header("x-frame-options"), Some("DENY"));
    cfg["security"] = json!({"headers": {"xFrameOptions": "SAMEORIGIN"}});
    let path = gw.dir.path().join("gateway.json");
    let tmp = gw.dir.path().join(".gateway.json.tmp");
    let mut f = std::fs::File::create(&tmp).expect("create");
    f.write_all(cfg.to_string().as_bytes()).expect("write");
    drop(f);
    std::fs::rename(&tmp, &path).expect("rename");
    let changed = |r: Response| (r.header("x-frame-options") == Some("SAMEORIGIN")).then_some(());
    assert!(
        eventually(Duration::from_secs(10), || changed(gw.get("/health"))).is_some(),
        "data port after the reload: {:?}",
        gw.get("/health")
    );
    assert!(
        eventually(Duration::from_secs(10), || changed(mgmt_get(
            &gw, "/health"
        )))
        .is_some(),
        "management port after the reload: {:?}",
        mgmt_get(&gw, "/health")
    );
}
