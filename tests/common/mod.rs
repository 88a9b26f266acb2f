//! Shared helpers for the end-to-end tests: start the real `mcp-gateway` binary, talk raw
//! HTTP/1.1 to it over loopback sockets, and run scriptable upstream servers behind it.
//!
//! Everything is std only (plus `serde_json` for configs and JSON pages), so each test can
//! send exactly the bytes it wants (malformed, pipelined, chunked) and see exactly what the
//! gateway forwarded.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-gateway");

/// How long any single socket read or write may block before a test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables that override the config file; removed from every child so that a
/// developer's shell cannot change what a test runs.
const CONFIG_ENV: &[&str] = &[
    "PORT",
    "HTTPS_PORT",
    "HOST",
    "JWT_SECRET",
    "API_KEY_HEADER",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "MONITORING_ENABLED",
    "DASHBOARD_PORT",
    "LOG_LEVEL",
    "LOG_FILE",
    "CLUSTER_WORKERS",
    "MAX_CONNECTIONS",
    "KEEP_ALIVE_TIMEOUT",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------------------
// Temp dirs and child processes
// ---------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "mcp-gw-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small pseudo-random number (no dependency needed for picking ports).
pub fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Resident set size of a process, in KiB, from `/proc/<pid>/status` (`field` is e.g.
/// `VmRSS` or `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Lines a child prints on stdout, drained forever by a thread (so the pipe never fills).
pub struct LineReader {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LineReader {
    pub fn new(out: impl Read + Send + 'static) -> LineReader {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the child never blocks.
                }
            }
        });
        LineReader {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; `None` on timeout or when the output ends.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

/// Keeps the last bytes a child wrote to stderr (its logs), for failure reports.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Mutex<String>>);

impl LogTail {
    const KEEP: usize = 256 * 1024;

    pub fn drain(err: impl Read + Send + 'static) -> LogTail {
        let tail = LogTail::default();
        let t = tail.clone();
        thread::spawn(move || {
            let mut err = err;
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut s = t.0.lock().unwrap_or_else(|e| e.into_inner());
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if s.len() > 2 * Self::KEEP {
                            let cut = s.len() - Self::KEEP;
                            let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                            s.drain(..cut);
                        }
                    }
                }
            }
        });
        tail
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Extracts `ADDR` from `... http://ADDR ...`.
fn addr_after_http(line: &str) -> SocketAddr {
    let rest = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no http:// in {line:?}"));
    let addr = rest.split_whitespace().next().unwrap_or("");
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------

/// The standard test config: loopback, ephemeral ports, two shards, fast metrics, health
/// checks off, websocket hub off. Tests tweak the returned JSON before starting.
pub fn config(servers: Value) -> Value {
    json!({
        "server": {"host": "127.0.0.1", "port": 0, "workers": 2},
        "upstream": {"servers": servers, "healthCheck": {"enabled": false}},
        "monitoring": {
            "metricsInterval": 100,
            "dashboard": {"port": 0},
            "websocket": {"enabled": false}
        },
        "logging": {"level": "info"}
    })
}

/// One `upstream.servers[]` entry.
pub fn server(id: &str, url: &str) -> Value {
    json!({"id": id, "url": url})
}

/// A running gateway child process; killed on drop (its logs are printed if the test failed).
pub struct Gateway {
    pub data: SocketAddr,
    pub mgmt: Option<SocketAddr>,
    pub child: KillOnDrop,
    /// The `listening on` line as printed.
    pub banner: String,
    pub logs: LogTail,
    pub stdout: LineReader,
    pub dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with `config` written to a temp file.
    pub fn start(config: &Value) -> Gateway {
        Gateway::start_env(config, &[], &[])
    }

    /// Starts with extra environment variables set (`env`) and removed (`remove`).
    pub fn start_env(config: &Value, env: &[(&str, &str)], remove: &[&str]) -> Gateway {
        let dir = TempDir::new("gw");
        let path = dir.write(
            "gateway.json",
            &serde_json::to_string_pretty(config).expect("config json"),
        );
        let path = path.to_string_lossy().into_owned();
        Gateway::spawn(&["--config", &path], dir, env, remove)
    }

    /// Runs the binary with `args` in `dir` and waits for its listening lines.
    pub fn spawn(args: &[&str], dir: TempDir, env: &[(&str, &str)], remove: &[&str]) -> Gateway {
        let cmd = Gateway::command(args, &dir, env, remove);
        Gateway::launch(cmd, dir)
    }

    /// The gateway's command line, environment cleaned of config overrides but `env`.
    fn command(args: &[&str], dir: &TempDir, env: &[(&str, &str)], remove: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in CONFIG_ENV.iter().chain(remove) {
            cmd.env_remove(var);
        }
        cmd.env("NO_COLOR", "1").envs(env.iter().copied());
        cmd
    }

    /// Starts `cmd` and waits for its listening lines.
    fn launch(mut cmd: Command, dir: TempDir) -> Gateway {
        let mut child = cmd.spawn().expect("spawn mcp-gateway");
        let stdout = LineReader::new(child.stdout.take().expect("stdout"));
        let logs = LogTail::drain(child.stderr.take().expect("stderr"));
        let mut child = KillOnDrop(child);
        let mut stdout = stdout;
        let Some(banner) = stdout.wait_for("mcp-gateway listening on", Duration::from_secs(20))
        else {
            let status = child.0.try_wait().ok().flatten();
            panic!(
                "gateway did not start (exit: {status:?})\nstdout: {:?}\nstderr:\n{}",
                stdout.seen,
                logs.text()
            );
        };
        let data = addr_after_http(&banner);
        // The management line follows at once when the dashboard is enabled.
        let mgmt = stdout
            .wait_for("management and dashboard on", Duration::from_millis(2000))
            .map(|l| addr_after_http(&l));
        Gateway {
            data,
            mgmt,
            child,
            banner,
            logs,
            stdout,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// The data address, connectable (a `0.0.0.0` bind is reached through loopback).
    pub fn data_addr(&self) -> SocketAddr {
        loopback(self.data)
    }

    pub fn mgmt_addr(&self) -> SocketAddr {
        loopback(self.mgmt.expect("management port is enabled"))
    }

    pub fn client(&self) -> Client {
        Client::connect(self.data_addr())
    }

    /// One GET on a new connection to the data port.
    pub fn get(&self, target: &str) -> Response {
        self.client().request("GET", target, &[], b"")
    }

    /// A JSON page from the management port.
    pub fn mgmt_json(&self, path: &str) -> Value {
        let r = Client::connect(self.mgmt_addr()).request("GET", path, &[], b"");
        assert_eq!(r.status, 200, "GET {path} on the management port: {r:?}");
        r.json()
    }

    pub fn stats(&self) -> Value {
        self.mgmt_json("/stats")
    }

    /// Polls `/stats` on the management port until `ok` holds (or 5 s pass); returns the
    /// last page seen either way.
    pub fn wait_stats(&self, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.stats();
            if ok(&s) || Instant::now() > deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if thread::panicking() {
            let logs = self.logs.text();
            let tail: String = {
                let lines: Vec<&str> = logs.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            };
            eprintln!(
                "---- gateway {} logs (last lines) ----\n{tail}\n----",
                self.data
            );
        }
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------
// Byte pattern for large bodies
// ---------------------------------------------------------------------------------------

const PATTERN_PERIOD: usize = 251;
const MAX_SLICE: usize = 64 * 1024;

/// `byte[i] = i % 251`, long enough to compare any slice of up to 64 KiB at any offset.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        (0..MAX_SLICE + PATTERN_PERIOD)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect()
    })
}

/// Checks, slice by slice with `memcmp`, that a stream of bytes is the pattern.
#[derive(Debug, Clone)]
pub struct PatternCheck {
    pub len: u64,
    pub ok: bool,
}

impl PatternCheck {
    pub fn new() -> PatternCheck {
        PatternCheck { len: 0, ok: true }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for part in bytes.chunks(MAX_SLICE) {
            let off = (self.len % PATTERN_PERIOD as u64) as usize;
            if self.ok && part != &pattern()[off..off + part.len()] {
                self.ok = false;
            }
            self.len += part.len() as u64;
        }
    }
}

/// Writes `n` bytes of the pattern.
pub fn write_pattern(w: &mut impl Write, n: u64) -> io::Result<()> {
    let mut sent = 0u64;
    while sent < n {
        let off = (sent % PATTERN_PERIOD as u64) as usize;
        let len = ((n - sent) as usize).min(MAX_SLICE);
        w.write_all(&pattern()[off..off + len])?;
        sent += len as u64;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Buffered raw HTTP/1.1 reading
// ---------------------------------------------------------------------------------------

/// A TCP stream with a read buffer that keeps bytes past one message (pipelining).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 256 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut tmp = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads up to and including `pat`; error if the stream ends first.
    pub fn read_until(&mut self, pat: &[u8]) -> io::Result<Vec<u8>> {
        let mut searched: usize = 0;
        loop {
            let hay = self.buffered();
            let from = searched.saturating_sub(pat.len());
            if let Some(i) = hay[from..].windows(pat.len()).position(|w| w == pat) {
                let end = from + i + pat.len();
                let out = hay[..end].to_vec();
                self.pos += end;
                return Ok(out);
            }
            searched = hay.len();
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "stream ended before {:?} (had {:?})",
                        String::from_utf8_lossy(pat),
                        String::from_utf8_lossy(self.buffered())
                    ),
                ));
            }
        }
    }

    /// Reads exactly `n` bytes, handing them to `sink` as they come.
    pub fn read_exact_to(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended with {n} body bytes still to come"),
                ));
            }
            let take = (self.buffered().len() as u64).min(n) as usize;
            sink(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads until the peer closes.
    pub fn read_to_eof(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            if !self.buffered().is_empty() {
                sink(&self.buf[self.pos..]);
                self.pos = self.buf.len();
            }
            if self.fill()? == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a chunked body, decoding it into `sink`.
    pub fn read_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            let line = self.read_until(b"\r\n")?;
            let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let t = self.read_until(b"\r\n")?;
                    if t == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            self.read_exact_to(size, sink)?;
            let crlf = self.read_until(b"\r\n")?;
            if crlf != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk data not followed by CRLF",
                ));
            }
        }
    }

    pub fn read_body(&mut self, framing: Framing, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        match framing {
            Framing::None => Ok(()),
            Framing::Length(n) => self.read_exact_to(n, sink),
            Framing::Chunked => self.read_chunked(sink),
            Framing::UntilClose => self.read_to_eof(sink),
        }
    }

    /// True when the peer has closed (or reset) the connection within `wait`, with no
    /// more bytes pending.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.buffered().is_empty() {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(wait));
        let r = self.fill();
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

/// Parses `Name: value` lines.
fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && v.rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
    })
}

fn content_length(headers: &[(String, String)]) -> Option<u64> {
    find_header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// A response as the client saw it.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = if self.body.len() > 600 {
            format!(
                "{}... ({} bytes)",
                String::from_utf8_lossy(&self.body[..600]),
                self.body.len()
            )
        } else {
            String::from_utf8_lossy(&self.body).into_owned()
        };
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }

    /// Whether the server said this is the connection's last response.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    fn framing(&self, request_was_head: bool) -> Framing {
        if request_was_head || (100..200).contains(&self.status) || matches!(self.status, 204 | 304)
        {
            Framing::None
        } else if has_chunked(&self.headers) {
            Framing::Chunked
        } else if let Some(n) = content_length(&self.headers) {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        }
    }
}

/// Builds request bytes: adds `Host` and `Content-Length` unless given in `headers`.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        out.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !given("content-length")
        && !given("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A raw HTTP/1.1 client over one TCP connection.
pub struct Client {
    pub conn: Conn,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client {
            conn: Conn::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.stream.write_all(bytes).expect("write to gateway");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.stream.write_all(bytes)
    }

    /// Reads one response head (interim 1xx heads included), leaving the body unread.
    pub fn read_head(&mut self) -> io::Result<Response> {
        let head = self.conn.read_until(b"\r\n\r\n")?;
        let text = String::from_utf8_lossy(&head[..head.len() - 4]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        Ok(Response {
            status,
            reason: parts.next().unwrap_or("").to_string(),
            headers: parse_header_lines(lines),
            body: Vec::new(),
        })
    }

    /// Reads one final response (skipping 1xx), its body handed to `sink`.
    pub fn read_response_to(
        &mut self,
        request_was_head: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Response> {
        loop {
            let head = self.read_head()?;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let framing = head.framing(request_was_head);
            self.conn.read_body(framing, sink)?;
            return Ok(head);
        }
    }

    /// Reads one final response with its body.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_for(false)
    }

    pub fn read_response_for(&mut self, request_was_head: bool) -> io::Result<Response> {
        let mut body = Vec::new();
        let mut r = self.read_response_to(request_was_head, &mut |b| body.extend_from_slice(b))?;
        r.body = body;
        Ok(r)
    }

    /// Sends one request and reads its response; panics on I/O errors.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(&request_bytes(method, target, headers, body));
        self.read_response_for(method == "HEAD")
            .unwrap_or_else(|e| panic!("{method} {target}: no response: {e}"))
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    pub fn post(&mut self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.request("POST", target, headers, body)
    }

    /// See [`Conn::closed_within`].
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.conn.closed_within(wait)
    }
}

/// Asserts a gateway error: that status and a JSON body saying it: `{"error":{"code":status}}`,
/// or on MCP paths a JSON-RPC error object whose `error.data.status` is the status.
pub fn assert_json_error(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "expected {status}: {r:?}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error content-type should be JSON: {r:?}"
    );
    let v = r.json();
    let said = if v["jsonrpc"] == "2.0" {
        assert!(v["error"]["code"].is_i64(), "JSON-RPC error code: {v}");
        v["error"]["data"]["status"].as_u64()
    } else {
        v["error"]["code"].as_u64()
    };
    assert_eq!(
        said,
        Some(u64::from(status)),
        "error should say {status}: {v}"
    );
    v
}

// ---------------------------------------------------------------------------------------
// Upstream test servers
// ---------------------------------------------------------------------------------------

/// Request bodies are kept up to this size (bigger ones are only counted and checked).
const KEEP_BODY: usize = 1024 * 1024;

/// A request as an upstream test server received it (body decoded).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body, up to 1 MiB.
    pub body: Vec<u8>,
    /// The decoded body's full length.
    pub body_len: u64,
    /// Whether the whole body was the test byte pattern (see [`write_pattern`]).
    pub body_is_pattern: bool,
    /// Sequence number of the upstream connection it came on (1 = first accepted).
    pub conn: usize,
    /// Raw head bytes as received.
    pub raw_head: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream does with its connection after a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    KeepAlive,
    Close,
}

type Handler = dyn Fn(&Request, &mut TcpStream) -> Flow + Send + Sync;

/// An upstream HTTP/1.1 server on an ephemeral loopback port, one thread per connection.
/// Each request is read whole (body decoded, counted, checked), recorded, then handed with
/// the socket to the handler, which writes whatever it wants.
pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(
        handler: impl Fn(&Request, &mut TcpStream) -> Flow + Send + Sync + 'static,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        Upstream::start_on(listener, handler)
    }

    /// Like [`Upstream::start`], on a listener the test bound (e.g. on a known port).
    pub fn start_on(
        listener: TcpListener,
        handler: impl Fn(&Request, &mut TcpStream) -> Flow + Send + Sync + 'static,
    ) -> Upstream {
        let addr = listener.local_addr().expect("upstream addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (requests, accepted, stop) = (requests.clone(), accepted.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let n = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let (requests, handler) = (requests.clone(), handler.clone());
                    thread::spawn(move || serve_upstream_conn(stream, n, &requests, &*handler));
                }
            });
        }
        Upstream {
            addr,
            requests,
            accepted,
            stop,
        }
    }

    /// Answers every request with `200` and `body`.
    pub fn fixed(body: &'static str) -> Upstream {
        Upstream::start(move |req, s| {
            respond(
                s,
                req,
                200,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            );
            Flow::KeepAlive
        })
    }

    /// Answers every request with `200` and a body naming the target it saw and how many
    /// body bytes it got: `"<METHOD> <target> <body_len>"`.
    pub fn echo() -> Upstream {
        Upstream::start(|req, s| {
            let body = format!("{} {} {}", req.method, req.target, req.body_len);
            respond(
                s,
                req,
                200,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            );
            Flow::KeepAlive
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn last(&self) -> Request {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_upstream_conn(
    stream: TcpStream,
    n: usize,
    requests: &Mutex<Vec<Request>>,
    handler: &Handler,
) {
    let mut conn = Conn::new(stream);
    let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(60)));
    loop {
        let req = match read_request(&mut conn, n) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req.clone());
        if handler(&req, &mut conn.stream) == Flow::Close {
            let _ = conn.stream.flush();
            let _ = conn.stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reads one request; `Ok(None)` when the peer closed between requests.
fn read_request(conn: &mut Conn, n: usize) -> io::Result<Option<Request>> {
    let head = match conn.read_until(b"\r\n\r\n") {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && conn.buffered().is_empty() => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let raw_head = String::from_utf8_lossy(&head).into_owned();
    let text = &raw_head[..raw_head.len() - 4];
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("").to_string();
    let headers = parse_header_lines(lines);
    let framing = if has_chunked(&headers) {
        Framing::Chunked
    } else {
        match content_length(&headers) {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    };
    let mut body = Vec::new();
    let mut check = PatternCheck::new();
    conn.read_body(framing, &mut |b| {
        if body.len() < KEEP_BODY {
            let keep = (KEEP_BODY - body.len()).min(b.len());
            body.extend_from_slice(&b[..keep]);
        }
        check.feed(b);
    })?;
    Ok(Some(Request {
        method,
        target,
        version,
        headers,
        body,
        body_len: check.len,
        body_is_pattern: check.ok && check.len > 0,
        conn: n,
        raw_head,
    }))
}

/// Writes a `Content-Length` response (no body bytes for a HEAD request).
pub fn respond(
    s: &mut TcpStream,
    req: &Request,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut out = format!("HTTP/1.1 {status} Test\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(body);
    }
    let _ = s.write_all(&out);
}

/// Writes a `200` JSON response.
pub fn respond_json(s: &mut TcpStream, req: &Request, body: &str) {
    respond(
        s,
        req,
        200,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
}

/// Writes a chunked response head.
pub fn respond_chunked_head(
    s: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} Test\r\nTransfer-Encoding: chunked\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes())
}

/// Writes one chunk (an empty `data` writes the last chunk).
pub fn write_chunk(s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    // For the last chunk this is "0\r\n\r\n": no trailers.
    out.extend_from_slice(b"\r\n");
    s.write_all(&out)
}

/// Holds the connection without answering until the peer closes it (or 30 s pass).
pub fn hang(s: &mut TcpStream) -> Flow {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    Flow::Close
}

// ---------------------------------------------------------------------------------------
// Edge-hardening helpers: raw upstreams, metric samples, a descriptor-limited gateway
// ---------------------------------------------------------------------------------------

type RawHandler = dyn Fn(TcpStream, usize) + Send + Sync;

/// An upstream below the level of whole requests: each accepted connection is handed, raw,
/// to `handler` on its own thread with its sequence number (1 = first accepted), for
/// upstreams that misbehave in ways [`Upstream`] cannot (partial reads, byte counting,
/// unsolicited writes, closes at odd moments).
pub struct RawUpstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    pub fn start(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw upstream");
        let addr = listener.local_addr().expect("raw upstream addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<RawHandler> = Arc::new(handler);
        {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let n = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let handler = handler.clone();
                    thread::spawn(move || handler(stream, n));
                }
            });
        }
        RawUpstream {
            addr,
            accepted,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Reads one request the way [`Upstream`] does (for [`RawUpstream`] handlers that still
/// want whole requests); `Ok(None)` when the peer closed between requests. `n` is recorded
/// as the request's connection number.
pub fn read_upstream_request(conn: &mut Conn, n: usize) -> io::Result<Option<Request>> {
    read_request(conn, n)
}

/// The value of one sample of a Prometheus text page: `series` is the metric name with its
/// labels exactly as printed (`mcp_gateway_errors_total{kind="send_timeout"}`).
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

impl Gateway {
    /// One sample from the management port's `/metrics` (`None` when it is not printed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let mut c = Client::connect(self.mgmt_addr());
        let r = c.request("GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "GET /metrics on the management port: {r:?}");
        metric_value(&r.text(), series)
    }

    /// Like [`Gateway::start`], with the child's `RLIMIT_NOFILE` soft and hard limits set to
    /// `limit` (so the gateway cannot raise it back).
    pub fn start_nofile(config: &Value, limit: u64) -> Gateway {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("gw-nofile");
        let path = dir.write(
            "gateway.json",
            &serde_json::to_string_pretty(config).expect("config json"),
        );
        let path = path.to_string_lossy().into_owned();
        let mut cmd = Gateway::command(&["--config", &path], &dir, &[], &[]);
        let lim = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: the closure runs in the forked child before exec; it only calls
        // setrlimit (async-signal-safe) on a value copied in, and allocates nothing
        // (`last_os_error` reads errno into an `Os` variant).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Gateway::launch(cmd, dir)
    }
}

/// An upstream that never parses: it counts every byte the gateway writes and answers
/// `200 ok` each time what it read ends a chunked body (a last chunk, then an empty line).
pub struct ByteCounter {
    pub up: RawUpstream,
    bytes: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl ByteCounter {
    pub fn start() -> ByteCounter {
        let bytes = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (b, a, s) = (bytes.clone(), answered.clone(), seen.clone());
        let up = RawUpstream::start(move |mut stream, _| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                b.fetch_add(n, Ordering::SeqCst);
                {
                    let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                    let keep = (64 * 1024usize).saturating_sub(s.len()).min(n);
                    s.extend_from_slice(&buf[..keep]);
                }
                pending.extend_from_slice(&buf[..n]);
                if chunked_message_ends(&pending) {
                    a.fetch_add(1, Ordering::SeqCst);
                    pending.clear();
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            }
        });
        ByteCounter {
            up,
            bytes,
            answered,
            seen,
        }
    }

    /// Bytes received so far, on all connections.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Chunked messages answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// The first bytes received, for failure messages.
    pub fn seen(&self) -> String {
        let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&s[..s.len().min(300)]).into_owned()
    }
}

/// Whether `m` (a head and what followed it) ends with a complete chunked body.
pub fn chunked_message_ends(m: &[u8]) -> bool {
    if !m.ends_with(b"\r\n\r\n") {
        return false;
    }
    let Some(head_end) = m.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let body = &m[head_end + 4..];
    body.len() >= 5 && (body.starts_with(b"0\r\n") || body.windows(5).any(|w| w == b"\r\n0\r\n"))
}

impl ByteCounter {
    /// Everything received so far (the first 64 KiB, all connections), lossily as text.
    pub fn seen_all(&self) -> String {
        let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&s).into_owned()
    }
}

/// A blocking IPv4 connection whose `SO_RCVBUF` is set to `rcvbuf` bytes before `connect`
/// (so the window it announces stays small), for clients that read slowly on purpose.
pub fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let SocketAddr::V4(v4) = addr else {
        panic!("connect_with_rcvbuf: IPv4 only, got {addr}")
    };
    // SAFETY: socket(2) takes no pointers; the descriptor it returns is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::c_int::try_from(rcvbuf).expect("rcvbuf fits a c_int");
    // SAFETY: the option value is a live c_int on the stack and its length is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the address is a live sockaddr_in on the stack and its length is passed.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect to {addr}: {}", io::Error::last_os_error());
    TcpStream::from(fd)
}

/// `target/<profile>/examples/<name>`, next to this test's own `deps/` folder. `cargo test`
/// and `cargo build --all-targets` build the examples; `cargo test --test X` alone does
/// not, so then it is built here once.
pub fn example_program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let program = profile_dir.join("examples").join(name);
    if !program.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "building example {name} failed");
    }
    assert!(program.exists(), "no example at {}", program.display());
    program
}
