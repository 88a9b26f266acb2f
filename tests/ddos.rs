//! `security.ddos` at accept: a connection from a denied block is closed before a byte is
//! read or written, an `allow` entry inside the block still gets in, other addresses are
//! served, the lists follow a reload, and refusals are counted.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind the client address");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream
}

/// What a client from `from` gets for `GET /health`: the response bytes (none if closed).
fn ask(from: &str, to: SocketAddr) -> Vec<u8> {
    let mut s = connect_from(from, to);
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn denied_blocks_get_no_byte_and_allowed_addresses_get_in() {
    let up = Upstream::fixed("ok");
    let mut c = config(json!([server("a", &up.url(""))]));
    c["security"] = json!({"ddos": {"deny": ["127.0.0.0/24"], "allow": ["127.0.0.1"]}});
    let gw = Gateway::start(&c);
    let to = gw.data_addr();

    assert!(ask("127.0.0.2", to).is_empty(), "a denied client got bytes");
    assert!(
        ask("127.0.0.1", to).starts_with(b"HTTP/1.1 200"),
        "allowed inside the block"
    );
    assert!(
        ask("127.0.1.1", to).starts_with(b"HTTP/1.1 200"),
        "outside the block"
    );

    let denied = eventually(Duration::from_secs(5), || {
        let page = Client::connect(gw.mgmt_addr()).get("/metrics").text();
        metric_value(&page, "mcp_gateway_connections_denied_total").filter(|n| *n >= 1.0)
    });
    assert!(denied.is_some(), "denied connections are counted");

    // The lists follow a reload.
    c["security"]["ddos"]["deny"] = json!([]);
    let path = gw.dir.path().join("gateway.json");
    std::fs::write(&path, serde_json::to_string_pretty(&c).expect("json")).expect("write");
    let served = eventually(Duration::from_secs(10), || {
        ask("127.0.0.2", to)
            .starts_with(b"HTTP/1.1 200")
            .then_some(())
    });
    assert!(
        served.is_some(),
        "a reload that drops the block lets the client in"
    );
}
