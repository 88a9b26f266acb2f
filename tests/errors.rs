//! Every error the gateway produces, provoked for real over sockets: the status, a JSON body
//! with `error.code` equal to the status, and afterwards the gateway still serves a normal
//! request on a new connection.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A gateway with a good upstream `ok` (also the default group) plus `extra` servers,
/// small limits, one-second-ish timeouts.
fn gateway_with(ok: &Upstream, extra: Value) -> Gateway {
    let mut servers = vec![server("ok", &ok.url(""))];
    if let Value::Array(more) = extra {
        servers.extend(more);
    }
    let mut cfg = config(Value::Array(servers));
    cfg["server"]["limits"] = json!({
        "maxHeaderBytes": 16384,
        "maxBodyBytes": 1000,
        "headerTimeout": 300
    });
    Gateway::start(&cfg)
}

/// A normal request on a new connection still works.
fn assert_still_serving(gw: &Gateway) {
    let r = gw.client().get("/mcp/ok/still-alive");
    assert_eq!(r.status, 200, "gateway no longer serves normally: {r:?}");
    assert_eq!(r.text(), "GET /still-alive 0");
}

/// Grouped upstreams are not in the default group, so a test's odd upstream is reached
/// only through `/mcp/{id}`.
fn grouped(id: &str, url: &str) -> Value {
    json!({"id": id, "url": url, "group": "odd", "timeout": 300})
}

#[test]
fn garbage_bytes_get_400() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    c.send(b"\x00\x01hello\r\n\r\n");
    let r = c.read_response().expect("a 400 response");
    assert_json_error(&r, 400);
    assert!(c.closed_within(Duration::from_secs(2)), "400 must close");
    assert_still_serving(&gw);
    assert_eq!(ok.request_count(), 1, "only the normal request got through");
}

#[test]
fn content_length_with_transfer_encoding_gets_400_and_is_not_forwarded() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    // A classic request-smuggling shape.
    c.send(
        b"POST /mcp/ok/smuggle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /mcp/ok/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let r = c.read_response().expect("a 400 response");
    assert_json_error(&r, 400);
    assert!(c.closed_within(Duration::from_secs(2)), "400 must close");
    assert_still_serving(&gw);
    let targets: Vec<String> = ok.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        vec!["/still-alive".to_string()],
        "nothing smuggled through"
    );
}

#[test]
fn slow_head_gets_408_after_header_timeout() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    let started = Instant::now();
    c.send(b"GET /mcp/ok/slow HTTP/1.1\r\nHost: localhost\r\n");
    let r = c.read_response().expect("a 408 response");
    let waited = started.elapsed();
    assert_json_error(&r, 408);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "408 after {waited:?}, headerTimeout is 300 ms"
    );
    assert!(c.closed_within(Duration::from_secs(2)), "408 must close");
    assert_still_serving(&gw);
}

#[test]
fn body_over_max_body_bytes_gets_413() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    c.send(b"POST /mcp/ok/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n");
    let r = c.read_response().expect("a 413 response");
    assert_json_error(&r, 413);
    assert_still_serving(&gw);
    assert_eq!(ok.request_count(), 1, "the large request was not forwarded");
}

#[test]
fn chunked_body_over_max_body_bytes_gets_413() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    // 3 chunks of 1000 bytes (limit 1000), all sent with the head in one write.
    let mut req =
        b"POST /mcp/ok/big-chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b'z'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response().expect("a response");
    let forwarded: Vec<u64> = ok.requests().iter().map(|r| r.body_len).collect();
    assert_json_error(&r, 413);
    assert!(
        forwarded.iter().all(|n| *n <= 1000),
        "a body over maxBodyBytes reached the upstream: {forwarded:?}"
    );
    assert_still_serving(&gw);
}

#[test]
fn chunked_body_streamed_over_max_body_bytes_gets_413() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    c.send(
        b"POST /mcp/ok/streamed HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    // 4 chunks of 600 bytes (limit 1000), a pause between them so they arrive apart.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(40));
        let mut chunk = b"258\r\n".to_vec();
        chunk.extend_from_slice(&[b'y'; 600]);
        chunk.extend_from_slice(b"\r\n");
        if c.try_send(&chunk).is_err() {
            break;
        }
    }
    let _ = c.try_send(b"0\r\n\r\n");
    let r = c.read_response().expect("a response");
    let forwarded: Vec<u64> = ok.requests().iter().map(|r| r.body_len).collect();
    assert_json_error(&r, 413);
    assert!(
        forwarded.iter().all(|n| *n <= 1000),
        "a body over maxBodyBytes reached the upstream: {forwarded:?}"
    );
    assert_still_serving(&gw);
}

#[test]
fn huge_header_gets_431() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    let mut req = b"GET /mcp/ok/big-head HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    c.send(&req);
    let r = c
        .read_response()
        .expect("a 431 response (not a reset connection)");
    assert_json_error(&r, 431);
    assert_still_serving(&gw);
    assert_eq!(ok.request_count(), 1);
}

#[test]
fn unknown_server_gets_404_json() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    let r = c.get("/mcp/nope");
    let v = assert_json_error(&r, 404);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nope"),
        "{v}"
    );
    let r = c.get("/mcp/nope/deeper?x=1");
    assert_json_error(&r, 404);
    // 404 does not need to close the connection: the same one still works.
    let r = c.get("/mcp/ok/same-connection");
    assert_eq!(r.status, 200, "{r:?}");
    assert_still_serving(&gw);
}

#[test]
fn refused_upstream_gets_502() {
    let ok = Upstream::echo();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let gw = gateway_with(&ok, json!([grouped("dead", &dead)]));
    let r = gw.client().post("/mcp/dead", &[], b"{}");
    assert_json_error(&r, 502);
    let mut c = gw.client();
    let r = c.get("/mcp/dead/x");
    assert_json_error(&r, 502);
    // The client's connection survives an upstream failure.
    assert_eq!(c.get("/mcp/ok/same").status, 200);
    assert_still_serving(&gw);
}

#[test]
fn garbage_from_upstream_gets_502() {
    let ok = Upstream::echo();
    let bad = Upstream::start(|_, s| {
        let _ = s.write_all(b"NOT HTTP AT ALL\r\n\r\n");
        Flow::Close
    });
    let gw = gateway_with(&ok, json!([grouped("bad", &bad.url(""))]));
    let r = gw.client().get("/mcp/bad/x");
    assert_json_error(&r, 502);
    assert_eq!(bad.request_count(), 1);
    assert_still_serving(&gw);
}

#[test]
fn upstream_closing_without_answer_gets_502() {
    let ok = Upstream::echo();
    let rude = Upstream::start(|_, _| Flow::Close);
    let gw = gateway_with(&ok, json!([grouped("rude", &rude.url(""))]));
    let r = gw.client().get("/mcp/rude/x");
    assert_json_error(&r, 502);
    assert_still_serving(&gw);
}

#[test]
fn silent_upstream_gets_504_after_its_timeout() {
    let ok = Upstream::echo();
    let silent = Upstream::start(|_, s| hang(s));
    let gw = gateway_with(&ok, json!([grouped("silent", &silent.url(""))]));
    let started = Instant::now();
    let r = gw.client().get("/mcp/silent/x");
    let waited = started.elapsed();
    assert_json_error(&r, 504);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "504 after {waited:?}, timeout is 300 ms"
    );
    assert_still_serving(&gw);
    // The client's connection survives an upstream failure.
    let mut c = gw.client();
    assert_eq!(c.get("/mcp/silent/again").status, 504);
    assert_eq!(c.get("/mcp/ok/same").status, 200);
}

#[test]
fn no_healthy_upstream_gets_503_with_retry_after() {
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let mut cfg = config(json!([server("only", &dead)]));
    cfg["upstream"]["healthCheck"] = json!({
        "enabled": true,
        "interval": 100,
        "timeout": 200,
        "unhealthyThreshold": 1,
        "healthyThreshold": 1
    });
    let gw = Gateway::start(&cfg);
    // The prober marks it down within an interval; shards get the map right away.
    let down = eventually(Duration::from_secs(5), || {
        let v = gw.mgmt_json("/upstream/health");
        (v["healthy"] == 0).then_some(v)
    });
    assert!(down.is_some(), "the prober never marked the upstream down");
    let r = eventually(Duration::from_secs(3), || {
        let r = gw.client().get("/some/path");
        (r.status == 503).then_some(r)
    })
    .unwrap_or_else(|| panic!("never got 503: last {:?}", gw.client().get("/some/path")));
    assert_json_error(&r, 503);
    let retry = r.header("retry-after").unwrap_or("");
    assert!(
        retry.parse::<u64>().is_ok(),
        "Retry-After must be present (seconds): {r:?}"
    );
    // The same for the server by id.
    let r = gw.client().get("/mcp/only/x");
    assert_json_error(&r, 503);
    assert!(r.header("retry-after").is_some());
    // And the gateway's own pages still answer.
    assert_eq!(gw.get("/health").status, 200);
}

#[test]
fn connections_over_max_connections_get_503() {
    let ok = Upstream::echo();
    let mut cfg = config(json!([server("ok", &ok.url(""))]));
    cfg["server"]["workers"] = json!(1);
    cfg["server"]["maxConnections"] = json!(2);
    let gw = Gateway::start(&cfg);
    let mut held: Vec<Client> = (0..2).map(|_| gw.client()).collect();
    for c in &mut held {
        assert_eq!(c.get("/mcp/ok/held").status, 200);
    }
    let mut third = gw.client();
    third.send(&request_bytes("GET", "/mcp/ok/third", &[], b""));
    let r = third.read_response().expect("a 503 response");
    assert_json_error(&r, 503);
    assert!(r.header("retry-after").is_some(), "{r:?}");
    drop(held);
    // Once the held connections are gone, new ones are served again.
    let served = eventually(Duration::from_secs(3), || {
        let mut c = gw.client();
        c.try_send(&request_bytes("GET", "/mcp/ok/again", &[], b""))
            .ok()?;
        let r = c.read_response().ok()?;
        (r.status == 200).then_some(r)
    });
    assert!(
        served.is_some(),
        "connections are not served again after the cap"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_keep_alive_timeout() {
    let ok = Upstream::echo();
    let mut cfg = config(json!([server("ok", &ok.url(""))]));
    cfg["server"]["keepAliveTimeout"] = json!(300);
    let gw = Gateway::start(&cfg);
    let mut c = gw.client();
    assert_eq!(c.get("/mcp/ok/x").status, 200);
    let started = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "idle connection still open after 3 s (keepAliveTimeout 300 ms)"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed too early: {waited:?}"
    );
    // A connection that never sends anything is closed too, without a response.
    let mut raw = TcpStream::connect(gw.data_addr()).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut raw, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "unexpected bytes on an idle connection");
}

#[test]
fn other_malformed_requests_get_400() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let cases: [&[u8]; 4] = [
        // HTTP/1.1 without Host (RFC 9112 §3.2: 400).
        b"GET /mcp/ok/x HTTP/1.1\r\n\r\n",
        // Two different Content-Length values.
        b"POST /mcp/ok/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        // A non-numeric Content-Length.
        b"POST /mcp/ok/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
        // Not an origin-form target.
        b"GET mcp/ok/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    for raw in cases {
        let mut c = gw.client();
        c.send(raw);
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(raw)));
        assert_eq!(r.status, 400, "{:?} -> {r:?}", String::from_utf8_lossy(raw));
        assert_json_error(&r, 400);
    }
    assert_eq!(ok.request_count(), 0);
    assert_still_serving(&gw);
}

#[test]
fn too_many_headers_get_431() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut req = b"GET /mcp/ok/many HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..150 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let mut c = gw.client();
    c.send(&req);
    let r = c.read_response().expect("a 431 response");
    assert_json_error(&r, 431);
    assert_still_serving(&gw);
}

#[test]
fn expect_100_continue_over_the_body_limit_gets_413_not_100() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    c.send(b"POST /mcp/ok/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    let head = c.read_head().expect("a response");
    assert_eq!(head.status, 413, "{head:?}");
    assert_still_serving(&gw);
}

#[test]
fn error_responses_carry_the_request_id() {
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let r = gw
        .client()
        .request("GET", "/mcp/nope", &[("X-Request-Id", "trace-42")], b"");
    let v = assert_json_error(&r, 404);
    assert_eq!(r.header("x-request-id"), Some("trace-42"), "{r:?}");
    // On MCP paths the error is a JSON-RPC error object: the id is in error.data.
    assert_eq!(v["error"]["data"]["requestId"], "trace-42", "{v}");
    // Without one, a generated id is in the header and the body alike.
    let r = gw.client().get("/mcp/nope");
    let v = assert_json_error(&r, 404);
    let id = r.header("x-request-id").unwrap_or("").to_string();
    assert!(!id.is_empty(), "{r:?}");
    assert_eq!(v["error"]["data"]["requestId"], id.as_str());
}

#[test]
fn upstream_stalling_mid_body_closes_the_client_connection() {
    let ok = Upstream::echo();
    let stall = Upstream::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
        hang(s)
    });
    let gw = gateway_with(&ok, json!([grouped("stall", &stall.url(""))]));
    let mut c = gw.client();
    c.send(&request_bytes("GET", "/mcp/stall/x", &[], b""));
    let head = c.read_head().expect("the head is relayed");
    assert_eq!(head.status, 200);
    let started = Instant::now();
    let mut got = Vec::new();
    // A reset is as good as a close here: either way the client learns the body is cut.
    let _ = c.conn.read_to_eof(&mut |b| got.extend_from_slice(b));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the client was left hanging {waited:?} (upstream timeout 300 ms)"
    );
    assert_eq!(
        got, b"only ten b",
        "a cut body must end with a close, not more bytes"
    );
    assert_still_serving(&gw);
}

#[test]
fn trickled_head_still_gets_408_at_the_header_timeout() {
    // Slowloris: one byte every 50 ms must not push the 300 ms header deadline back.
    let ok = Upstream::echo();
    let gw = gateway_with(&ok, json!([]));
    let mut c = gw.client();
    let mut w = c.conn.stream.try_clone().expect("clone");
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        let head = b"GET /mcp/ok/slowloris HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let r = c.read_response().expect("a 408 response");
    let waited = started.elapsed();
    assert_json_error(&r, 408);
    assert!(
        waited < Duration::from_millis(1500),
        "408 only after {waited:?}: the trickle kept extending the deadline"
    );
    drop(c);
    let _ = trickle.join();
    assert_still_serving(&gw);
}
