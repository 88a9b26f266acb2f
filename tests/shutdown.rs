//! Graceful shutdown: on SIGTERM the gateway stops accepting, lets the requests in flight
//! finish (up to `server.shutdownTimeout`), then exits 0; if they take longer it exits
//! anyway (non-zero) rather than hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// An upstream that answers after `delay`.
fn slow_upstream(delay: Duration) -> Upstream {
    Upstream::start(move |req, s| {
        std::thread::sleep(delay);
        respond(
            s,
            req,
            200,
            &[("Content-Type", "text/plain")],
            b"slow answer",
        );
        Flow::KeepAlive
    })
}

fn terminate(gw: &Gateway) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the gateway process to exit; its exit status.
fn exit_status(gw: &mut Gateway, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = gw.child.0.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "the gateway did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits() {
    let up = slow_upstream(Duration::from_millis(1500));
    let mut gw = Gateway::start(&config(json!([server("slow", &up.url(""))])));
    let addr = gw.data_addr();
    let in_flight = std::thread::spawn(move || Client::connect(addr).get("/work"));
    // The request reached the upstream: it is in flight.
    eventually(Duration::from_secs(5), || {
        (up.request_count() == 1).then_some(())
    })
    .expect("request in flight");
    terminate(&gw);
    let answer = in_flight.join().expect("client thread");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.text(), "slow answer");
    let status = exit_status(&mut gw, Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}\n{}", gw.logs.text());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    let logs = gw.logs.text();
    assert!(
        logs.contains("shutting down") && logs.contains("drained"),
        "{logs}"
    );
}

#[test]
fn requests_slower_than_the_shutdown_timeout_do_not_hold_the_exit() {
    let up = slow_upstream(Duration::from_secs(30));
    let mut cfg = config(json!([server("stuck", &up.url(""))]));
    cfg["server"]["shutdownTimeout"] = json!(500);
    let mut gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    std::thread::spawn(move || {
        // The client stays connected (one that leaves ends its request at once).
        let mut client = Client::connect(addr);
        let _ = client.try_send(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n");
        std::thread::sleep(Duration::from_secs(30));
    });
    eventually(Duration::from_secs(5), || {
        (up.request_count() == 1).then_some(())
    })
    .expect("request in flight");
    let started = Instant::now();
    terminate(&gw);
    let status = exit_status(&mut gw, Duration::from_secs(10));
    assert!(
        !status.success(),
        "gave up on a stuck request: non-zero exit"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
