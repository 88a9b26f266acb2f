//! The MCP Streamable HTTP transport's header rules, as pure checks: protocol versions,
//! `Accept`, and `Origin` (DNS-rebinding protection), plus the CORS answers.
//!
//! Owns: what is allowed. Must not: write responses or know about sockets.

/// Every released revision of the transport the gateway passes through.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// Headers a browser client may send on MCP requests (CORS preflight answer).
pub const CORS_ALLOW_HEADERS: &str = "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name";
pub const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
pub const CORS_EXPOSE_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version";

pub fn protocol_version_supported(value: &[u8]) -> bool {
    let value = crate::http::trim_ascii(value);
    SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .any(|v| v.as_bytes() == value)
}

/// `Accept` for MCP: a POST must be able to take JSON or an event stream, a GET an event
/// stream. A missing `Accept` means anything (RFC 9110), so lenient clients still work.
pub fn accept_ok(method: &str, accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    let accepts = |wanted: &str| {
        accept.split(|b| *b == b',').any(|item| {
            let mut parts = item.split(|b| *b == b';').map(crate::http::trim_ascii);
            let media = parts.next().unwrap_or(b"");
            // `q=0` means "not acceptable" (RFC 9110 §12.4.2).
            let refused = parts.any(is_zero_quality);
            !refused
                && (media.eq_ignore_ascii_case(wanted.as_bytes())
                    || media == b"*/*"
                    || (media.ends_with(b"/*")
                        && wanted.as_bytes().starts_with(&media[..media.len() - 1])))
        })
    };
    match method {
        "GET" => accepts("text/event-stream"),
        "POST" => accepts("application/json") || accepts("text/event-stream"),
        _ => true,
    }
}

/// A `q=0` (or `q=0.0`, `q=0.000`) parameter.
fn is_zero_quality(param: &[u8]) -> bool {
    let Some(value) = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))
    else {
        return false;
    };
    match value.split_first() {
        Some((b'0', rest)) => {
            rest.is_empty() || (rest[0] == b'.' && rest[1..].iter().all(|b| *b == b'0'))
        }
        _ => false,
    }
}

/// Which browser origins may call MCP endpoints.
#[derive(Debug, Clone)]
pub enum OriginPolicy {
    /// No list configured and a non-loopback listener.
    AllowAll,
    /// No list configured on a loopback listener: only local pages (DNS-rebinding defence).
    LoopbackOnly,
    /// `security.allowedOrigins` (lowercase `scheme://host[:port]`, or `*`).
    List(Vec<String>),
}

impl OriginPolicy {
    pub fn new(allowed: &[String], listener_is_loopback: bool) -> OriginPolicy {
        if !allowed.is_empty() {
            OriginPolicy::List(allowed.to_vec())
        } else if listener_is_loopback {
            OriginPolicy::LoopbackOnly
        } else {
            OriginPolicy::AllowAll
        }
    }

    /// Whether a request carrying this `Origin` may proceed (no `Origin`: not a browser).
    pub fn allows(&self, origin: &[u8]) -> bool {
        let origin = crate::http::trim_ascii(origin);
        match self {
            OriginPolicy::AllowAll => true,
            OriginPolicy::List(list) => list.iter().any(|o| {
                o == "*"
                    || o.as_bytes()
                        .eq_ignore_ascii_case(origin.strip_suffix(b"/").unwrap_or(origin))
            }),
            OriginPolicy::LoopbackOnly => is_loopback_origin(origin),
        }
    }

    /// Whether a request naming this `Host` may proceed. On a loopback listener with no
    /// origins configured, only loopback names pass: after a DNS rebinding, a page's
    /// same-origin requests carry no `Origin` at all, but their `Host` is the attacker's
    /// name. No `Host` (HTTP/1.0) is not a browser. `host` is only looked up when it counts.
    pub fn allows_host<'h>(&self, host: impl FnOnce() -> Option<&'h [u8]>) -> bool {
        match self {
            OriginPolicy::LoopbackOnly => host().is_none_or(|h| {
                std::str::from_utf8(crate::http::trim_ascii(h)).is_ok_and(is_loopback_authority)
            }),
            _ => true,
        }
    }
}

fn is_loopback_origin(origin: &[u8]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && is_loopback_authority(authority)
}

/// `host[:port]` naming this machine: `localhost`, an IPv4 loopback address, or `[::1]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(protocol_version_supported(b"2025-06-18"));
        assert!(protocol_version_supported(b" 2026-07-28 "));
        assert!(!protocol_version_supported(b"2099-01-01"));
        assert!(!protocol_version_supported(b""));
    }

    #[test]
    fn accept() {
        assert!(accept_ok("POST", None));
        assert!(accept_ok(
            "POST",
            Some(b"application/json, text/event-stream")
        ));
        assert!(accept_ok("POST", Some(b"*/*")));
        assert!(accept_ok("GET", Some(b"text/*;q=0.5")));
        assert!(!accept_ok("POST", Some(b"text/html")));
        assert!(!accept_ok("GET", Some(b"application/json")));
        assert!(!accept_ok("GET", Some(b"text/event-stream;q=0")));
        assert!(!accept_ok(
            "POST",
            Some(b"application/json; q=0.0, text/event-stream;q=0")
        ));
        assert!(accept_ok(
            "POST",
            Some(b"application/json;q=0.5, text/event-stream;q=0")
        ));
        assert!(accept_ok("GET", Some(b"text/event-stream;q=0.01")));
    }

    #[test]
    fn hosts() {
        let local = OriginPolicy::new(&[], true);
        assert!(local.allows_host(|| Some(b"localhost:8080")));
        assert!(local.allows_host(|| Some(b"127.0.0.1")));
        assert!(local.allows_host(|| Some(b"[::1]:9000")));
        assert!(local.allows_host(|| None));
        assert!(!local.allows_host(|| Some(b"evil.example:8080")));
        assert!(!local.allows_host(|| Some(b"localhost.evil.example")));
        assert!(!local.allows_host(|| Some(b"127.evil.example")));
        assert!(OriginPolicy::new(&[], false).allows_host(|| Some(b"mcp.example")));
        let list = OriginPolicy::new(&["https://app.example".into()], true);
        assert!(list.allows_host(|| Some(b"mcp.example")));
    }

    #[test]
    fn origins() {
        let local = OriginPolicy::new(&[], true);
        assert!(local.allows(b"http://localhost:3000"));
        assert!(local.allows(b"http://127.0.0.1"));
        assert!(local.allows(b"http://[::1]:8080"));
        assert!(!local.allows(b"http://evil.example"));
        assert!(!local.allows(b"http://localhost.evil.example"));
        assert!(!local.allows(b"null"));
        let list = OriginPolicy::new(&["https://app.example".into()], false);
        assert!(list.allows(b"https://APP.example"));
        assert!(!list.allows(b"https://other.example"));
        assert!(OriginPolicy::new(&[], false).allows(b"https://anything.example"));
    }
}
