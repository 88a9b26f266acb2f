//! HTTP-level checks: browser origins (`security.allowedOrigins`), the extra request headers
//! of an upstream (`upstream.servers[].headers`), and `${NAME}` references in header values.
//!
//! Owns: what an origin, a header name and a header value may be, and how references are
//! expanded (through the injected environment lookup, never `std::env`). Each function says
//! what is wrong in a message for the caller to put at its config path (header names: a
//! whole `ConfigError`, at the path given).
//!
//! Must not: build runtime types (`convert.rs`), or put the value of a variable (a secret,
//! often) in a message.

use crate::error::ConfigError;
use crate::url;

/// The shape of an origin, for error messages.
pub const ORIGIN_SHAPE: &str = "\"*\" or http(s)://host[:port]";

/// Header names an upstream's `headers` may not set: hop-by-hop headers, and the ones the
/// gateway writes itself.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The characters of an HTTP token (RFC 9110) besides letters and digits.
const TOKEN_PUNCTUATION: &str = "!#$%&'*+-.^_`|~";

/// `origin` as stored at runtime: `"*"`, or `scheme://host[:port]` lowercased, without a
/// trailing slash and without the scheme's default port (browsers never send it).
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Ok(origin.to_string());
    }
    if origin.is_empty() {
        return Err("must not be empty".to_string());
    }
    if origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_string());
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("must look like scheme://host[:port]".to_string());
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "unsupported scheme `{scheme}`, only http and https are"
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("must not have a path, a query or a fragment".to_string());
    }
    if authority.contains('@') {
        return Err("must not contain user credentials".to_string());
    }
    let (host, port_text, bracketed) = url::split_host_port(authority)?;
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if host.contains('*') {
        return Err(format!(
            "has a wildcard in its host `{host}`; only \"*\" alone allows any origin"
        ));
    }
    if !bracketed && !host.chars().all(url::is_host_char) {
        return Err(format!("has an invalid host `{host}`"));
    }
    let port = match port_text {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(format!("has an invalid port `{text}` (1 to 65535)")),
        },
    };
    let host = host.to_ascii_lowercase();
    let host = if bracketed { format!("[{host}]") } else { host };
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Why `name` cannot be an extra request header, if it cannot, reported at `path`.
pub fn check_header_name(path: &str, name: &str) -> Option<ConfigError> {
    if name.is_empty() {
        return Some(ConfigError::new(path, "header name must not be empty"));
    }
    if !name.chars().all(is_token_char) {
        let message = format!("header name `{name}` has characters outside the allowed set");
        let allowed = format!("A-Z a-z 0-9 {TOKEN_PUNCTUATION}");
        return Some(ConfigError::new(path, message).with_allowed(allowed));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        let message =
            format!("header `{name}` cannot be set here (hop-by-hop, or written by the gateway)");
        return Some(ConfigError::new(path, message));
    }
    None
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || TOKEN_PUNCTUATION.contains(c)
}

/// True when a header value could not be sent as one header line.
pub fn breaks_header_line(value: &str) -> bool {
    value.contains(['\r', '\n', '\0'])
}

/// `text` with every `${NAME}` replaced by the variable's value from `env`. A `${` always
/// starts a reference; NAME is letters, digits and `_`, not starting with a digit. An unset or
/// empty variable is an error, like a bad reference; `Err` holds every problem found.
pub fn expand_vars(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            problems.push("`${` without a closing `}`".to_string());
            rest = "";
            break;
        };
        let name = &after[..end];
        if is_var_name(name) {
            match env(name).filter(|value| !value.trim().is_empty()) {
                Some(value) => {
                    if breaks_header_line(&value) {
                        problems.push(format!(
                            "environment variable `{name}` contains CR, LF or NUL"
                        ));
                    }
                    out.push_str(&value);
                }
                None => problems.push(format!("environment variable `{name}` is not set")),
            }
        } else {
            problems.push(format!(
                "`${{{name}}}` is not a variable reference (letters, digits and _, not starting with a digit)"
            ));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc123".to_string()),
            "_X1" => Some("x".to_string()),
            "EMPTY" => Some(" ".to_string()),
            "NEWLINE" => Some("a\r\nInjected: 1".to_string()),
            _ => None,
        }
    }

    #[test]
    fn origins_are_normalized() {
        let cases = [
            ("*", "*"),
            ("https://Example.COM", "https://example.com"),
            ("HTTP://example.com/", "http://example.com"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80/", "http://a.example"),
            ("https://a.example:80", "https://a.example:80"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[FE80::1]", "http://[fe80::1]"),
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ];
        for (origin, stored) in cases {
            assert_eq!(normalize_origin(origin), Ok(stored.to_string()), "{origin}");
        }
    }

    #[test]
    fn bad_origins_say_why() {
        let cases = [
            ("", "must not be empty"),
            ("example.com", "must look like scheme://host[:port]"),
            (
                "ftp://a",
                "unsupported scheme `ftp`, only http and https are",
            ),
            (
                "https://a/app",
                "must not have a path, a query or a fragment",
            ),
            ("https://a//", "must not have a path, a query or a fragment"),
            ("https://a?x", "must not have a path, a query or a fragment"),
            ("https://u@a", "must not contain user credentials"),
            ("https://", "has no host"),
            ("https://:8080", "has no host"),
            ("https://a:0", "has an invalid port `0` (1 to 65535)"),
            ("https://a:+80", "has an invalid port `+80` (1 to 65535)"),
            ("https://a:", "has an invalid port `` (1 to 65535)"),
            (
                "https://a b",
                "must not contain spaces or control characters",
            ),
            ("https://a!b", "has an invalid host `a!b`"),
            ("**", "must look like scheme://host[:port]"),
        ];
        for (origin, message) in cases {
            assert_eq!(
                normalize_origin(origin),
                Err(message.to_string()),
                "{origin}"
            );
        }
        assert!(normalize_origin("https://*.example.com")
            .is_err_and(|e| e.starts_with("has a wildcard in its host")));
    }

    fn header_name_problem(name: &str) -> Option<ConfigError> {
        check_header_name("h", name)
    }

    #[test]
    fn header_names() {
        for name in [
            "X-Api-Key",
            "Authorization",
            "x_custom.1",
            "A!#$%&'*+-.^_`|~",
        ] {
            assert_eq!(header_name_problem(name), None, "{name}");
        }
        assert_eq!(
            header_name_problem(""),
            Some(ConfigError::new("h", "header name must not be empty"))
        );
        for name in ["X Key", "X:Key", "Ключ", "a/b", "(x)"] {
            assert!(
                header_name_problem(name).is_some_and(|e| {
                    e.message.contains("outside the allowed set")
                        && e.allowed.as_deref() == Some("A-Z a-z 0-9 !#$%&'*+-.^_`|~")
                }),
                "{name}"
            );
        }
        for name in [
            "Connection",
            "KEEP-ALIVE",
            "te",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "Host",
            "content-length",
        ] {
            assert!(
                header_name_problem(name).is_some_and(
                    |e| e.message.contains("cannot be set here") && e.allowed.is_none()
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn header_values() {
        assert!(!breaks_header_line("Bearer abc; x=\"1\"\t"));
        assert!(breaks_header_line("a\rb"));
        assert!(breaks_header_line("a\nb"));
        assert!(breaks_header_line("a\0b"));
    }

    #[test]
    fn expands_references() {
        assert_eq!(expand_vars("plain", &env), Ok("plain".to_string()));
        assert_eq!(
            expand_vars("Bearer ${TOKEN}", &env),
            Ok("Bearer abc123".to_string())
        );
        assert_eq!(
            expand_vars("${TOKEN}-${_X1}${TOKEN}", &env),
            Ok("abc123-xabc123".to_string())
        );
        assert_eq!(
            expand_vars("$TOKEN costs $5 {x}", &env),
            Ok("$TOKEN costs $5 {x}".to_string())
        );
        assert_eq!(expand_vars("", &env), Ok(String::new()));
    }

    #[test]
    fn reference_problems_are_all_reported_without_values() {
        assert_eq!(
            expand_vars("${MISSING}", &env),
            Err(vec!["environment variable `MISSING` is not set".to_string()])
        );
        assert_eq!(
            expand_vars("${EMPTY}", &env),
            Err(vec!["environment variable `EMPTY` is not set".to_string()])
        );
        let problems = expand_vars("${A}${1X}${} ${TOKEN} ${NEWLINE} ${open", &env)
            .err()
            .unwrap_or_default();
        assert_eq!(
            problems,
            [
                "environment variable `A` is not set",
                "`${1X}` is not a variable reference (letters, digits and _, not starting with a digit)",
                "`${}` is not a variable reference (letters, digits and _, not starting with a digit)",
                "environment variable `NEWLINE` contains CR, LF or NUL",
                "`${` without a closing `}`",
            ]
        );
        assert!(problems.iter().all(|p| !p.contains("abc123")));
    }
}
