//! Upstream connection pooling: one kept-alive upstream connection carries many requests, and
//! a pooled connection the upstream closed is retried once on a fresh one.

mod common;

use common::*;
use serde_json::json;

#[test]
fn one_upstream_connection_is_reused() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let mut c = gw.client();
    for i in 0..50 {
        let r = c.get(&format!("/mcp/a/n{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("GET /n{i} 0"));
    }
    assert_eq!(up.request_count(), 50);
    assert_eq!(
        up.accepted(),
        1,
        "50 sequential requests should share one upstream connection"
    );
    let s = gw.wait_stats(|s| s["upstreamConnections"]["reused"].as_u64() >= Some(49));
    println!("upstreamConnections: {}", s["upstreamConnections"]);
    assert_eq!(s["upstreamConnections"]["opened"], 1, "{s}");
    assert!(
        s["upstreamConnections"]["reused"].as_u64() >= Some(49),
        "reused: {}",
        s["upstreamConnections"]
    );
}

#[test]
fn stale_pooled_connection_is_retried_on_a_fresh_one() {
    // Advertises keep-alive (no `Connection: close`) but closes after every response.
    let up = Upstream::start(|req, s| {
        let body = format!("{} {} {}", req.method, req.target, req.body_text());
        respond(
            s,
            req,
            200,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        );
        Flow::Close
    });
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let mut c = gw.client();
    for i in 0..10 {
        // GETs come with no pause: the next one may meet the upstream's FIN or land just
        // before its close (then a reset), and is sent again on a fresh connection. A POST
        // is never sent again once written (a tool call must not run twice); it comes after
        // the upstream's close, which the gateway sees before writing (no retry needed).
        let r = if i % 2 == 0 {
            c.get(&format!("/mcp/a/g{i}"))
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
            c.post(&format!("/mcp/a/p{i}"), &[], format!("body-{i}").as_bytes())
        };
        assert_eq!(r.status, 200, "request {i} failed: {r:?}");
        let want = if i % 2 == 0 {
            format!("GET /g{i} ")
        } else {
            format!("POST /p{i} body-{i}")
        };
        assert_eq!(r.text(), want);
    }
    // Each request reached the upstream exactly once, each on its own connection.
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len(), 10, "{targets:?}");
    assert_eq!(up.accepted(), 10);
    let s = gw.wait_stats(|s| s["statusCodes"]["2xx"].as_u64() == Some(10));
    println!("upstreamConnections: {}", s["upstreamConnections"]);
    assert_eq!(s["statusCodes"]["2xx"], 10, "{s}");
    assert_eq!(s["statusCodes"]["5xx"], 0, "{s}");
}

#[test]
fn pool_slots_are_released_after_failures() {
    use std::io::Write;
    use std::time::Duration;
    let up = Upstream::start(|req, s| match req.target.as_str() {
        "/hang" => hang(s),
        "/garbage" => {
            let _ = s.write_all(b"garbage\r\n\r\n");
            Flow::Close
        }
        "/cut" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort");
            Flow::Close
        }
        "/big" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n");
            let _ = write_pattern(s, 50_000_000);
            Flow::Close
        }
        _ => {
            respond(s, req, 200, &[], b"ok");
            Flow::KeepAlive
        }
    });
    // One connection allowed to the upstream: a leaked slot shows as 503 at once.
    let mut cfg = config(json!([{
        "id": "a", "url": up.url(""), "maxConnections": 1, "timeout": 300
    }]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let ok = |when: &str| {
        let r = eventually(Duration::from_secs(2), || {
            let r = gw.client().get("/mcp/a/ok");
            (r.status == 200).then_some(r)
        });
        assert!(
            r.is_some(),
            "after {when}: the slot was not given back: {:?}",
            gw.client().get("/mcp/a/ok")
        );
    };
    ok("start");
    assert_eq!(gw.client().get("/mcp/a/hang").status, 504);
    ok("a 504");
    assert_eq!(gw.client().get("/mcp/a/garbage").status, 502);
    ok("a 502");
    let mut c = gw.client();
    c.send(&request_bytes("GET", "/mcp/a/cut", &[], b""));
    let _ = c.read_response();
    ok("a body cut short");
    // The client goes away in the middle of a large download.
    let mut c = gw.client();
    c.send(&request_bytes("GET", "/mcp/a/big", &[], b""));
    let head = c.read_head().expect("download head");
    assert_eq!(head.status, 200);
    let _ = c.conn.read_until(&[0, 1, 2, 3]);
    let _ = c.conn.stream.flush();
    drop(c);
    ok("the client left mid-download");
}

#[test]
fn upstream_max_connections_is_a_hard_cap() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    let up = Upstream::start(move |req, s| {
        let now = l.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        l.fetch_sub(1, Ordering::SeqCst);
        respond(s, req, 200, &[], b"slow");
        Flow::KeepAlive
    });
    let mut cfg = config(json!([{"id": "a", "url": up.url(""), "maxConnections": 2}]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    let clients: Vec<_> = (0..5)
        .map(|i| std::thread::spawn(move || Client::connect(addr).get(&format!("/mcp/a/{i}"))))
        .collect();
    let answers: Vec<Response> = clients
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    println!(
        "statuses {statuses:?}, upstream peak concurrency {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "more than maxConnections upstream connections"
    );
    assert!(up.accepted() <= 2, "accepted {}", up.accepted());
    assert!(statuses.contains(&200));
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_json_error(r, 503);
        assert!(r.header("retry-after").is_some(), "{r:?}");
    }
}

#[test]
fn upstream_connection_close_is_honoured() {
    // Says `Connection: close` but leaves the socket open: the gateway must not reuse it.
    let up = Upstream::start(|req, s| {
        respond(s, req, 200, &[("Connection", "close")], b"bye");
        Flow::KeepAlive
    });
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let mut c = gw.client();
    for _ in 0..3 {
        let r = c.get("/mcp/a/x");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "bye");
        assert!(!r.closes(), "the client connection may stay open: {r:?}");
    }
    assert_eq!(
        up.accepted(),
        3,
        "a `Connection: close` upstream connection was reused"
    );
}

#[test]
fn queued_request_gets_the_connection_back_and_one_that_gave_up_does_not_swallow_it() {
    use std::io::Write;
    use std::thread;
    use std::time::{Duration, Instant};
    let up = Upstream::start(|req, s| {
        if req.target == "/slow-body" {
            // The head at once, then one body byte every 100 ms: holds the connection ~1.2 s.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
            for _ in 0..12 {
                thread::sleep(Duration::from_millis(100));
                let _ = s.write_all(b"x");
            }
        } else {
            respond(s, req, 200, &[], b"fast");
        }
        Flow::KeepAlive
    });
    let mut cfg = config(json!([{
        "id": "a", "url": up.url(""), "maxConnections": 1, "timeout": 700
    }]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    let t0 = Instant::now();
    let holder = thread::spawn(move || Client::connect(addr).get("/mcp/a/slow-body"));
    thread::sleep(Duration::from_millis(50));
    // Waits at the cap and gives up at its deadline (~0.75 s), before the holder is done.
    let quitter = thread::spawn(move || Client::connect(addr).get("/mcp/a/fast"));
    thread::sleep(Duration::from_millis(850));
    // Queued at ~0.9 s with a deadline at ~1.6 s: the holder finishes at ~1.2 s.
    let waiter = Client::connect(addr).get("/mcp/a/fast");
    let waited_until = t0.elapsed();
    let held = holder.join().expect("holder");
    let quit = quitter.join().expect("quitter");
    println!(
        "holder {} quitter {} waiter {} at {waited_until:?}",
        held.status, quit.status, waiter.status
    );
    assert_eq!((held.status, held.text().as_str()), (200, "xxxxxxxxxxxx"));
    assert!(
        matches!(quit.status, 503 | 504),
        "the request that waited past its deadline: {quit:?}"
    );
    assert_json_error(&quit, quit.status);
    assert_eq!(
        (waiter.status, waiter.text().as_str()),
        (200, "fast"),
        "a queued request should get the connection when it comes back"
    );
    assert_eq!(gw.client().get("/mcp/a/fast").status, 200);
    assert_eq!(
        up.accepted(),
        1,
        "the one connection was handed on, never reopened"
    );
}
