//! End-to-end tests of what is reported for bad configs: unknown keys, wrong types, bad
//! environment values and semantic errors, each with its path, all of them at once.

use super::{errors, loaded, one_server, parse, parse_with_env};
use crate::Transport;

fn load(text: &str) -> crate::GatewayConfig {
    loaded(parse(text))
}

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
fn sse_and_stdio_transports_load() {
    let config = load(&one_server(r#", "transport": "sse""#));
    assert_eq!(config.upstreams[0].transport, Transport::Sse);
    let stdio = r#"{"upstream": {"servers": [{"id": "s", "transport": "stdio",
        "command": "npx", "args": ["server"], "env": {"TOKEN": "x"}, "cwd": "/tmp",
        "maxProcesses": 4, "idleTimeout": 5000}]}}"#;
    let config = load(stdio);
    let upstream = &config.upstreams[0];
    let Transport::Stdio(command) = &upstream.transport else {
        panic!("not stdio: {:?}", upstream.transport);
    };
    assert_eq!(command.command, "npx");
    assert_eq!(command.args, ["server"]);
    assert_eq!(command.env, [("TOKEN".to_string(), "x".to_string())]);
    assert_eq!(command.max_processes, 4);
    assert_eq!(command.idle_timeout, std::time::Duration::from_secs(5));
    assert_eq!(upstream.base_path, "/stdio/s");
}

#[test]
fn stdio_needs_a_command_and_sane_limits() {
    let stdio =
        r#"{"upstream": {"servers": [{"id": "s", "transport": "stdio", "maxProcesses": 0}]}}"#;
    let found = errors(parse(stdio));
    assert_eq!(
        found,
        [
            "upstream.servers[0].command: transport `stdio` needs a `command`",
            "upstream.servers[0].maxProcesses: 0 is out of range (allowed: 1 to 100000)"
        ]
    );
    let http = one_server(r#", "maxProcesses": 3"#);
    let found = errors(parse(&http));
    assert_eq!(
        found,
        ["upstream.servers[0].maxProcesses: `maxProcesses` only applies to transport `stdio`"]
    );
}

#[test]
fn policy_rules_are_checked() {
    let config = load(&one_server(
        r#", "policy": {"allow": ["tools/*", "initialize"], "deny": ["tools/call:drop_*"]}"#,
    ));
    let policy = &config.upstreams[0].policy;
    assert!(policy.allow[0].matches(b"tools/list", None));
    assert!(!policy.allow[1].matches(b"initialized", None));
    assert!(policy.deny[0].matches(b"tools/call", Some(b"drop_table")));
    assert!(!policy.deny[0].matches(b"tools/call", None));
    let found = errors(parse(&one_server(
        r#", "policy": {"deny": ["", "to*ls/call", "tools/call:"]}"#,
    )));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0]
        .starts_with("upstream.servers[0].policy.deny[0]: ``: the method must not be empty"));
    assert!(found[1].contains("`*` may only end the method or the name"));
    assert!(found[2].contains("the name after `:` must not be empty"));
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
      "monitoring": {"metricsInterval": 5, "dashboard": {"port": 8080, "host": "0.0.0.0"}},
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

#[test]
fn redis_session_store() {
    let config =
        load(r#"{"sessions": {"store": "redis", "redisUrl": "redis://:pw@127.0.0.1:6390/3"}}"#);
    let redis = config.sessions.redis.expect("a store");
    assert_eq!(redis.addr, "127.0.0.1:6390".parse().expect("addr"));
    assert_eq!((redis.password.as_deref(), redis.db), (Some("pw"), 3));
    // Default: the cache layer's URL and password (REDIS_URL, REDIS_PASSWORD).
    let config = load(
        r#"{"sessions": {"store": "redis"},
        "cache": {"layers": {"redis": {"url": "redis://127.0.0.1:6391", "password": "x"}}}}"#,
    );
    let redis = config.sessions.redis.expect("a store");
    assert_eq!(redis.addr.port(), 6391);
    assert_eq!(redis.password.as_deref(), Some("x"));
    assert!(load("{}").sessions.redis.is_none());
    let found = errors(parse(r#"{"sessions": {"store": "memcached"}}"#));
    assert_eq!(
        found,
        ["sessions.store: unknown store `memcached` (allowed: none, redis)"]
    );
    let found = errors(parse(
        r#"{"sessions": {"store": "redis", "redisUrl": "http://x"}}"#,
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("sessions.redisUrl: must start with redis://"),
        "{found:?}"
    );
    let found = errors(parse(r#"{"sessions": {"redisUrl": "redis://x"}}"#));
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn session_checks() {
    let found = errors(parse(r#"{"sessions": {"secret": "short", "ttl": 999}}"#));
    assert_eq!(
        found,
        [
            "sessions.secret: must be at least 16 bytes, found 5",
            "sessions.ttl: 999 is out of range (allowed: 1000 to 2592000000)",
        ]
    );
    let found = errors(parse(r#"{"sessions": {"ttl": 2592000001}}"#));
    assert_eq!(
        found,
        ["sessions.ttl: 2592000001 is out of range (allowed: 1000 to 2592000000)"]
    );
    let found = errors(parse_with_env("{}", &[("SESSION_SECRET", "tooshort")]));
    assert_eq!(
        found,
        ["sessions.secret: must be at least 16 bytes, found 8 (set by env SESSION_SECRET)"]
    );
    assert!(!found[0].contains("tooshort"));
}

#[test]
fn bad_allowed_origins() {
    let text = r#"{"security": {"allowedOrigins": [
        "https://ok.example", "https://a.example/app", "ftp://a.example", "a.example", "",
        "https://*.example.com"
    ]}}"#;
    let found = errors(parse(text));
    let expected_starts = [
        "security.allowedOrigins[1]: `https://a.example/app` must not have a path",
        "security.allowedOrigins[2]: `ftp://a.example` unsupported scheme `ftp`",
        "security.allowedOrigins[3]: `a.example` must look like scheme://host[:port]",
        "security.allowedOrigins[4]: `` must not be empty",
        "security.allowedOrigins[5]: `https://*.example.com` has a wildcard in its host",
    ];
    for start in expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), expected_starts.len(), "{found:#?}");
    assert!(found[0].ends_with("(allowed: \"*\" or http(s)://host[:port])"));
}

#[test]
fn unset_header_variable_names_the_path_and_the_variable() {
    let text = one_server(r#", "headers": {"Authorization": "Bearer ${MCP_TOKEN}"}"#);
    let found = errors(parse(&text));
    assert_eq!(
        found,
        ["upstream.servers[0].headers.Authorization: environment variable `MCP_TOKEN` is not set"]
    );
    let found = errors(parse_with_env(&text, &[("MCP_TOKEN", "a\r\nX-Evil: 1")]));
    assert_eq!(
        found,
        ["upstream.servers[0].headers.Authorization: environment variable `MCP_TOKEN` contains CR, LF or NUL"]
    );
}

#[test]
fn bad_upstream_headers() {
    let text = one_server(
        r#", "headers": {
            "X Bad": "1", "Connection": "close", "host": "h", "Content-Length": "1",
            "Transfer-Encoding": "chunked", "Keep-Alive": "1", "Upgrade": "h2c",
            "X-Split": "a\r\nX-Evil: 1", "X-Ref": "${1BAD}", "x-dup": "1", "X-Dup": "2"
        }"#,
    );
    let found = errors(parse(&text));
    let base = "upstream.servers[0].headers";
    let expected_starts = [
        format!("{base}.X Bad: header name `X Bad` has characters outside the allowed set"),
        format!("{base}.Connection: header `Connection` cannot be set here"),
        format!("{base}.host: header `host` cannot be set here"),
        format!("{base}.Content-Length: header `Content-Length` cannot be set here"),
        format!("{base}.Transfer-Encoding: header `Transfer-Encoding` cannot be set here"),
        format!("{base}.Keep-Alive: header `Keep-Alive` cannot be set here"),
        format!("{base}.Upgrade: header `Upgrade` cannot be set here"),
        format!("{base}.X-Split: value must not contain CR, LF or NUL"),
        format!("{base}.X-Ref: `${{1BAD}}` is not a variable reference"),
        format!("{base}.x-dup: duplicate header, also written as `X-Dup`"),
    ];
    for start in &expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start.as_str())),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), expected_starts.len(), "{found:#?}");
}

#[test]
fn edge_limits_and_exposure_keys() {
    let text = r#"{
      "server": {"trustedProxies": ["10.0.0.0/8", "::1", "10.0.0.0/33", "nope"],
                 "limits": {"sendTimeout": 0, "minBodyRate": -1, "minBodyRateWindow": 10}},
      "upstream": {"idleTimeout": 0},
      "monitoring": {"dataPortPages": ["/health", "/secret"], "dashboard": {"maxConnections": 0}}
    }"#;
    let found = errors(parse(text));
    let expected_starts = [
        "server.trustedProxies[2]: `10.0.0.0/33` is not an IP address or CIDR block",
        "server.trustedProxies[3]: `nope` is not an IP address or CIDR block",
        "server.limits.sendTimeout: 0 is out of range",
        "server.limits.minBodyRate: -1",
        "server.limits.minBodyRateWindow: 10 is out of range",
        "upstream.idleTimeout: 0 is out of range",
        "monitoring.dataPortPages[1]: unknown page `/secret`",
        "monitoring.dashboard.maxConnections: 0 is out of range",
    ];
    for start in expected_starts {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), expected_starts.len(), "{found:#?}");
    let config = load(
        r#"{"server": {"trustedProxies": ["10.0.0.0/8", "::1"]}, "monitoring": {"dashboard": {"host": "0.0.0.0"}}}"#,
    );
    let proxies = &config.server.trusted_proxies;
    assert!(proxies[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!proxies[0].contains("11.1.2.3".parse().unwrap()));
    assert!(proxies[0].contains("::ffff:10.9.9.9".parse().unwrap()));
    assert!(proxies[1].contains("::1".parse().unwrap()));
    assert!(!proxies[1].contains("127.0.0.1".parse().unwrap()));
    assert!(config.monitoring.management_host.is_unspecified());
}

#[test]
fn group_named_like_a_server_is_refused() {
    let text = r#"{"upstream": {"servers": [
      {"id": "search", "url": "http://127.0.0.1:3001"},
      {"id": "s2", "url": "http://127.0.0.1:3002", "group": "search"}
    ]}}"#;
    let found = errors(parse(text));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(
            "upstream.servers[1].group: group `search` has the id of upstream.servers[0]"
        ),
        "{found:#?}"
    );
}
