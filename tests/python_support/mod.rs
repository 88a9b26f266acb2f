//! Peers from the official MCP Python SDK, run as child processes: servers that print
//! `READY <port>` once they listen, and clients that print one JSON line with what they saw.
//! The SDK is installed under target/ by `scripts/mcp-python.sh` (2.3.0 by default: the
//! stateless 2026-07-28 revision; 1.27.0: a release that predates it).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{KillOnDrop, LineReader, LogTail};
use serde_json::Value;

/// The current SDK release (speaks 2026-07-28 and every earlier revision).
pub const CURRENT: &str = "2.3.0";
/// A release from before the stateless revision.
pub const PRE_STATELESS: &str = "1.27.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter of an SDK release, installing it on first use.
pub fn python(version: &str) -> PathBuf {
    if version == CURRENT {
        if let Ok(p) = std::env::var("MCP_PYTHON") {
            return PathBuf::from(p);
        }
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/mcp-python.sh"))
        .arg(version)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/mcp-python.sh");
    assert!(
        out.status.success(),
        "scripts/mcp-python.sh {version} failed"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn script(name: &str) -> PathBuf {
    repo().join("tests/python").join(name)
}

/// A Python MCP server child process.
pub struct PyServer {
    pub port: u16,
    pub logs: LogTail,
    _child: KillOnDrop,
}

impl PyServer {
    /// Starts `tests/python/{name}` with the SDK `version` and waits for `READY <port>`.
    pub fn start(version: &str, name: &str, args: &[&str]) -> PyServer {
        let mut child = Command::new(python(version))
            .arg(script(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python server");
        let logs = LogTail::drain(child.stderr.take().expect("stderr"));
        let mut lines = LineReader::new(child.stdout.take().expect("stdout"));
        let child = KillOnDrop(child);
        let Some(line) = lines.wait_for("READY ", Duration::from_secs(60)) else {
            panic!("{name} did not start:\n{}", logs.text());
        };
        let port = line
            .trim()
            .trim_start_matches("READY ")
            .parse()
            .expect("port");
        PyServer {
            port,
            logs,
            _child: child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Runs `tests/python/{name}` to completion and returns the JSON of its last stdout line.
pub fn run_client(name: &str, args: &[&str]) -> Value {
    let mut child = Command::new(python(CURRENT))
        .arg(script(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python client");
    let logs = LogTail::drain(child.stderr.take().expect("stderr"));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("{name} {args:?} hung:\n{}", logs.text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "{name} {args:?} failed ({status}):\nstdout: {text}\nstderr: {}",
        logs.text()
    );
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{name}: bad output {last:?}: {e}\n{}", logs.text()))
}
