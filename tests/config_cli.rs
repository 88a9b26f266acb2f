//! The command line: first run writes a commented default config and starts with it;
//! `mcp-gateway check FILE` accepts a good file and lists every error of a bad one; a bad
//! config never starts a gateway.

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
