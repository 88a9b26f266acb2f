//! Edge hardening, review findings: response framing the gateway must not pass on as it came
//! (a transfer coding with a length, two codings, odd status codes, huge reason phrases),
//! request framing it must refuse (codings other than chunked, trailers, junk in chunk
//! lines, dot segments in disguise), HEAD answers the gateway writes itself, deadlines that
//! must not count the wrong wait, the admin API behind a rebound host name, what the data
//! port's health page tells, and an upstream that writes bytes nobody asked for.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

const READ: Duration = Duration::from_secs(10);

/// A gateway whose default group (and `/mcp/a`) is `url`, with `tweak` applied to the config.
fn gateway(url: &str, tweak: impl FnOnce(&mut Value)) -> Gateway {
    let mut cfg = config(json!([server("a", url)]));
    tweak(&mut cfg);
    Gateway::start(&cfg)
}

fn client_at(addr: std::net::SocketAddr) -> Client {
    let c = Client::connect(addr);
    c.conn.stream.set_read_timeout(Some(READ)).expect("timeout");
    c
}

/// An upstream that reads each request whole and writes `answer(target)` raw; when `close`
/// is set it then waits that long and closes the connection.
fn raw_upstream(
    close: Option<Duration>,
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> RawUpstream {
    RawUpstream::start(move |stream, n| {
        let mut conn = Conn::new(stream);
        while let Ok(Some(req)) = read_upstream_request(&mut conn, n) {
            let _ = conn.stream.write_all(&answer(&req.target));
            if let Some(wait) = close {
                thread::sleep(wait);
                return;
            }
        }
    })
}

#[test]
fn response_transfer_codings_other_than_a_final_chunked_are_502() {
    // A coding with a length, two fields (chunked, then identity), a lone non-chunked coding:
    // the gateway could only relay such a body read until close under a header listing
    // codings it did not apply, so it refuses them (as nginx does) instead of passing them on.
    let up = raw_upstream(Some(Duration::from_millis(200)), |target| {
        let te = match target {
            "/with-length" => "Transfer-Encoding: gzip\r\nContent-Length: 5",
            "/two-fields" => "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
            _ => "Transfer-Encoding: gzip",
        };
        format!("HTTP/1.1 200 OK\r\n{te}\r\n\r\nhello").into_bytes()
    });
    let gw = gateway(&up.url(""), |_| {});
    for target in ["/with-length", "/two-fields", "/gzip-only"] {
        let r = client_at(gw.data_addr()).get(target);
        let body = assert_json_error(&r, 502);
        assert!(!r.text().contains("hello"), "{target}: {body}");
    }
}

#[test]
fn response_with_codings_ending_in_chunked_passes() {
    let up = raw_upstream(None, |_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec()
    });
    let gw = gateway(&up.url(""), |_| {});
    let r = client_at(gw.data_addr()).get("/x");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    // The client's framing is the chunked one alone (the length is dropped).
    assert_eq!(r.text(), "hello");
}

#[test]
fn upstream_status_outside_100_599_is_502() {
    let up = raw_upstream(None, |target| {
        let line = if target == "/odd" { "999 Odd" } else { "000 X" };
        format!("HTTP/1.1 {line}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let gw = gateway(&up.url(""), |_| {});
    for target in ["/odd", "/zero"] {
        let r = client_at(gw.data_addr()).get(target);
        assert_json_error(&r, 502);
    }
}

#[test]
fn overlong_reason_phrase_is_replaced() {
    let up = raw_upstream(None, |_| {
        format!(
            "HTTP/1.1 200 {}\r\nContent-Length: 2\r\n\r\nok",
            "R".repeat(10_000)
        )
        .into_bytes()
    });
    let gw = gateway(&up.url(""), |_| {});
    let r = client_at(gw.data_addr()).get("/x");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    let line = format!("HTTP/1.1 {} {}", r.status, r.reason);
    assert!(
        line.len() < 200,
        "a {}-byte status line reached the client",
        line.len()
    );
}

/// Sends `HEAD head_target` and `GET /health` pipelined on one connection to `addr`: the
/// HEAD answer must have headers only, so the next bytes are the `/health` answer.
fn assert_head_then_health(addr: std::net::SocketAddr, head_target: &str, head_status: u16) {
    let mut c = client_at(addr);
    let mut out = request_bytes("HEAD", head_target, &[], b"");
    out.extend_from_slice(&request_bytes("GET", "/health", &[], b""));
    c.send(&out);
    let r = c.read_response_for(true).expect("the HEAD answer");
    assert_eq!(r.status, head_status, "HEAD {head_target} on {addr}: {r:?}");
    assert!(
        r.header("content-length").is_some(),
        "HEAD {head_target} on {addr}: {r:?}"
    );
    let health = c
        .read_response()
        .unwrap_or_else(|e| panic!("after HEAD {head_target} on {addr}, GET /health: {e}"));
    assert_eq!(health.status, 200, "GET /health on {addr}: {health:?}");
    assert!(health.json()["status"].is_string(), "{health:?}");
}

#[test]
fn head_request_error_has_no_body() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    assert_head_then_health(gw.data_addr(), "/mcp/nope/x", 404);
    assert_head_then_health(gw.mgmt_addr(), "/health", 200);
}

/// Sends `raw` on a new connection and reads one response.
fn send_raw(gw: &Gateway, raw: &[u8]) -> Response {
    let mut c = client_at(gw.data_addr());
    c.send(raw);
    c.read_response().unwrap_or_else(|e| {
        panic!(
            "no response to {:?}: {e}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })
}

/// A chunked `POST /x` with `te` as its Transfer-Encoding header line(s) and `body` after.
fn chunked_post(te: &str, body: &str) -> Vec<u8> {
    format!("POST /x HTTP/1.1\r\nHost: localhost\r\n{te}\r\n\r\n{body}").into_bytes()
}

#[test]
fn request_transfer_codings_other_than_chunked_get_501() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let body = "5\r\nhello\r\n0\r\n\r\n";
    for te in ["gzip, chunked", "identity, chunked"] {
        let r = send_raw(
            &gw,
            &chunked_post(&format!("Transfer-Encoding: {te}"), body),
        );
        assert_eq!(r.status, 501, "Transfer-Encoding: {te}: {r:?}");
        assert_json_error(&r, 501);
    }
    let two = "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked";
    let r = send_raw(&gw, &chunked_post(two, body));
    assert_json_error(&r, 400);
    assert_eq!(up.request_count(), 0, "nothing refused is forwarded");

    let r = send_raw(&gw, &chunked_post("Transfer-Encoding: Chunked", body));
    assert_eq!((r.status, r.text().as_str()), (200, "POST /x 5"), "{r:?}");
    let got = up.last();
    assert_eq!(got.header_count("transfer-encoding"), 1, "{}", got.raw_head);
    assert_eq!(
        got.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        got.raw_head
    );
}

#[test]
fn chunked_request_trailers_are_not_forwarded() {
    let up = ByteCounter::start();
    let gw = gateway(&up.up.url(""), |_| {});
    let r = send_raw(
        &gw,
        &chunked_post(
            "Transfer-Encoding: chunked",
            "3\r\nabc\r\n0\r\nAuthorization: Bearer x\r\n\r\n",
        ),
    );
    thread::sleep(Duration::from_millis(300));
    let seen = up.seen_all();
    assert!(
        !seen.to_lowercase().contains("authorization"),
        "a trailer reached the upstream: {seen:?} (client got {r:?})"
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn chunk_size_with_junk_after_whitespace_is_refused() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    let te = "Transfer-Encoding: chunked";
    let r = send_raw(&gw, &chunked_post(te, "5 x\r\nhello\r\n0\r\n\r\n"));
    assert_json_error(&r, 400);
    assert_eq!(up.request_count(), 0, "nothing refused is forwarded");
    let r = send_raw(&gw, &chunked_post(te, "5 ;ext\r\nhello\r\n0\r\n\r\n"));
    assert_eq!((r.status, r.text().as_str()), (200, "POST /x 5"), "{r:?}");
}

#[test]
fn dot_segment_variants_get_400() {
    let up = Upstream::echo();
    let gw = gateway(&up.url(""), |_| {});
    for target in [
        "/mcp/a/..;/x",
        "/mcp/a/..%2fx",
        "/mcp/a/..%5cx",
        "/mcp/a/x#/../../etc",
        "/mcp/a\\..\\x",
    ] {
        let r = send_raw(&gw, &request_bytes("GET", target, &[], b""));
        assert_eq!(r.status, 400, "GET {target}: {r:?}");
        assert_json_error(&r, 400);
    }
    let seen: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, Vec::<String>::new(), "nothing is forwarded");
}

#[test]
fn upstream_timeout_does_not_count_the_wait_for_a_pooled_connection() {
    let up = Upstream::start(|req, s| {
        thread::sleep(Duration::from_millis(700));
        respond(s, req, 200, &[], format!("path={}", req.target).as_bytes());
        Flow::KeepAlive
    });
    let mut cfg = config(json!([
        {"id": "a", "url": up.url(""), "maxConnections": 1, "timeout": 1000}
    ]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    let started = Instant::now();
    // Two clients: the second waits ~0.7 s for the connection, then has its own second.
    // (The wait itself is bounded by the same `timeout`: a third would get 503 at 1 s.)
    let clients: Vec<_> = (0..2)
        .map(|i| {
            thread::spawn(move || {
                let r = client_at(addr).get(&format!("/w{i}"));
                (i, r, started.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let outcomes: Vec<String> = results
        .iter()
        .map(|(i, r, after)| format!("/w{i}: {} {:?} after {after:?}", r.status, r.text()))
        .collect();
    for (i, r, _) in &results {
        assert_eq!(
            (r.status, r.text()),
            (200, format!("path=/w{i}")),
            "2 clients, one 700 ms upstream connection, timeout 1 s: {outcomes:#?}"
        );
    }
}

#[test]
fn slow_but_steady_reader_is_not_cut() {
    const BIG: u64 = 3 * 1024 * 1024;
    const FAST: u64 = 1024 * 1024;
    const STEP: u64 = 20 * 1024;
    let up = Upstream::start(|_, s| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
        if s.write_all(head.as_bytes()).is_err() || write_pattern(s, BIG).is_err() {
            return Flow::Close;
        }
        Flow::KeepAlive
    });
    let gw = gateway(&up.url(""), |cfg| {
        cfg["server"]["limits"] = json!({"sendTimeout": 1000});
    });
    let mut c = Client {
        conn: Conn::new(connect_with_rcvbuf(gw.data_addr(), 64 * 1024)),
    };
    c.send(&request_bytes("GET", "/big", &[], b""));
    let r = c.read_head().expect("a response head");
    assert_eq!(r.status, 200, "{r:?}");
    let started = Instant::now();
    let mut check = PatternCheck::new();
    let read = |c: &mut Client, n: u64, check: &mut PatternCheck| {
        c.conn
            .read_exact_to(n, &mut |b| check.feed(b))
            .map_err(|e| {
                format!(
                    "cut after {} of {BIG} bytes, {:?} in: {e}",
                    check.len,
                    started.elapsed()
                )
            })
    };
    read(&mut c, FAST, &mut check).unwrap_or_else(|e| panic!("{e}"));
    while check.len < BIG {
        let n = STEP.min(BIG - check.len);
        read(&mut c, n, &mut check).unwrap_or_else(|e| panic!("{e}"));
        thread::sleep(Duration::from_millis(100));
    }
    assert!(check.ok, "the body is not what the upstream sent");
    thread::sleep(Duration::from_millis(300));
    let cut = gw
        .metric("mcp_gateway_errors_total{kind=\"send_timeout\"}")
        .unwrap_or(0.0);
    assert_eq!(cut, 0.0, "send_timeout errors after a steady read");
}

#[test]
fn admin_api_refuses_a_rebound_host_without_a_token() {
    let up = Upstream::echo();
    let cfg = config(json!([server("a", &up.url(""))]));
    let gw = Gateway::start_env(&cfg, &[], &["ADMIN_TOKEN", "DASHBOARD_HOST"]);
    let port = gw.mgmt_addr().port();
    let admin = |headers: &[(&str, &str)]| {
        client_at(gw.mgmt_addr()).request("GET", "/admin/sessions", headers, b"")
    };
    let evil = format!("evil.example:{port}");
    let r = admin(&[("Host", &evil)]);
    assert_json_error(&r, 403);
    let local = format!("localhost:{port}");
    let r = admin(&[("Host", &local), ("Origin", "http://evil.example")]);
    assert_json_error(&r, 403);
    let loopback = format!("127.0.0.1:{port}");
    let r = admin(&[("Host", &loopback)]);
    assert_ne!(r.status, 403, "Host {loopback}, no Origin: {r:?}");
}

#[test]
fn public_upstream_health_has_no_error_text() {
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let gw = gateway(&dead, |cfg| {
        cfg["upstream"]["healthCheck"] = json!({"enabled": true, "interval": 200, "timeout": 500});
    });
    let error = eventually(Duration::from_secs(5), || {
        let page = gw.mgmt_json("/upstream/health");
        let e = &page["servers"][0]["lastError"];
        (!e.is_null()).then(|| e.clone())
    });
    assert!(
        error.is_some(),
        "the management port never showed a lastError: {}",
        gw.mgmt_json("/upstream/health")
    );
    let r = client_at(gw.data_addr()).get("/upstream/health");
    assert_eq!(r.status, 200, "{r:?}");
    let page = r.json();
    assert_eq!(page["servers"][0]["id"], "a", "{page}");
    assert!(
        page["servers"][0]["lastError"].is_null(),
        "the data port shows the probe's error: {page}"
    );
}

#[test]
fn stray_bytes_stop_reuse_for_that_upstream() {
    let up = Upstream::start(|req, s| {
        respond(s, req, 200, &[], req.target.as_bytes());
        thread::sleep(Duration::from_millis(30));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED");
        Flow::KeepAlive
    });
    let mut cfg = config(json!([{"id": "a", "url": up.url(""), "maxConnections": 2}]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let r = client_at(gw.data_addr()).get("/c0");
    assert_eq!((r.status, r.text().as_str()), (200, "/c0"), "{r:?}");
    thread::sleep(Duration::from_millis(300));
    for i in 1..=10 {
        let target = format!("/c{i}");
        let r = client_at(gw.data_addr()).get(&target);
        assert_eq!(
            (r.status, r.text()),
            (200, target.clone()),
            "GET {target} got another answer: {r:?}"
        );
    }
    let logged = eventually(Duration::from_secs(3), || {
        gw.logs.text().contains("not reused").then_some(())
    });
    assert!(
        logged.is_some(),
        "no `not reused` line in the log:\n{}",
        gw.logs.text()
    );
}
