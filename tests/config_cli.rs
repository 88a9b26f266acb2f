//! The command line: first run writes a commented default config and starts with it;
//! `mcp-gateway check FILE` accepts a good file and lists every error of a bad one; a bad
//! config never starts a gateway; `demo` drains and exits 0 on SIGINT, and refuses
//! `--config` (it builds its own).

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn first_run_writes_a_commented_default_config_and_starts() {
    let dir = TempDir::new("first-run");
    let file = dir.path().join("api-gateway.config.json");
    assert!(!file.exists());
    let gw = Gateway::spawn(&[], dir, &[("PORT", "0"), ("DASHBOARD_PORT", "0")], &[]);
    let file = gw.dir.path().join("api-gateway.config.json");
    let text = std::fs::read_to_string(&file).expect("the default config file was written");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("//")),
        "the default config should carry comments"
    );
    for key in [
        "\"server\"",
        "\"upstream\"",
        "\"healthCheck\"",
        "\"monitoring\"",
    ] {
        assert!(text.contains(key), "default config lacks {key}");
    }
    assert!(
        gw.banner.contains("mcp-gateway listening on http://"),
        "{}",
        gw.banner
    );
    assert_ne!(gw.data.port(), 0);
    let r = gw.get("/health");
    assert_eq!(r.status, 200, "{r:?}");
    let mgmt = gw.mgmt.expect("management line printed");
    assert_ne!(mgmt.port(), 0);
    assert_eq!(gw.mgmt_json("/info")["name"], "mcp-gateway");

    // The file it wrote is itself a valid config.
    let out = Command::new(BIN)
        .arg("check")
        .arg(&file)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "check on the written default failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_accepts_a_good_file() {
    let dir = TempDir::new("check-good");
    let path = dir.write(
        "good.json",
        r#"// comments are fine
{
  "server": {"port": 8080, "workers": 2},
  "upstream": {
    "servers": [
      {"id": "mcp-server-1", "url": "http://127.0.0.1:3001/mcp", "weight": 2},
      {"id": "mcp-server-2", "url": "http://127.0.0.1:3002", "group": "search"}
    ]
  } /* trailing block comment */
}"#,
    );
    let out = Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "good config refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("2 upstream servers"), "{stdout}");
}

#[test]
fn check_lists_every_error_with_its_key_path() {
    let dir = TempDir::new("check-bad");
    let path = dir.write(
        "bad.json",
        r#"{
  "server": {"port": 70000},
  "upstream": {
    "servers": [
      {"id": "a", "url": "ftp//nowhere", "wieght": 2}
    ]
  }
}"#,
    );
    let out = Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("check said:\n{stderr}");
    assert!(!out.status.success(), "a bad config must exit non-zero");
    assert!(
        stderr.contains("upstream.servers[0].wieght"),
        "unknown key path missing:\n{stderr}"
    );
    assert!(
        stderr.contains("`weight`"),
        "no did-you-mean `weight`:\n{stderr}"
    );
    assert!(
        stderr.contains("server.port"),
        "bad port missing:\n{stderr}"
    );
    assert!(
        stderr.contains("upstream.servers[0].url"),
        "bad url missing:\n{stderr}"
    );
}

#[test]
fn a_bad_config_never_starts_a_gateway() {
    let dir = TempDir::new("bad-start");
    let mut cfg = config(json!([{"id": "a", "url": "http://127.0.0.1:1", "wieght": 2}]));
    cfg["server"]["port"] = json!(70000);
    let path = dir.write("bad.json", &cfg.to_string());
    let mut child = KillOnDrop(
        Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let exited = eventually(Duration::from_secs(10), || {
        child.0.try_wait().ok().flatten()
    });
    let status = exited.expect("the gateway kept running with a bad config");
    assert!(!status.success());
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut o) = child.0.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("wieght") && stderr.contains("server.port"),
        "{stderr}"
    );
}

/// True when every port of `base..base + n` can be bound right now.
fn ports_free(base: u16, n: u16) -> bool {
    (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
}

/// `mcp-gateway demo` with three mock servers on a free port range and ephemeral gateway
/// ports; the child, its logs, and the data address it printed.
fn start_demo() -> (KillOnDrop, LogTail, std::net::SocketAddr) {
    for attempt in 0..8 {
        // Below Linux's ephemeral range (32768+), like tests/fleet.rs.
        let base = 15_000 + (random_u64() % 16_000) as u16;
        if !ports_free(base, 3) {
            continue;
        }
        let mut child = Command::new(BIN)
            .args(["demo", "--servers", "3", "--base-port", &base.to_string()])
            .args(["--port", "0", "--management-port", "0", "--workers", "1"])
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo");
        let mut out = LineReader::new(child.stdout.take().expect("stdout"));
        let logs = LogTail::drain(child.stderr.take().expect("stderr"));
        let child = KillOnDrop(child);
        if let Some(banner) = out.wait_for("mcp-gateway listening on", Duration::from_secs(15)) {
            let addr = banner
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {banner:?}"));
            return (child, logs, addr);
        }
        eprintln!(
            "demo attempt {attempt} on base port {base} failed:\n{}",
            logs.text()
        );
    }
    panic!("could not start the demo on any port range");
}

#[test]
fn demo_drains_and_exits_0_on_sigint() {
    let (mut demo, logs, addr) = start_demo();
    assert_eq!(Client::connect(addr).get("/health").status, 200);
    let sent = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = eventually(Duration::from_secs(5), || demo.0.try_wait().ok().flatten())
        .unwrap_or_else(|| panic!("the demo did not exit on SIGINT\n{}", logs.text()));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", logs.text());
    assert!(logs.text().contains("drained"), "{}", logs.text());
}

#[test]
fn demo_refuses_a_config_file() {
    let dir = TempDir::new("demo-config");
    let file = dir.write("x.json", "{}");
    let file = file.to_string_lossy().into_owned();
    for args in [
        vec!["demo", "-c", file.as_str()],
        vec!["--config", file.as_str(), "demo"],
    ] {
        let mut child = KillOnDrop(
            Command::new(BIN)
                .args(&args)
                .args(["--servers", "1", "--port", "0", "--management-port", "0"])
                .args(["--base-port", &closed_port().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn demo"),
        );
        let status = eventually(Duration::from_secs(10), || {
            child.0.try_wait().ok().flatten()
        })
        .unwrap_or_else(|| panic!("`{}` kept running", args.join(" ")));
        assert!(!status.success(), "{args:?}: {status:?}");
        let mut stderr = String::new();
        use std::io::Read;
        if let Some(mut e) = child.0.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(
            stderr.contains("--config") && stderr.contains("demo") && stderr.contains("x.json"),
            "{args:?}: {stderr}"
        );
    }
}
