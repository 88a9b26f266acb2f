//! `mcp-gateway static-floor`: a static-response server on the gateway's own runtime and
//! codec. It parses each request and answers a fixed JSON-RPC result without proxying:
//! the cost floor of one request, shown as a row of the benchmark table.
//!
//! Owns: nothing the gateway uses; it is a measuring stick.

use mcp_gateway_shard::http::encode::{self, LocalResponse};
use mcp_gateway_shard::http::{request, BodyFraming};
use mcp_gateway_shard::relay::{read_append, write_all};
use mcp_gateway_shard::{runtime, worker};
use monoio::net::TcpStream;
use std::net::{Ipv4Addr, SocketAddr};

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;

pub fn run(port: u16) -> anyhow::Result<()> {
    let listener = worker::bind_reuseport(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    println!("static floor on http://{}", listener.local_addr()?);
    runtime::block_on(move || async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "listener unusable"),
        };
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            monoio::spawn(connection(stream));
        }
    })?;
    Ok(())
}

async fn connection(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    loop {
        match read_append(&mut stream, &mut buf, 4096).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        // Answer every complete request in the buffer with one write.
        let mut pos = 0;
        out.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let (consumed, close) = match request::parse(&buf[pos..], &mut headers) {
                Ok(Some(head)) => {
                    let body = match head.framing {
                        BodyFraming::Length(n) => n as usize,
                        _ => 0,
                    };
                    if buf.len() - pos < head.head_len + body {
                        break;
                    }
                    (head.head_len + body, !head.keep_alive)
                }
                Ok(None) => break,
                Err(_) => return,
            };
            pos += consumed;
            encode::local_response(
                &mut out,
                b"",
                &LocalResponse {
                    status: 200,
                    content_type: "application/json",
                    body: BODY,
                    close,
                    request_id: b"",
                    extra: &[],
                    security: &[],
                },
            );
            if close {
                let _ = write_all(&mut stream, &mut out).await;
                return;
            }
        }
        buf.drain(..pos);
        if !out.is_empty() && write_all(&mut stream, &mut out).await.is_err() {
            return;
        }
    }
}
