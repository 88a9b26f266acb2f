//! Proxying basics over real sockets: what the upstream sees (target rewrite, `Host`,
//! forwarding headers, request id, no hop-by-hop headers), what the client gets back,
//! round-robin over the default group, pipelining, `HEAD` and `Expect: 100-continue`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// Headers a proxy must never forward (RFC 9110 §7.6.1), plus the one named in `Connection`.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "x-hop-custom",
];

fn assert_no_hop_by_hop(req: &Request) {
    for h in HOP_BY_HOP {
        assert!(
            req.header(h).is_none(),
            "hop-by-hop header `{h}` reached the upstream:\n{}",
            req.raw_head
        );
    }
}

#[test]
fn get_is_proxied_with_rewritten_target_and_forwarding_headers() {
    let up = Upstream::start(|req, s| {
        respond(
            s,
            req,
            200,
            &[
                ("Content-Type", "text/plain"),
                ("X-Upstream", "yes"),
                // Hop-by-hop on the way back: must not reach the client.
                ("Keep-Alive", "timeout=5"),
                ("Connection", "keep-alive, X-Up-Hop"),
                ("X-Up-Hop", "1"),
            ],
            b"hello from upstream",
        );
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url("/base"))])));

    let mut c = gw.client();
    let r = c.request(
        "GET",
        "/mcp/a/x?y=1",
        &[
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("Keep-Alive", "timeout=30"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Hop-Custom", "drop me"),
            ("X-End-To-End", "keep me"),
            ("X-Request-Id", "client-id-123"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello from upstream");
    assert_eq!(r.header("x-upstream"), Some("yes"));
    for h in ["keep-alive", "x-up-hop"] {
        assert!(
            r.header(h).is_none(),
            "hop-by-hop response header `{h}` reached the client: {r:?}"
        );
    }

    let req = up.last();
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.target, "/base/x?y=1",
        "target not rewritten onto the base path"
    );
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(
        req.header("host"),
        Some(format!("127.0.0.1:{}", up.port()).as_str()),
        "Host must be the upstream's authority"
    );
    assert_eq!(req.header_count("host"), 1);
    let xff = req.header("x-forwarded-for").unwrap_or("");
    assert!(xff.contains("127.0.0.1"), "X-Forwarded-For: {xff:?}");
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-host"), Some("localhost"));
    assert_eq!(req.header("x-request-id"), Some("client-id-123"));
    assert_eq!(
        req.header_count("x-request-id"),
        1,
        "exactly one X-Request-Id:\n{}",
        req.raw_head
    );
    assert_eq!(req.header("x-end-to-end"), Some("keep me"));
    assert_no_hop_by_hop(&req);

    // The connection is still good for another request.
    let r = c.get("/mcp/a");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/base");
}

#[test]
fn post_body_and_status_come_back_and_request_ids_are_generated() {
    let up = Upstream::start(|req, s| {
        let mut body = b"echo:".to_vec();
        body.extend_from_slice(&req.body);
        respond(s, req, 201, &[("Content-Type", "application/json")], &body);
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url("/base"))])));
    let payload = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

    let mut c = gw.client();
    let r = c.post(
        "/mcp/a/rpc",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "10.1.2.3"),
        ],
        payload,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body, [b"echo:".as_slice(), payload].concat());
    let first = up.last();
    assert_eq!(first.method, "POST");
    assert_eq!(first.target, "/base/rpc");
    assert_eq!(first.body, payload);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        first.header("x-forwarded-for"),
        Some("10.1.2.3, 127.0.0.1"),
        "the client's X-Forwarded-For is extended"
    );
    assert_no_hop_by_hop(&first);

    // No X-Request-Id from the client: the gateway makes one, different per request.
    let r = c.post("/mcp/a/rpc", &[], b"second");
    assert_eq!(r.status, 201);
    let second = up.last();
    assert_eq!(second.body, b"second");
    let id1 = first.header("x-request-id").unwrap_or("");
    let id2 = second.header("x-request-id").unwrap_or("");
    assert!(
        !id1.is_empty() && !id2.is_empty(),
        "generated ids: {id1:?} {id2:?}"
    );
    assert_ne!(id1, id2, "request ids must differ per request");
}

#[test]
fn default_group_round_robin_spreads_requests() {
    let a = Upstream::fixed("A");
    let b = Upstream::fixed("B");
    let mut cfg = config(json!([server("a", &a.url("")), server("b", &b.url(""))]));
    cfg["server"]["workers"] = json!(1);
    let gw = Gateway::start(&cfg);

    let mut c = gw.client();
    let mut seen = String::new();
    for i in 0..20 {
        let r = c.get(&format!("/anything/{i}?q=1"));
        assert_eq!(r.status, 200, "{r:?}");
        seen.push_str(&r.text());
    }
    println!("default group answers: {seen}");
    assert_eq!(a.request_count(), 10, "round robin over 2 equal upstreams");
    assert_eq!(b.request_count(), 10, "round robin over 2 equal upstreams");
    assert!(!seen.contains("AA") && !seen.contains("BB"), "{seen}");
    // The default group forwards the target unchanged.
    let mut targets: Vec<String> = a
        .requests()
        .into_iter()
        .chain(b.requests())
        .map(|r| r.target)
        .collect();
    targets.sort_by_key(|t| t[10..t.len() - 4].parse::<u32>().unwrap_or(99));
    let want: Vec<String> = (0..20).map(|i| format!("/anything/{i}?q=1")).collect();
    assert_eq!(targets, want);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let mut burst = request_bytes("GET", "/mcp/a/one", &[], b"");
    burst.extend(request_bytes("POST", "/mcp/a/two", &[], b"0123456789"));
    burst.extend(request_bytes("GET", "/mcp/a/three", &[], b""));
    burst.extend(request_bytes("GET", "/health", &[], b""));
    burst.extend(request_bytes("GET", "/mcp/nope/x", &[], b""));
    burst.extend(request_bytes("GET", "/mcp/a/four?x", &[], b""));
    c.send(&burst);
    let expected = [
        "GET /one 0",
        "POST /two 10",
        "GET /three 0",
        "(health)",
        "(404)",
        "GET /four?x 0",
    ];
    for want in expected {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("no response for {want}: {e}"));
        match want {
            "(health)" => assert!(r.json()["status"].is_string(), "{r:?}"),
            "(404)" => {
                assert_json_error(&r, 404);
            }
            _ => {
                assert_eq!(r.status, 200, "{r:?}");
                assert_eq!(r.text(), want);
            }
        }
    }
}

#[test]
fn head_response_has_no_body_and_connection_stays_in_step() {
    let up = Upstream::start(|req, s| {
        respond(s, req, 200, &[("Content-Type", "text/plain")], b"12345");
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.request("HEAD", "/mcp/a/h", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(r.body.is_empty());
    let r = c.get("/mcp/a/g");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "12345");
    assert_eq!(up.requests()[0].method, "HEAD");
}

#[test]
fn expect_100_continue_is_answered_and_not_forwarded() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    c.send(b"POST /mcp/a/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_head().expect("an interim response");
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(b"hello world");
    let r = c.read_response().expect("final response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "POST /upload 11");
    let req = up.last();
    assert_eq!(req.body, b"hello world");
    assert!(req.header("expect").is_none(), "{}", req.raw_head);
}

#[test]
fn own_pages_answer_on_data_and_management_ports() {
    let up = Upstream::fixed("x");
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    for page in ["/health", "/info", "/stats", "/status", "/upstream/health"] {
        let r = gw.get(page);
        assert_eq!(r.status, 200, "{page} on the data port: {r:?}");
        assert!(r.json().is_object(), "{page}");
        let v = gw.mgmt_json(page);
        assert!(v.is_object(), "{page} on the management port");
    }
    let info = gw.mgmt_json("/info");
    assert_eq!(info["runtime"]["shards"], 2);
    assert_eq!(info["listeners"]["http"], gw.data.to_string());
    // None of the own pages reached the upstream.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(up.request_count(), 0);
}

#[test]
fn query_only_target_and_bare_server_path_are_rewritten() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([
        server("a", &up.url("/base")),
        server("root", &up.url(""))
    ])));
    let mut c = gw.client();
    assert_eq!(c.get("/mcp/a?z=2").text(), "GET /base?z=2 0");
    assert_eq!(c.get("/mcp/a/").text(), "GET /base/ 0");
    assert_eq!(c.get("/mcp/root").text(), "GET / 0");
    assert_eq!(c.get("/mcp/root?z=3").text(), "GET /?z=3 0");
}

#[test]
fn client_connection_close_is_honoured() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.request("GET", "/mcp/a/bye", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.closes(),
        "the response should say Connection: close: {r:?}"
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "connection left open"
    );
}

#[test]
fn close_delimited_upstream_response_is_relayed_whole() {
    // No Content-Length, no chunked: the body ends when the upstream closes.
    let up = Upstream::start(|_, s| {
        use std::io::Write;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
        for i in 0..5 {
            let _ = s.write_all(format!("part{i};").as_bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
        Flow::Close
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.get("/mcp/a/eof");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "part0;part1;part2;part3;part4;");
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn no_body_statuses_keep_the_connection_in_step() {
    let up = Upstream::start(|req, s| {
        use std::io::Write;
        match req.target.as_str() {
            "/204" => {
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
            }
            "/304" => {
                let _ = s.write_all(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
            }
            _ => respond(s, req, 200, &[], b"plain"),
        }
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.get("/mcp/a/204");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-a"), Some("1"));
    let r = c.get("/mcp/a/304");
    assert_eq!(r.status, 304);
    let r = c.get("/mcp/a/plain");
    assert_eq!(r.text(), "plain");
    assert_eq!(
        up.accepted(),
        1,
        "the upstream connection was kept throughout"
    );
}

#[test]
fn interim_1xx_from_upstream_is_skipped() {
    let up = Upstream::start(|req, s| {
        use std::io::Write;
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let last = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if req.target == "/apart" {
            let _ = s.write_all(interim);
            std::thread::sleep(Duration::from_millis(50));
            let _ = s.write_all(last);
        } else {
            // Interim and final response in one segment.
            let _ = s.write_all(&[interim.as_slice(), last.as_slice()].concat());
        }
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([
        {"id": "a", "url": up.url(""), "timeout": 1000}
    ])));
    let mut c = gw.client();
    let r = c.get("/mcp/a/apart");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    let r = c.get("/mcp/a/together");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ok"),
        "1xx and the final response in one read: {r:?}"
    );
}

#[test]
fn pipelined_large_post_then_get_in_one_write() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let body = vec![b'q'; 300 * 1024];
    let mut burst = request_bytes("POST", "/mcp/a/big", &[], &body);
    burst.extend(request_bytes("GET", "/mcp/a/after-big", &[], b""));
    burst.extend(request_bytes("POST", "/mcp/a/small", &[], b"xyz"));
    // Written by another thread: the gateway reads while we write.
    let mut w = c.conn.stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut w, &burst));
    for want in ["POST /big 307200", "GET /after-big 0", "POST /small 3"] {
        let r = c.read_response().expect("pipelined response");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), want);
    }
    writer.join().expect("writer").expect("write");
    assert!(up.requests()[0].body == body);
}

#[test]
fn http10_client_gets_no_chunked_encoding() {
    // HTTP/1.1 (RFC 9112 §6.1): a server MUST NOT send Transfer-Encoding to a 1.0 client.
    let up = Upstream::start(|_, s| {
        let _ = respond_chunked_head(s, 200, &[("Content-Type", "text/plain")]);
        let _ = write_chunk(s, b"hello ");
        let _ = write_chunk(s, b"world");
        let _ = write_chunk(s, b"");
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    c.send(b"GET /mcp/a/old HTTP/1.0\r\n\r\n");
    let head = c.read_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    let mut body = Vec::new();
    c.conn
        .read_to_eof(&mut |b| body.extend_from_slice(b))
        .expect("body until close");
    assert!(
        head.header("transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client: {head:?} body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(String::from_utf8_lossy(&body), "hello world");
}

#[test]
fn http10_request_is_proxied_and_closed() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    c.send(b"GET /mcp/a/old HTTP/1.0\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "GET /old 0");
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "1.0 without keep-alive must close"
    );
    assert_eq!(up.last().header("host"), Some(up.addr.to_string().as_str()));
}

#[test]
fn upstream_response_with_content_length_and_chunked_is_not_passed_on_as_both() {
    // RFC 9112 §6.3: chunked wins, and an intermediary must drop the Content-Length
    // (a sender must never send both).
    let up = Upstream::start(|_, s| {
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    let r = c.get("/mcp/a/both");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert!(
        !(r.header("content-length").is_some() && r.header("transfer-encoding").is_some()),
        "both Content-Length and Transfer-Encoding sent to the client: {r:?}"
    );
}

#[test]
fn upstream_response_with_conflicting_content_lengths_gets_502() {
    // RFC 9112 §6.3: an invalid Content-Length from the server: 502, never relayed.
    let up = Upstream::start(|_, s| {
        use std::io::Write;
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello");
        Flow::Close
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let r = gw.client().get("/mcp/a/conflict");
    assert_json_error(&r, 502);
}
