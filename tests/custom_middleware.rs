//! `examples/custom_middleware.rs`: a program embedding the data plane with a request
//! filter. Without `X-Tenant` the gateway answers 401 (a JSON error, or a JSON-RPC error on
//! MCP paths) and nothing reaches the upstream; with it, the request goes upstream with
//! `X-Tenant-Id` added and `X-Tenant` removed. A forged header list cannot get a framing
//! header past the filter.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Example {
    addr: std::net::SocketAddr,
    _child: KillOnDrop,
}

fn start(upstream: &Upstream) -> Example {
    let mut child = Command::new(example_program("custom_middleware"))
        .args(["0", &upstream.url("/mcp")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let mut out = LineReader::new(child.stdout.take().expect("stdout"));
    let child = KillOnDrop(child);
    let line = out
        .wait_for("listening on http://", Duration::from_secs(20))
        .expect("the example did not start");
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("an address");
    Example {
        addr,
        _child: child,
    }
}

#[test]
fn the_filter_answers_401_without_a_tenant_and_passes_one_on() {
    let upstream = Upstream::echo();
    let gw = start(&upstream);
    let mut client = Client::connect(gw.addr);

    let refused = client.get("/anything");
    let body = assert_json_error(&refused, 401);
    assert!(body.to_string().contains("X-Tenant"), "{body}");
    // On an MCP path the refusal is a JSON-RPC error.
    let mcp = client.post(
        "/mcp/backend",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Host", "127.0.0.1"),
        ],
        br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    );
    let body = assert_json_error(&mcp, 401);
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(
        upstream.request_count(),
        0,
        "a refused request reached the upstream"
    );

    let ok = client.request("GET", "/anything?x=1", &[("X-Tenant", "acme")], b"");
    assert_eq!(ok.status, 200, "{ok:?}");
    let seen = upstream.last();
    assert_eq!(seen.header("x-tenant-id"), Some("acme"));
    assert_eq!(seen.header("x-tenant"), None);
    // The connection stayed usable throughout (keep-alive after a filter's 401 too).
    let bad = client.request("GET", "/anything", &[("X-Tenant", "a b")], b"");
    assert_json_error(&bad, 401);
    assert_eq!(upstream.request_count(), 1);
}
