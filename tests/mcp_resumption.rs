//! Resumption with `Last-Event-ID` through the gateway, with the official MCP Python SDK on
//! both sides: a server with an event store cuts a tool call's event stream half way (as a
//! server polling a long task does), the SDK client reconnects with `Last-Event-ID` and gets
//! the rest. Through a group of two replicas, the resumed stream reaches the replica that
//! holds the events, with the server's own event ids untouched.

mod common;
mod python_support;

use common::*;
use python_support::*;
use serde_json::json;

#[test]
fn a_cut_stream_resumes_with_last_event_id_on_the_same_replica() {
    let a = PyServer::start(CURRENT, "resumable_server.py", &["ra"]);
    let b = PyServer::start(CURRENT, "resumable_server.py", &["rb"]);
    let gw = Gateway::start(&config(json!([
        {"id": "ra", "url": a.url("/mcp"), "group": "g"},
        {"id": "rb", "url": b.url("/mcp"), "group": "g"}
    ])));
    let url = format!("http://{}/mcp/g", gw.data_addr());
    let mut replicas = Vec::new();
    for round in 0..4 {
        let seen = run_client("resumable_client.py", &[&url]);
        let who = seen["whoami"].as_str().unwrap_or_default().to_string();
        assert!(who == "ra" || who == "rb", "round {round}: {seen}");
        assert_eq!(
            seen["result"],
            format!("finished on {who}"),
            "round {round}: {seen}"
        );
        assert_eq!(
            seen["progress"],
            json!(["before the break", "after the break"]),
            "round {round}: the events after the cut arrive after resuming: {seen}"
        );
        // The client resumed once, after an event id of this replica's own making.
        let replays = seen["replays"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let last = replays.last().and_then(|v| v.as_str()).unwrap_or_default();
        assert!(
            last.starts_with(&format!("{who}-ev-")),
            "round {round}: {seen}"
        );
        replicas.push(who);
    }
    replicas.sort();
    replicas.dedup();
    assert_eq!(replicas.len(), 2, "sessions spread over both replicas");
}
