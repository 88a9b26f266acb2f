//! Starting a stdio server's process and moving its bytes: one line per message on stdin,
//! lines from stdout routed to the session, stderr lines to the log.
//!
//! Owns: `Command` (args, env, cwd), the socket pairs that stand in for pipes (monoio has no
//! pipes or processes, but its `UnixStream` reads and writes on io_uring and epoll alike),
//! and the three I/O tasks of a session. Must not: wait for a process (`wait()` would block
//! the host thread; the host's tick reaps with `try_wait`) or hold the host's borrow across
//! an await.

use super::host::{short, Ending, Shared};
use super::mailbox::Mailbox;
use super::session::Session;
use mcp_gateway_config::StdioCommand;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::UnixStream;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Longest stderr line logged as is; the rest of a longer one is cut.
const MAX_LOG_LINE: usize = 4096;

struct Spawned {
    child: Child,
    stdin: UnixStream,
    stdout: UnixStream,
    stderr: UnixStream,
}

/// One end for the child (blocking, as programs expect of their stdio), one for the host.
fn socket_pair() -> io::Result<(OwnedFd, UnixStream)> {
    let (theirs, ours) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    Ok((OwnedFd::from(theirs), UnixStream::from_std(ours)?))
}

fn spawn(cmd: &StdioCommand) -> io::Result<Spawned> {
    let (stdin_child, stdin) = socket_pair()?;
    let (stdout_child, stdout) = socket_pair()?;
    let (stderr_child, stderr) = socket_pair()?;
    let mut command = Command::new(&cmd.command);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(stdin_child))
        .stdout(Stdio::from(stdout_child))
        .stderr(Stdio::from(stderr_child));
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls `prctl`,
    // which is async-signal-safe. It asks the kernel to SIGTERM the child when the thread
    // that started it (the stdio host, alive as long as the gateway) ends, so a gateway
    // that is killed does not leave its stdio servers running.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    // `command` owns the child's ends of the pairs; dropping it closes them here, so the
    // host sees end-of-file on stdout once the process is gone.
    drop(command);
    Ok(Spawned {
        child,
        stdin,
        stdout,
        stderr,
    })
}

/// Asks a process to stop (SIGTERM).
pub fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: `kill` has no memory effects. The pid is of our own child that has not been
    // reaped yet (the caller holds its `Child` and `try_wait` said it is running), so the
    // pid cannot have been reused by another process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// A random session id: 128 bits, hex.
fn new_session_id() -> String {
    mcp_gateway_shard::mcp::session::generated_secret()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a process of `server` and its I/O tasks; returns the new session's id.
pub fn start_session(host: &Shared, server: usize) -> io::Result<String> {
    let (command, server_id, max_line) = {
        let h = host.borrow();
        let s = h
            .servers
            .get(server)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such stdio server"))?;
        (s.command.clone(), s.id.clone(), h.max_line)
    };
    let spawned = spawn(&command)?;
    let id = new_session_id();
    let pid = spawned.child.id();
    tracing::info!(server = %server_id, session = %short(&id), pid, command = %command.command,
        "stdio server process started");
    let stdin = Mailbox::default();
    {
        let mut h = host.borrow_mut();
        h.sessions.insert(
            id.clone(),
            Session::new(server, spawned.child, stdin.clone()),
        );
        if let Some(s) = h.servers.get_mut(server) {
            s.live += 1;
        }
    }
    monoio::spawn(write_stdin(stdin, spawned.stdin));
    monoio::spawn(read_stdout(
        host.clone(),
        id.clone(),
        spawned.stdout,
        max_line,
    ));
    monoio::spawn(log_stderr(
        server_id,
        short(&id).to_string(),
        pid,
        spawned.stderr,
    ));
    Ok(id)
}

/// Writes queued lines to the process's stdin, coalescing what is queued into one write.
/// Returns (closing stdin, so the process sees end-of-file) when the mailbox is closed or a
/// write fails.
async fn write_stdin(lines: Mailbox<Vec<u8>>, mut stdin: UnixStream) {
    let mut buf = Vec::new();
    while let Some(first) = lines.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while let Some(more) = lines.try_recv() {
            buf.extend_from_slice(&more);
        }
        let (res, back) = stdin.write_all(std::mem::take(&mut buf)).await;
        buf = back;
        if res.is_err() {
            // The process closed stdin or died; its stdout end tells the session.
            break;
        }
    }
    lines.close();
}

/// Reads stdout line by line into the session; when stdout ends (or a line is longer than
/// `max_line`), the session ends.
async fn read_stdout(host: Shared, id: String, mut stdout: UnixStream, max_line: usize) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut scanned = 0;
    let why = loop {
        match read_append(&mut stdout, &mut buf, 16 * 1024).await {
            Ok(0) => break "stdout closed".to_string(),
            Ok(_) => {}
            Err(e) => break format!("stdout: {e}"),
        }
        let mut start = 0;
        while let Some(nl) = buf[scanned..].iter().position(|b| *b == b'\n') {
            let end = scanned + nl;
            let mut line = &buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                let mut h = host.borrow_mut();
                let Some(session) = h.sessions.get_mut(&id) else {
                    return;
                };
                session.route(line.to_vec());
            }
            start = end + 1;
            scanned = start;
        }
        scanned = buf.len() - start;
        buf.drain(..start);
        if buf.len() > max_line {
            break format!("printed a line longer than {max_line} bytes");
        }
    };
    host.borrow_mut().end_session(&id, Ending::Died(why));
}

/// Logs each line the process writes to stderr, until it closes.
async fn log_stderr(server: String, session: String, pid: u32, mut stderr: UnixStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        match read_append(&mut stderr, &mut buf, 4096).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line = &buf[..nl.min(MAX_LOG_LINE)];
            let line = String::from_utf8_lossy(line);
            let line = line.trim_end();
            if !line.is_empty() {
                tracing::info!(server = %server, session = %session, pid, "stderr: {line}");
            }
            buf.drain(..=nl);
        }
        if buf.len() > MAX_LOG_LINE {
            let line = String::from_utf8_lossy(&buf[..MAX_LOG_LINE]).into_owned();
            tracing::info!(server = %server, session = %session, pid, "stderr: {line}...");
            buf.clear();
        }
    }
    if !buf.is_empty() {
        let line = String::from_utf8_lossy(&buf).into_owned();
        tracing::info!(server = %server, session = %session, pid, "stderr: {line}");
    }
}

/// Reads into the spare capacity of `buf` (at least `min_spare` bytes of it).
pub async fn read_append<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let (res, slice) = stream.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}
