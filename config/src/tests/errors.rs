//! End-to-end tests of what is reported for bad configs: unknown keys, wrong types, bad
//! environment values and semantic errors, each with its path, all of them at once.

use super::{errors, one_server, parse, parse_with_env};

#[test]
fn unknown_key_has_path_and_suggestion() {
    let found = errors(parse(&one_server(r#", "wieght": 2"#)));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(
            "upstream.servers[0].wieght: unknown key `wieght`, did you mean `weight`? (allowed: "
        ),
        "{}",
        found[0]
    );
}

#[test]
fn five_distinct_errors_are_all_reported() {
    let text = r#"{
      "server": {"port": 70000},
      "upstream": {"servers": [
        {"id": "a", "url": "http://127.0.0.1:3001", "wieght": 2},
        {"id": "b", "url": "https://127.0.0.1:3002"}
      ]},
      "loadBalancer": {"algorithm": "random"},
      "logging": {"level": "verbose"}
    }"#;
    let err = match parse(text) {
        Ok(_) => panic!("loaded"),
        Err(err) => err,
    };
    let found = err.errors();
    assert_eq!(found.len(), 5, "{found:#?}");
    let expected_starts = [
        "upstream.servers[0].wieght: unknown key",
        "server.port: 70000 is out of range (allowed: 0 to 65535)",
        "upstream.servers[1].url: https upstreams are not supported by this build yet",
        "loadBalancer.algorithm: unknown algorithm `random` (allowed: round-robin, weighted,",
        "logging.level: unknown level `verbose` (allowed: error, warn, info, debug, trace)",
    ];
    for start in expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(err.to_string().lines().count(), 6);
}

#[test]
fn wrong_type_is_reported_once() {
    let found = errors(parse(&one_server(r#", "timeout": "30s""#)));
    assert_eq!(
        found,
        ["upstream.servers[0].timeout: expected an integer, found a string (`\"30s\"`)"]
    );
    // The bad element is not also reported by validation (empty id, empty url).
    let found = errors(parse(r#"{"upstream": {"servers": [42]}}"#));
    assert_eq!(
        found,
        ["upstream.servers[0]: expected an object, found a number (`42`)"]
    );
}

#[test]
fn bad_env_values_are_errors_naming_the_variable() {
    let found = errors(parse_with_env("{}", &[("PORT", "eighty")]));
    assert_eq!(
        found,
        ["env PORT: expected a port number (0..=65535), found `eighty`"]
    );
    let found = errors(parse_with_env(
        "{}",
        &[("HOST", "my-host"), ("LOG_LEVEL", "loud")],
    ));
    assert_eq!(found.len(), 2);
    assert!(found[0].starts_with("server.host: `my-host` is not an IP address (set by env HOST)"));
    assert!(found[1].starts_with("logging.level: unknown level `loud` (set by env LOG_LEVEL)"));
}

#[test]
fn sse_and_stdio_are_rejected_for_now() {
    let found = errors(parse(&one_server(r#", "transport": "sse""#)));
    assert_eq!(
        found,
        ["upstream.servers[0].transport: transport `sse` is not supported by this build yet (allowed: streamable-http)"]
    );
    let stdio = r#"{"upstream": {"servers": [{"id": "s", "transport": "stdio",
        "command": "npx", "args": ["server"], "env": {"TOKEN": "x"}, "cwd": "/tmp"}]}}"#;
    let found = errors(parse(stdio));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("transport `stdio` is not supported by this build yet"));
}

#[test]
fn upstream_checks() {
    let text = r#"{"upstream": {"servers": [
        {"id": "a", "url": "http://127.0.0.1:3001/mcp/", "weight": 0},
        {"id": "a", "url": "http://127.0.0.1:3002", "maxConnections": 0, "timeout": 0},
        {"id": "bad id", "url": "http://127.0.0.1:3003?x=1", "command": "x"}
    ]}}"#;
    let found = errors(parse(text));
    let expected_starts = [
        "upstream.servers[0].weight: 0 is out of range (allowed: 1 to 1000)",
        "upstream.servers[1].id: duplicate id `a`, first used by upstream.servers[0]",
        "upstream.servers[1].maxConnections: 0 is too small (allowed: at least 1)",
        "upstream.servers[1].timeout: 0 is out of range (allowed: 1 to 3600000)",
        "upstream.servers[2].id: `bad id` has characters outside the allowed set",
        "upstream.servers[2].command: `command` only applies to transport `stdio`",
        "upstream.servers[2].url: must not have a query or a fragment",
    ];
    for start in expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), expected_starts.len(), "{found:#?}");
}

#[test]
fn other_semantic_checks() {
    let text = r#"{
      "server": {"host": "localhost", "httpsPort": 0, "limits": {"maxHeaderBytes": 100}},
      "upstream": {"healthCheck": {"path": "health"}},
      "monitoring": {"metricsInterval": 5, "dashboard": {"port": 8080}},
      "security": {"authentication": {"methods": ["jwt", "basic"]}}
    }"#;
    let found = errors(parse(text));
    let expected_starts = [
        "server.host: `localhost` is not an IP address",
        "server.httpsPort: 0 is out of range",
        "server.limits.maxHeaderBytes: 100 is out of range (allowed: 1024 to 1048576)",
        "upstream.healthCheck.path: `health` must start with `/`",
        "monitoring.metricsInterval: 5 is out of range (allowed: 10 to 60000)",
        "monitoring.dashboard.port: port 8080 is also server.port",
        "security.authentication.methods[1]: unknown method `basic`",
    ];
    for start in expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), expected_starts.len(), "{found:#?}");
}
