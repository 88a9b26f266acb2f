//! Routing: a pure function from a request path and the compiled route table to a decision.
//!
//! Owns: which paths are the gateway's own pages, `/mcp/{serverId}[/rest]` and
//! `/sse/{serverId}[/message]` lookup, and the default group. Must not: do I/O, pick a
//! replica (that is `balancer`), or touch metrics.

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

    pub fn path(self) -> &'static str {
        match self {
            LocalPage::Health => "/health",
            LocalPage::Info => "/info",
            LocalPage::Stats => "/stats",
            LocalPage::Status => "/status",
            LocalPage::UpstreamHealth => "/upstream/health",
            LocalPage::Metrics => "/metrics",
        }
    }

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

    /// Whether a read on the data port waits for pages merged after it arrived: the pages
    /// that show counts and health. `/health` answers at once (a liveness probe must not
    /// wait for a tick; its counts are those of the last render) and `/info` shows no counts.
    pub fn waits_for_merge(self) -> bool {
        !matches!(self, LocalPage::Health | LocalPage::Info)
    }
}

/// What `/mcp/{id}` names: one server, or a group of replicas of one MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Server(usize),
    Group(usize),
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub members: Vec<usize>,
}

/// Route table compiled once per config generation (by the management shard, shared by all
/// shards read-only).
#[derive(Debug, Default)]
pub struct RouteTable {
    targets: HashMap<Box<str>, Target>,
    pub groups: Vec<Group>,
    /// Upstreams that serve paths no other route claims: those without a `group`.
    pub default_group: Vec<usize>,
    /// Replica identity in session tokens -> upstream index.
    replicas: HashMap<u64, usize>,
    /// Upstream index -> replica identity.
    pub replica_ids: Vec<u64>,
    /// Which of [`LocalPage::ALL`] the data port serves (`monitoring.dataPortPages`); a page
    /// it does not serve is a path like any other.
    pub data_pages: [bool; LocalPage::ALL.len()],
}

impl RouteTable {
    pub fn build(config: &GatewayConfig) -> RouteTable {
        let mut t = RouteTable::default();
        for (served, page) in t.data_pages.iter_mut().zip(LocalPage::ALL) {
            *served = config
                .monitoring
                .data_port_pages
                .iter()
                .any(|p| p == page.path());
        }
        for (i, u) in config.upstreams.iter().enumerate() {
            let replica = crate::mcp::session::replica_id(&u.id);
            t.replica_ids.push(replica);
            if u.retired {
                // Kept for its requests in flight; no new request reaches it.
                continue;
            }
            t.targets
                .insert(u.id.clone().into_boxed_str(), Target::Server(i));
            t.replicas.insert(replica, i);
            match &u.group {
                None => t.default_group.push(i),
                Some(name) => match t.groups.iter_mut().find(|g| &g.id == name) {
                    Some(g) => g.members.push(i),
                    None => t.groups.push(Group {
                        id: name.clone(),
                        members: vec![i],
                    }),
                },
            }
        }
        for (g, group) in t.groups.iter().enumerate() {
            // A server id wins over a group of the same name (validation refuses that).
            t.targets
                .entry(group.id.clone().into_boxed_str())
                .or_insert(Target::Group(g));
        }
        t
    }

    pub fn target(&self, id: &str) -> Option<Target> {
        self.targets.get(id).copied()
    }

    /// The upstream a session token names, if it is still configured.
    pub fn replica(&self, replica_id: u64) -> Option<usize> {
        self.replicas.get(&replica_id).copied()
    }

    /// Whether `upstream` is the target or one of its replicas.
    pub fn serves(&self, target: Target, upstream: usize) -> bool {
        match target {
            Target::Server(i) => i == upstream,
            Target::Group(g) => self
                .groups
                .get(g)
                .is_some_and(|g| g.members.contains(&upstream)),
        }
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Local(LocalPage),
    /// `/mcp/{id}`: that server or group, with `rest` (path remainder and query) appended to
    /// the chosen upstream's path.
    Mcp {
        target: Target,
        rest: &'a str,
    },
    /// `/sse/{id}` (`message` false) or `/sse/{id}/message`: the legacy HTTP+SSE transport.
    Sse {
        target: Target,
        id: &'a str,
        message: bool,
        /// The query string, `?` included, or "".
        query: &'a str,
    },
    /// Unknown `/mcp/{id}` or `/sse/{id}`.
    UnknownServer(&'a str),
    /// `OPTIONS *`: a question about the gateway itself, answered by it.
    ServerOptions,
    /// Anything else: the default group, the target unchanged.
    Default,
}

/// Decides the route for a request target (path and query).
pub fn route<'a>(method: &str, target: &'a str, table: &RouteTable) -> Route<'a> {
    if target == "*" {
        return Route::ServerOptions;
    }
    let path_end = target.find('?').unwrap_or(target.len());
    let path = &target[..path_end];
    if method == "GET" || method == "HEAD" {
        if let Some(page) = LocalPage::from_path(path) {
            if table.data_pages[page as usize] {
                return Route::Local(page);
            }
        }
    }
    if let Some(after) = path.strip_prefix("/mcp/") {
        let id_end = after.find('/').unwrap_or(after.len());
        let id = &after[..id_end];
        let rest = &target["/mcp/".len() + id_end..];
        return match table.target(id) {
            Some(target) => Route::Mcp { target, rest },
            None => Route::UnknownServer(id),
        };
    }
    if let Some(after) = path.strip_prefix("/sse/") {
        let (id, message) = match after.split_once('/') {
            None => (after, false),
            Some((id, "message")) => (id, true),
            Some(_) => return Route::Default,
        };
        return match table.target(id) {
            Some(t) => Route::Sse {
                target: t,
                id,
                message,
                query: &target[path_end..],
            },
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
        t.targets.insert("alpha".into(), Target::Server(0));
        t.targets.insert("beta".into(), Target::Server(1));
        t.targets.insert("search".into(), Target::Group(0));
        t.groups.push(Group {
            id: "search".into(),
            members: vec![2, 3],
        });
        t.default_group = vec![0, 1];
        t.data_pages = [true, true, true, false, true, true];
        t
    }

    #[test]
    fn routes() {
        let t = table();
        assert_eq!(route("GET", "/health", &t), Route::Local(LocalPage::Health));
        assert_eq!(route("POST", "/health", &t), Route::Default);
        // A page the data port does not serve is proxied like any path.
        assert_eq!(route("GET", "/status", &t), Route::Default);
        assert_eq!(route("OPTIONS", "*", &t), Route::ServerOptions);
        let server = |i, rest| Route::Mcp {
            target: Target::Server(i),
            rest,
        };
        assert_eq!(route("POST", "/mcp/beta", &t), server(1, ""));
        assert_eq!(
            route("GET", "/mcp/alpha/x/y?z=1", &t),
            server(0, "/x/y?z=1")
        );
        assert_eq!(route("GET", "/mcp/alpha?z=1", &t), server(0, "?z=1"));
        let group = Route::Mcp {
            target: Target::Group(0),
            rest: "",
        };
        assert_eq!(route("POST", "/mcp/search", &t), group);
        assert!(t.serves(Target::Group(0), 3) && !t.serves(Target::Group(0), 0));
        assert_eq!(
            route("GET", "/mcp/nope/x", &t),
            Route::UnknownServer("nope")
        );
        assert_eq!(route("GET", "/anything", &t), Route::Default);
        let sse = |target, id, message, query| Route::Sse {
            target,
            id,
            message,
            query,
        };
        assert_eq!(
            route("GET", "/sse/alpha", &t),
            sse(Target::Server(0), "alpha", false, "")
        );
        assert_eq!(
            route("POST", "/sse/search/message?t=x", &t),
            sse(Target::Group(0), "search", true, "?t=x")
        );
        assert_eq!(route("GET", "/sse/nope", &t), Route::UnknownServer("nope"));
        assert_eq!(route("GET", "/sse/alpha/other", &t), Route::Default);
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
