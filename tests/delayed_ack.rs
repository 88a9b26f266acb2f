//! An upstream that writes its response head and body in two writes without `TCP_NODELAY`
//! (as axum/hyper servers and many small HTTP servers do) must not cost the Linux
//! delayed-ACK timeout (about 40 ms) per response: Nagle holds the body until the head is
//! acknowledged, so the gateway acknowledges at once (`TCP_QUICKACK`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Answers every request with the head and the body in separate writes, Nagle on.
fn nagle_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..end + 4);
                    let body = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_response_written_in_two_pieces_is_not_delayed_by_the_ack_timer() {
    let port = nagle_upstream();
    let gw = Gateway::start(&config(json!([server(
        "nagle",
        &format!("http://127.0.0.1:{port}")
    )])));
    let mut client = gw.client();
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let r = client.get("/mcp/nagle");
        took.push(started.elapsed());
        assert_eq!(r.status, 200);
        assert!(r.text().ends_with("}}"), "{}", r.text());
    }
    took.sort();
    // Without the quick ACK every response here takes 40-45 ms; with it, well under 1 ms
    // (the bound leaves room for a loaded CI machine).
    assert!(
        took[10] < Duration::from_millis(20),
        "median {:?} (all: {took:?})",
        took[10]
    );
}
