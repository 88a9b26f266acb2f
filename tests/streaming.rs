//! Bodies that stream: chunked both ways, Server-Sent Events forwarded event by event, and
//! 100 MB up and down through the gateway with bounded memory.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn chunked_request_body_reaches_upstream_intact() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url("/base"))])));
    let mut c = gw.client();

    // All in one write (the body arrives with the head).
    let r = c.request(
        "POST",
        "/mcp/a/in-one",
        &[("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "POST /base/in-one 11");
    assert_eq!(up.last().body, b"hello world");

    // Chunk by chunk, with pauses, so the body is relayed after the head went upstream.
    c.send(
        b"POST /mcp/a/piecewise HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let mut expected = Vec::new();
    for i in 0..5u8 {
        thread::sleep(Duration::from_millis(30));
        let data = vec![b'a' + i; 1000 + usize::from(i) * 3000];
        c.send(format!("{:X}\r\n", data.len()).as_bytes());
        c.send(&data);
        c.send(b"\r\n");
        expected.extend_from_slice(&data);
    }
    c.send(b"0\r\nX-Trailer: t\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), format!("POST /base/piecewise {}", expected.len()));
    let req = up.last();
    assert_eq!(req.body.len(), expected.len());
    assert!(req.body == expected, "chunked body corrupted on the way");

    // The connection is in step afterwards.
    let r = c.get("/mcp/a/after");
    assert_eq!(r.text(), "GET /base/after 0");
}

#[test]
fn chunked_response_reaches_client_intact() {
    let pieces: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            (0..(1 + usize::from(i) * 7000))
                .map(|j| (j as u8) ^ i)
                .collect()
        })
        .collect();
    let expected: Vec<u8> = pieces.concat();
    let sent = pieces.clone();
    let up = Upstream::start(move |_, s| {
        let _ = respond_chunked_head(s, 200, &[("Content-Type", "application/octet-stream")]);
        for p in &sent {
            let _ = write_chunk(s, p);
            thread::sleep(Duration::from_millis(10));
        }
        let _ = write_chunk(s, b"");
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    let mut c = gw.client();
    for _ in 0..2 {
        let r = c.get("/mcp/a/stream");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body.len(), expected.len());
        assert!(r.body == expected, "chunked response corrupted on the way");
    }
    // Both on the same upstream connection: chunked framing was followed to its end.
    assert_eq!(up.accepted(), 1);
}

#[test]
fn sse_events_are_forwarded_as_they_come() {
    let up = Upstream::start(|_, s| {
        let _ = respond_chunked_head(
            s,
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ],
        );
        let _ = write_chunk(s, b"id: 1\nevent: message\ndata: first\n\n");
        thread::sleep(Duration::from_millis(1500));
        let _ = write_chunk(s, b"id: 2\nevent: message\ndata: second\n\n");
        let _ = write_chunk(s, b"");
        Flow::KeepAlive
    });
    let gw = Gateway::start(&config(json!([server("a", &up.url("/mcp"))])));
    let mut c = gw.client();
    let started = Instant::now();
    c.send(&request_bytes(
        "POST",
        "/mcp/a",
        &[
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
    ));
    let head = c.read_head().expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream")));
    c.conn.read_until(b"data: first").expect("first event");
    let first_at = started.elapsed();
    println!("first SSE event after {first_at:?}");
    assert!(
        first_at < Duration::from_millis(700),
        "first event took {first_at:?}: the stream was buffered"
    );
    c.conn.read_until(b"data: second").expect("second event");
    let second_at = started.elapsed();
    assert!(second_at >= Duration::from_millis(1400), "{second_at:?}");
    // The stream ends properly (last chunk) and the connection stays usable.
    c.conn.read_until(b"0\r\n\r\n").expect("end of stream");
    let r = c.get("/health");
    assert_eq!(r.status, 200);
}

const BIG: u64 = 100_000_000;
const RSS_BUDGET_KIB: u64 = 16 * 1024;

/// Samples a process's RSS every 10 ms while alive; returns the peak seen.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = thread::spawn(move || {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(proc_status_kib(pid, "VmRSS"));
            thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    (stop, handle)
}

#[test]
fn hundred_megabytes_up_and_down_with_bounded_memory() {
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let up = Upstream::start(move |req, s| {
        if req.target.ends_with("/download") {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            if write_pattern(s, BIG).is_ok() {
                counter.fetch_add(BIG, Ordering::Relaxed);
            }
        } else {
            // The upload was counted and checked while read, never buffered whole.
            let body = format!(
                "{{\"len\":{},\"pattern\":{}}}",
                req.body_len, req.body_is_pattern
            );
            respond_json(s, req, &body);
        }
        Flow::KeepAlive
    });
    let mut cfg = config(json!([{"id": "big", "url": up.url(""), "timeout": 120000}]));
    cfg["server"]["limits"] = json!({"maxBodyBytes": 200_000_000});
    let gw = Gateway::start(&cfg);
    let mut c = gw.client();
    // Warm up the connection, the pool and the buffers before the baseline.
    assert_eq!(
        c.post("/mcp/big/upload", &[], b"warm-up").status,
        200,
        "warm-up"
    );
    thread::sleep(Duration::from_millis(200));
    let before = gw.rss_kib();
    let (stop, sampler) = rss_sampler(gw.pid());

    // Upload: written by a second thread while this one waits for the answer.
    let started = Instant::now();
    let mut writer = c.conn.stream.try_clone().expect("clone");
    let upload = thread::spawn(move || {
        let head = format!(
            "POST /mcp/big/upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n"
        );
        writer.write_all(head.as_bytes())?;
        write_pattern(&mut writer, BIG)
    });
    let r = c.read_response().expect("upload response");
    upload.join().expect("upload thread").expect("upload write");
    let up_time = started.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["len"], BIG, "upstream got the whole upload: {v}");
    assert_eq!(v["pattern"], true, "upload corrupted: {v}");

    // Download on the same connection.
    let started = Instant::now();
    let mut check = PatternCheck::new();
    c.send(&request_bytes("GET", "/mcp/big/download", &[], b""));
    let r = c
        .read_response_to(false, &mut |b| check.feed(b))
        .expect("download response");
    let down_time = started.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(check.len, BIG, "client got the whole download");
    assert!(check.ok, "download corrupted");

    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    let after = gw.rss_kib();
    let growth = peak.max(after).saturating_sub(before);
    println!(
        "100 MB upload {up_time:?}, download {down_time:?}; gateway RSS before {before} KiB, \
         peak {peak} KiB, after {after} KiB, growth {growth} KiB"
    );
    assert!(
        growth < RSS_BUDGET_KIB,
        "gateway RSS grew by {growth} KiB moving 100 MB each way (budget {RSS_BUDGET_KIB} KiB)"
    );
    assert_eq!(served.load(Ordering::Relaxed), BIG);
}
