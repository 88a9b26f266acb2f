//! MCP session affinity over real sockets: the gateway replaces an upstream's
//! `Mcp-Session-Id` with its own sealed token and restores the original on the way back in;
//! two gateway processes sharing `sessions.secret` continue each other's sessions on the
//! replica that issued them; new sessions spread evenly over a replica group; forged,
//! truncated, foreign, expired and misdirected tokens get a JSON-RPC 404.

mod common;
mod mcp_support;

use common::*;
use mcp_support::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// The client's session token from an initialize answer, with the id the replica issued.
struct Session {
    token: String,
    original: String,
    replica: String,
}

fn initialize(addr: std::net::SocketAddr, target: &str) -> Session {
    let r = fresh(addr, "POST", target, &MCP_HEADERS, &init_body(1));
    session_of(&r)
}

fn session_of(r: &Response) -> Session {
    assert_eq!(r.status, 200, "initialize: {r:?}");
    let v = r.json();
    let token = r
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("initialize answer has no Mcp-Session-Id: {r:?}"))
        .to_string();
    Session {
        token,
        original: v["result"]["issuedSession"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string(),
        replica: v["result"]["serverInfo"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string(),
    }
}

fn group_of_three(tag: &str) -> Vec<Replica> {
    (1..=3)
        .map(|i| Replica::start(&format!("{tag}{i}")))
        .collect()
}

fn group_servers(replicas: &[Replica]) -> Vec<Value> {
    replicas
        .iter()
        .map(|r| replica_server(r, Some("g")))
        .collect()
}

#[test]
fn session_token_hides_the_upstream_id_and_restores_it() {
    let up = Replica::start("solo");
    let gw = start_gateway(&config_with_secret(vec![replica_server(&up, None)], SECRET));

    let mut c = gw.client();
    let s = session_of(&c.post("/mcp/solo", &MCP_HEADERS, &init_body(1)));
    assert_eq!(up.issued(), vec![s.original.clone()]);
    assert_ne!(
        s.token, s.original,
        "the client must not see the upstream's id"
    );
    assert!(
        !s.token.contains(&s.original),
        "token {} carries the upstream id in clear",
        s.token
    );
    assert!(
        s.token.len() < 200,
        "token is {} bytes: {}",
        s.token.len(),
        s.token
    );
    assert!(
        s.token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token is not base64url: {}",
        s.token
    );

    // The token goes back; the upstream sees its own id, exactly once.
    let r = c.post(
        "/mcp/solo",
        &with_session(&s.token),
        &rpc("tools/list", 2, json!({})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["session"], s.original.as_str(), "{r:?}");
    // The upstream names its session on this answer too: the client gets its own token
    // back unchanged (clients keep the latest id they saw).
    assert_eq!(r.header("mcp-session-id"), Some(s.token.as_str()), "{r:?}");
    let seen = up.up.last();
    assert_eq!(
        seen.header("mcp-session-id"),
        Some(s.original.as_str()),
        "{}",
        seen.raw_head
    );
    assert_eq!(seen.header_count("mcp-session-id"), 1, "{}", seen.raw_head);
    assert!(
        !seen.raw_head.contains(&s.token),
        "the token leaked upstream:\n{}",
        seen.raw_head
    );

    // On a new connection too.
    let r = fresh(
        gw.data_addr(),
        "POST",
        "/mcp/solo",
        &with_session(&s.token),
        &rpc("ping", 3, json!({})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        up.up.last().header("mcp-session-id"),
        Some(s.original.as_str())
    );

    // DELETE ends the session upstream, with the original id.
    let before = up.up.request_count();
    let r = fresh(
        gw.data_addr(),
        "DELETE",
        "/mcp/solo",
        &with_session(&s.token),
        b"",
    );
    assert_eq!(r.status, 200, "DELETE: {r:?}");
    assert_eq!(up.up.request_count(), before + 1);
    let del = up.up.last();
    assert_eq!(del.method, "DELETE");
    assert_eq!(
        del.header("mcp-session-id"),
        Some(s.original.as_str()),
        "{}",
        del.raw_head
    );
    // The upstream forgot it: its own 404 comes back through the gateway.
    let r = c.post(
        "/mcp/solo",
        &with_session(&s.token),
        &rpc("tools/list", 4, json!({})),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"]["data"]["upstream"], "solo", "{r:?}");

    // Each initialize gets a token of its own.
    let s2 = session_of(&c.post("/mcp/solo", &MCP_HEADERS, &init_body(5)));
    assert_ne!(s2.token, s.token);
    assert_ne!(s2.original, s.original);
}

// ---------------------------------------------------------------------------------------
// The same against the built-in mock fleet
// ---------------------------------------------------------------------------------------

const FLEET: u16 = 3;

fn start_fleet() -> (KillOnDrop, u16) {
    for attempt in 0..8 {
        let base = 15_000 + (random_u64() % 16_700) as u16;
        if !(0..FLEET).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            continue;
        }
        let mut child = Command::new(BIN)
            .args(["fleet", "--servers", &FLEET.to_string()])
            .args(["--base-port", &base.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fleet");
        let mut out = LineReader::new(child.stdout.take().expect("stdout"));
        let logs = LogTail::drain(child.stderr.take().expect("stderr"));
        let child = KillOnDrop(child);
        if out
            .wait_for("mock MCP fleet", Duration::from_secs(15))
            .is_some()
        {
            return (child, base);
        }
        eprintln!("fleet attempt {attempt} on {base} failed:\n{}", logs.text());
    }
    panic!("could not start the mock fleet");
}

#[test]
fn mock_fleet_sessions_through_a_group() {
    let (_fleet, base) = start_fleet();
    let servers: Vec<Value> = (0..FLEET)
        .map(|i| {
            json!({"id": format!("m{}", i + 1), "url": format!("http://127.0.0.1:{}/mcp", base + i), "group": "g"})
        })
        .collect();
    let gw = start_gateway(&config_with_secret(servers, SECRET));
    let addr = gw.data_addr();

    let mut names = HashSet::new();
    for n in 0..6u64 {
        let r = fresh(addr, "POST", "/mcp/g", &MCP_HEADERS, &init_body(n));
        assert_eq!(r.status, 200, "{r:?}");
        let name = r.json()["result"]["serverInfo"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        names.insert(name.clone());
        let token = r
            .header("mcp-session-id")
            .expect("session token")
            .to_string();
        assert!(
            !token.starts_with("mock-"),
            "the fleet's own id reached the client: {token}"
        );
        assert!(token.len() < 200, "{token}");
        for k in 0..3u64 {
            let r = fresh(
                addr,
                "POST",
                "/mcp/g",
                &with_session(&token),
                &rpc("tools/list", 10 + k, json!({})),
            );
            assert_eq!(r.status, 200, "session on {name}, request {k}: {r:?}");
            assert_eq!(r.json()["result"]["tools"][0]["name"], "echo");
        }
        let r = fresh(addr, "DELETE", "/mcp/g", &with_session(&token), b"");
        assert_eq!(r.status, 200, "DELETE: {r:?}");
        // Deleted at the fleet: the fleet's 404 (not a gateway one) comes back.
        let r = fresh(
            addr,
            "POST",
            "/mcp/g",
            &with_session(&token),
            &rpc("ping", 20, json!({})),
        );
        assert_eq!(r.status, 404, "after DELETE: {r:?}");
    }
    assert_eq!(names.len(), 3, "round-robin over the group: {names:?}");
}

// ---------------------------------------------------------------------------------------
// Two gateway processes, one secret
// ---------------------------------------------------------------------------------------

#[test]
fn sessions_continue_across_gateway_processes_on_the_issuing_replica() {
    let replicas = group_of_three("r");
    let a = start_gateway(&config_with_secret(group_servers(&replicas), SECRET));
    let b = start_gateway(&config_with_secret(group_servers(&replicas), SECRET));
    let (a, b) = (a.data_addr(), b.data_addr());

    const SESSIONS: usize = 36;
    const FOLLOW_UPS: usize = 5;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        // Half start on A, half on B.
        let s = initialize(if i % 2 == 0 { a } else { b }, "/mcp/g");
        sessions.push(s);
    }
    let by_replica: HashMap<&str, usize> = sessions.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.replica.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        by_replica.len(),
        3,
        "sessions should land on all replicas: {by_replica:?}"
    );

    for round in 0..FOLLOW_UPS {
        for (i, s) in sessions.iter().enumerate() {
            // Alternate the gateway per request, starting on the other one.
            let via = if (i + round) % 2 == 0 { b } else { a };
            let r = fresh(
                via,
                "POST",
                "/mcp/g",
                &with_session(&s.token),
                &rpc(
                    "tools/call",
                    (i * 100 + round) as u64,
                    json!({"name": "echo"}),
                ),
            );
            assert_eq!(r.status, 200, "session {i} round {round} via {via}: {r:?}");
            let v = r.json();
            assert_eq!(
                v["result"]["replica"],
                s.replica.as_str(),
                "session {i} moved replica: {v}"
            );
            assert_eq!(
                v["result"]["session"],
                s.original.as_str(),
                "session {i}: {v}"
            );
        }
    }

    // What each replica recorded: only ids it issued, each session's follow-ups all there.
    for r in &replicas {
        let issued: HashSet<String> = r.issued().into_iter().collect();
        let mut per_session: HashMap<String, usize> = HashMap::new();
        for (sid, req) in r.session_requests() {
            assert!(
                issued.contains(&sid),
                "replica {} got session {sid} it never issued:\n{}",
                r.name,
                req.raw_head
            );
            *per_session.entry(sid).or_default() += 1;
        }
        for s in sessions.iter().filter(|s| s.replica == r.name) {
            assert_eq!(
                per_session.get(&s.original).copied().unwrap_or(0),
                FOLLOW_UPS,
                "replica {}: follow-ups of {}",
                r.name,
                s.original
            );
        }
    }
    let total: usize = replicas.iter().map(|r| r.session_requests().len()).sum();
    assert_eq!(total, SESSIONS * FOLLOW_UPS);
}

// ---------------------------------------------------------------------------------------
// Spread of new sessions
// ---------------------------------------------------------------------------------------

#[test]
fn thousand_sessions_spread_evenly_over_three_replicas() {
    let replicas = group_of_three("s");
    let gw = start_gateway(&config_with_secret(group_servers(&replicas), SECRET));
    let addr = gw.data_addr();

    const THREADS: usize = 4;
    const PER_THREAD: usize = 250;
    let tokens: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut c = Client::connect(addr);
                    (0..PER_THREAD)
                        .map(|k| {
                            let r = c.post(
                                "/mcp/g",
                                &MCP_HEADERS,
                                &init_body((t * PER_THREAD + k) as u64),
                            );
                            assert_eq!(r.status, 200, "initialize {t}/{k}: {r:?}");
                            r.header("mcp-session-id").expect("token").to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(tokens.len(), 1000);
    let unique: HashSet<&String> = tokens.iter().collect();
    assert_eq!(unique.len(), 1000, "tokens must be unique");
    assert!(tokens.iter().all(|t| t.len() < 200));

    let counts: Vec<(String, usize)> = replicas
        .iter()
        .map(|r| (r.name.clone(), r.issued().len()))
        .collect();
    println!("sessions per replica: {counts:?}");
    assert_eq!(
        counts.iter().map(|c| c.1).sum::<usize>(),
        1000,
        "{counts:?}"
    );
    for (name, n) in &counts {
        assert!(
            (300..=367).contains(n),
            "replica {name} got {n} of 1000 sessions: {counts:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bad tokens
// ---------------------------------------------------------------------------------------

#[test]
fn forged_truncated_foreign_and_misdirected_tokens_get_404() {
    let replicas = group_of_three("t");
    let other = Replica::start("other");
    let mut servers = group_servers(&replicas);
    servers.push(replica_server(&other, None));
    let gw = start_gateway(&config_with_secret(servers.clone(), SECRET));
    let foreign_gw = start_gateway(&config_with_secret(
        servers,
        "a-completely-different-secret-42",
    ));
    let addr = gw.data_addr();

    let s = initialize(addr, "/mcp/g");
    let ok = fresh(
        addr,
        "POST",
        "/mcp/g",
        &with_session(&s.token),
        &rpc("ping", 1, json!({})),
    );
    assert_eq!(ok.status, 200, "the genuine token works: {ok:?}");
    let foreign = initialize(foreign_gw.data_addr(), "/mcp/g");

    let forwarded = || -> usize {
        replicas.iter().map(|r| r.up.request_count()).sum::<usize>() + other.up.request_count()
    };
    let before = forwarded();

    let t = s.token.as_str();
    let mut flipped = t.as_bytes().to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("random base64url", base64url(&random_bytes(64)), "/mcp/g"),
        (
            "random short base64url",
            base64url(&random_bytes(20)),
            "/mcp/g",
        ),
        (
            "not base64 at all",
            "forged-session-id!".to_string(),
            "/mcp/g",
        ),
        ("one byte flipped", flipped, "/mcp/g"),
        ("truncated by 1", t[..t.len() - 1].to_string(), "/mcp/g"),
        ("truncated by 4", t[..t.len() - 4].to_string(), "/mcp/g"),
        ("half a token", t[..t.len() / 2].to_string(), "/mcp/g"),
        ("another secret's token", foreign.token.clone(), "/mcp/g"),
        (
            "replica token on another server",
            s.token.clone(),
            "/mcp/other",
        ),
    ];
    for (what, token, target) in &cases {
        // Fresh connection and a kept one: both refused.
        let r = fresh(
            addr,
            "POST",
            target,
            &with_session(token),
            &rpc("tools/list", 2, json!({})),
        );
        assert_session_not_found(&r, what);
        let r = fresh(addr, "DELETE", target, &with_session(token), b"");
        assert_session_not_found(&r, &format!("DELETE with {what}"));
    }
    // A replica's token on a sibling replica's own id.
    let sibling = replicas.iter().find(|r| r.name != s.replica).unwrap();
    let r = fresh(
        addr,
        "POST",
        &format!("/mcp/{}", sibling.name),
        &with_session(&s.token),
        &rpc("ping", 3, json!({})),
    );
    assert_session_not_found(&r, "replica token on a sibling replica");
    assert_eq!(
        forwarded(),
        before,
        "a refused token must not reach any upstream"
    );

    // The keep-alive connection survives a refusal.
    let mut c = gw.client();
    let r = c.post("/mcp/g", &with_session("AAAA"), &rpc("ping", 4, json!({})));
    assert_session_not_found(&r, "short token on a kept connection");
    let r = c.post(
        "/mcp/g",
        &with_session(&s.token),
        &rpc("ping", 5, json!({})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["session"], s.original.as_str());
}

#[test]
fn expired_token_gets_404() {
    let up = Replica::start("ttl");
    let mut cfg = config_with_secret(vec![replica_server(&up, None)], SECRET);
    cfg["sessions"]["ttl"] = json!(1000);
    let gw = start_gateway(&cfg);
    let addr = gw.data_addr();

    let s = initialize(addr, "/mcp/ttl");
    let r = fresh(
        addr,
        "POST",
        "/mcp/ttl",
        &with_session(&s.token),
        &rpc("ping", 1, json!({})),
    );
    assert_eq!(r.status, 200, "fresh token: {r:?}");
    thread::sleep(Duration::from_millis(2100));
    let before = up.up.request_count();
    let r = fresh(
        addr,
        "POST",
        "/mcp/ttl",
        &with_session(&s.token),
        &rpc("ping", 2, json!({})),
    );
    assert_session_not_found(&r, "expired token");
    assert_eq!(
        up.up.request_count(),
        before,
        "an expired token must not be forwarded"
    );
}

#[test]
fn pipelined_requests_of_different_sessions_keep_their_replicas() {
    let replicas = group_of_three("p");
    let gw = start_gateway(&config_with_secret(group_servers(&replicas), SECRET));
    let addr = gw.data_addr();
    let sessions: Vec<Session> = (0..6).map(|_| initialize(addr, "/mcp/g")).collect();

    // All requests in one write, on one connection.
    let mut c = Client::connect(addr);
    let mut bytes = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        bytes.extend(request_bytes(
            "POST",
            "/mcp/g",
            &with_session(&s.token),
            &rpc("tools/list", i as u64, json!({})),
        ));
    }
    c.send(&bytes);
    for (i, s) in sessions.iter().enumerate() {
        let r = c.read_response().expect("pipelined response");
        assert_eq!(r.status, 200, "pipelined {i}: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], i as u64, "{v}");
        assert_eq!(v["result"]["replica"], s.replica.as_str(), "{v}");
        assert_eq!(v["result"]["session"], s.original.as_str(), "{v}");
    }
}
