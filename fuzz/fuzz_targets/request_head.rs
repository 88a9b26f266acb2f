//! The client request head parser (`http::request::parse`), then what the pipeline does
//! with a parsed head: `path()`, the routing headers, `router::route` against a small table,
//! and the next pipelined request after the body.
//!
//! Properties: no panic; `head_len` within the input; a head cut short is "read more"
//! (`Ok(None)`), never an error and never a different head.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_gateway_shard::http::chunked::ChunkedTracker;
use mcp_gateway_shard::http::request::{self, RequestHead};
use mcp_gateway_shard::http::BodyFraming;
use mcp_gateway_shard::mcp::stateless;
use mcp_gateway_shard::router::{self, Route, RouteTable};

const CONFIG: &str = r#"{"upstream": {"servers": [
  {"id": "alpha", "url": "http://127.0.0.1:3001/base"},
  {"id": "beta", "url": "http://127.0.0.1:3002"},
  {"id": "s1", "url": "http://127.0.0.1:3003", "group": "search"},
  {"id": "s2", "url": "http://127.0.0.1:3004/mcp", "group": "search"}
]}}"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| match mcp_gateway_config::parse_str(CONFIG, &|_| None) {
        Ok(config) => RouteTable::build(&config),
        Err(err) => panic!("fuzz route config: {err}"),
    })
}

/// Requests at most examined per input (pipelining).
const MAX_REQUESTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for _ in 0..MAX_REQUESTS {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let head = match request::parse(rest, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        assert!(head.head_len > 0 && head.head_len <= rest.len());
        check_prefixes(rest, head.head_len);
        let body = &rest[head.head_len..];
        use_head(&head);
        let body_len = match head.framing {
            BodyFraming::Empty => 0,
            BodyFraming::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= body.len() => n,
                _ => return,
            },
            BodyFraming::Chunked => {
                let mut tracker = ChunkedTracker::new();
                match tracker.feed(body) {
                    Ok(n) if tracker.is_done() => n,
                    _ => return,
                }
            }
            BodyFraming::UntilClose => panic!("a request framed until close"),
        };
        rest = &body[body_len..];
    }
});

/// A head that parses whole must read as "incomplete" when cut anywhere before its end.
fn check_prefixes(buf: &[u8], head_len: usize) {
    let step = (head_len / 16).max(1);
    let cuts = (0..head_len).step_by(step).chain([head_len - 1]);
    for cut in cuts {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        match request::parse(&buf[..cut], &mut headers) {
            Ok(None) => {}
            Ok(Some(h)) => panic!("prefix of {cut} bytes parsed as a {}-byte head", h.head_len),
            Err(err) => panic!("prefix of {cut} bytes refused ({err}); the whole head parses"),
        }
    }
}

fn use_head(head: &RequestHead<'_, '_>) {
    let path = head.path();
    assert!(head.target.starts_with(path));
    let _ = head.is_head();
    if let Ok(found) = stateless::routing_headers(head) {
        if let Some(method) = found.method {
            let _ = stateless::method_index(method);
        }
        if let Some(name) = found.name {
            let _ = stateless::decode_name(name);
        }
    }
    let mut out = Vec::new();
    match router::route(head.method, head.target, table()) {
        Route::Mcp { rest, .. } => {
            assert!(head.target.ends_with(rest));
            router::rewrite_target(&mut out, "/base", rest);
            out.clear();
            router::rewrite_target(&mut out, "", rest);
            assert!(out.starts_with(b"/"));
        }
        Route::Sse { query, id, .. } => {
            assert!(head.target.ends_with(query));
            assert!(head.target.contains(id));
        }
        _ => {}
    }
}
