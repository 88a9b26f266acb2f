//! Role-based access down to the tool: which servers a principal's roles reach, and which
//! MCP methods and names (`tools/call:search_*`) they may call there.
//!
//! A principal whose credential names no role gets `security.rbac.defaultRoles`; a request
//! without a principal (a public path) gets them too. Lifecycle methods (`initialize`,
//! `notifications/initialized`, `ping`, `server/discover`, `notifications/cancelled`) always
//! pass on a server the roles reach, as with a server's own `policy`.
//!
//! Owns: that decision. Must not: read bodies (the body check calls [`permits`] on each
//! message) or answer.

use mcp_gateway_config::{GatewayConfig, PolicyRule};

use super::principal::Principal;
use crate::mcp::stateless::is_lifecycle;

/// What a principal may do on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anything (RBAC off, or a grant allowing `*`).
    All,
    /// The methods these rules allow (and the lifecycle ones).
    Methods(Vec<PolicyRule>),
    /// Nothing: no role reaches this server.
    Denied,
}

/// The access of `principal` to the server in slot `upstream`.
pub fn access(config: &GatewayConfig, principal: Option<&Principal>, upstream: usize) -> Access {
    let rbac = &config.security.rbac;
    if !rbac.enabled {
        return Access::All;
    }
    let Some(server) = config.upstreams.get(upstream) else {
        return Access::Denied;
    };
    let own_roles = principal.map(|p| &p.roles[..]).unwrap_or(&[]);
    let defaults;
    let roles: Vec<&str> = if own_roles.is_empty() {
        defaults = &rbac.default_roles;
        defaults.iter().map(String::as_str).collect()
    } else {
        own_roles.iter().map(|r| &**r).collect()
    };
    let mut rules = Vec::new();
    let mut reached = false;
    for role in roles.iter().filter_map(|name| rbac.role(name)) {
        for grant in &role.grants {
            if !grant
                .servers
                .iter()
                .any(|m| m.covers(&server.id, server.group.as_deref()))
            {
                continue;
            }
            reached = true;
            for rule in &grant.allow {
                if rule.name.is_none() && rule.method.prefix && rule.method.text.is_empty() {
                    return Access::All;
                }
                rules.push(rule.clone());
            }
        }
    }
    if reached {
        Access::Methods(rules)
    } else {
        Access::Denied
    }
}

/// Whether `rules` allow a call of `method` (about `name`).
pub fn permits(rules: &[PolicyRule], method: &[u8], name: Option<&[u8]>) -> bool {
    is_lifecycle(method) || rules.iter().any(|r| r.matches(method, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<PolicyRule> {
        list.iter().map(|r| PolicyRule::parse(r)).collect()
    }

    #[test]
    fn tools_down_to_the_name() {
        let allow = rules(&["tools/list", "tools/call:search_*"]);
        assert!(permits(&allow, b"tools/list", None));
        assert!(permits(&allow, b"tools/call", Some(b"search_web")));
        assert!(!permits(&allow, b"tools/call", Some(b"delete_all")));
        assert!(!permits(&allow, b"tools/call", None));
        assert!(!permits(&allow, b"prompts/list", None));
        assert!(permits(&allow, b"initialize", None));
        assert!(permits(&[], b"ping", None));
    }
}
