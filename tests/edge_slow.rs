//! Edge hardening, time: peers that are slow on purpose or by accident must not hold the
//! gateway's resources (client connections, upstream pool slots) past the configured
//! deadlines, and the deadlines must start when they say they do: a client that does not
//! read its response (`sendTimeout`), one that trickles its body (`minBodyRate`), a body
//! whose end never comes, a connection that never sends a byte, pooled upstream
//! connections left idle or closed by the upstream.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const READ: Duration = Duration::from_secs(10);

/// A one-shard gateway in front of `servers` with `tweak` applied: one shard, so a test's
/// `maxConnections` is the one pool every client meets.
fn one_shard_gateway(servers: Value, tweak: impl FnOnce(&mut Value)) -> Gateway {
    let mut cfg = config(servers);
    cfg["server"]["workers"] = json!(1);
    tweak(&mut cfg);
    Gateway::start(&cfg)
}

fn client_with(addr: std::net::SocketAddr, read: Duration) -> Client {
    let c = Client::connect(addr);
    c.conn.stream.set_read_timeout(Some(read)).expect("timeout");
    c
}

/// Polls the management port's `/metrics` until `series` is at least `min`.
fn assert_metric_at_least(gw: &Gateway, series: &str, min: f64) {
    let got = eventually(Duration::from_secs(5), || {
        gw.metric(series).filter(|v| *v >= min)
    });
    assert!(
        got.is_some(),
        "{series} never reached {min}: now {:?}",
        gw.metric(series)
    );
}

/// Whether the peer closes `s` within `wait` (EOF or reset, whatever it wrote first).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn send_timeout_frees_upstream_connections_held_by_clients_that_do_not_read() {
    const BIG: u64 = 16 * 1024 * 1024;
    let up = Upstream::start(|req, s| {
        if req.target == "/big" {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
            if s.write_all(head.as_bytes()).is_err() || write_pattern(s, BIG).is_err() {
                return Flow::Close;
            }
        } else {
            respond(s, req, 200, &[], b"small");
        }
        Flow::KeepAlive
    });
    let servers = json!([{"id": "a", "url": up.url(""), "maxConnections": 2}]);
    let gw = one_shard_gateway(servers, |cfg| {
        cfg["server"]["limits"] = json!({"sendTimeout": 1000});
    });
    // Two clients ask for 16 MiB each and never read a byte of it.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = gw.client();
        c.send(&request_bytes("GET", "/big", &[], b""));
        stalled.push(c);
    }
    eventually(Duration::from_secs(5), || {
        (up.request_count() == 2).then_some(())
    })
    .expect("both downloads reached the upstream");
    thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let mut c = client_with(gw.data_addr(), Duration::from_secs(5));
    c.send(&request_bytes("GET", "/small", &[], b""));
    let r = c.read_response();
    let waited = started.elapsed();
    let r = r.unwrap_or_else(|e| panic!("no answer to /small within 5 s: {e}"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "small"),
        "after {waited:?}: {r:?}"
    );
    assert_metric_at_least(&gw, "mcp_gateway_errors_total{kind=\"send_timeout\"}", 1.0);
    drop(stalled);
}

#[test]
fn body_slower_than_min_body_rate_gets_408() {
    let up = Upstream::echo();
    let servers = json!([{"id": "a", "url": up.url(""), "maxConnections": 1}]);
    let gw = one_shard_gateway(servers, |cfg| {
        cfg["server"]["limits"] = json!({"minBodyRate": 1024, "minBodyRateWindow": 1000});
    });
    let addr = gw.data_addr();
    let mut a = client_with(addr, Duration::from_secs(6));
    a.send(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n");
    let mut w = a.conn.stream.try_clone().expect("clone");
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        for _ in 0..60 {
            if w.write_all(b"12345678").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    // Client B, meanwhile: a small POST.
    let b = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let mut b = client_with(addr, Duration::from_secs(5));
        b.send(&request_bytes("POST", "/x", &[], b"small"));
        (b.read_response().map_err(|e| e.to_string()), t.elapsed())
    });
    let r = a.read_response();
    let waited = started.elapsed();
    let r = r.unwrap_or_else(|e| panic!("no answer to the trickled body after {waited:?}: {e}"));
    assert_json_error(&r, 408);
    assert!(waited < Duration::from_secs(4), "408 only after {waited:?}");
    assert!(a.closed_within(Duration::from_secs(2)), "408 must close");
    let _ = a.conn.stream.shutdown(std::net::Shutdown::Both);
    let _ = trickle.join();
    let (rb, tb) = b.join().expect("client B");
    let rb = rb.unwrap_or_else(|e| panic!("client B got no answer within 5 s: {e}"));
    assert_eq!(
        (rb.status, rb.text().as_str()),
        (200, "POST /x 5"),
        "client B after {tb:?}: {rb:?}"
    );
    assert_metric_at_least(&gw, "mcp_gateway_errors_total{kind=\"body_timeout\"}", 1.0);
}

#[test]
fn upstream_timeout_starts_once_the_request_is_sent() {
    const LEN: usize = 2_000_000;
    let up = Upstream::echo();
    let servers = json!([{"id": "a", "url": up.url(""), "timeout": 1000}]);
    let gw = Gateway::start(&config(servers));
    let mut c = client_with(gw.data_addr(), READ);
    c.send(
        format!("POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
    );
    let mut w = c.conn.stream.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let piece = vec![b'p'; LEN / 10];
        for _ in 0..10 {
            thread::sleep(Duration::from_millis(200));
            if w.write_all(&piece).is_err() {
                return;
            }
        }
    });
    let r = c.read_response().expect("an answer");
    let _ = writer.join();
    assert_eq!(
        (r.status, r.text()),
        (200, format!("POST /x {LEN}")),
        "a 2 s upload to a server with a 1 s timeout: {r:?}"
    );
}

#[test]
fn chunked_body_whose_end_never_comes_gets_408() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["limits"] = json!({"headerTimeout": 1000});
    let gw = Gateway::start(&cfg);
    let mut c = client_with(gw.data_addr(), Duration::from_secs(6));
    let started = Instant::now();
    c.send(b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n");
    let r = c.read_response();
    let waited = started.elapsed();
    let r = r.unwrap_or_else(|e| panic!("no answer after {waited:?}: {e}"));
    assert_json_error(&r, 408);
    assert!(waited < Duration::from_secs(4), "408 only after {waited:?}");
}

#[test]
fn connection_that_never_sends_a_byte_is_closed_at_the_header_timeout() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["limits"] = json!({"headerTimeout": 500});
    cfg["server"]["keepAliveTimeout"] = json!(60000);
    let gw = Gateway::start(&cfg);
    let mut silent = TcpStream::connect(gw.data_addr()).expect("connect");
    let started = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(2)),
        "a connection that never sent a byte is still open after {:?} (headerTimeout 500 ms)",
        started.elapsed()
    );
}

#[test]
fn keep_alive_connection_idles_for_the_keep_alive_timeout() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["limits"] = json!({"headerTimeout": 500});
    cfg["server"]["keepAliveTimeout"] = json!(60000);
    let gw = Gateway::start(&cfg);
    let mut c = client_with(gw.data_addr(), READ);
    assert_eq!(c.get("/x").status, 200);
    assert!(
        !c.closed_within(Duration::from_secs(2)),
        "an idle keep-alive connection was closed before keepAliveTimeout (60 s)"
    );
    assert_eq!(c.get("/again").status, 200, "the connection still serves");
}

#[test]
fn idle_pooled_upstream_connections_are_reaped() {
    let closed = Arc::new(AtomicUsize::new(0));
    let seen_closed = closed.clone();
    let up = RawUpstream::start(move |stream, n| {
        let mut conn = Conn::new(stream);
        let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(60)));
        loop {
            match read_upstream_request(&mut conn, n) {
                Ok(Some(req)) => {
                    thread::sleep(Duration::from_millis(200));
                    respond(&mut conn.stream, &req, 200, &[], b"slow-ish");
                }
                Ok(None) | Err(_) => {
                    seen_closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["upstream"]["idleTimeout"] = json!(500);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    let clients: Vec<_> = (0..4)
        .map(|i| thread::spawn(move || client_with(addr, READ).get(&format!("/s{i}")).status))
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), 200);
    }
    let opened = up.accepted();
    assert!(
        opened >= 4,
        "4 concurrent requests opened {opened} connections"
    );
    let reaped = eventually(Duration::from_secs(3), || {
        (closed.load(Ordering::SeqCst) >= opened).then_some(())
    });
    assert!(
        reaped.is_some(),
        "idleTimeout 500 ms: after 3 s the gateway closed {} of {opened} idle upstream connections",
        closed.load(Ordering::SeqCst)
    );
}

#[test]
fn pooled_connections_closed_by_the_upstream_are_not_reused() {
    // Keep-alive answers, then the upstream closes its side 100 ms later.
    let up = Upstream::start(|req, s| {
        respond(s, req, 200, &[], format!("path={}", req.target).as_bytes());
        thread::sleep(Duration::from_millis(100));
        Flow::Close
    });
    let servers = json!([{"id": "a", "url": up.url(""), "maxConnections": 1}]);
    let gw = one_shard_gateway(servers, |_| {});
    for i in 0..5 {
        let target = format!("/n{i}");
        let r = client_with(gw.data_addr(), READ).get(&target);
        assert_eq!(
            (r.status, r.text()),
            (200, format!("path={target}")),
            "{r:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    assert_metric_at_least(&gw, "mcp_gateway_proxied_requests_total", 5.0);
    assert_eq!(
        gw.metric("mcp_gateway_upstream_retries_total"),
        Some(0.0),
        "a pooled connection the upstream had closed was written to (and the request retried)"
    );
    assert_eq!(
        up.request_count(),
        5,
        "each request reached the upstream once"
    );
}
