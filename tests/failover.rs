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

#[test]
fn a_chunked_body_is_not_replayed_and_its_trailers_smuggle_nothing() {
    let live = Upstream::echo();
    let gw = gateway(true, &live);
    let mut answered = 0;
    for _ in 0..6 {
        let mut c = gw.client();
        // The trailer would read as a request of its own if the body were parsed twice.
        c.send(
            b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\nX:GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        let r = c.read_response().expect("an answer");
        assert!(r.status == 200 || r.status == 502, "{r:?}");
        if r.status == 200 {
            answered += 1;
        }
        // Whatever the answer, the connection goes on in step: the next request is this one.
        let next = c.get("/next");
        assert!(next.status == 200 || next.status == 502, "{next:?}");
        if next.status == 200 {
            answered += 1;
        }
    }
    assert!(answered > 0);
    let targets: Vec<String> = live.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets.len(), answered, "{targets:?}");
    assert!(
        targets.iter().all(|t| t == "/x" || t == "/next"),
        "{targets:?}"
    );
}
