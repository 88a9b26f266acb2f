//! Who sent a request, once a credential proved it: the principal every later phase (RBAC,
//! rate limiting, custom filters, the access log, identity headers) reads.
//!
//! Owns: the type and its identity header lines. Must not: hold the credential itself
//! (a principal is logged and passed on; the secret never is).

use mcp_gateway_config::AuthMethod;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key's `name`, the token's `sub`, or (with mTLS) the certificate's subject.
    pub subject: Box<str>,
    pub method: AuthMethod,
    pub roles: Box<[Box<str>]>,
    pub scopes: Box<[Box<str>]>,
    /// `method:subject`: what rate limits per principal are keyed by.
    pub rate_key: Box<str>,
    /// Unix milliseconds after which the credential stops being valid (tokens).
    pub expires_ms: Option<u64>,
    /// Unix milliseconds before which it is not valid yet (a token's `nbf`).
    pub not_before_ms: Option<u64>,
    /// The SHA-256 of the bearer token it was verified from (none for an API key): only
    /// that token may be exchanged for upstream credentials on its behalf.
    pub token_digest: Option<[u8; 32]>,
}

impl Principal {
    pub fn new(
        subject: &str,
        method: AuthMethod,
        roles: Vec<Box<str>>,
        scopes: Vec<Box<str>>,
    ) -> Principal {
        Principal {
            rate_key: format!("{}:{subject}", method.name()).into(),
            subject: subject.into(),
            method,
            roles: roles.into(),
            scopes: scopes.into(),
            expires_ms: None,
            not_before_ms: None,
            token_digest: None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    /// Roles joined by `,`, for the log and `X-Auth-Roles`.
    pub fn roles_text(&self) -> String {
        self.roles.join(",")
    }

    /// The `X-Auth-*` header lines an upstream gets with `forwardIdentity`. Values that
    /// could not be sent as one header line are percent-encoded, so no claim can add a
    /// header or end the head.
    pub fn identity_lines(&self, out: &mut Vec<u8>) {
        // A role holding `,` would read as two roles in the list: it is encoded too.
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|r| r.replace('%', "%25").replace(',', "%2C"))
            .collect();
        for (name, value) in [
            ("X-Auth-Subject", &*self.subject),
            ("X-Auth-Method", self.method.name()),
            ("X-Auth-Roles", &roles.join(",")),
        ] {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            for &b in value.as_bytes() {
                if (b' '..=b'~').contains(&b) && (b != b'%' || name == "X-Auth-Roles") {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_lines_cannot_break_the_head() {
        let p = Principal::new(
            "eve\r\nX-Admin: 1",
            AuthMethod::Jwt,
            vec!["a".into(), "b".into()],
            vec![],
        );
        let mut out = Vec::new();
        p.identity_lines(&mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            text,
            "X-Auth-Subject: eve%0D%0AX-Admin: 1\r\nX-Auth-Method: jwt\r\nX-Auth-Roles: a,b\r\n"
        );
        assert_eq!(&*p.rate_key, "jwt:eve\r\nX-Admin: 1");
    }
}
