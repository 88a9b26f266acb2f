//! Live configuration: the config file rewritten under load (weights, servers added and
//! removed, a policy changed) with no failed request, pooled connections of unchanged
//! servers kept, a bad config refused while the old one keeps serving, SIGHUP, and
//! settings that need a restart.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Writes the config the way editors and `kubectl` do: a new file renamed over the old.
fn replace_config(gw: &Gateway, config: &Value) {
    let path = gw.dir.path().join("gateway.json");
    let tmp = gw.dir.path().join(".gateway.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(config).expect("json")).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
}

/// Writes the config in place (truncate and write), as `echo > file` does.
fn rewrite_config(gw: &Gateway, config: &Value) {
    let path = gw.dir.path().join("gateway.json");
    std::fs::write(&path, serde_json::to_string_pretty(config).expect("json")).expect("write");
}

fn info(gw: &Gateway) -> Value {
    gw.mgmt_json("/info")
}

fn generation(gw: &Gateway) -> u64 {
    info(gw)["config"]["generation"].as_u64().unwrap_or(0)
}

/// Waits until every shard runs generation `at_least` (or a later one).
fn wait_generation(gw: &Gateway, at_least: u64) -> u64 {
    eventually(Duration::from_secs(5), || {
        let info = info(gw);
        let on = info["config"]["shardsOn"].as_u64().unwrap_or(0);
        (on >= at_least).then(|| info["config"]["generation"].as_u64().unwrap_or(0))
    })
    .unwrap_or_else(|| panic!("config generation never reached {at_least}: {}", info(gw)))
}

/// Clients sending keep-alive GETs until stopped; counts answers that are not 2xx and
/// socket errors.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<Vec<std::sync::Mutex<Vec<String>>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(gw: &Gateway, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed: Arc<Vec<_>> = Arc::new(
            (0..connections)
                .map(|_| std::sync::Mutex::new(Vec::new()))
                .collect(),
        );
        let addr = gw.data_addr();
        let threads = (0..connections)
            .map(|i| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    while !stop.load(Ordering::Relaxed) {
                        let req = request_bytes("GET", "/load", &[], b"");
                        let result = client.try_send(&req).and_then(|()| client.read_response());
                        sent.fetch_add(1, Ordering::Relaxed);
                        let problem = match result {
                            Ok(r) if (200..300).contains(&r.status) && !r.closes() => None,
                            Ok(r) => Some(format!("{} {}", r.status, r.text())),
                            Err(e) => Some(format!("socket: {e}")),
                        };
                        if let Some(p) = problem {
                            failed[i].lock().unwrap_or_else(|e| e.into_inner()).push(p);
                            client = Client::connect(addr);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            threads,
        }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failed = self
            .failed
            .iter()
            .flat_map(|f| f.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        (self.sent.load(Ordering::Relaxed), failed)
    }
}

fn weighted(id: &str, url: &str, weight: u32) -> Value {
    json!({"id": id, "url": url, "weight": weight})
}

#[test]
fn rewrites_under_load_lose_no_request_and_keep_pools() {
    let (a, b, c, d) = (
        Upstream::fixed("a"),
        Upstream::fixed("b"),
        Upstream::fixed("c"),
        Upstream::fixed("d"),
    );
    let (ua, ub, uc, ud) = (a.url("/"), b.url("/"), c.url("/"), d.url("/"));
    let start = config(json!([
        weighted("a", &ua, 1),
        weighted("b", &ub, 1),
        weighted("c", &uc, 1)
    ]));
    let gw = Gateway::start(&start);
    let load = Load::start(&gw, 16);
    thread::sleep(Duration::from_millis(500));
    let a_connections = a.accepted();
    assert!(
        a.request_count() > 0,
        "a took no traffic before the reloads"
    );
    let reused_before = gw.stats()["upstreamConnections"]["reused"]
        .as_u64()
        .unwrap_or(0);

    let deny_call = json!({"deny": ["tools/call"]});
    let mut d_added_at = None;
    let mut c_removed_at = None;
    for step in 0..10 {
        let mut servers = vec![weighted("a", &ua, 1 + step % 3)];
        let mut b_server = weighted("b", &ub, 2);
        if step % 2 == 1 {
            b_server["policy"] = deny_call.clone();
        }
        servers.push(b_server);
        if step < 5 {
            servers.push(weighted("c", &uc, 1));
        } else if c_removed_at.is_none() {
            c_removed_at = Some(Instant::now());
        }
        if step >= 3 {
            servers.push(weighted("d", &ud, 1));
            d_added_at.get_or_insert_with(Instant::now);
        }
        let config = config(json!(servers));
        if step % 2 == 0 {
            replace_config(&gw, &config);
        } else {
            rewrite_config(&gw, &config);
        }
        if step == 3 {
            let seen = eventually(Duration::from_secs(1), || {
                (d.request_count() > 0).then_some(())
            });
            assert!(
                seen.is_some(),
                "the added server got no request within 1 s of the write"
            );
        }
        thread::sleep(Duration::from_millis(400));
    }
    assert!(d_added_at.is_some());
    // Let the last reload land and the removed server drain.
    thread::sleep(Duration::from_millis(1000));
    let c_after_drain = c.request_count();
    thread::sleep(Duration::from_millis(1000));
    let (sent, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(sent > 1000, "too little load to mean anything: {sent}");
    assert_eq!(
        c.request_count(),
        c_after_drain,
        "the removed server still got requests after its drain"
    );
    // The unchanged server kept its pooled connections through ten reloads.
    // (Its weight rose, so a few more may be in use at once; a pool lost at each reload
    // would mean 16 per reload.)
    let new_connections = a.accepted() - a_connections;
    assert!(
        new_connections <= 16,
        "server a opened {new_connections} new connections across reloads that left it unchanged"
    );
    let stats = gw.stats();
    let reused_after = stats["upstreamConnections"]["reused"].as_u64().unwrap_or(0);
    assert!(
        reused_after > reused_before + 1000,
        "reuse stopped: {reused_before} -> {reused_after}"
    );
    let info = info(&gw);
    assert!(
        info["config"]["generation"].as_u64().unwrap_or(0) >= 5,
        "{info}"
    );
    assert_eq!(info["upstreams"], 3, "{info}");
    let page = gw.mgmt_json("/upstream/health");
    let ids: Vec<&str> = page["servers"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["a", "b", "d"], "{page}");
    let logs = gw.logs.text();
    assert!(logs.contains("config reloaded"), "{logs}");
    assert!(logs.contains("removed server drained"), "{logs}");
}

#[test]
fn a_bad_config_is_refused_and_the_old_one_keeps_serving() {
    let a = Upstream::fixed("a");
    let gw = Gateway::start(&config(json!([server("a", &a.url("/"))])));
    assert_eq!(gw.get("/x").status, 200);
    let mut bad = config(json!([server("a", &a.url("/")), server("a", &a.url("/"))]));
    bad["server"]["limits"] = json!({"maxBodyBytes": -5});
    replace_config(&gw, &bad);
    let refused = eventually(Duration::from_secs(5), || {
        let m = Client::connect(gw.mgmt_addr()).get("/metrics").text();
        (metric_value(&m, "mcp_gateway_config_reloads_total{result=\"refused\"}") == Some(1.0))
            .then_some(())
    });
    assert!(refused.is_some(), "the refusal was not counted");
    let logs = gw.logs.text();
    assert!(logs.contains("config reload refused"), "{logs}");
    assert!(
        logs.contains("maxBodyBytes"),
        "the log should list the errors: {logs}"
    );
    assert!(
        logs.contains("duplicate"),
        "the log should list every error: {logs}"
    );
    assert_eq!(gw.get("/x").status, 200, "the old config stopped serving");
    assert_eq!(generation(&gw), 1);
    // Not even JSON: refused too, with the line.
    rewrite_config_text(&gw, "{ \"server\": ");
    eventually(Duration::from_secs(5), || {
        gw.logs.text().contains("gateway.json:1:").then_some(())
    })
    .unwrap_or_else(|| panic!("no parse error with a line: {}", gw.logs.text()));
    assert_eq!(gw.get("/x").status, 200);
}

fn rewrite_config_text(gw: &Gateway, text: &str) {
    std::fs::write(gw.dir.path().join("gateway.json"), text).expect("write");
}

#[test]
fn sighup_reloads_and_info_shows_the_file_hash() {
    let (a, b) = (Upstream::fixed("a"), Upstream::fixed("b"));
    let mut cfg = config(json!([server("a", &a.url("/"))]));
    let gw = Gateway::start(&cfg);
    let path = gw.dir.path().join("gateway.json");
    let sha = |p: &std::path::Path| {
        let out = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let first = info(&gw);
    assert_eq!(first["config"]["generation"], 1);
    assert_eq!(first["config"]["sha256"], sha(&path), "{first}");
    // The data port's copy does not show the hash.
    let public = gw.get("/info").json();
    assert!(public["config"]["sha256"].is_null(), "{public}");
    assert_eq!(public["config"]["generation"], 1);

    cfg["upstream"]["servers"] = json!([server("a", &a.url("/")), server("b", &b.url("/"))]);
    rewrite_config(&gw, &cfg);
    wait_generation(&gw, 2);
    assert_eq!(info(&gw)["config"]["sha256"], sha(&path));
    // SIGHUP reloads even when the bytes did not change (names are resolved again).
    let applied = info(&gw)["config"]["reloads"]["applied"]
        .as_u64()
        .unwrap_or(0);
    let pid = gw.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    eventually(Duration::from_secs(5), || {
        (info(&gw)["config"]["reloads"]["applied"].as_u64() == Some(applied + 1)).then_some(())
    })
    .expect("SIGHUP did not reload");
    assert!(
        gw.logs.text().contains("nothing changed"),
        "{}",
        gw.logs.text()
    );
    assert_eq!(
        generation(&gw),
        2,
        "an unchanged config is not a new generation"
    );
    assert_eq!(gw.get("/mcp/b").status, 200);
}

#[test]
fn listener_settings_wait_for_a_restart_and_the_rest_applies() {
    let a = Upstream::fixed("a");
    let mut cfg = config(json!([server("a", &a.url("/"))]));
    let gw = Gateway::start(&cfg);
    let port = closed_port();
    cfg["server"]["port"] = json!(port);
    cfg["server"]["limits"] = json!({"maxBodyBytes": 10});
    rewrite_config(&gw, &cfg);
    wait_generation(&gw, 2);
    let logs = gw.logs.text();
    assert!(
        logs.contains("need a restart") && logs.contains("server.port"),
        "{logs}"
    );
    // Still on the old port, with the new body limit.
    let r = gw.client().post(
        "/x",
        &[("Content-Type", "text/plain")],
        b"more than ten bytes",
    );
    assert_json_error(&r, 413);
    assert_eq!(info(&gw)["limits"]["maxBodyBytes"], 10);
}

#[test]
fn trusted_proxies_follow_a_reload_on_open_connections() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url("/"))]));
    cfg["server"]["trustedProxies"] = json!(["127.0.0.1"]);
    let gw = Gateway::start(&cfg);
    let mut client = gw.client();
    let forwarded = [("X-Forwarded-Proto", "https")];
    assert_eq!(client.request("GET", "/x", &forwarded, b"").status, 200);
    assert_eq!(up.last().header("x-forwarded-proto"), Some("https"));
    cfg["server"]["trustedProxies"] = json!([]);
    rewrite_config(&gw, &cfg);
    wait_generation(&gw, 2);
    // The same keep-alive connection is trusted no more.
    assert_eq!(client.request("GET", "/x", &forwarded, b"").status, 200);
    assert_ne!(up.last().header("x-forwarded-proto"), Some("https"));
}

#[test]
fn health_checks_follow_a_reload() {
    // b answers 500 on /health: once a reload turns checks on, it leaves the rotation.
    let a = Upstream::fixed("a");
    let b = Upstream::start(|req, s| {
        let status = if req.target == "/health" { 500 } else { 200 };
        respond(s, req, status, &[("Content-Type", "text/plain")], b"b");
        Flow::KeepAlive
    });
    let mut cfg = config(json!([server("a", &a.url("/")), server("b", &b.url("/"))]));
    let gw = Gateway::start(&cfg);
    let bodies: Vec<String> = (0..4).map(|_| gw.get("/x").text()).collect();
    assert!(bodies.contains(&"b".to_string()), "{bodies:?}");
    cfg["upstream"]["healthCheck"] =
        json!({"enabled": true, "interval": 200, "timeout": 1000, "unhealthyThreshold": 1});
    rewrite_config(&gw, &cfg);
    wait_generation(&gw, 2);
    let out = eventually(Duration::from_secs(5), || {
        let page = gw.mgmt_json("/upstream/health");
        (page["healthy"] == 1).then_some(page)
    });
    assert!(
        out.is_some(),
        "b never became unhealthy: {}",
        gw.mgmt_json("/upstream/health")
    );
    thread::sleep(Duration::from_millis(300));
    let bodies: Vec<String> = (0..6).map(|_| gw.get("/x").text()).collect();
    assert!(bodies.iter().all(|b| b == "a"), "{bodies:?}");
    // Turned off again: b is back.
    cfg["upstream"]["healthCheck"] = json!({"enabled": false});
    rewrite_config(&gw, &cfg);
    wait_generation(&gw, 3);
    let back = eventually(Duration::from_secs(5), || {
        let bodies: Vec<String> = (0..4).map(|_| gw.get("/x").text()).collect();
        bodies.contains(&"b".to_string()).then_some(())
    });
    assert!(back.is_some(), "b stayed out after checks were turned off");
}
