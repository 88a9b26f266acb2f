//! Socket calls monoio does not expose, on a stream's raw descriptor: the crate's only
//! `unsafe` code, each call audited.
//!
//! Owns: `TCP_QUICKACK`, the idle-connection probe and the send-queue size. Must not: block (every call here is
//! non-blocking) or keep any state.
#![allow(unsafe_code)]

use monoio::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

/// Acknowledges what was read from `stream` at once. An upstream that writes a response in
/// pieces without `TCP_NODELAY` (Nagle) holds each small piece until the previous one is
/// acknowledged, and Linux delays that ACK by up to 40 ms: every stalled piece of a response
/// or event stream would cost that much. Setting `TCP_QUICKACK` sends the pending ACK now;
/// the kernel clears it again by itself, so it is set after each partial read.
pub fn quick_ack(stream: &TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// What an idle pooled connection shows when looked at without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleState {
    /// Nothing to read and still open: safe to send the next request on.
    Quiet,
    /// The upstream closed it (EOF or an error).
    Closed,
    /// The upstream sent bytes nobody asked for (a late body, a second response): reusing
    /// it would hand them to the next client as its answer.
    Stray,
}

/// Looks at an idle connection without reading from it (`MSG_PEEK | MSG_DONTWAIT`).
pub fn idle_state(stream: &TcpStream) -> IdleState {
    let mut byte = 0u8;
    // SAFETY: a valid socket descriptor and a one-byte buffer that outlives the call; the
    // flags make it non-blocking and leave any data in the socket.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => IdleState::Closed,
        n if n > 0 => IdleState::Stray,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => IdleState::Quiet,
            _ => IdleState::Closed,
        },
    }
}

/// Bytes in a socket's send queue (written, not yet acknowledged by the peer), or `None`
/// if the kernel will not say.
pub fn unsent_bytes(fd: RawFd) -> Option<i32> {
    let mut queued: libc::c_int = 0;
    // SAFETY: a socket descriptor and a writable c_int, as `SIOCOUTQ` (= `TIOCOUTQ`) wants.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
    (rc == 0).then_some(queued)
}
