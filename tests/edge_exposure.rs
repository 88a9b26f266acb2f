//! Edge hardening, exposure: what the gateway gives away or gives up to whoever can reach
//! it: running out of file descriptors (answers 503 instead of leaving connections
//! unanswered, logs once), the management port (connection cap, head timeout, loopback by
//! default, admin token when exposed), which of the gateway's pages the data port serves,
//! and what a 502 body tells a client about the gateway's network.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

fn client_with(addr: SocketAddr, read: Duration) -> Client {
    let c = Client::connect(addr);
    c.conn.stream.set_read_timeout(Some(read)).expect("timeout");
    c
}

fn get_on(addr: SocketAddr, target: &str) -> Response {
    client_with(addr, Duration::from_secs(10)).request("GET", target, &[], b"")
}

#[test]
fn running_out_of_file_descriptors_answers_503_and_recovers() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["maxConnections"] = json!(10000);
    let gw = Gateway::start_nofile(&cfg, 256);
    let addr = gw.data_addr();
    let mut held = Vec::new();
    let (mut ok, mut busy) = (0, 0);
    for i in 0..400 {
        let mut c = client_with(addr, Duration::from_secs(5));
        let r = c
            .try_send(&request_bytes("GET", "/health", &[], b""))
            .and_then(|()| c.read_response());
        let r = r.unwrap_or_else(|e| {
            panic!("connection {i} got no answer ({ok} got 200, {busy} got 503 before): {e}")
        });
        match r.status {
            200 => ok += 1,
            _ => {
                assert_json_error(&r, 503);
                busy += 1;
            }
        }
        held.push(c);
    }
    assert!(
        busy >= 1,
        "400 connections under a 256 descriptor limit: all got 200"
    );
    drop(held);
    let back = eventually(Duration::from_secs(3), || {
        let mut c = client_with(addr, Duration::from_secs(1));
        c.try_send(&request_bytes("GET", "/health", &[], b""))
            .ok()?;
        let r = c.read_response().ok()?;
        (r.status == 200).then_some(r)
    });
    assert!(
        back.is_some(),
        "no 200 from /health once the connections are gone"
    );
    let logs = gw.logs.text();
    let accept_failed = logs.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        accept_failed <= 10,
        "{accept_failed} `accept failed` log lines: the log is flooded"
    );
    let lower = logs.to_lowercase();
    assert!(
        lower.contains("descriptor") || lower.contains("rlimit_nofile"),
        "no warning about the file descriptor limit in the log:\n{logs}"
    );
}

#[test]
fn management_port_caps_connections_and_times_out_idle_heads() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["monitoring"]["dashboard"]["maxConnections"] = json!(20);
    cfg["server"]["limits"] = json!({"headerTimeout": 1000});
    let gw = Gateway::start(&cfg);
    let mgmt = gw.mgmt_addr();
    // 40 idle connections, each watched by a thread: when did it close, and what came first.
    let watchers: Vec<_> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&mgmt, Duration::from_secs(2)).expect("connect");
            let opened = Instant::now();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(6)))
                    .expect("timeout");
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                let closed = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => {
                            break !matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            )
                        }
                    }
                };
                (closed, opened.elapsed(), got)
            })
        })
        .collect();
    let r = get_on(gw.data_addr(), "/health");
    assert_eq!(
        r.status, 200,
        "the data port while the management port is busy: {r:?}"
    );
    let results: Vec<(bool, Duration, Vec<u8>)> = watchers
        .into_iter()
        .map(|w| w.join().expect("watcher"))
        .collect();
    let open_late: Vec<Duration> = results
        .iter()
        .filter(|(closed, after, _)| !closed || *after > Duration::from_secs(4))
        .map(|(_, after, _)| *after)
        .collect();
    assert!(
        open_late.is_empty(),
        "{} of 40 idle management connections were still open after 4 s (headerTimeout 1 s)",
        open_late.len()
    );
    let refused = results
        .iter()
        .filter(|(_, after, got)| {
            got.starts_with(b"HTTP/1.1 503")
                || (got.is_empty() && *after < Duration::from_millis(500))
        })
        .count();
    assert!(
        refused >= 20,
        "only {refused} of 40 connections were refused at once (maxConnections 20)"
    );
}

/// Whether `text` has `:PORT` not followed by another digit.
fn mentions_port(text: &str, port: u16) -> bool {
    let needle = format!(":{port}");
    text.match_indices(&needle).any(|(i, _)| {
        !text[i + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Extracts `listeners.management` from an `/info` page.
fn management_listener(info: &Value) -> String {
    info["listeners"]["management"]
        .as_str()
        .unwrap_or_else(|| panic!("no listeners.management in {info}"))
        .to_string()
}

#[test]
fn management_port_binds_loopback_by_default_and_the_data_port_hides_addresses() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["server"]["host"] = json!("0.0.0.0");
    let gw = Gateway::start_env(&cfg, &[], &["DASHBOARD_HOST"]);
    let info = gw.mgmt_json("/info");
    let listener = management_listener(&info);
    assert!(listener.starts_with("127.0.0.1"), "{info}");

    let data_info = get_on(gw.data_addr(), "/info");
    assert_eq!(data_info.status, 200, "{data_info:?}");
    let text = data_info.text();
    for addr in ["127.0.0.1", "0.0.0.0"] {
        assert!(
            !text.contains(addr),
            "the data port's /info shows {addr:?}: {text}"
        );
    }
    assert!(
        !mentions_port(&text, up.port()),
        "the data port's /info shows the upstream's port: {text}"
    );

    let health = get_on(gw.data_addr(), "/upstream/health");
    assert_eq!(health.status, 200, "{health:?}");
    let text = health.text();
    let url = format!("127.0.0.1:{}", up.port());
    assert!(
        !text.contains("http://") && !text.contains(&url),
        "the data port's /upstream/health shows the upstream URL: {text}"
    );
    let mgmt_health = gw.mgmt_json("/upstream/health").to_string();
    assert!(
        mgmt_health.contains(&up.url("")),
        "the management port's /upstream/health has the URL: {mgmt_health}"
    );
}

#[test]
fn dashboard_host_env_moves_the_management_listener() {
    let up = Upstream::echo();
    let gw = Gateway::start_env(
        &config(json!([server("a", &up.url(""))])),
        &[("DASHBOARD_HOST", "0.0.0.0")],
        &[],
    );
    let info = gw.mgmt_json("/info");
    assert!(management_listener(&info).starts_with("0.0.0.0"), "{info}");
}

#[test]
fn admin_api_needs_the_token_when_the_management_port_is_not_loopback_only() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["monitoring"]["dashboard"]["host"] = json!("0.0.0.0");
    let exposed = Gateway::start_env(&cfg, &[], &["ADMIN_TOKEN", "DASHBOARD_HOST"]);
    let r = get_on(exposed.mgmt_addr(), "/admin/sessions");
    assert_json_error(&r, 403);
    drop(exposed);

    let cfg = config(json!([server("a", &up.url(""))]));
    let local = Gateway::start_env(&cfg, &[], &["ADMIN_TOKEN", "DASHBOARD_HOST"]);
    let r = get_on(local.mgmt_addr(), "/admin/sessions");
    assert_ne!(
        r.status, 403,
        "loopback-only management port, loopback client: {r:?}"
    );
}

#[test]
fn data_port_pages_choose_what_the_data_port_serves() {
    let up = Upstream::echo();
    let mut cfg = config(json!([server("a", &up.url(""))]));
    cfg["monitoring"]["dataPortPages"] = json!(["/health"]);
    let gw = Gateway::start(&cfg);
    let health = get_on(gw.data_addr(), "/health");
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        health.json()["status"].is_string(),
        "the gateway's /health: {health:?}"
    );
    let stats = get_on(gw.data_addr(), "/stats");
    assert_eq!(
        (stats.status, stats.text().as_str()),
        (200, "GET /stats 0"),
        "/stats on the data port goes to the default group: {stats:?}"
    );
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, vec!["/stats".to_string()]);
    let page = gw.stats();
    assert!(
        page.is_object(),
        "the management port still serves /stats: {page}"
    );
}

#[test]
fn bad_gateway_bodies_carry_no_os_error_text() {
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let gw = Gateway::start(&config(json!([server("dead", &dead)])));
    let r = get_on(gw.data_addr(), "/x");
    assert_json_error(&r, 502);
    let id = r.header("x-request-id").unwrap_or("").to_string();
    assert!(!id.is_empty(), "{r:?}");
    let body = r.text();
    let lower = body.to_lowercase();
    assert!(
        !lower.contains("refused") && !lower.contains("os error"),
        "the 502 body tells the client about the gateway's network: {body}"
    );
    assert!(
        body.contains(&id),
        "the 502 body carries the request id {id}: {body}"
    );
    let logged = eventually(Duration::from_secs(3), || {
        gw.logs
            .text()
            .lines()
            .find(|l| l.contains(&id) && l.to_lowercase().contains("connection refused"))
            .map(str::to_string)
    });
    assert!(
        logged.is_some(),
        "no log line with {id} and the cause (connection refused):\n{}",
        gw.logs.text()
    );
}
