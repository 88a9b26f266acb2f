//! Routing: a pure function from a request path and the compiled route table to a decision.
//!
//! Owns: which paths are the gateway's own pages, `/mcp/{serverId}[/rest]` lookup, and the
//! default group. Must not: do I/O, pick a replica (that is `balancer`), or touch metrics.

use mcp_gateway_config::GatewayConfig;
use std::collections::HashMap;

/// The gateway's own read-only pages, served on the data port and the management port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPage {
    Health,
    Info,
    Stats,
    Status,
    UpstreamHealth,
    Metrics,
}

impl LocalPage {
    pub const ALL: [LocalPage; 6] = [
        LocalPage::Health,
        LocalPage::Info,
        LocalPage::Stats,
        LocalPage::Status,
        LocalPage::UpstreamHealth,
        LocalPage::Metrics,
    ];

    pub fn from_path(path: &str) -> Option<LocalPage> {
        Some(match path {
            "/health" => LocalPage::Health,
            "/info" => LocalPage::Info,
            "/stats" => LocalPage::Stats,
            "/status" => LocalPage::Status,
            "/upstream/health" => LocalPage::UpstreamHealth,
            "/metrics" => LocalPage::Metrics,
            _ => return None,
        })
    }
}

/// Route table compiled once per config snapshot.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_id: HashMap<Box<str>, usize>,
    /// Upstreams that serve paths no other route claims: those without a `group`.
    pub default_group: Vec<usize>,
}

impl RouteTable {
    pub fn build(config: &GatewayConfig) -> RouteTable {
        let mut by_id = HashMap::with_capacity(config.upstreams.len());
        let mut default_group = Vec::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            by_id.insert(u.id.clone().into_boxed_str(), i);
            if u.group.is_none() {
                default_group.push(i);
            }
        }
        RouteTable {
            by_id,
            default_group,
        }
    }

    pub fn server(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Local(LocalPage),
    /// `/mcp/{id}`: that upstream, with `rest` (path remainder and query) appended to its path.
    Server {
        index: usize,
        rest: &'a str,
    },
    /// Unknown `/mcp/{id}`.
    UnknownServer(&'a str),
    /// Anything else: the default group, the target unchanged.
    Default,
}

/// Decides the route for a request target (path and query).
pub fn route<'a>(method: &str, target: &'a str, table: &RouteTable) -> Route<'a> {
    let path_end = target.find('?').unwrap_or(target.len());
    let path = &target[..path_end];
    if method == "GET" || method == "HEAD" {
        if let Some(page) = LocalPage::from_path(path) {
            return Route::Local(page);
        }
    }
    if let Some(after) = path.strip_prefix("/mcp/") {
        let id_end = after.find('/').unwrap_or(after.len());
        let id = &after[..id_end];
        let rest = &target["/mcp/".len() + id_end..];
        return match table.server(id) {
            Some(index) => Route::Server { index, rest },
            None => Route::UnknownServer(id),
        };
    }
    Route::Default
}

/// Writes the upstream request target: the upstream's base path, then `rest`.
pub fn rewrite_target(out: &mut Vec<u8>, base_path: &str, rest: &str) {
    out.extend_from_slice(base_path.as_bytes());
    if (rest.is_empty() || rest.starts_with('?')) && base_path.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(rest.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.by_id.insert("alpha".into(), 0);
        t.by_id.insert("beta".into(), 1);
        t.default_group = vec![0, 1];
        t
    }

    #[test]
    fn routes() {
        let t = table();
        assert_eq!(route("GET", "/health", &t), Route::Local(LocalPage::Health));
        assert_eq!(route("POST", "/health", &t), Route::Default);
        assert_eq!(
            route("POST", "/mcp/beta", &t),
            Route::Server { index: 1, rest: "" }
        );
        assert_eq!(
            route("GET", "/mcp/alpha/x/y?z=1", &t),
            Route::Server {
                index: 0,
                rest: "/x/y?z=1"
            }
        );
        assert_eq!(
            route("GET", "/mcp/alpha?z=1", &t),
            Route::Server {
                index: 0,
                rest: "?z=1"
            }
        );
        assert_eq!(
            route("GET", "/mcp/nope/x", &t),
            Route::UnknownServer("nope")
        );
        assert_eq!(route("GET", "/anything", &t), Route::Default);
    }

    #[test]
    fn rewrites() {
        let mut out = Vec::new();
        rewrite_target(&mut out, "", "");
        assert_eq!(out, b"/");
        out.clear();
        rewrite_target(&mut out, "/mcp", "");
        assert_eq!(out, b"/mcp");
        out.clear();
        rewrite_target(&mut out, "", "?a=1");
        assert_eq!(out, b"/?a=1");
        out.clear();
        rewrite_target(&mut out, "/base", "/x?a=1");
        assert_eq!(out, b"/base/x?a=1");
    }
}
