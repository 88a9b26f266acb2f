//! Noticing a client that hangs up while the gateway waits on its upstream.
//!
//! Closing the request is how an MCP client cancels a call (the 2026-07-28 revision says so
//! outright), and a proxy that keeps waiting holds the upstream's connection and work for up
//! to the server's `timeout`. While a response head is awaited, the client's socket is
//! watched too, so its EOF drops the upstream connection at once (the upstream sees the
//! close). The watch starts only after a short grace, so quick answers (nearly all of them)
//! cost no extra poll.
//!
//! Owns: telling a hang-up from pipelined bytes. Must not: lose upstream bytes (the read in
//! progress is never dropped unless the exchange is being abandoned).

use crate::client::Conn;
use crate::relay::read_append;
use crate::state::BUFFER_SIZE;
use monoio::net::TcpStream;
use monoio::time::Instant;
use std::io;
use std::time::Duration;

/// A response head later than this starts the watch on the client.
const WATCH_AFTER: Duration = Duration::from_millis(10);

/// What the client's socket turning readable meant.
pub enum ClientWoke {
    /// EOF or an error: the client is gone.
    Gone,
    /// Bytes of a pipelined request, kept in the connection's read buffer; stop watching.
    Pipelined,
}

/// Reads what the readable client socket holds into its read buffer.
pub async fn client_woke(conn: &mut Conn) -> ClientWoke {
    match read_append(&mut conn.stream, &mut conn.rbuf, 1024).await {
        Ok(n) if n > 0 => ClientWoke::Pipelined,
        _ => ClientWoke::Gone,
    }
}

pub enum HeadRead {
    Read(io::Result<usize>),
    TimedOut,
    ClientGone,
}

/// One read of the upstream's response into `ubuf` by `deadline`, given up early if the
/// client hangs up. `watch` turns off for good once the client is seen sending more.
pub async fn read_unless_client_leaves(
    up: &mut TcpStream,
    ubuf: &mut Vec<u8>,
    conn: &mut Conn,
    deadline: Instant,
    watch: &mut bool,
) -> HeadRead {
    let read = monoio::time::timeout_at(deadline, read_append(up, ubuf, BUFFER_SIZE));
    let mut read = std::pin::pin!(read);
    let watch_from = Instant::now() + WATCH_AFTER;
    loop {
        if !*watch {
            return finished(read.await);
        }
        let client_readable = async {
            monoio::time::sleep_until(watch_from).await;
            conn.stream.readable(false).await
        };
        // The read is polled by reference: when the client wakes first, it stays in flight.
        let readiness = monoio::select! {
            r = &mut read => return finished(r),
            readiness = client_readable => readiness,
        };
        // A socket that cannot even be polled is as good as gone (and reading it could wait).
        if readiness.is_err() {
            return HeadRead::ClientGone;
        }
        match client_woke(conn).await {
            ClientWoke::Gone => return HeadRead::ClientGone,
            ClientWoke::Pipelined => *watch = false,
        }
    }
}

fn finished(r: Result<io::Result<usize>, monoio::time::error::Elapsed>) -> HeadRead {
    match r {
        Ok(r) => HeadRead::Read(r),
        Err(_) => HeadRead::TimedOut,
    }
}
