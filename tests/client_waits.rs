//! What the gateway does while a client waits for an answer, or stops waiting:
//! - a client that hangs up before the response head (an MCP client cancelling a call that
//!   will be answered as JSON) gets the upstream's connection closed at once, as the
//!   upstream sees it, not after the server's `timeout`, and counted as a client abort;
//! - a pipelined request sent behind a slow answer is not taken for a hang-up;
//! - a client sending `Expect: 100-continue` to a server with a policy (whose bodies the
//!   gateway reads before forwarding) gets its `100 Continue` before the body is needed.

mod common;
mod mcp_support;

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use mcp_support::*;
use serde_json::json;

/// An upstream that answers after `delay`, or reports how soon after the request its
/// connection was closed by the gateway (while it was still holding the answer back).
fn slow_upstream(delay: Duration) -> (Upstream, mpsc::Receiver<Duration>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let up = Upstream::start(move |req, s| {
        let got = Instant::now();
        let _ = s.set_read_timeout(Some(delay));
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            // Closed by the gateway well before the answer was due.
            Ok(0) | Err(_) if got.elapsed() < delay * 9 / 10 => {
                let _ = tx.lock().map(|tx| tx.send(got.elapsed()));
                Flow::Close
            }
            _ => {
                respond_json(s, req, &format!("{{\"target\":\"{}\"}}", req.target));
                Flow::KeepAlive
            }
        }
    });
    (up, rx)
}

/// A gateway in front of `slow_upstream(delay)` as server `slow`.
fn slow_gateway(delay: Duration) -> (Upstream, mpsc::Receiver<Duration>, Gateway) {
    let (up, closed) = slow_upstream(delay);
    let gw = Gateway::start(&config(json!([server("slow", &up.url("/mcp"))])));
    (up, closed, gw)
}

/// Waits until the upstream holds the (first) request.
fn wait_in_flight(up: &Upstream) {
    eventually(Duration::from_secs(5), || {
        (up.request_count() == 1).then_some(())
    })
    .expect("the request reached the upstream");
}

fn call_body() -> Vec<u8> {
    rpc("tools/call", 1, json!({"name": "slow", "arguments": {}}))
}

#[test]
fn a_client_hanging_up_before_the_answer_closes_the_upstream_connection_at_once() {
    let (up, closed, gw) = slow_gateway(Duration::from_secs(20));

    let mut c = gw.client();
    let req = request_bytes("POST", "/mcp/slow", &mcp_headers(&[]), &call_body());
    c.send(&req);
    // The upstream has the request; the client gives up on it.
    wait_in_flight(&up);
    drop(c);
    let after = closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the gateway did not close the upstream connection when the client left");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");

    // Counted (nginx would log a 499), and the gateway serves on.
    let stats = gw.wait_stats(|s| s["clientAborts"] == 1);
    assert_eq!(stats["clientAborts"], 1, "{stats}");
    // Pages are rendered when read: the counter shows from a later read on.
    eventually(Duration::from_secs(5), || {
        let metrics = gw.get("/metrics").text();
        metrics
            .contains("mcp_gateway_client_aborts_total 1")
            .then_some(())
    })
    .expect("mcp_gateway_client_aborts_total in /metrics");
}

#[test]
fn a_pipelined_request_behind_a_slow_answer_is_not_a_hang_up() {
    let (up, closed, gw) = slow_gateway(Duration::from_millis(600));

    let mut c = gw.client();
    let first = request_bytes("POST", "/mcp/slow/one", &mcp_headers(&[]), &call_body());
    let second = request_bytes("POST", "/mcp/slow/two", &mcp_headers(&[]), &call_body());
    c.send(&first);
    wait_in_flight(&up);
    std::thread::sleep(Duration::from_millis(100));
    c.send(&second);
    let one = c.read_response().expect("first answer");
    let two = c.read_response().expect("second answer");
    assert_eq!(one.status, 200, "{one:?}");
    assert!(one.text().contains("/mcp/one"), "{one:?}");
    assert_eq!(two.status, 200, "{two:?}");
    assert!(two.text().contains("/mcp/two"), "{two:?}");
    assert!(closed.try_recv().is_err(), "an upstream connection was cut");
}

#[test]
fn expect_continue_on_a_server_with_a_policy_gets_100_before_the_body() {
    let up = Replica::start("guarded");
    let mut entry = replica_server(&up, None);
    entry["policy"] = json!({"deny": ["tools/call:drop_*"]});
    let gw = start_gateway(&config_with_secret(vec![entry], SECRET));

    for (tool, status) in [("echo", 200), ("drop_table", 403)] {
        let body = rpc("tools/call", 3, json!({"name": tool, "arguments": {}}));
        let len = body.len().to_string();
        let mut headers = mcp_headers(&[("Expect", "100-continue")]);
        headers.push(("Content-Length", &len));
        let mut c = gw.client();
        c.send(&request_bytes("POST", "/mcp/guarded", &headers, b""));
        // The head alone: the gateway must say 100 before it can read the body.
        let interim = c.read_head().expect("an interim response");
        assert_eq!(interim.status, 100, "{tool}: {interim:?}");
        c.send(&body);
        let r = c.read_response().expect("the answer");
        assert_eq!(r.status, status, "{tool}: {r:?}");
    }
    // A body too large to check is refused at once, without asking for it.
    let mut headers = mcp_headers(&[("Expect", "100-continue")]);
    headers.push(("Content-Length", "5000000"));
    let mut c = gw.client();
    c.send(&request_bytes("POST", "/mcp/guarded", &headers, b""));
    let r = c.read_head().expect("the refusal");
    assert_eq!(r.status, 413, "{r:?}");
}
