//! Edge hardening, message framing: what a client or an upstream can do with the bytes of
//! one message to make the gateway see a different message than the other side does
//! (smuggling through `Connection`, unbounded chunk lines, bare LF, pool poisoning by
//! bytes an upstream sends after its answer, replays of requests that are not idempotent),
//! and requests the gateway answers itself (dot segments, `OPTIONS *`, odd methods,
//! forwarding headers).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::Shutdown;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

const READ: Duration = Duration::from_secs(10);

/// A gateway whose default group (and `/mcp/a`) is `url`, with `tweak` applied to the config.
fn gateway(url: &str, tweak: impl FnOnce(&mut Value)) -> Gateway {
    let mut cfg = config(json!([server("a", url)]));
    tweak(&mut cfg);
    Gateway::start(&cfg)
}

/// Like [`gateway`], with one shard and `maxConnections: 1` on `a`, so that every request
/// meets the one pooled upstream connection the test means to poison.
fn one_connection_gateway(url: &str) -> Gateway {
    let mut cfg = config(json!([{"id": "a", "url": url, "maxConnections": 1}]));
    cfg["server"]["workers"] = json!(1);
    Gateway::start(&cfg)
}

fn client(gw: &Gateway) -> Client {
    let c = gw.client();
    c.conn.stream.set_read_timeout(Some(READ)).expect("timeout");
    c
}

/// The targets an [`Upstream`] was asked for.
fn targets(up: &Upstream) -> Vec<String> {
    up.requests().into_iter().map(|r| r.target).collect()
}

/// Sends `bytes` from another thread (write errors are fine: the gateway may stop reading),
/// reads the response here, then shuts the socket so the writer ends.
fn send_big_and_read(c: &mut Client, bytes: Vec<u8>) -> std::io::Result<Response> {
    let mut w = c.conn.stream.try_clone().expect("clone");
    w.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let writer = thread::spawn(move || {
        for part in bytes.chunks(64 * 1024) {
            if w.write_all(part).is_err() {
                return;
            }
        }
    });
    let r = c.read_response();
    let _ = c.conn.stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    r
}

// ---------------------------------------------------------------------------------------
// Connection: naming framing headers
// ---------------------------------------------------------------------------------------

const SMUGGLED: &[u8] =
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer forged\r\n\r\n";

/// Sends `raw`, expects a 400 JSON error and a close, and that nothing smuggled reached `up`.
fn assert_refused_unsmuggled(gw: &Gateway, up: &Upstream, raw: &[u8]) {
    let mut c = client(gw);
    c.send(raw);
    let r = c.read_response().expect("a response");
    thread::sleep(Duration::from_millis(300));
    let seen = targets(up);
    assert!(
        !seen.iter().any(|t| t.contains("smuggled")),
        "a smuggled request reached the upstream: {seen:?} (client got {r:?})"
    );
    assert_json_error(&r, 400);
    assert!(c.closed_within(Duration::from_secs(2)), "400 must close");
}

/// A POST whose body is [`SMUGGLED`], framed by `Content-Length`, with `Connection: {named}`.
fn smuggle_with_length(named: &str) {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let mut raw = format!(
        "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: {named}\r\n\r\n",
        SMUGGLED.len()
    )
    .into_bytes();
    raw.extend_from_slice(SMUGGLED);
    assert_refused_unsmuggled(&gw, &up, &raw);
}

#[test]
fn connection_header_cannot_remove_content_length() {
    smuggle_with_length("Content-Length");
}

#[test]
fn connection_header_cannot_remove_transfer_encoding() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let mut raw = b"POST /mcp/a/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n".to_vec();
    raw.extend_from_slice(format!("{:x}\r\n", SMUGGLED.len()).as_bytes());
    raw.extend_from_slice(SMUGGLED);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_refused_unsmuggled(&gw, &up, &raw);
}

#[test]
fn connection_header_cannot_remove_host() {
    smuggle_with_length("Host");
}

#[test]
fn connection_header_cannot_remove_the_gateways_own_headers() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let r = client(&gw).request(
        "GET",
        "/x",
        &[
            ("X-Request-Id", "client-id-1"),
            ("Connection", "X-Request-Id, X-Forwarded-For"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.last();
    assert_eq!(
        got.header_count("x-request-id"),
        1,
        "exactly one X-Request-Id upstream: {}",
        got.raw_head
    );
    assert!(
        got.header("x-forwarded-for")
            .is_some_and(|v| v.contains("127.0.0.1")),
        "X-Forwarded-For with the client's address upstream: {}",
        got.raw_head
    );
}

#[test]
fn upstream_connection_header_cannot_remove_content_length() {
    let up = Upstream::start(|req, s| {
        let body = if req.target == "/x" { "hello" } else { "world" };
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\n{body}"
            )
            .as_bytes(),
        );
        Flow::KeepAlive
    });
    let gw = gateway(&up.url(""), |_| {});
    let mut c = client(&gw);
    for (target, body) in [("/x", "hello"), ("/y", "world")] {
        c.send(&request_bytes("GET", target, &[], b""));
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("GET {target}: no response: {e}"));
        assert_eq!(r.status, 200, "GET {target}: {r:?}");
        assert_eq!(r.header("content-length"), Some("5"), "GET {target}: {r:?}");
        assert_eq!(r.text(), body, "GET {target}: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Pool poisoning: bytes an upstream sends after its answer
// ---------------------------------------------------------------------------------------

/// Eight sequential clients on new connections each get the body naming their own path.
fn assert_each_gets_its_own_answer(gw: &Gateway) {
    for i in 0..8 {
        let target = format!("/c{i}");
        let mut c = client(gw);
        c.send(&request_bytes("GET", &target, &[], b""));
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("GET {target}: no response: {e}"));
        assert_eq!(
            (r.status, r.text()),
            (200, format!("path={target}")),
            "GET {target} got another answer: {r:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn head_response_with_late_body_does_not_poison_the_pool() {
    let up = Upstream::start(|req, s| {
        if req.method == "HEAD" {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
            thread::sleep(Duration::from_millis(50));
            let _ = s.write_all(b"0123456789");
        } else {
            respond(s, req, 200, &[], format!("path={}", req.target).as_bytes());
        }
        Flow::KeepAlive
    });
    let gw = one_connection_gateway(&up.url(""));
    let mut c = client(&gw);
    c.send(&request_bytes("HEAD", "/h", &[], b""));
    let r = c.read_response_for(true).expect("HEAD answered");
    assert_eq!(r.status, 200, "{r:?}");
    drop(c);
    thread::sleep(Duration::from_millis(150));
    assert_each_gets_its_own_answer(&gw);
}

#[test]
fn unsolicited_second_response_does_not_poison_the_pool() {
    let first_on_conn = Mutex::new(HashSet::new());
    let up = Upstream::start(move |req, s| {
        respond(s, req, 200, &[], format!("path={}", req.target).as_bytes());
        let first = first_on_conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.conn);
        if first {
            thread::sleep(Duration::from_millis(50));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED");
        }
        Flow::KeepAlive
    });
    let gw = one_connection_gateway(&up.url(""));
    let r = client(&gw).get("/first");
    assert_eq!((r.status, r.text().as_str()), (200, "path=/first"), "{r:?}");
    thread::sleep(Duration::from_millis(150));
    assert_each_gets_its_own_answer(&gw);
}

// ---------------------------------------------------------------------------------------
// Chunked framing bounds
// ---------------------------------------------------------------------------------------

#[test]
fn chunk_extension_is_bounded() {
    let up = ByteCounter::start();
    let gw = gateway(&up.up.url(""), |cfg| {
        cfg["server"]["limits"] = json!({"maxBodyBytes": 1000});
    });
    let mut req =
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    req.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    req.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    let mut c = client(&gw);
    let r = send_big_and_read(&mut c, req).expect("a response to a 5 MiB chunk extension");
    thread::sleep(Duration::from_millis(300));
    assert!(
        up.bytes() < 64 * 1024,
        "the upstream received {} bytes ({:?}...), client got {r:?}",
        up.bytes(),
        up.seen()
    );
    assert!(matches!(r.status, 413 | 400), "{r:?}");
    assert_json_error(&r, r.status);
}

#[test]
fn chunked_trailers_are_bounded() {
    let up = ByteCounter::start();
    let gw = gateway(&up.up.url(""), |_| {});
    let mut req =
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            .to_vec();
    let line = format!("X-T: {}\r\n", "a".repeat(95));
    while req.len() < 200 * 1024 {
        req.extend_from_slice(line.as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let mut c = client(&gw);
    let r = send_big_and_read(&mut c, req).expect("a response to 200 KiB of trailers");
    thread::sleep(Duration::from_millis(300));
    assert!(
        up.bytes() < 64 * 1024,
        "the upstream received {} bytes ({:?}...), client got {r:?}",
        up.bytes(),
        up.seen()
    );
    assert!(matches!(r.status, 400 | 413 | 431), "{r:?}");
    assert_json_error(&r, r.status);
}

#[test]
fn bare_lf_in_chunked_framing_gets_400() {
    let up = ByteCounter::start();
    let gw = gateway(&up.up.url(""), |_| {});
    let mut c = client(&gw);
    c.conn
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.send(
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    );
    let r = c.read_response();
    assert_eq!(
        up.answered(),
        0,
        "the upstream got a complete request: {:?} (client got {r:?})",
        up.seen()
    );
    let r = r.expect("a 400 within 5 s");
    assert_json_error(&r, 400);
}

#[test]
fn http10_with_transfer_encoding_is_refused() {
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing (an HTTP/1.0
    // peer may not know chunked and read the body differently): refuse and close.
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let mut c = client(&gw);
    c.send(b"POST /x HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let r = c.read_response().expect("an answer");
    assert_json_error(&r, 400);
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "a 400 to faulty framing must close the connection: {r:?}"
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(targets(&up), Vec::<String>::new(), "nothing is forwarded");
    assert_eq!(up.accepted(), 0, "no upstream connection is opened");
}

// ---------------------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------------------

#[test]
fn non_idempotent_request_is_not_replayed_on_a_fresh_connection() {
    // The first request on each connection is answered; a second one is read whole and the
    // connection closed without an answer (it may or may not have been acted on).
    let per_conn = Mutex::new(HashMap::<usize, usize>::new());
    let up = Upstream::start(move |req, s| {
        let nth = {
            let mut m = per_conn.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(req.conn).or_insert(0);
            *n += 1;
            *n
        };
        if nth > 1 {
            return Flow::Close;
        }
        respond(s, req, 200, &[], format!("path={}", req.target).as_bytes());
        Flow::KeepAlive
    });
    let gw = one_connection_gateway(&up.url(""));
    let seen = |id: &str| {
        up.requests()
            .iter()
            .filter(|r| r.header("x-request-id") == Some(id))
            .count()
    };

    assert_eq!(client(&gw).get("/x").status, 200, "priming request");
    let r = client(&gw).request("POST", "/x", &[("X-Request-Id", "once-123")], b"do-it");
    thread::sleep(Duration::from_millis(500));
    assert!(
        r.status == 502 && seen("once-123") == 1,
        "a POST the upstream dropped must not be replayed: status {}, upstream saw it {} times",
        r.status,
        seen("once-123")
    );
    assert_json_error(&r, 502);

    // A GET on a connection that dies the same way is retried on a fresh one.
    assert_eq!(client(&gw).get("/prime").status, 200, "priming request");
    let r = client(&gw).request("GET", "/y", &[("X-Request-Id", "again-456")], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "path=/y"),
        "an idempotent request is retried: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Requests the gateway answers itself
// ---------------------------------------------------------------------------------------

#[test]
fn dot_segments_get_400() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    for target in ["/mcp/a/../../x", "/mcp/a/%2e%2e/%2E%2E/x", "/a/./b"] {
        let mut c = client(&gw);
        c.send(&request_bytes("GET", target, &[], b""));
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("GET {target}: no response: {e}"));
        assert_eq!(r.status, 400, "GET {target}: {r:?}");
        assert_json_error(&r, 400);
    }
    assert_eq!(targets(&up), Vec::<String>::new(), "nothing is forwarded");
}

#[test]
fn options_asterisk_is_answered_by_the_gateway() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let mut c = client(&gw);
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.read_response().expect("an answer to OPTIONS *");
    assert!(matches!(r.status, 200 | 204), "{r:?}");
    assert!(r.header("allow").is_some(), "an Allow header: {r:?}");
    assert_eq!(targets(&up), Vec::<String>::new(), "nothing is forwarded");
}

#[test]
fn connect_gets_405_and_an_overlong_method_gets_501() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let mut c = client(&gw);
    c.send(b"CONNECT /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = c.read_response().expect("an answer to CONNECT");
    assert_json_error(&r, 405);
    assert!(r.header("allow").is_some(), "an Allow header: {r:?}");

    let mut c = client(&gw);
    let method = "A".repeat(1000);
    c.send(format!("{method} /x HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    let r = c.read_response().expect("an answer to a 1000-byte method");
    assert_json_error(&r, 501);
    assert_eq!(targets(&up), Vec::<String>::new(), "nothing is forwarded");
}

// ---------------------------------------------------------------------------------------
// Forwarding headers
// ---------------------------------------------------------------------------------------

const FORWARDING: [(&str, &str); 3] = [
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
    ("Forwarded", "for=1.2.3.4;proto=https"),
];

#[test]
fn forwarding_headers_from_an_untrusted_client_are_replaced() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let r = client(&gw).request("GET", "/x", &FORWARDING, b"");
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.last();
    let head = &got.raw_head;
    assert_eq!(got.header_count("x-forwarded-proto"), 1, "{head}");
    assert_eq!(got.header("x-forwarded-proto"), Some("http"), "{head}");
    assert_eq!(got.header_count("x-forwarded-host"), 1, "{head}");
    assert_eq!(got.header("x-forwarded-host"), Some("localhost"), "{head}");
    assert_eq!(got.header_count("forwarded"), 0, "{head}");
}

#[test]
fn forwarding_headers_from_a_trusted_proxy_pass() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |cfg| {
        cfg["server"]["trustedProxies"] = json!(["127.0.0.1"]);
    });
    let r = client(&gw).request("GET", "/x", &FORWARDING, b"");
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.last();
    let head = &got.raw_head;
    assert_eq!(got.header_count("x-forwarded-proto"), 1, "{head}");
    assert_eq!(got.header("x-forwarded-proto"), Some("https"), "{head}");
    assert_eq!(got.header_count("x-forwarded-host"), 1, "{head}");
    assert_eq!(
        got.header("x-forwarded-host"),
        Some("evil.example"),
        "{head}"
    );
    assert_eq!(
        got.header("forwarded"),
        Some("for=1.2.3.4;proto=https"),
        "{head}"
    );
}
