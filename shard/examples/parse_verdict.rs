//! Prints, for each input file, how the gateway's HTTP/1 request parser reads it: one JSON
//! line per file, for `scripts/differential.py` to compare with a reference parser.
//!
//! Usage: `parse_verdict PATH...` (files, or folders whose files are read in name order);
//! with no PATH, one path per line on stdin.
//!
//! Each line: `{"file", "messages": [...]}`, one entry per pipelined request read from the
//! file in order (at most 8), as the connection would: `verdict` is `accepted`, `refused`
//! (with `reason`) or `incomplete`; an accepted request has `method`, `target`, `framing`
//! (`empty`, `length N`, `chunked`), `keep_alive`, and `body`: `complete` with `payload`
//! bytes, `incomplete`, or `error: ...` (chunked framing the tracker refused). Reading stops
//! after a request that is not accepted, whose body is not complete, or that closes the
//! connection.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use mcp_gateway_shard::http::chunked::ChunkedTracker;
use mcp_gateway_shard::http::request;
use mcp_gateway_shard::http::BodyFraming;
use serde_json::{json, Value};

const MAX_MESSAGES: usize = 8;

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let roots = if args.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    } else {
        args
    };
    for root in roots {
        for file in files(&root) {
            let line = match std::fs::read(&file) {
                Ok(bytes) => {
                    json!({"file": file.display().to_string(), "messages": verdicts(&bytes)})
                }
                Err(err) => json!({"file": file.display().to_string(), "error": err.to_string()}),
            };
            println!("{line}");
        }
    }
}

/// `path` itself, or the files in the folder `path`, sorted.
fn files(path: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return vec![path.to_path_buf()];
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn verdicts(mut buf: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let head = match request::parse(buf, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) => {
                out.push(json!({"verdict": "incomplete"}));
                return out;
            }
            Err(err) => {
                out.push(json!({"verdict": "refused", "reason": err.to_string()}));
                return out;
            }
        };
        let body = &buf[head.head_len..];
        let (framing, body_outcome, body_len) = match head.framing {
            BodyFraming::Empty => ("empty".to_string(), Ok(0), Some(0)),
            BodyFraming::Length(n) => {
                let fits = usize::try_from(n).ok().filter(|n| *n <= body.len());
                (
                    format!("length {n}"),
                    fits.map(|n| n as u64).ok_or("incomplete".to_string()),
                    fits,
                )
            }
            BodyFraming::Chunked => {
                let mut tracker = ChunkedTracker::new();
                match tracker.feed(body) {
                    Ok(n) if tracker.is_done() => {
                        ("chunked".to_string(), Ok(tracker.payload_bytes()), Some(n))
                    }
                    Ok(_) => ("chunked".to_string(), Err("incomplete".to_string()), None),
                    Err(err) => ("chunked".to_string(), Err(format!("error: {err}")), None),
                }
            }
            BodyFraming::UntilClose => (
                "until-close".to_string(),
                Err("incomplete".to_string()),
                None,
            ),
        };
        let mut entry = json!({
            "verdict": "accepted",
            "method": head.method,
            "target": head.target,
            "version": format!("1.{}", head.minor_version),
            "framing": framing,
            "keep_alive": head.keep_alive,
        });
        match body_outcome {
            Ok(payload) => {
                entry["body"] = json!("complete");
                entry["payload"] = json!(payload);
            }
            Err(why) => entry["body"] = json!(why),
        }
        let keep_alive = head.keep_alive;
        out.push(entry);
        match body_len {
            Some(n) if keep_alive => buf = &body[n..],
            _ => return out,
        }
        if buf.is_empty() {
            return out;
        }
    }
    out
}
