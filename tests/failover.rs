//! `loadBalancer.failover`: a request whose picked upstream cannot be reached (nothing
//! listens, connect refused) is routed again to another replica of its group, once;
//! without failover, or for a server named directly, the client gets the 502.

mod common;

use common::*;
use serde_json::json;

fn gateway(failover: bool, live: &Upstream) -> Gateway {
    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let mut cfg = config(json!([
        server("dead", &dead),
        server("live", &live.url("/"))
    ]));
    cfg["loadBalancer"] = json!({"failover": failover, "healthCheck": false});
    Gateway::start(&cfg)
}

#[test]
fn an_unreachable_replica_is_passed_over_for_the_request() {
    let live = Upstream::fixed("live");
    let gw = gateway(true, &live);
    let mut client = gw.client();
    for i in 0..20 {
        let r = if i % 2 == 0 {
            client.get("/x")
        } else {
            client.post("/x", &[("Content-Type", "text/plain")], b"a small body")
        };
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.text(), "live");
    }
    assert_eq!(live.request_count(), 20);
    let posts = live
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 10, "each POST reached the live replica once");
    assert!(
        gw.logs.text().contains("failing over"),
        "{}",
        gw.logs.text()
    );
    // A server named directly has no other replica.
    assert_json_error(&client.get("/mcp/dead"), 502);
}

#[test]
fn without_failover_the_client_sees_the_failure() {
    let live = Upstream::fixed("live");
    let gw = gateway(false, &live);
    let statuses: Vec<u16> = (0..10).map(|_| gw.get("/x").status).collect();
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
}
