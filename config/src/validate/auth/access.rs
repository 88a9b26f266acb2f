//! What each principal may reach and what upstreams are told: `security.rbac` roles,
//! `security.headers`, and each server's `credentials`.
//!
//! Owns: those checks. Must not: decide a request (the shards do).

use super::check_role_names;
use crate::error::ConfigError;
use crate::runtime::PolicyRule;
use crate::runtime_security::{
    AuthMethod, Authentication, Grant, Rbac, Role, SecurityHeaders, ServerMatch, TokenExchange,
    UpstreamCredentials,
};
use crate::user::{HeadersSection, RbacSection, UserConfig};
use crate::validate::http::breaks_header_line;

/// Each server's `credentials`: a token exchange names an issuer with a token endpoint and
/// needs bearer tokens to exchange.
pub(super) fn check_credentials(
    user: &UserConfig,
    auth: &Authentication,
    errors: &mut Vec<ConfigError>,
) -> Vec<UpstreamCredentials> {
    let issuers = auth.oauth2.as_ref().map_or(&[][..], |o| &o.issuers[..]);
    let mut all = Vec::with_capacity(user.upstream.servers.len());
    for (index, server) in user.upstream.servers.iter().enumerate() {
        let section = &server.credentials;
        let exchange = &section.token_exchange;
        let at = format!("upstream.servers[{index}].credentials.tokenExchange");
        let exchange = if exchange.audience.is_empty() {
            None
        } else {
            let found = issuers
                .iter()
                .position(|i| i.issuer == exchange.issuer && i.token_endpoint.is_some());
            if found.is_none() {
                let known: Vec<&str> = issuers
                    .iter()
                    .filter(|i| i.token_endpoint.is_some())
                    .map(|i| i.issuer.as_str())
                    .collect();
                errors.push(
                    ConfigError::new(
                        format!("{at}.issuer"),
                        format!(
                            "`{}` is no oauth2 issuer with a `tokenEndpoint`",
                            exchange.issuer
                        ),
                    )
                    .with_allowed(if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        known.join(", ")
                    }),
                );
            }
            if server.forward_auth {
                errors.push(ConfigError::new(
                    at.clone(),
                    "a token exchange replaces the client's token: `forwardAuth` must be false",
                ));
            }
            if !(auth.accepts(AuthMethod::Jwt) || auth.accepts(AuthMethod::OAuth2)) {
                errors.push(ConfigError::new(
                    at.clone(),
                    "needs bearer tokens to exchange: `jwt` or `oauth2` in security.authentication.methods",
                ));
            }
            found.map(|issuer| TokenExchange {
                issuer,
                audience: exchange.audience.clone(),
                scope: Some(exchange.scope.clone()).filter(|s| !s.is_empty()),
            })
        };
        let wants_auth = section.identity || !section.token_exchange.audience.is_empty();
        if wants_auth && !auth.enabled {
            errors.push(ConfigError::new(
                format!("upstream.servers[{index}].credentials"),
                "needs security.authentication.enabled: without it there is no one to vouch for",
            ));
        }
        all.push(UpstreamCredentials {
            identity: section.identity,
            exchange,
        });
    }
    all
}

pub(super) fn check_rbac(
    section: &RbacSection,
    user: &UserConfig,
    errors: &mut Vec<ConfigError>,
) -> Rbac {
    let path = "security.rbac";
    let groups: Vec<&str> = user
        .upstream
        .servers
        .iter()
        .filter_map(|s| s.group.as_deref())
        .collect();
    let mut roles = Vec::new();
    for (name, rules) in &section.roles {
        if name.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.roles"),
                "a role name is empty",
            ));
        }
        let mut grants = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let at = format!("{path}.roles.{name}[{index}]");
            let mut servers = Vec::new();
            for (i, server) in rule.servers.iter().enumerate() {
                let matcher = ServerMatch::parse(server);
                if let ServerMatch::Group(group) = &matcher {
                    if !groups.contains(&group.as_str()) {
                        let message = format!("no server is in group `{group}`");
                        errors.push(ConfigError::new(format!("{at}.servers[{i}]"), message));
                    }
                }
                if server.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{at}.servers[{i}]"),
                        "must not be empty",
                    ));
                }
                servers.push(matcher);
            }
            let mut allow = Vec::new();
            for (i, rule) in rule.allow.iter().enumerate() {
                if rule.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{at}.allow[{i}]"),
                        "must not be empty",
                    ));
                }
                allow.push(PolicyRule::parse(rule));
            }
            grants.push(Grant { servers, allow });
        }
        roles.push(Role {
            name: name.clone(),
            grants,
        });
    }
    let rbac = Rbac {
        enabled: section.enabled,
        roles,
        default_roles: section.default_roles.clone(),
    };
    check_role_names(
        &format!("{path}.defaultRoles"),
        &section.default_roles,
        &rbac,
        errors,
    );
    rbac
}

pub(super) fn check_headers(
    section: &HeadersSection,
    errors: &mut Vec<ConfigError>,
) -> SecurityHeaders {
    let path = "security.headers";
    let named = [
        (
            "strictTransportSecurity",
            "Strict-Transport-Security",
            &section.strict_transport_security,
        ),
        (
            "xContentTypeOptions",
            "X-Content-Type-Options",
            &section.x_content_type_options,
        ),
        ("xFrameOptions", "X-Frame-Options", &section.x_frame_options),
        (
            "xXssProtection",
            "X-XSS-Protection",
            &section.x_xss_protection,
        ),
        (
            "contentSecurityPolicy",
            "Content-Security-Policy",
            &section.content_security_policy,
        ),
        (
            "referrerPolicy",
            "Referrer-Policy",
            &section.referrer_policy,
        ),
    ];
    let mut lines = Vec::new();
    let mut hsts = None;
    for (key, header, value) in named {
        if breaks_header_line(value) || value.chars().any(|c| !(' '..='~').contains(&c)) {
            errors.push(
                ConfigError::new(format!("{path}.{key}"), "not a valid header value")
                    .with_allowed("printable ASCII"),
            );
            continue;
        }
        if value.trim().is_empty() || !section.enabled {
            continue;
        }
        let line = format!("{header}: {}", value.trim());
        if header == "Strict-Transport-Security" {
            hsts = Some(line);
        } else {
            lines.push(line);
        }
    }
    SecurityHeaders {
        lines,
        hsts,
        upstream: section.enabled && section.upstream,
    }
}
