//! End-to-end tests of `parse_str`, `load_file` and `load_or_create`: text in, runtime config
//! or every error out. Unit tests of each step live next to that step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::user::{UpstreamServer, UserConfig};

mod auth;
mod errors;

/// The "Basic Configuration" example of the original Node gateway's README, verbatim.
const ORIGINAL_README_EXAMPLE: &str = r#"{
  "server": {
    "port": 8080,
    "httpsPort": 8443,
    "host": "0.0.0.0",
    "ssl": {
      "enabled": false,
      "cert": "./certs/server.crt",
      "key": "./certs/server.key"
    }
  },
  "upstream": {
    "servers": [
      {
        "id": "mcp-server-1",
        "url": "http://localhost:3001",
        "weight": 1,
        "maxConnections": 100,
        "timeout": 30000
      }
    ],
    "healthCheck": {
      "enabled": true,
      "interval": 30000,
      "timeout": 5000,
      "path": "/health"
    }
  },
  "loadBalancer": {
    "algorithm": "round-robin",
    "healthCheck": true,
    "failover": true,
    "sticky": false
  },
  "cache": {
    "enabled": true,
    "layers": {
      "memory": { "enabled": true, "maxSize": 104857600 },
      "redis": { "enabled": false, "url": "redis://localhost:6379" },
      "file": { "enabled": true, "directory": "./cache" }
    }
  },
  "security": {
    "authentication": {
      "enabled": true,
      "methods": ["jwt", "apikey"]
    },
    "rateLimit": {
      "enabled": true,
      "windowMs": 60000,
      "max": 1000
    }
  },
  "monitoring": {
    "enabled": true,
    "dashboard": {
      "enabled": true,
      "port": 8081
    }
  }
}"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<GatewayConfig, LoadError> {
    parse_str(text, &no_env)
}

fn parse_with_env(text: &str, pairs: &[(&str, &str)]) -> Result<GatewayConfig, LoadError> {
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    parse_str(text, &lookup)
}

fn errors(result: Result<GatewayConfig, LoadError>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected errors, the config loaded"),
        Err(err) => err.errors(),
    }
}

fn loaded(result: Result<GatewayConfig, LoadError>) -> GatewayConfig {
    match result {
        Ok(config) => config,
        Err(err) => panic!("{err}"),
    }
}

fn one_server(fields: &str) -> String {
    format!(
        r#"{{"upstream": {{"servers": [{{"id": "a", "url": "http://127.0.0.1:3001"{fields}}}]}}}}"#
    )
}

#[test]
fn original_readme_example_loads_unchanged() {
    let config = loaded(parse(ORIGINAL_README_EXAMPLE));
    assert_eq!(config.server.port, 8080);
    assert_eq!(config.server.https_port, 8443);
    assert_eq!(config.server.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(config.server.workers, Workers::Auto);
    assert_eq!(config.upstreams.len(), 1);
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.id, "mcp-server-1");
    assert_eq!(upstream.host, "localhost");
    assert_eq!(upstream.authority, "localhost:3001");
    assert_eq!(upstream.addr.port(), 3001);
    assert!(upstream.addr.is_ipv4());
    assert_eq!(upstream.base_path, "");
    assert_eq!(upstream.timeout, Duration::from_secs(30));
    assert_eq!(upstream.transport, Transport::StreamableHttp);
    assert_eq!(config.health_check.interval, Duration::from_secs(30));
    assert_eq!(config.health_check.unhealthy_threshold, 2);
    assert_eq!(config.load_balancer.algorithm, Algorithm::RoundRobin);
    assert!(config.load_balancer.failover);
    assert_eq!(config.monitoring.management_port, 8081);
    assert_eq!(config.monitoring.metrics_tick, Duration::from_millis(250));
    assert_eq!(config.logging.level, "info");
    assert!(!upstream.forward_auth);
    assert!(upstream.headers.is_empty());
    assert!(config.sessions.secret.is_none());
    assert_eq!(config.sessions.ttl, Duration::from_secs(86_400));
    assert!(config.security.allowed_origins.is_empty());
}

#[test]
fn default_text_parses_and_matches_the_defaults() {
    let config = loaded(parse(DEFAULT_CONFIG_TEXT));
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(
        config.upstreams[0].addr,
        SocketAddr::from(([127, 0, 0, 1], 3001))
    );
    assert!(config.health_check.enabled);
    assert!(config.sessions.secret.is_none());
    assert!(config.security.allowed_origins.is_empty());
    assert!(config.upstreams[0].headers.is_empty());

    let json = jsonc::strip_comments(DEFAULT_CONFIG_TEXT).unwrap_or_default();
    let written: UserConfig = serde_json::from_str(&json).unwrap_or_default();
    let mut expected = UserConfig::default();
    expected.upstream.servers.push(UpstreamServer {
        id: "mcp-server-1".to_string(),
        url: "http://127.0.0.1:3001".to_string(),
        ..UpstreamServer::default()
    });
    assert_eq!(written, expected, "default_config.jsonc drifted from user/");
}

#[test]
fn empty_object_is_a_valid_config() {
    let config = loaded(parse("{}"));
    assert!(config.upstreams.is_empty());
    assert_eq!(config.server.limits.max_header_bytes, 16384);
    assert_eq!(config.server.limits.max_body_bytes, 104_857_600);
    assert_eq!(
        config.server.limits.keep_alive_timeout,
        Duration::from_secs(65)
    );
    assert_eq!(config.server.limits.max_connections, 10000);
    // The management port is loopback-only unless configured otherwise.
    assert_eq!(
        config.monitoring.management_host,
        std::net::IpAddr::from([127, 0, 0, 1])
    );
    assert_eq!(config.monitoring.management_max_connections, 256);
    assert_eq!(config.monitoring.data_port_pages.len(), 6);
    assert_eq!(config.server.limits.send_timeout, Duration::from_secs(30));
    assert_eq!(config.server.limits.min_body_rate, 1024);
    assert_eq!(config.upstream_idle_timeout, Duration::from_secs(30));
    assert!(config.server.trusted_proxies.is_empty());
    assert!(config.sessions.secret.is_none());
    assert_eq!(config.sessions.ttl, Duration::from_millis(86_400_000));
    assert!(config.security.allowed_origins.is_empty());
}

#[test]
fn env_overrides_apply_before_validation() {
    let env = [
        ("PORT", "9090"),
        ("HOST", "127.0.0.1"),
        ("DASHBOARD_PORT", "0"),
        ("MONITORING_ENABLED", "false"),
        ("LOG_LEVEL", "debug"),
        ("LOG_FILE", "/tmp/gw.log"),
        ("MAX_CONNECTIONS", "500"),
        ("KEEP_ALIVE_TIMEOUT", "1000"),
        ("JWT_SECRET", "s"),
        ("REDIS_URL", "redis://cache:6379"),
    ];
    let config = loaded(parse_with_env(ORIGINAL_README_EXAMPLE, &env));
    assert_eq!(config.server.port, 9090);
    assert_eq!(config.server.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.monitoring.management_port, 0);
    assert!(!config.monitoring.enabled);
    assert_eq!(config.logging.level, "debug");
    assert_eq!(config.logging.file, Some(PathBuf::from("/tmp/gw.log")));
    assert_eq!(config.server.limits.max_connections, 500);
    assert_eq!(
        config.server.limits.keep_alive_timeout,
        Duration::from_secs(1)
    );
}

#[test]
fn cluster_workers_auto_or_count() {
    let auto = loaded(parse_with_env(
        r#"{"server": {"workers": 2}}"#,
        &[("CLUSTER_WORKERS", "auto")],
    ));
    assert_eq!(auto.server.workers, Workers::Auto);
    let four = loaded(parse_with_env("{}", &[("CLUSTER_WORKERS", "4")]));
    assert_eq!(four.server.workers, Workers::Count(4));
    let text = loaded(parse(r#"{"server": {"workers": "8"}}"#));
    assert_eq!(text.server.workers, Workers::Count(8));
    let found = errors(parse_with_env("{}", &[("CLUSTER_WORKERS", "0")]));
    assert_eq!(
        found,
        ["server.workers: 0 is out of range (set by env CLUSTER_WORKERS) (allowed: auto, 1 to 1024)"]
    );
}

#[test]
fn upstream_runtime_fields() {
    let text = r#"{"upstream": {"servers": [
        {"id": "a", "url": "http://127.0.0.1/mcp/", "group": "g", "tags": ["x", "y"], "weight": 5}
    ]}}"#;
    let config = loaded(parse(text));
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.authority, "127.0.0.1");
    assert_eq!(upstream.port, 80);
    assert_eq!(upstream.base_path, "/mcp");
    assert_eq!(upstream.url, "http://127.0.0.1/mcp/");
    assert_eq!(upstream.group.as_deref(), Some("g"));
    assert_eq!(upstream.tags, ["x", "y"]);
    assert_eq!(upstream.weight, 5);
}

#[test]
fn sessions_keys() {
    let text = r#"{"sessions": {"secret": "0123456789abcdef", "ttl": 1000, "store": "none"}}"#;
    let config = loaded(parse(text));
    assert_eq!(config.sessions.secret.as_deref(), Some("0123456789abcdef"));
    assert_eq!(config.sessions.ttl, Duration::from_secs(1));
    let longest = loaded(parse(r#"{"sessions": {"ttl": 2592000000}}"#));
    assert_eq!(longest.sessions.ttl, Duration::from_secs(30 * 86_400));
    let shown = format!("{:?}", config.sessions);
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

#[test]
fn session_secret_env_overrides_the_file() {
    let text = r#"{"sessions": {"secret": "from-the-file-0123456789"}}"#;
    let env = [("SESSION_SECRET", "from-the-environment")];
    let config = loaded(parse_with_env(text, &env));
    assert_eq!(
        config.sessions.secret.as_deref(),
        Some("from-the-environment")
    );
    let config = loaded(parse_with_env("{}", &env));
    assert_eq!(
        config.sessions.secret.as_deref(),
        Some("from-the-environment")
    );
    let config = loaded(parse_with_env(text, &[("SESSION_SECRET", "")]));
    assert_eq!(
        config.sessions.secret.as_deref(),
        Some("from-the-file-0123456789")
    );
}

#[test]
fn allowed_origins_are_normalized() {
    let text = r#"{"security": {"allowedOrigins": [
        "https://App.Example.com/", "http://localhost:5173", "https://a.example:443", "*"
    ]}}"#;
    let config = loaded(parse(text));
    assert_eq!(
        config.security.allowed_origins,
        [
            "https://app.example.com",
            "http://localhost:5173",
            "https://a.example",
            "*"
        ]
    );
}

#[test]
fn upstream_headers_expand_env_references() {
    let text = one_server(
        r#", "forwardAuth": true, "headers": {
            "X-Tenant": "acme", "Authorization": "Bearer ${MCP_TOKEN}", "X-Both": "${A}:${B}"
        }"#,
    );
    let env = [("MCP_TOKEN", "t0k3n"), ("A", "1"), ("B", "2")];
    let config = loaded(parse_with_env(&text, &env));
    let upstream = &config.upstreams[0];
    assert!(upstream.forward_auth);
    let expected = [
        ("Authorization", "Bearer t0k3n"),
        ("X-Both", "1:2"),
        ("X-Tenant", "acme"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()));
    assert_eq!(upstream.headers, expected);
}

#[test]
fn a_thousand_upstreams_load_quickly() {
    let servers: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"id": "mcp-{i}", "url": "http://127.0.0.1:{}/mcp", "weight": {}, "tags": ["t{}"]}}"#,
                3000 + i,
                1 + i % 10,
                i % 7
            )
        })
        .collect();
    let text = format!(
        r#"{{"upstream": {{"servers": [{}]}}}}"#,
        servers.join(",\n")
    );
    let started = Instant::now();
    let config = loaded(parse(&text));
    let elapsed = started.elapsed();
    assert_eq!(config.upstreams.len(), 1000);
    assert_eq!(config.upstreams[999].id, "mcp-999");
    assert_eq!(config.upstreams[999].addr.port(), 3999);
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn comment_markers_inside_strings_are_kept() {
    let text = r#"{
      // a comment
      "upstream": {"servers": [{"id": "a", /* inline */ "url": "http://127.0.0.1:3001//x/"}]},
      "logging": {"file": "/tmp/a/*b*/c.log"} // trailing
    }"#;
    let config = loaded(parse(text));
    assert_eq!(config.upstreams[0].url, "http://127.0.0.1:3001//x/");
    assert_eq!(config.upstreams[0].base_path, "//x");
    assert_eq!(config.logging.file, Some(PathBuf::from("/tmp/a/*b*/c.log")));
}

#[test]
fn parse_errors_report_the_line() {
    let text = "// line 1\n{\n  /* 3\n  4 */\n  \"server\": {\"port\": 80,}\n}";
    match parse(text) {
        Err(LoadError::Parse { path, line, .. }) => {
            assert_eq!(path, "<config>");
            assert_eq!(line, 5);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn load_or_create_writes_a_default_that_loads() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("mcp-gw-config-{}-{nanos}", std::process::id()));
    let path = dir.join("nested").join("api-gateway.config.json");

    let (config, created) = load_or_create(&path, &no_env).unwrap();
    assert!(created);
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_CONFIG_TEXT);

    let (again, created) = load_or_create(&path, &no_env).unwrap();
    assert!(!created);
    assert_eq!(again.upstreams[0].id, "mcp-server-1");

    fs::write(&path, "{ \"server\": ").unwrap();
    match load_file(&path, &no_env) {
        Err(LoadError::Parse { path: shown, .. }) => {
            assert!(shown.ends_with("api-gateway.config.json"))
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_is_an_io_error() {
    let path = std::env::temp_dir().join("mcp-gw-config-does-not-exist/x.json");
    let err = load_file(&path, &no_env).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err.to_string().starts_with("cannot read "));
}
