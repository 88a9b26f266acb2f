//! Measures what a session token costs: sealing one (on `initialize`) and opening one (on
//! every later request of the session). Run: `cargo run --release -p mcp-gateway-shard
//! --example session_tokens`. Prints a table; numbers are wall-clock means over many calls.

use mcp_gateway_shard::mcp::session::{replica_id, SessionCodec};
use std::time::Instant;

fn main() {
    const N: u32 = 200_000;
    let mut codec = SessionCodec::new(b"benchmark-secret-0123456789abcdef", 86_400);
    let replica = replica_id("mcp-server-17");
    let now = 1_800_000_000;
    println!("| upstream session id | token bytes | seal ns | open ns |");
    println!("|---|---:|---:|---:|");
    for session in [
        "8f6c1d6e-0b7a-4c55-9a3e-2d1f0c9b8a77".to_string(),
        "a".repeat(64),
        "b".repeat(100),
    ] {
        let mut token = String::new();
        let started = Instant::now();
        for _ in 0..N {
            token = codec
                .seal(replica, session.as_bytes(), now)
                .unwrap_or_default();
        }
        let seal = started.elapsed().as_nanos() / u128::from(N);
        let started = Instant::now();
        let mut ok = 0u32;
        for _ in 0..N {
            ok += u32::from(codec.open(token.as_bytes(), now).is_ok());
        }
        let open = started.elapsed().as_nanos() / u128::from(N);
        assert_eq!(ok, N);
        println!(
            "| {} bytes | {} | {seal} | {open} |",
            session.len(),
            token.len()
        );
    }
}
