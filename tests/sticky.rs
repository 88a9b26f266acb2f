//! `loadBalancer.sticky: true`: a client that keeps the gateway's cookie stays on one
//! upstream of the default group, across connections, shards and gateway processes that
//! share the session secret; a forged cookie or a down upstream gets a fresh pick.

mod common;

use common::*;
use serde_json::json;

const SECRET: &str = "sticky-test-secret-0123456789";

fn sticky_gateway(a: &Upstream, b: &Upstream) -> Gateway {
    let mut cfg = config(json!([server("a", &a.url("")), server("b", &b.url(""))]));
    cfg["loadBalancer"] = json!({"sticky": true});
    cfg["sessions"] = json!({"secret": SECRET});
    Gateway::start(&cfg)
}

/// The `name=value` part of the response's `Set-Cookie`, if any.
fn cookie(r: &Response) -> Option<String> {
    let set = r.header("set-cookie")?;
    assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
    set.split(';').next().map(str::to_string)
}

#[test]
fn a_client_with_the_cookie_stays_on_its_upstream() {
    let a = Upstream::fixed("A");
    let b = Upstream::fixed("B");
    let gw = sticky_gateway(&a, &b);
    let other = sticky_gateway(&a, &b);

    // Two fresh clients are spread by the balancer and each gets a cookie.
    let mut picks = Vec::new();
    for _ in 0..2 {
        let r = gw.client().get("/page");
        assert_eq!(r.status, 200);
        picks.push((
            r.text(),
            cookie(&r).expect("a cookie on the first response"),
        ));
    }
    assert_ne!(picks[0].0, picks[1].0, "round robin: {picks:?}");

    for (answer, cookie) in &picks {
        for gateway in [&gw, &other] {
            // New connections (any shard) and another process with the same secret.
            for _ in 0..6 {
                let r = gateway.client().request(
                    "GET",
                    "/page",
                    &[("Cookie", &format!("theme=dark; {cookie}"))],
                    b"",
                );
                assert_eq!(&r.text(), answer, "cookie {cookie}");
                assert!(
                    r.header("set-cookie").is_none(),
                    "a valid cookie is not re-sent"
                );
            }
        }
    }

    // A forged cookie is ignored: the request is balanced and gets a real cookie.
    let forged = "mcpgw_sticky=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = gw
        .client()
        .request("GET", "/page", &[("Cookie", forged)], b"");
    assert_eq!(r.status, 200);
    assert!(cookie(&r).is_some_and(|c| c != forged));
}

#[test]
fn without_sticky_no_cookie_is_set() {
    let a = Upstream::fixed("A");
    let gw = Gateway::start(&config(json!([server("a", &a.url(""))])));
    let r = gw.client().get("/page");
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_none());
}

#[test]
fn a_cookie_for_a_down_upstream_gets_a_fresh_pick() {
    let a = Upstream::fixed("A");
    let b = Upstream::fixed("B");
    let mut cfg = config(json!([server("a", &a.url("")), server("b", &b.url(""))]));
    cfg["loadBalancer"] = json!({"sticky": true});
    cfg["sessions"] = json!({"secret": SECRET});
    cfg["upstream"]["healthCheck"] = json!({"enabled": true, "interval": 200, "timeout": 1000});
    let gw = Gateway::start(&cfg);
    let to_a = eventually(std::time::Duration::from_secs(10), || {
        let r = gw.client().get("/page");
        (r.text() == "A").then(|| cookie(&r)).flatten()
    })
    .expect("a cookie for A");
    drop(a);
    let moved = eventually(std::time::Duration::from_secs(20), || {
        let r = gw
            .client()
            .request("GET", "/page", &[("Cookie", &to_a)], b"");
        (r.status == 200 && r.text() == "B")
            .then(|| cookie(&r))
            .flatten()
    });
    let to_b = moved.expect("moved to B with a new cookie");
    let r = gw
        .client()
        .request("GET", "/page", &[("Cookie", &to_b)], b"");
    assert_eq!(r.text(), "B");
}
