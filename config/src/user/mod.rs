//! What users write: the serde types of `api-gateway.config.json`.
//!
//! Owns: the key names (camelCase), the shape and the defaults of the config file. It is a
//! superset of the original Node gateway's file, whose README example loads unchanged.
//! Every field has a default, so any subset of keys is a complete config.
//!
//! Must not: check ranges or meanings (that is `validate/`), or hold runtime types such as
//! `Duration` or `SocketAddr` (that is `runtime.rs`). Numbers are `i64` here on purpose, so a
//! negative or too large value reaches validation and gets a readable message instead of a
//! serde error.
//!
//! The schema walk (`schema.rs`) serializes these defaults to learn the known keys and their
//! JSON types, so a field added here is known to the walk automatically. Fields whose default
//! is `None` (null) accept any JSON type in the walk; serde and validation check them.

use serde::{Deserialize, Serialize};

mod auth;
mod cache;
mod security;
mod sessions;
mod upstream;

pub use auth::{
    ApiKeyEntry, AuthenticationSection, HeadersSection, JwtSection, OAuth2Section,
    OAuthIssuerEntry, RbacSection, RoleRuleEntry,
};
pub use cache::{CacheLayers, CacheSection, FileLayer, MemoryLayer, RedisLayer};
pub use security::{DdosSection, RateLimitSection, SecuritySection};
pub use sessions::SessionsSection;
pub use upstream::{HealthCheckSection, UpstreamSection, UpstreamServer};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConfig {
    pub server: ServerSection,
    pub upstream: UpstreamSection,
    pub load_balancer: LoadBalancerSection,
    pub cache: CacheSection,
    pub security: SecuritySection,
    pub sessions: SessionsSection,
    pub monitoring: MonitoringSection,
    pub logging: LoggingSection,
}

/// `server`: the data-plane listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSection {
    /// `PORT`; 0 picks an ephemeral port.
    pub port: i64,
    /// `HTTPS_PORT`.
    pub https_port: i64,
    /// `HOST`: an IP address to bind.
    pub host: String,
    pub ssl: SslSection,
    /// `CLUSTER_WORKERS`: "auto" or a count of shards.
    pub workers: WorkersSetting,
    /// `MAX_CONNECTIONS`, for the whole process.
    pub max_connections: i64,
    /// `KEEP_ALIVE_TIMEOUT`, milliseconds.
    pub keep_alive_timeout: i64,
    /// Milliseconds of silence on an event stream before the gateway sends a `: keep-alive`
    /// comment; 0 turns it off.
    pub sse_keep_alive: i64,
    /// Milliseconds: on SIGTERM/SIGINT, how long requests in flight may take to finish
    /// before the process exits anyway.
    pub shutdown_timeout: i64,
    pub limits: LimitsSection,
    /// Peers (IP addresses or CIDR blocks) whose `X-Forwarded-Proto`, `X-Forwarded-Host`
    /// and `Forwarded` headers are passed on; from anyone else they are replaced.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            port: 8080,
            https_port: 8443,
            host: "0.0.0.0".to_string(),
            ssl: SslSection::default(),
            workers: WorkersSetting::default(),
            max_connections: 10_000,
            keep_alive_timeout: 65_000,
            sse_keep_alive: 15_000,
            shutdown_timeout: 10_000,
            limits: LimitsSection::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `server.ssl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SslSection {
    pub enabled: bool,
    pub cert: String,
    pub key: String,
}

impl Default for SslSection {
    fn default() -> Self {
        SslSection {
            enabled: false,
            cert: "./certs/server.crt".to_string(),
            key: "./certs/server.key".to_string(),
        }
    }
}

/// `server.workers`: the string "auto" (or a number written as a string) or a JSON number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkersSetting {
    Count(i64),
    Text(String),
}

impl Default for WorkersSetting {
    fn default() -> Self {
        WorkersSetting::Text("auto".to_string())
    }
}

/// `server.limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSection {
    pub max_header_bytes: i64,
    pub max_body_bytes: i64,
    /// Milliseconds.
    pub header_timeout: i64,
    /// Milliseconds a response may wait for the client to read any of it.
    pub send_timeout: i64,
    /// Bytes per second a request body must average over `minBodyRateWindow` (0: off).
    pub min_body_rate: i64,
    /// Milliseconds.
    pub min_body_rate_window: i64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_header_bytes: 16_384,
            max_body_bytes: 104_857_600,
            header_timeout: 10_000,
            send_timeout: 30_000,
            min_body_rate: 1024,
            min_body_rate_window: 10_000,
        }
    }
}

/// `loadBalancer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSection {
    /// round-robin | weighted | least-connections | ip-hash | health-based.
    pub algorithm: String,
    pub health_check: bool,
    pub failover: bool,
    pub sticky: bool,
}

impl Default for LoadBalancerSection {
    fn default() -> Self {
        LoadBalancerSection {
            algorithm: "round-robin".to_string(),
            health_check: true,
            failover: true,
            sticky: false,
        }
    }
}

/// The gateway's own pages, as `monitoring.dataPortPages` names them.
pub const PAGES: [&str; 6] = [
    "/health",
    "/info",
    "/stats",
    "/status",
    "/upstream/health",
    "/metrics",
];

/// `monitoring`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitoringSection {
    /// `MONITORING_ENABLED`.
    pub enabled: bool,
    /// Milliseconds between metric publications from the shards.
    pub metrics_interval: i64,
    pub dashboard: DashboardSection,
    pub websocket: WebsocketSection,
    /// The gateway's pages also served on the data port (the management port serves all).
    pub data_port_pages: Vec<String>,
}

impl Default for MonitoringSection {
    fn default() -> Self {
        MonitoringSection {
            enabled: true,
            metrics_interval: 250,
            dashboard: DashboardSection::default(),
            websocket: WebsocketSection::default(),
            data_port_pages: PAGES.map(str::to_string).to_vec(),
        }
    }
}

/// `monitoring.dashboard`: dashboard and admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DashboardSection {
    pub enabled: bool,
    /// `DASHBOARD_PORT`; 0 picks an ephemeral port.
    pub port: i64,
    /// `DASHBOARD_HOST`: an IP address; `None` means 127.0.0.1 (loopback only).
    pub host: Option<String>,
    /// Open connections to the management port.
    pub max_connections: i64,
}

impl Default for DashboardSection {
    fn default() -> Self {
        DashboardSection {
            enabled: true,
            port: 8081,
            host: None,
            max_connections: 256,
        }
    }
}

/// `monitoring.websocket`: the WebSocket hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WebsocketSection {
    pub enabled: bool,
    pub port: i64,
}

impl Default for WebsocketSection {
    fn default() -> Self {
        WebsocketSection {
            enabled: true,
            port: 8082,
        }
    }
}

/// `logging`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingSection {
    /// `LOG_LEVEL`: error | warn | info | debug | trace.
    pub level: String,
    /// `LOG_FILE`.
    pub file: Option<String>,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "info".to_string(),
            file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serialize_with_camel_case_keys_and_nulls() {
        let value = serde_json::to_value(UserConfig::default()).unwrap_or_default();
        assert_eq!(value["server"]["httpsPort"], 8443);
        assert_eq!(value["server"]["workers"], "auto");
        assert_eq!(value["server"]["limits"]["maxHeaderBytes"], 16384);
        assert_eq!(value["upstream"]["healthCheck"]["unhealthyThreshold"], 2);
        assert!(value["logging"]["file"].is_null());
        assert!(value["sessions"]["secret"].is_null());
        assert_eq!(value["sessions"]["ttl"], 86_400_000);
        assert_eq!(value["sessions"]["store"], "none");
        assert_eq!(value["security"]["allowedOrigins"], serde_json::json!([]));
        let server = serde_json::to_value(UpstreamServer::default()).unwrap_or_default();
        assert_eq!(server["forwardAuth"], false);
        assert_eq!(server["headers"], serde_json::json!({}));
        assert!(value["monitoring"]["dashboard"]
            .as_object()
            .is_some_and(|o| o.contains_key("host")));
    }

    #[test]
    fn workers_accepts_string_or_number() {
        let text: WorkersSetting = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(text, WorkersSetting::Text("auto".to_string()));
        let count: WorkersSetting = serde_json::from_str("4").unwrap();
        assert_eq!(count, WorkersSetting::Count(4));
    }
}
