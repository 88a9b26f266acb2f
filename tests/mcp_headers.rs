//! The MCP Streamable HTTP header rules at the gateway, over real sockets:
//! `MCP-Protocol-Version`, `Origin` (DNS-rebinding defence) and CORS, `Accept`, the
//! client's `Authorization` (kept unless `forwardAuth`), per-server `headers` with `${ENV}`
//! expansion, and JSON-RPC batches passing through unchanged.

mod common;
mod mcp_support;

use common::*;
use mcp_support::*;
use serde_json::{json, Value};

fn one_server_gateway(up: &Replica) -> Gateway {
    start_gateway(&config_with_secret(vec![replica_server(up, None)], SECRET))
}

fn ping() -> Vec<u8> {
    rpc("ping", 1, json!({}))
}

/// Asserts a gateway refusal on an MCP path: that status, a JSON-RPC error body, nothing
/// forwarded.
fn assert_refused(r: &Response, status: u16, up: &Replica, before: usize, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let v = assert_json_error(r, status);
    assert_eq!(v["jsonrpc"], "2.0", "{what}: {v}");
    assert!(v["id"].is_null(), "{what}: {v}");
    assert_eq!(
        up.up.request_count(),
        before,
        "{what}: the request reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------
// MCP-Protocol-Version
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_protocol_version_gets_400_and_released_ones_pass() {
    let up = Replica::start("pv");
    let gw = one_server_gateway(&up);
    let mut c = gw.client();

    let before = up.up.request_count();
    let r = c.post(
        "/mcp/pv",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2099-01-01"),
        ],
        &ping(),
    );
    assert_refused(&r, 400, &up, before, "MCP-Protocol-Version 2099-01-01");
    assert_eq!(r.json()["error"]["code"], -32600, "{r:?}");

    for version in [
        "2024-11-05",
        "2025-03-26",
        "2025-06-18",
        "2025-11-25",
        "2026-07-28",
    ] {
        let mut c = gw.client();
        let r = c.post(
            "/mcp/pv",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", version),
            ],
            &ping(),
        );
        assert_eq!(r.status, 200, "version {version}: {r:?}");
        assert_eq!(
            up.up.last().header("mcp-protocol-version"),
            Some(version),
            "the version header is forwarded as sent"
        );
    }
    // No version header at all is fine too (first request of a session).
    let r = gw.client().post(
        "/mcp/pv",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        &ping(),
    );
    assert_eq!(r.status, 200, "no MCP-Protocol-Version: {r:?}");
}

// ---------------------------------------------------------------------------------------
// Origin and CORS
// ---------------------------------------------------------------------------------------

#[test]
fn loopback_gateway_without_allowed_origins_admits_only_local_pages() {
    let up = Replica::start("o");
    let gw = one_server_gateway(&up);
    assert!(
        gw.data.ip().is_loopback(),
        "test premise: loopback listener"
    );

    let before = up.up.request_count();
    let r = gw.client().post(
        "/mcp/o",
        &mcp_headers(&[("Origin", "http://evil.example")]),
        &ping(),
    );
    assert_refused(&r, 403, &up, before, "Origin http://evil.example");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    let r = gw.client().post(
        "/mcp/o",
        &mcp_headers(&[("Origin", "http://localhost.evil.example")]),
        &ping(),
    );
    assert_refused(&r, 403, &up, before, "Origin http://localhost.evil.example");

    // A local page: passes, with CORS headers that let it read the session id.
    let r = gw.client().post(
        "/mcp/o",
        &mcp_headers(&[("Origin", "http://localhost:5173")]),
        &init_body(1),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("mcp-session-id").is_some(), "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173"),
        "{r:?}"
    );
    let expose = r.header("access-control-expose-headers").unwrap_or("");
    assert!(
        expose
            .split(',')
            .any(|h| h.trim().eq_ignore_ascii_case("mcp-session-id")),
        "Access-Control-Expose-Headers must list Mcp-Session-Id: {r:?}"
    );
    for origin in ["http://127.0.0.1:3000", "http://[::1]:8080"] {
        let r = gw
            .client()
            .post("/mcp/o", &mcp_headers(&[("Origin", origin)]), &ping());
        assert_eq!(r.status, 200, "Origin {origin}: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    }
    // No Origin: not a browser, no CORS headers.
    let r = gw.client().post("/mcp/o", &MCP_HEADERS, &ping());
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

#[test]
fn allowed_origins_list_is_enforced() {
    let up = Replica::start("ol");
    let mut cfg = config_with_secret(vec![replica_server(&up, None)], SECRET);
    cfg["security"] = json!({"allowedOrigins": ["https://app.example"]});
    let gw = start_gateway(&cfg);

    let r = gw.client().post(
        "/mcp/ol",
        &mcp_headers(&[("Origin", "https://app.example")]),
        &ping(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example"),
        "{r:?}"
    );
    assert!(r
        .header("access-control-expose-headers")
        .is_some_and(|v| v.to_ascii_lowercase().contains("mcp-session-id")));

    for origin in [
        "http://evil.example",
        "http://localhost:5173",
        "http://app.example",
        "https://app.example.evil",
    ] {
        let before = up.up.request_count();
        let r = gw
            .client()
            .post("/mcp/ol", &mcp_headers(&[("Origin", origin)]), &ping());
        assert_refused(&r, 403, &up, before, &format!("Origin {origin}"));
    }
}

#[test]
fn cors_preflight_from_an_allowed_origin_gets_204() {
    let up = Replica::start("pf");
    let gw = one_server_gateway(&up);
    let mut c = gw.client();
    let r = c.request(
        "OPTIONS",
        "/mcp/pf",
        &[
            ("Origin", "http://localhost:5173"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, mcp-session-id, mcp-protocol-version",
            ),
        ],
        b"",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173"),
        "{r:?}"
    );
    let methods = r
        .header("access-control-allow-methods")
        .unwrap_or("")
        .to_ascii_uppercase();
    for m in ["POST", "GET", "DELETE"] {
        assert!(methods.contains(m), "Allow-Methods lacks {m}: {r:?}");
    }
    let headers = r
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    for h in ["mcp-session-id", "mcp-protocol-version", "content-type"] {
        assert!(headers.contains(h), "Allow-Headers lacks {h}: {r:?}");
    }
    assert_eq!(
        up.up.request_count(),
        0,
        "the preflight is answered by the gateway"
    );
    // The connection stays usable.
    let r = c.post(
        "/mcp/pf",
        &mcp_headers(&[("Origin", "http://localhost:5173")]),
        &ping(),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // A preflight from a refused origin is refused.
    let r = gw.client().request(
        "OPTIONS",
        "/mcp/pf",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Accept
// ---------------------------------------------------------------------------------------

#[test]
fn post_accepting_only_html_gets_406() {
    let up = Replica::start("acc");
    let gw = one_server_gateway(&up);
    let before = up.up.request_count();
    let r = gw.client().post(
        "/mcp/acc",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/html"),
        ],
        &ping(),
    );
    assert_refused(&r, 406, &up, before, "Accept: text/html");

    for accept in [
        "application/json, text/event-stream",
        "application/json",
        "text/event-stream",
        "*/*",
    ] {
        let r = gw.client().post(
            "/mcp/acc",
            &[("Content-Type", "application/json"), ("Accept", accept)],
            &ping(),
        );
        assert_eq!(r.status, 200, "Accept: {accept}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Credentials and per-server headers
// ---------------------------------------------------------------------------------------

#[test]
fn client_authorization_is_kept_unless_forward_auth() {
    let plain = Replica::start("plain");
    let authy = Replica::start("authy");
    let mut authy_server = replica_server(&authy, None);
    authy_server["forwardAuth"] = json!(true);
    let gw = start_gateway(&config_with_secret(
        vec![replica_server(&plain, None), authy_server],
        SECRET,
    ));
    let mut c = gw.client();

    let h = mcp_headers(&[("Authorization", "Bearer secret")]);
    let r = c.post("/mcp/plain", &h, &ping());
    assert_eq!(r.status, 200, "{r:?}");
    let seen = plain.up.last();
    assert!(
        seen.header("authorization").is_none(),
        "Authorization reached a server without forwardAuth:\n{}",
        seen.raw_head
    );
    assert!(
        !seen.raw_head.contains("Bearer secret"),
        "{}",
        seen.raw_head
    );

    let r = c.post("/mcp/authy", &h, &ping());
    assert_eq!(r.status, 200, "{r:?}");
    let seen = authy.up.last();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer secret"),
        "{}",
        seen.raw_head
    );
    assert_eq!(seen.header_count("authorization"), 1);
}

#[test]
fn per_server_headers_expand_env_and_replace_the_clients() {
    let keyed = Replica::start("keyed");
    let mut s = replica_server(&keyed, None);
    s["headers"] = json!({"X-Api-Key": "${TEST_KEY_VAR}", "X-Static": "k-${TEST_KEY_VAR}-2"});
    let cfg = config_with_secret(vec![s], SECRET);
    let gw = Gateway::start_env(
        &cfg,
        &[("TEST_KEY_VAR", "s3cr3t-from-env")],
        &["SESSION_SECRET"],
    );

    let r = gw.client().post("/mcp/keyed", &MCP_HEADERS, &ping());
    assert_eq!(r.status, 200, "{r:?}");
    let seen = keyed.up.last();
    assert_eq!(
        seen.header("x-api-key"),
        Some("s3cr3t-from-env"),
        "{}",
        seen.raw_head
    );
    assert_eq!(
        seen.header("x-static"),
        Some("k-s3cr3t-from-env-2"),
        "{}",
        seen.raw_head
    );
    assert!(!seen.raw_head.contains("${"), "{}", seen.raw_head);

    // A client's own X-Api-Key (any case) is replaced, not duplicated; Authorization stays.
    let r = gw.client().post(
        "/mcp/keyed",
        &mcp_headers(&[
            ("X-Api-Key", "from-client"),
            ("x-api-key", "from-client-2"),
            ("Authorization", "Bearer secret"),
        ]),
        &ping(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = keyed.up.last();
    assert_eq!(seen.header_count("x-api-key"), 1, "{}", seen.raw_head);
    assert_eq!(
        seen.header("x-api-key"),
        Some("s3cr3t-from-env"),
        "{}",
        seen.raw_head
    );
    assert!(!seen.raw_head.contains("from-client"), "{}", seen.raw_head);
    assert!(seen.header("authorization").is_none(), "{}", seen.raw_head);
}

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

#[test]
fn json_rpc_batches_pass_through_unchanged() {
    let up = Replica::start("batch");
    let gw = one_server_gateway(&up);
    let mut c = gw.client();

    // Odd spacing and member order on purpose: nothing may be re-serialised.
    let batch: &[u8] = br#"[ {"jsonrpc":"2.0","id":1,"method":"tools/list"},
  {"method":"notifications/initialized","jsonrpc":"2.0"} ,{"jsonrpc":"2.0","id":"x-2","method":"tools/call","params":{"name":"echo","arguments":{"text":"h\u00e9llo \"q\""}}}]"#;
    let r = c.post("/mcp/batch", &MCP_HEADERS, batch);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.up.last();
    assert_eq!(seen.body, batch, "the upstream got a different body");
    assert_eq!(r.body, batch, "the client got a different body");
    let v: Value = r.json();
    assert_eq!(v.as_array().map(Vec::len), Some(3));

    // In a session: the batch is unchanged, the upstream sees its own session id.
    let init = c.post("/mcp/batch", &MCP_HEADERS, &init_body(9));
    assert_eq!(init.status, 200, "{init:?}");
    let token = init.header("mcp-session-id").unwrap().to_string();
    let original = init.json()["result"]["issuedSession"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.post("/mcp/batch", &with_session(&token), batch);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.up.last();
    assert_eq!(seen.body, batch);
    assert_eq!(seen.header("mcp-session-id"), Some(original.as_str()));
    assert_eq!(r.body, batch);

    // A chunked batch arrives whole too.
    let mut raw = request_bytes(
        "POST",
        "/mcp/batch",
        &mcp_headers(&[("Transfer-Encoding", "chunked")]),
        b"",
    );
    let (a, b) = batch.split_at(17);
    for part in [a, b] {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    let r = c.read_response().expect("chunked batch response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.up.last().body, batch);
    assert_eq!(r.body, batch);
}
