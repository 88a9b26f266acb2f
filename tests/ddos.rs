//! `security.ddos` at accept: a connection from a denied block is closed before a byte is
//! read or written, an `allow` entry inside the block still gets in, other addresses are
//! served, the lists follow a reload, and refusals are counted; `maxConnectionsPerIp` holds
//! one address to its cap across the shards while another is served.

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
        let series = "mcp_gateway_connections_refused_total{reason=\"denied\"}";
        metric_value(&page, series).filter(|n| *n >= 1.0)
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

#[test]
fn one_address_is_held_to_its_connection_cap_across_shards() {
    let up = Upstream::fixed("ok");
    let mut c = config(json!([server("a", &up.url(""))]));
    c["security"] = json!({"ddos": {"maxConnectionsPerIp": 10}});
    let gw = Gateway::start(&c);
    let to = gw.data_addr();
    // 30 connections held open from one address, over both shards: 10 are served.
    let mut held = Vec::new();
    let mut served = 0;
    for _ in 0..30 {
        let mut s = connect_from("127.0.0.3", to);
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 12];
        if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
            served += 1;
        }
        held.push(s);
    }
    assert_eq!(served, 10, "served from one address");
    assert!(
        ask("127.0.0.4", to).starts_with(b"HTTP/1.1 200"),
        "another address is served"
    );
    let refused = eventually(Duration::from_secs(5), || {
        let page = Client::connect(gw.mgmt_addr()).get("/metrics").text();
        let series = "mcp_gateway_connections_refused_total{reason=\"per_ip_cap\"}";
        metric_value(&page, series).filter(|n| *n >= 20.0)
    });
    assert!(refused.is_some(), "refusals counted");
    // Closed connections give their places back.
    drop(held);
    let back = eventually(Duration::from_secs(5), || {
        ask("127.0.0.3", to)
            .starts_with(b"HTTP/1.1 200")
            .then_some(())
    });
    assert!(
        back.is_some(),
        "the address is served again once its connections closed"
    );
}
