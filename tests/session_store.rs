//! `sessions.store: "redis"` with a real `redis-server`: sessions started through the
//! gateway are recorded (with their TTL, refreshed on use), listed by the admin API on the
//! management port, and revoked there: the revoked token gets 404 within a tick in this process
//! and within seconds in a second gateway process sharing the store and the secret. A
//! client's `DELETE` removes the record. With Redis down, sessions keep working.

mod common;
mod mcp_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mcp_support::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
const REDIS_PASSWORD: &str = "redis-test-password";

/// A throwaway `redis-server` (password set, nothing saved) on a free port.
struct Redis {
    port: u16,
    _child: KillOnDrop,
}

impl Redis {
    fn start() -> Redis {
        let port = closed_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                REDIS_PASSWORD,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let redis = Redis {
            port,
            _child: KillOnDrop(child),
        };
        let up = eventually(Duration::from_secs(10), || {
            redis.command(&["PING"]).filter(|r| r.starts_with("+PONG"))
        });
        assert!(up.is_some(), "redis-server did not start");
        redis
    }

    /// One command after AUTH; the raw reply.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let encode = |args: &[&str]| {
            let mut out = format!("*{}\r\n", args.len());
            for a in args {
                out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            out
        };
        let wire = encode(&["AUTH", REDIS_PASSWORD]) + &encode(args);
        s.write_all(wire.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // "+OK\r\n" for AUTH, then the reply.
        while !reply.starts_with(b"+OK\r\n") || reply.len() <= 5 || !reply.ends_with(b"\r\n") {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(reply.get(5..)?).into_owned())
    }

    fn url(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port)
    }
}

fn store_gateway(replica: &Replica, redis: &Redis) -> Gateway {
    let mut cfg = config_with_secret(vec![replica_server(replica, None)], SECRET);
    cfg["sessions"]["store"] = json!("redis");
    cfg["sessions"]["redisUrl"] = json!(redis.url());
    cfg["sessions"]["adminToken"] = json!(ADMIN_TOKEN);
    start_gateway(&cfg)
}

fn initialize(gw: &Gateway, id: &str) -> String {
    let r = fresh(
        gw.data_addr(),
        "POST",
        &format!("/mcp/{id}"),
        &mcp_headers(&[]),
        &init_body(1),
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id")
        .expect("a session token")
        .to_string()
}

fn call(gw: &Gateway, token: &str) -> Response {
    fresh(
        gw.data_addr(),
        "POST",
        "/mcp/one",
        &with_session(token),
        &rpc("tools/list", 2, json!({})),
    )
}

fn admin(gw: &Gateway, method: &str, target: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    Client::connect(gw.mgmt_addr()).request(method, target, &headers, b"")
}

fn listed(gw: &Gateway) -> Vec<Value> {
    let r = admin(gw, "GET", "/admin/sessions", Some(ADMIN_TOKEN));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["sessions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn sessions_are_listed_and_revoked_through_the_admin_api() {
    let redis = Redis::start();
    let replica = Replica::start("one");
    let gw = store_gateway(&replica, &redis);
    let second = store_gateway(&replica, &redis);

    let token = initialize(&gw, "one");
    let id = &token[..16];
    // Recorded in the background: listed once Redis has it, with its server and a TTL.
    let sessions = eventually(Duration::from_secs(10), || {
        let s = listed(&gw);
        (!s.is_empty()).then_some(s)
    })
    .expect("the session is listed");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["id"], id);
    assert_eq!(sessions[0]["server"], "one");
    let ttl = sessions[0]["expiresInMs"].as_u64().unwrap_or(0);
    assert!(ttl > 86_000_000 && ttl <= 86_400_000, "{sessions:?}");
    let raw = redis
        .command(&["GET", &format!("mcpgw:session:{id}")])
        .unwrap_or_default();
    assert!(raw.contains("\"server\":\"one\""), "{raw}");

    // The session works through both processes (the second asks the store first). The
    // upstream names its session on every answer; the token the client keeps stays the one
    // recorded.
    for gateway in [&gw, &second] {
        let r = call(gateway, &token);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("mcp-session-id"), Some(token.as_str()), "{r:?}");
    }

    // Without the admin token: 401. Unknown id: 404.
    assert_eq!(admin(&gw, "GET", "/admin/sessions", None).status, 401);
    assert_eq!(
        admin(
            &gw,
            "GET",
            "/admin/sessions",
            Some("wrong-token-wrong-token-000")
        )
        .status,
        401
    );
    assert_eq!(
        admin(
            &gw,
            "DELETE",
            "/admin/sessions/AAAAAAAAAAAAAAAA",
            Some(ADMIN_TOKEN)
        )
        .status,
        404
    );

    let r = admin(
        &gw,
        "DELETE",
        &format!("/admin/sessions/{id}"),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["revoked"], id);
    // This process: from each shard's next tick (100 ms here); every shard refuses it then.
    let refused = eventually(Duration::from_secs(3), || {
        (0..20)
            .all(|_| call(&gw, &token).status == 404)
            .then_some(())
    });
    assert!(
        refused.is_some(),
        "the revoking gateway still accepts the session"
    );
    assert_session_not_found(&call(&gw, &token), "revoked, same process");
    // The other process: once its shards' cached answer (5 s) runs out.
    let refused = eventually(Duration::from_secs(15), || {
        (call(&second, &token).status == 404).then_some(())
    });
    assert!(
        refused.is_some(),
        "the second gateway still accepts a revoked session"
    );
    assert!(listed(&gw).is_empty());

    // A fresh session is unaffected; the client's DELETE removes its record.
    let other = initialize(&second, "one");
    eventually(Duration::from_secs(10), || {
        (listed(&gw).len() == 1).then_some(())
    })
    .expect("the new session is listed");
    let r = fresh(
        second.data_addr(),
        "DELETE",
        "/mcp/one",
        &with_session(&other),
        b"",
    );
    assert!(r.status < 300, "{r:?}");
    eventually(Duration::from_secs(10), || {
        listed(&gw).is_empty().then_some(())
    })
    .expect("DELETE removed the record");
}

#[test]
fn sessions_keep_working_while_redis_is_down() {
    let redis = Redis::start();
    let replica = Replica::start("one");
    let gw = store_gateway(&replica, &redis);
    let token = initialize(&gw, "one");
    drop(redis);
    // The token is authenticated on its own: the store failing open keeps the session.
    let r = call(&gw, &token);
    assert_eq!(r.status, 200, "{r:?}");
    let r = admin(&gw, "GET", "/admin/sessions", Some(ADMIN_TOKEN));
    assert_eq!(r.status, 502, "{r:?}");
    // The warning is written by another thread: wait for it rather than look once.
    let logged = eventually(Duration::from_secs(5), || {
        gw.logs.text().contains("session store").then_some(())
    });
    assert!(logged.is_some(), "{}", gw.logs.text());
}
