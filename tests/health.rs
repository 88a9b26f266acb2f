//! Active health checks steer the default group: a member that fails its probes is skipped
//! (no client sees an error), and one that comes back is used again.

mod common;

use common::*;
use serde_json::json;
use std::net::TcpListener;
use std::time::Duration;

fn fast_checks() -> serde_json::Value {
    json!({
        "enabled": true,
        "interval": 100,
        "timeout": 200,
        "unhealthyThreshold": 1,
        "healthyThreshold": 1
    })
}

#[test]
fn unhealthy_member_is_skipped_and_comes_back_when_healthy() {
    let good = Upstream::fixed("good");
    // Reserve a port for the second member, and leave it closed for now.
    let port = closed_port();
    let mut cfg = config(json!([
        server("good", &good.url("")),
        server("late", &format!("http://127.0.0.1:{port}"))
    ]));
    cfg["upstream"]["healthCheck"] = fast_checks();
    let gw = Gateway::start(&cfg);

    let marked = eventually(Duration::from_secs(5), || {
        let v = gw.mgmt_json("/upstream/health");
        (v["healthy"] == 1 && v["servers"][1]["healthy"] == false).then_some(v)
    });
    let v = marked.expect("the closed member was never marked unhealthy");
    assert!(v["servers"][1]["lastError"].is_string(), "{v}");
    // Give the shards a tick to apply the health map, then no request may fail.
    std::thread::sleep(Duration::from_millis(250));
    let mut c = gw.client();
    for i in 0..20 {
        let r = c.get(&format!("/spread/{i}"));
        assert_eq!(r.status, 200, "request {i} hit the unhealthy member: {r:?}");
        assert_eq!(r.text(), "good");
    }
    let degraded = eventually(Duration::from_secs(2), || {
        (gw.get("/health").json()["status"] == "degraded").then_some(())
    });
    assert!(degraded.is_some(), "{:?}", gw.get("/health"));

    // The member comes up on its port: probes pass and it takes traffic again.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind the reserved port");
    let late = Upstream::start_on(listener, |req, s| {
        respond(s, req, 200, &[], b"late");
        Flow::KeepAlive
    });
    let back = eventually(Duration::from_secs(5), || {
        let v = gw.mgmt_json("/upstream/health");
        (v["healthy"] == 2).then_some(v)
    });
    assert!(
        back.is_some(),
        "the recovered member was never marked healthy"
    );
    let served = eventually(Duration::from_secs(3), || {
        let r = gw.client().get("/spread/again");
        (r.text() == "late").then_some(r)
    });
    assert!(served.is_some(), "the recovered member gets no traffic");
    assert!(late
        .requests()
        .iter()
        .any(|r| r.target == "/health" && r.method == "GET"));
    // The data port serves the page rendered at the last tick.
    let healthy = eventually(Duration::from_secs(2), || {
        (gw.get("/health").json()["status"] == "healthy").then_some(())
    });
    assert!(healthy.is_some(), "{:?}", gw.get("/health"));
}
