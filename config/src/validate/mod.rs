//! Semantic checks of a parsed `UserConfig`: ranges, names, URLs, and resolving upstream hosts.
//!
//! Owns: what values mean and which are allowed. It collects every problem and never stops at
//! the first. On success it hands back the pieces it had to parse anyway (addresses, enums,
//! URL parts) as `Checked`, so the conversion to runtime types cannot fail.
//!
//! Must not: look at JSON (the schema walk did), or build runtime types (`convert.rs`).

use std::net::{IpAddr, SocketAddr};

use crate::error::ConfigError;
use crate::runtime::{Algorithm, IpBlock, Workers};
use crate::url::ParsedUrl;
use crate::user::{UserConfig, WorkersSetting, PAGES};

mod auth;
mod http;
mod upstreams;

pub use auth::{hash_text, key_hash, parse_jwks, CheckedSecurity, ADMIN_ROLE};

/// `loadBalancer.algorithm` values, in the order errors list them.
pub const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("round-robin", Algorithm::RoundRobin),
    ("weighted", Algorithm::Weighted),
    ("least-connections", Algorithm::LeastConnections),
    ("ip-hash", Algorithm::IpHash),
    ("health-based", Algorithm::HealthBased),
];
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
pub const TRANSPORTS: &[&str] = &["streamable-http", "sse", "stdio"];
/// `sessions.store` values this build serves.
pub const SESSION_STORES: &[&str] = &["none", "redis"];

const MAX_WORKERS: i64 = 1024;
/// One hour: the longest request or connection timeout.
const MAX_TIMEOUT_MS: i64 = 3_600_000;
/// One day: the longest idle time of a stdio process.
const MAX_IDLE_MS: i64 = 86_400_000;
/// One day: the longest health check interval.
const MAX_INTERVAL_MS: i64 = 86_400_000;
/// One second to thirty days: the allowed session lifetimes.
const MIN_SESSION_TTL_MS: i64 = 1_000;
const MAX_SESSION_TTL_MS: i64 = 2_592_000_000;
/// The shortest session secret, in bytes.
const MIN_SECRET_BYTES: usize = 16;

/// What validation parsed on the way; every upstream has its resolved endpoint.
#[derive(Debug, Clone)]
pub struct Checked {
    pub host: IpAddr,
    pub management_host: IpAddr,
    pub workers: Workers,
    pub algorithm: Algorithm,
    pub log_level: String,
    /// One per `upstream.servers` element, in order.
    pub endpoints: Vec<Endpoint>,
    /// `security.allowedOrigins`, normalized.
    pub allowed_origins: Vec<String>,
    /// `sessions.store: "redis"`: where Redis is.
    pub redis: Option<(crate::url::RedisUrl, SocketAddr)>,
    /// `server.trustedProxies`, parsed.
    pub trusted_proxies: Vec<IpBlock>,
    /// `security.authentication`, `rbac` and `headers`, in runtime form, and warnings.
    pub security: CheckedSecurity,
}

/// What an upstream needs beyond its user keys.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: ParsedUrl,
    pub addr: SocketAddr,
    /// `headers`, with `${NAME}` references expanded.
    pub headers: Vec<(String, String)>,
}

/// Checks everything; `Err` holds every problem found. `env` expands `${NAME}` references in
/// upstream headers.
pub fn validate(
    user: &UserConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Checked, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let host = check_server(user, &mut errors);
    let management_host = check_monitoring(user, &mut errors);
    let workers = check_workers(&user.server.workers, &mut errors);
    let endpoints = upstreams::check(&user.upstream.servers, env, &mut errors);
    check_health(user, &mut errors);
    let algorithm = check_balancer(user, &mut errors);
    check_cache_and_security(user, &mut errors);
    let security = auth::check(user, env, &mut errors);
    let allowed_origins = check_origins(&user.security.allowed_origins, &mut errors);
    let redis = check_sessions(user, &mut errors);
    let trusted_proxies = ip_blocks(
        "server.trustedProxies",
        &user.server.trusted_proxies,
        &mut errors,
    );
    in_range(
        &mut errors,
        "upstream.idleTimeout",
        user.upstream.idle_timeout,
        1,
        MAX_TIMEOUT_MS,
    );
    let level = user.logging.level.to_ascii_lowercase();
    if !LOG_LEVELS.contains(&level.as_str()) {
        let message = format!("unknown level `{}`", user.logging.level);
        errors.push(ConfigError::new("logging.level", message).with_allowed(LOG_LEVELS.join(", ")));
    }
    if user.logging.file.as_deref() == Some("") {
        errors.push(ConfigError::new("logging.file", "must not be empty"));
    }

    let endpoints: Option<Vec<Endpoint>> = endpoints.into_iter().collect();
    match (host, management_host, workers, algorithm, endpoints) {
        (Some(host), Some(management_host), Some(workers), Some(algorithm), Some(endpoints))
            if errors.is_empty() =>
        {
            Ok(Checked {
                host,
                management_host,
                workers,
                algorithm,
                log_level: level,
                endpoints,
                allowed_origins,
                redis,
                trusted_proxies,
                security,
            })
        }
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError::new(
                    "",
                    "internal error: validation incomplete",
                ));
            }
            Err(errors)
        }
    }
}

fn check_server(user: &UserConfig, errors: &mut Vec<ConfigError>) -> Option<IpAddr> {
    let server = &user.server;
    in_range(errors, "server.port", server.port, 0, 65_535);
    in_range(errors, "server.httpsPort", server.https_port, 1, 65_535);
    at_least(errors, "server.maxConnections", server.max_connections, 1);
    in_range(
        errors,
        "server.keepAliveTimeout",
        server.keep_alive_timeout,
        1,
        MAX_TIMEOUT_MS,
    );
    in_range(
        errors,
        "server.sseKeepAlive",
        server.sse_keep_alive,
        0,
        MAX_TIMEOUT_MS,
    );
    in_range(
        errors,
        "server.shutdownTimeout",
        server.shutdown_timeout,
        0,
        MAX_TIMEOUT_MS,
    );
    let limits = &server.limits;
    in_range(
        errors,
        "server.limits.maxHeaderBytes",
        limits.max_header_bytes,
        1024,
        1_048_576,
    );
    at_least(
        errors,
        "server.limits.maxBodyBytes",
        limits.max_body_bytes,
        1,
    );
    in_range(
        errors,
        "server.limits.headerTimeout",
        limits.header_timeout,
        1,
        MAX_TIMEOUT_MS,
    );
    in_range(
        errors,
        "server.limits.sendTimeout",
        limits.send_timeout,
        1,
        MAX_TIMEOUT_MS,
    );
    at_least(errors, "server.limits.minBodyRate", limits.min_body_rate, 0);
    in_range(
        errors,
        "server.limits.minBodyRateWindow",
        limits.min_body_rate_window,
        100,
        MAX_TIMEOUT_MS,
    );
    ip_address(errors, "server.host", &server.host)
}

fn check_workers(workers: &WorkersSetting, errors: &mut Vec<ConfigError>) -> Option<Workers> {
    let count = match workers {
        WorkersSetting::Text(text) if text.eq_ignore_ascii_case("auto") => {
            return Some(Workers::Auto)
        }
        WorkersSetting::Text(text) => match text.trim().parse::<i64>() {
            Ok(count) => count,
            Err(_) => {
                let message = format!("expected `auto` or a number of workers, found `{text}`");
                let allowed = format!("auto, 1 to {MAX_WORKERS}");
                errors.push(ConfigError::new("server.workers", message).with_allowed(allowed));
                return None;
            }
        },
        WorkersSetting::Count(count) => *count,
    };
    if !(1..=MAX_WORKERS).contains(&count) {
        let allowed = format!("auto, 1 to {MAX_WORKERS}");
        let message = format!("{count} is out of range");
        errors.push(ConfigError::new("server.workers", message).with_allowed(allowed));
        return None;
    }
    usize::try_from(count).ok().map(Workers::Count)
}

fn check_monitoring(user: &UserConfig, errors: &mut Vec<ConfigError>) -> Option<IpAddr> {
    let monitoring = &user.monitoring;
    in_range(
        errors,
        "monitoring.metricsInterval",
        monitoring.metrics_interval,
        10,
        60_000,
    );
    let dashboard = &monitoring.dashboard;
    in_range(
        errors,
        "monitoring.dashboard.port",
        dashboard.port,
        0,
        65_535,
    );
    in_range(
        errors,
        "monitoring.websocket.port",
        monitoring.websocket.port,
        1,
        65_535,
    );
    in_range(
        errors,
        "monitoring.dashboard.maxConnections",
        dashboard.max_connections,
        1,
        1_000_000,
    );
    for (i, page) in monitoring.data_port_pages.iter().enumerate() {
        if !PAGES.contains(&page.as_str()) {
            let path = format!("monitoring.dataPortPages[{i}]");
            let message = format!("unknown page `{page}`");
            errors.push(ConfigError::new(path, message).with_allowed(PAGES.join(", ")));
        }
    }
    // Listeners on the same port collide when their addresses are equal or one is the
    // wildcard.
    let management = dashboard.host.as_deref().unwrap_or(DEFAULT_MANAGEMENT_HOST);
    let wildcard = |h: &str| h.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let shares_host =
        management == user.server.host || wildcard(management) || wildcard(&user.server.host);
    if monitoring.enabled && dashboard.enabled && shares_host {
        if dashboard.port != 0 && dashboard.port == user.server.port {
            let message = format!("port {} is also server.port", dashboard.port);
            errors.push(ConfigError::new("monitoring.dashboard.port", message));
        }
        let websocket = &monitoring.websocket;
        if websocket.enabled && websocket.port == user.server.port {
            let message = format!("port {} is also server.port", websocket.port);
            errors.push(ConfigError::new("monitoring.websocket.port", message));
        }
    }
    match &dashboard.host {
        Some(host) => ip_address(errors, "monitoring.dashboard.host", host),
        None => DEFAULT_MANAGEMENT_HOST.parse().ok(),
    }
}

/// The management port is loopback-only unless configured otherwise.
const DEFAULT_MANAGEMENT_HOST: &str = "127.0.0.1";

/// A list of addresses and CIDR blocks at `at`.
pub(crate) fn ip_blocks(
    at: &str,
    entries: &[String],
    errors: &mut Vec<ConfigError>,
) -> Vec<IpBlock> {
    let mut blocks = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match IpBlock::parse(entry) {
            Some(block) => blocks.push(block),
            None => {
                let path = format!("{at}[{i}]");
                let message = format!("`{entry}` is not an IP address or CIDR block");
                errors.push(
                    ConfigError::new(path, message)
                        .with_allowed("an address or block, e.g. 10.0.0.0/8 or ::1"),
                );
            }
        }
    }
    blocks
}

fn check_health(user: &UserConfig, errors: &mut Vec<ConfigError>) {
    let health = &user.upstream.health_check;
    let base = "upstream.healthCheck";
    in_range(
        errors,
        &format!("{base}.interval"),
        health.interval,
        1,
        MAX_INTERVAL_MS,
    );
    in_range(
        errors,
        &format!("{base}.timeout"),
        health.timeout,
        1,
        MAX_TIMEOUT_MS,
    );
    let thresholds = [
        ("unhealthyThreshold", health.unhealthy_threshold),
        ("healthyThreshold", health.healthy_threshold),
    ];
    for (key, value) in thresholds {
        in_range(errors, &format!("{base}.{key}"), value, 1, 1000);
    }
    if !health.path.starts_with('/') {
        let message = format!("`{}` must start with `/`", health.path);
        errors.push(ConfigError::new(format!("{base}.path"), message));
    }
}

fn check_balancer(user: &UserConfig, errors: &mut Vec<ConfigError>) -> Option<Algorithm> {
    let name = user.load_balancer.algorithm.as_str();
    let found = ALGORITHMS.iter().find(|(known, _)| *known == name);
    if found.is_none() {
        let allowed: Vec<&str> = ALGORITHMS.iter().map(|(known, _)| *known).collect();
        let message = format!("unknown algorithm `{name}`");
        errors.push(
            ConfigError::new("loadBalancer.algorithm", message).with_allowed(allowed.join(", ")),
        );
    }
    found.map(|(_, algorithm)| *algorithm)
}

fn check_cache_and_security(user: &UserConfig, errors: &mut Vec<ConfigError>) {
    let memory = &user.cache.layers.memory;
    at_least(errors, "cache.layers.memory.maxSize", memory.max_size, 0);
    let rate = &user.security.rate_limit;
    in_range(
        errors,
        "security.rateLimit.windowMs",
        rate.window_ms,
        1,
        MAX_INTERVAL_MS,
    );
    at_least(errors, "security.rateLimit.max", rate.max, 1);
}

fn check_origins(origins: &[String], errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut normalized = Vec::with_capacity(origins.len());
    for (index, origin) in origins.iter().enumerate() {
        match http::normalize_origin(origin) {
            Ok(origin) => normalized.push(origin),
            Err(problem) => {
                let path = format!("security.allowedOrigins[{index}]");
                let message = format!("`{origin}` {problem}");
                errors.push(ConfigError::new(path, message).with_allowed(http::ORIGIN_SHAPE));
            }
        }
    }
    normalized
}

/// The sessions checks; for `store: "redis"`, the parsed and resolved Redis URL.
fn check_sessions(
    user: &UserConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<(crate::url::RedisUrl, SocketAddr)> {
    let sessions = &user.sessions;
    if let Some(secret) = &sessions.secret {
        if secret.len() < MIN_SECRET_BYTES {
            let message = format!(
                "must be at least {MIN_SECRET_BYTES} bytes, found {}",
                secret.len()
            );
            errors.push(ConfigError::new("sessions.secret", message));
        }
    }
    in_range(
        errors,
        "sessions.ttl",
        sessions.ttl,
        MIN_SESSION_TTL_MS,
        MAX_SESSION_TTL_MS,
    );
    if sessions
        .admin_token
        .as_deref()
        .is_some_and(|t| t.len() < MIN_SECRET_BYTES)
    {
        let message = format!("must be at least {MIN_SECRET_BYTES} bytes");
        errors.push(ConfigError::new("sessions.adminToken", message));
    }
    let store = sessions.store.as_str();
    if !SESSION_STORES.contains(&store) {
        let message = format!("unknown store `{store}`");
        errors.push(
            ConfigError::new("sessions.store", message).with_allowed(SESSION_STORES.join(", ")),
        );
        return None;
    }
    if store != "redis" {
        if sessions.redis_url.is_some() {
            let message = "only applies to `sessions.store: \"redis\"`";
            errors.push(ConfigError::new("sessions.redisUrl", message));
        }
        return None;
    }
    let (path, url) = match &sessions.redis_url {
        Some(url) => ("sessions.redisUrl", url.as_str()),
        None => (
            "cache.layers.redis.url",
            user.cache.layers.redis.url.as_str(),
        ),
    };
    match crate::url::parse_redis(url) {
        Ok(mut parsed) => {
            if parsed.password.is_none() {
                parsed.password = user.cache.layers.redis.password.clone();
            }
            match crate::url::Resolver::default().resolve(&parsed.host, parsed.port) {
                Ok(addr) => Some((parsed, addr)),
                Err(message) => {
                    errors.push(ConfigError::new(path, message));
                    None
                }
            }
        }
        Err(message) => {
            errors.push(ConfigError::new(path, message).with_allowed(crate::url::REDIS_URL_SHAPE));
            None
        }
    }
}

fn ip_address(errors: &mut Vec<ConfigError>, path: &str, text: &str) -> Option<IpAddr> {
    match text.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            let message = format!("`{text}` is not an IP address");
            errors.push(
                ConfigError::new(path, message)
                    .with_allowed("an IPv4 or IPv6 address, e.g. 0.0.0.0 or ::"),
            );
            None
        }
    }
}

fn in_range(errors: &mut Vec<ConfigError>, path: &str, value: i64, min: i64, max: i64) {
    if value < min || value > max {
        let message = format!("{value} is out of range");
        errors.push(ConfigError::new(path, message).with_allowed(format!("{min} to {max}")));
    }
}

fn at_least(errors: &mut Vec<ConfigError>, path: &str, value: i64, min: i64) {
    if value < min {
        let message = format!("{value} is too small");
        errors.push(ConfigError::new(path, message).with_allowed(format!("at least {min}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn paths_of(user: &UserConfig) -> Vec<String> {
        let errors = validate(user, &no_env).err().unwrap_or_default();
        errors.into_iter().map(|e| e.path).collect()
    }

    fn workers(setting: WorkersSetting) -> (Option<Workers>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let result = check_workers(&setting, &mut errors);
        (result, errors)
    }

    #[test]
    fn defaults_are_valid() {
        let checked = validate(&UserConfig::default(), &no_env);
        assert!(checked.is_ok_and(|c| c.endpoints.is_empty()
            && c.workers == Workers::Auto
            && c.allowed_origins.is_empty()));
    }

    #[test]
    fn workers_setting() {
        let auto = WorkersSetting::Text("Auto".to_string());
        assert_eq!(workers(auto).0, Some(Workers::Auto));
        assert_eq!(
            workers(WorkersSetting::Count(1024)).0,
            Some(Workers::Count(1024))
        );
        assert_eq!(
            workers(WorkersSetting::Text("3".to_string())).0,
            Some(Workers::Count(3))
        );
        let (none, errors) = workers(WorkersSetting::Count(1025));
        assert!(none.is_none());
        assert_eq!(errors[0].message, "1025 is out of range");
        let (none, errors) = workers(WorkersSetting::Text("all".to_string()));
        assert!(none.is_none());
        assert_eq!(errors[0].allowed.as_deref(), Some("auto, 1 to 1024"));
    }

    #[test]
    fn every_problem_is_collected() {
        let mut user = UserConfig::default();
        user.server.port = -1;
        user.server.host = "nowhere".to_string();
        user.load_balancer.algorithm = "fastest".to_string();
        user.upstream.health_check.interval = 0;
        user.logging.file = Some(String::new());
        assert_eq!(
            paths_of(&user),
            [
                "server.port",
                "server.host",
                "upstream.healthCheck.interval",
                "loadBalancer.algorithm",
                "logging.file"
            ]
        );
    }

    #[test]
    fn session_bounds() {
        let mut user = UserConfig::default();
        user.sessions.ttl = MIN_SESSION_TTL_MS;
        user.sessions.secret = Some("0123456789abcdef".to_string());
        assert!(paths_of(&user).is_empty());
        user.sessions.ttl = MAX_SESSION_TTL_MS;
        assert!(paths_of(&user).is_empty());
        user.sessions.ttl = MAX_SESSION_TTL_MS + 1;
        user.sessions.secret = Some("0123456789abcde".to_string());
        user.sessions.store = "memory".to_string();
        assert_eq!(
            paths_of(&user),
            ["sessions.secret", "sessions.ttl", "sessions.store"]
        );
        user.sessions.ttl = MIN_SESSION_TTL_MS - 1;
        user.sessions.secret = Some(String::new());
        user.sessions.store = "none".to_string();
        assert_eq!(paths_of(&user), ["sessions.secret", "sessions.ttl"]);
    }

    #[test]
    fn origins_are_checked_one_by_one() {
        let mut user = UserConfig::default();
        user.security.allowed_origins = ["https://A.example/", "*", "https://a/x", "a.example"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            paths_of(&user),
            ["security.allowedOrigins[2]", "security.allowedOrigins[3]"]
        );
        user.security.allowed_origins.truncate(2);
        let checked = validate(&user, &no_env);
        assert!(checked.is_ok_and(|c| c.allowed_origins == ["https://a.example", "*"]));
    }
}
