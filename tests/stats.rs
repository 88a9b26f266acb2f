//! Metrics: exact counts merged from two shards, the Prometheus page, and pages that show
//! every request completed a tick before they are read, on both ports.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn exact_counts_across_two_shards() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["workers"] = json!(2);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    // 30 connections of 10 requests each, 3 clients at a time.
    let workers: Vec<_> = (0..3)
        .map(|t| {
            std::thread::spawn(move || {
                for conn in 0..10 {
                    let mut c = Client::connect(addr);
                    for i in 0..10 {
                        let r = c.get(&format!("/mcp/a/t{t}/c{conn}/r{i}"));
                        assert_eq!(r.status, 200, "{r:?}");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    assert_eq!(up.request_count(), 300);
    let s = gw.wait_stats(|s| s["requests"].as_u64() >= Some(300));
    // Three more intervals: nothing may be counted twice.
    std::thread::sleep(Duration::from_millis(300));
    let s2 = gw.stats();
    assert_eq!(s["requests"], s2["requests"], "requests kept changing");
    let shards: Vec<u64> = s2["shards"]
        .as_array()
        .expect("shards array")
        .iter()
        .map(|x| x["requests"].as_u64().unwrap_or(0))
        .collect();
    println!(
        "requests {} proxied {} 2xx {} per shard {shards:?}",
        s2["requests"], s2["proxied"], s2["statusCodes"]["2xx"]
    );
    assert_eq!(s2["requests"], 300, "{s2}");
    assert_eq!(s2["responses"], 300, "{s2}");
    assert_eq!(s2["proxied"], 300, "{s2}");
    assert_eq!(s2["statusCodes"]["2xx"], 300, "{s2}");
    assert_eq!(s2["errors"], 0, "{s2}");
    assert_eq!(shards.len(), 2);
    assert_eq!(shards.iter().sum::<u64>(), 300);
    // With 30 connections SO_REUSEPORT leaves one shard idle with odds of 2^-29.
    assert!(
        shards.iter().all(|n| *n > 0),
        "one shard got no connection: {shards:?}"
    );
    assert_eq!(s2["connections"]["total"], 30, "{s2}");
    let upstreams = s2["upstreams"].as_array().expect("upstreams");
    assert_eq!(upstreams.len(), 1);
    assert_eq!(upstreams[0]["id"], "a");
    assert_eq!(upstreams[0]["requests"], 300);
    // Every client connection was closed: none is counted as active.
    let s3 = gw.wait_stats(|s| s["connections"]["active"] == 0);
    assert_eq!(s3["connections"]["active"], 0, "{}", s3["connections"]);
}

#[test]
fn errors_are_counted_by_kind() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    for _ in 0..3 {
        assert_eq!(gw.get("/mcp/nope").status, 404);
    }
    assert_eq!(gw.get("/mcp/a/ok").status, 200);
    gw.wait_stats(|s| s["requests"].as_u64() >= Some(4));
    std::thread::sleep(Duration::from_millis(300));
    let s = gw.stats();
    assert_eq!(s["requests"], 4, "{s}");
    assert_eq!(s["statusCodes"]["4xx"], 3, "{s}");
    assert_eq!(s["statusCodes"]["2xx"], 1, "{s}");
    assert_eq!(s["errorsByKind"]["unknown_server"], 3, "{s}");
    assert_eq!(s["proxied"], 1, "{s}");
}

#[test]
fn metrics_page_is_prometheus_text() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(json!([server("a", &up.url(""))])));
    for _ in 0..5 {
        assert_eq!(gw.get("/mcp/a/x").status, 200);
    }
    gw.wait_stats(|s| s["requests"].as_u64() >= Some(5));
    let r = gw.get("/metrics");
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    let text = r.text();
    for needle in [
        "# TYPE mcp_gateway_requests_total counter",
        "mcp_gateway_requests_total ",
        "# TYPE mcp_gateway_request_duration_seconds histogram",
        "mcp_gateway_request_duration_seconds_bucket{le=\"+Inf\"}",
        "mcp_gateway_request_duration_seconds_bucket{le=\"0.005\"}",
        "mcp_gateway_request_duration_seconds_count",
        "mcp_gateway_upstream_requests_total{upstream=\"a\"}",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle:?}:\n{text}");
    }
    assert!(
        text.contains("mcp_gateway_requests_total 6"),
        "requests_total should count the 5 requests and this read:\n{text}"
    );
    // Every non-comment line is `name{labels} value` with a numeric value.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    // The same page on the management port.
    let m = Client::connect(gw.mgmt_addr()).get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .text()
        .contains("mcp_gateway_request_duration_seconds_bucket"));
}

/// One read of `/stats` or `/metrics`, on either port, counts every request that completed
/// at least a tick (`metricsInterval`, 100 ms here) before it, whichever shard served it.
#[test]
fn one_read_counts_every_request_completed_a_tick_before() {
    let up = Upstream::fixed("ok");
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["workers"] = json!(2);
    let gw = Gateway::start(&cfg);
    let addr = gw.data_addr();
    // 3000 requests over 30 keep-alive connections, all open at once.
    let clients: Vec<_> = (0..30)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..100 {
                    let r = c.get("/items");
                    assert_eq!(r.status, 200, "{r:?}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    assert_eq!(up.request_count(), 3000);
    std::thread::sleep(Duration::from_millis(1500));

    // The data port: each page counts the reads before it and itself.
    let stats = gw.get("/stats");
    assert_eq!(stats.status, 200, "{stats:?}");
    let s = stats.json();
    assert_eq!(s["proxied"], 3000, "{s}");
    assert_eq!(s["requests"], 3001, "{s}");
    let metrics = gw.get("/metrics").text();
    let sample = |series| metric_value(&metrics, series);
    assert_eq!(
        sample("mcp_gateway_proxied_requests_total"),
        Some(3000.0),
        "{metrics}"
    );
    assert_eq!(
        sample("mcp_gateway_requests_total"),
        Some(3002.0),
        "{metrics}"
    );

    // The management port (its own reads are not data-port requests).
    let s = gw.stats();
    assert_eq!(s["proxied"], 3000, "{s}");
    assert_eq!(s["requests"], 3002, "{s}");
    assert_eq!(
        gw.metric("mcp_gateway_proxied_requests_total"),
        Some(3000.0)
    );
}
