//! Upstream URLs: parsing `http://host[:port][/path]` and resolving the host once, at load.
//!
//! Owns: the accepted URL shape, the `Host` header value (authority), the base path, and name
//! resolution with a per-host cache (IPv4 preferred), so a thousand upstreams on one host cost
//! one lookup. Resolution blocks, which is why it happens here, on the loading thread.
//!
//! Must not: run on a shard, or accept what the data plane cannot serve (TLS upstreams,
//! credentials in URLs, queries or fragments).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The shape, for error messages.
pub const URL_SHAPE: &str = "http://host[:port][/path]";

/// The parts of a valid upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` (port omitted when 80), IPv6 in brackets: the `Host` header.
    pub authority: String,
    /// The path without trailing slashes; "" for the root.
    pub base_path: String,
}

/// What a Redis URL may look like.
pub const REDIS_URL_SHAPE: &str = "redis://[user:password@]host[:port][/db]";

/// A parsed `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

/// Parses `redis://[user:password@]host[:port][/db]` (no TLS, no query).
pub fn parse_redis(url: &str) -> Result<RedisUrl, String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(
            "must start with redis:// (rediss:// and unix sockets are not supported)".into(),
        );
    };
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not have a query, a fragment, spaces or control characters".into());
    }
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (authority, db) = match rest.split_once('/') {
        Some((authority, "")) => (authority, 0),
        Some((authority, db)) => match db.parse::<u32>() {
            Ok(db) => (authority, db),
            Err(_) => return Err(format!("database `{db}` is not a number")),
        },
        None => (rest, 0),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            match port.parse::<u16>() {
                Ok(port) if port > 0 => (host, port),
                _ => return Err(format!("port `{port}` is not a number from 1 to 65535")),
            }
        }
        _ => (authority, 6379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("has no host".into());
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_string()),
                (!password.is_empty()).then(|| password.to_string()),
            ),
            None => (None, (!info.is_empty()).then(|| info.to_string())),
        },
    };
    Ok(RedisUrl {
        host: host.to_string(),
        port,
        username,
        password,
        db,
    })
}

/// Parses an upstream URL, or says what is wrong with it.
pub fn parse(url: &str) -> Result<ParsedUrl, String> {
    if url.is_empty() {
        return Err("must not be empty".to_string());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_string());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("must be an absolute URL like {URL_SHAPE}"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err("https upstreams are not supported by this build yet".to_string());
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("unsupported scheme `{scheme}`, only http is"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("must not have a query or a fragment".to_string());
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("must not contain user credentials".to_string());
    }

    let (host, port_text, bracketed) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if !bracketed && !host.chars().all(is_host_char) {
        return Err(format!("has an invalid host `{host}`"));
    }
    let port = match port_text {
        None => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("has an invalid port `{text}` (1 to 65535)")),
            Ok(port) => port,
        },
    };

    let host_for_header = if bracketed {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let authority = if port == 80 {
        host_for_header
    } else {
        format!("{host_for_header}:{port}")
    };
    Ok(ParsedUrl {
        host: host.to_string(),
        port,
        authority,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// Splits `host[:port]` or `[v6][:port]`; the bool says the host was a bracketed IPv6.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<&str>, bool), String> {
    if let Some(inside) = authority.strip_prefix('[') {
        let Some((host, after)) = inside.split_once(']') else {
            return Err("has an unclosed `[` in its host".to_string());
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address `{host}`"));
        }
        return match after {
            "" => Ok((host, None, true)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port), true)),
                None => Err(format!("has unexpected text `{after}` after its host")),
            },
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(port), false)),
        None => Ok((authority, None, false)),
    }
}

pub fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// Resolves host names, each at most once.
#[derive(Default)]
pub struct Resolver {
    cache: HashMap<String, Result<IpAddr, String>>,
}

impl Resolver {
    /// The address to connect to for `host:port`; an IPv4 address when the name has one.
    pub fn resolve(&mut self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let ip = match self.cache.get(host) {
            Some(cached) => cached.clone(),
            None => {
                let fresh = lookup(host);
                self.cache.insert(host.to_string(), fresh.clone());
                fresh
            }
        };
        ip.map(|ip| SocketAddr::new(ip, port))
    }
}

fn lookup(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = match (host, 0).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(err) => return Err(format!("cannot resolve host `{host}`: {err}")),
    };
    let preferred = addrs.iter().find(|a| a.is_ipv4()).or_else(|| addrs.first());
    match preferred {
        Some(addr) => Ok(addr.ip()),
        None => Err(format!("cannot resolve host `{host}`: no addresses")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> ParsedUrl {
        match parse(url) {
            Ok(parsed) => parsed,
            Err(err) => panic!("{url}: {err}"),
        }
    }

    #[test]
    fn parses_redis_urls() {
        let plain = parse_redis("redis://localhost").expect("plain");
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db),
            ("localhost", 6379, 0)
        );
        let full = parse_redis("redis://app:s3cret@10.0.0.5:6380/2").expect("full");
        assert_eq!(full.username.as_deref(), Some("app"));
        assert_eq!(full.password.as_deref(), Some("s3cret"));
        assert_eq!((full.port, full.db), (6380, 2));
        let password_only = parse_redis("redis://:pw@h:1").expect("password only");
        assert_eq!(
            (password_only.username, password_only.password.as_deref()),
            (None, Some("pw"))
        );
        assert!(parse_redis("http://h").is_err());
        assert!(parse_redis("redis://h:0").is_err());
        assert!(parse_redis("redis://h/x").is_err());
        assert!(parse_redis("redis://").is_err());
    }

    #[test]
    fn parses_host_port_and_path() {
        let parsed = ok("http://127.0.0.1:3001/mcp/");
        assert_eq!(parsed.host, "127.0.0.1");
        assert_eq!(parsed.port, 3001);
        assert_eq!(parsed.authority, "127.0.0.1:3001");
        assert_eq!(parsed.base_path, "/mcp");
    }

    #[test]
    fn port_80_is_left_out_of_the_authority() {
        let parsed = ok("http://example.com");
        assert_eq!(
            (parsed.port, parsed.authority.as_str()),
            (80, "example.com")
        );
        assert_eq!(parsed.base_path, "");
        assert_eq!(ok("HTTP://example.com:80/").authority, "example.com");
        assert_eq!(ok("http://example.com/").base_path, "");
    }

    #[test]
    fn ipv6_hosts_keep_brackets_in_the_authority() {
        let parsed = ok("http://[::1]:8000/a");
        assert_eq!(parsed.host, "::1");
        assert_eq!(parsed.authority, "[::1]:8000");
    }

    #[test]
    fn rejects_what_the_data_plane_cannot_serve() {
        let cases = [
            (
                "https://a",
                "https upstreams are not supported by this build yet",
            ),
            ("ftp://a", "unsupported scheme `ftp`, only http is"),
            (
                "localhost:3000",
                "must be an absolute URL like http://host[:port][/path]",
            ),
            ("http://a/x?y=1", "must not have a query or a fragment"),
            ("http://a#f", "must not have a query or a fragment"),
            ("http://u:p@a", "must not contain user credentials"),
            ("http://a:0", "has an invalid port `0` (1 to 65535)"),
            ("http://a:99999", "has an invalid port `99999` (1 to 65535)"),
            ("http://a:", "has an invalid port `` (1 to 65535)"),
            ("http://:80", "has no host"),
            (
                "http://a b",
                "must not contain spaces or control characters",
            ),
            ("http://a!b", "has an invalid host `a!b`"),
            ("http://[::1", "has an unclosed `[` in its host"),
            ("", "must not be empty"),
        ];
        for (url, message) in cases {
            assert_eq!(parse(url), Err(message.to_string()), "{url}");
        }
    }

    #[test]
    fn resolves_literals_and_localhost_preferring_ipv4() {
        let mut resolver = Resolver::default();
        let addr = resolver.resolve("127.0.0.1", 3001);
        assert_eq!(addr, Ok(SocketAddr::from(([127, 0, 0, 1], 3001))));
        let local = resolver.resolve("localhost", 3002);
        assert!(local.is_ok_and(|a| a.is_ipv4() && a.port() == 3002));
    }
}
