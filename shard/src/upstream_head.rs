//! The request head the gateway sends upstream: the target rewritten onto the upstream's
//! path, `Host` set to the upstream, hop-by-hop headers dropped, the client's credentials kept
//! back unless the server's entry says otherwise, forwarding headers and the request id added,
//! and with `forwardIdentity` who the client authenticated as.
//!
//! Owns: that rewrite. Must not: choose the upstream (the pipeline) or do I/O.

use crate::auth::Principal;
use crate::http::encode;
use crate::http::request::RequestHead;
use crate::http::{is_hop_by_hop, listed_in_connection};
use crate::request_id::RequestId;
use crate::router;
use mcp_gateway_config::{Authentication, Upstream};

/// Where a request goes upstream.
pub struct UpstreamTarget<'a> {
    pub upstream: &'a Upstream,
    /// The upstream's path, which `rest` is appended to.
    pub base_path: &'a str,
    /// Path remainder and query, appended to the upstream's path.
    pub rest: &'a str,
    /// The upstream's own session id, restored from the client's token.
    pub session: Option<&'a [u8]>,
    /// Header changes made by custom request filters.
    pub edits: Option<&'a crate::filter::HeaderEdits>,
    /// What authentication keeps back and adds (nothing with it off).
    pub credentials: Credentials<'a>,
}

/// With authentication on: the API-key header is kept back like `Authorization` (unless
/// the server has `forwardAuth`: then only the credential that authenticated goes, once),
/// client-sent `X-Auth-*` headers are always dropped (no client may pose as someone), and
/// with `forwardIdentity` the principal is sent as `X-Auth-Subject`, `X-Auth-Method` and
/// `X-Auth-Roles`.
#[derive(Default)]
pub struct Credentials<'a> {
    /// Authentication is on: client-sent `X-Auth-*` headers are dropped.
    pub enabled: bool,
    /// The API-key header, when API keys are a method.
    pub api_key_header: Option<&'a str>,
    pub identity: Option<&'a Principal>,
    /// The method that authenticated the request, if any.
    pub authenticated_by: Option<mcp_gateway_config::AuthMethod>,
}

impl<'a> Credentials<'a> {
    pub fn of(
        auth: &'a Authentication,
        upstream: &Upstream,
        principal: Option<&'a Principal>,
    ) -> Credentials<'a> {
        if !auth.enabled {
            return Credentials::default();
        }
        let identity = auth.forward_identity || upstream.credentials.identity;
        Credentials {
            enabled: true,
            api_key_header: auth
                .accepts(mcp_gateway_config::AuthMethod::ApiKey)
                .then_some(auth.api_key_header.as_str()),
            identity: principal.filter(|_| identity),
            authenticated_by: principal.map(|p| p.method),
        }
    }

    fn drops(&self, name: &str, forward_auth: bool) -> bool {
        // `_` and `-` count as one: CGI-style servers read `X-Auth_Subject` as
        // `X-Auth-Subject`, and so would be told who the client claims to be.
        let same = |a: &str, b: &str| {
            a.len() == b.len()
                && a.bytes().zip(b.bytes()).all(|(x, y)| {
                    let fold = |c: u8| {
                        if c == b'_' {
                            b'-'
                        } else {
                            c.to_ascii_lowercase()
                        }
                    };
                    fold(x) == fold(y)
                })
        };
        if !self.enabled {
            return false;
        }
        use mcp_gateway_config::AuthMethod::ApiKey;
        let by_key = self.authenticated_by == Some(ApiKey);
        let by_bearer = self.authenticated_by.is_some() && !by_key;
        let is_key = self.api_key_header.is_some_and(|key| same(name, key));
        // With `forwardAuth`, the credential that did not authenticate stays here too: an
        // upstream must not act on one the gateway never checked.
        (is_key && (!forward_auth || by_bearer))
            || (forward_auth && by_key && name.eq_ignore_ascii_case("authorization"))
            || (name.len() > 7
                && name.as_bytes()[0] | 0x20 == b'x'
                && name.get(..7).is_some_and(|p| same(p, "x-auth-")))
    }
}

/// Who sent the request, as the forwarding headers tell the upstream.
pub struct Peer<'a> {
    pub ip: &'a str,
    /// One of `server.trustedProxies`: its `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// `Forwarded` pass on. From anyone else they are replaced, so a client cannot pose as
    /// having come over TLS or through another host.
    pub trusted: bool,
}

/// The upstream request head: the target rewritten onto the upstream's path, `Host` set to
/// the upstream, hop-by-hop headers dropped, forwarding headers and the request id added.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_, '_>,
    to: &UpstreamTarget<'_>,
    peer: &Peer<'_>,
    request_id: &RequestId,
) {
    let upstream = to.upstream;
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    router::rewrite_target(out, to.base_path, to.rest);
    // An HTTP/1.0 client cannot read chunked responses: ask the upstream in HTTP/1.0 too.
    out.extend_from_slice(if head.minor_version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    encode::header(out, "Host", upstream.authority.as_bytes());
    // [API-key header, Authorization]: whether the next copy is the first.
    let mut first_credential = [true, true];
    for h in head.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("x-request-id")
            // Written below in one canonical form.
            || name.eq_ignore_ascii_case("transfer-encoding")
            || (!peer.trusted && is_forwarding(name))
            || is_hop_by_hop(name)
            || listed_in_connection(head.connection, name)
            // The client's bearer token stays here unless the server's entry says otherwise.
            || (!upstream.forward_auth && name.eq_ignore_ascii_case("authorization"))
            || (to.session.is_some() && name.eq_ignore_ascii_case("mcp-session-id"))
            || upstream.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            || to.edits.is_some_and(|e| e.removes(name))
            || to.credentials.drops(name, upstream.forward_auth)
            // A credential passed on goes once: the copy the gateway checked, the first.
            || (to.credentials.enabled
                && is_credential(name, to.credentials.api_key_header)
                && !std::mem::replace(&mut first_credential[usize::from(is_authorization(name))], false))
        {
            continue;
        }
        encode::header(out, name, h.value);
    }
    if let Some(edits) = to.edits {
        for (name, value) in &edits.add {
            // A header the server's config sets wins.
            if !upstream
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                encode::header(out, name, value.as_bytes());
            }
        }
    }
    if head.framing == crate::http::BodyFraming::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if let Some(session) = to.session {
        encode::header(out, "Mcp-Session-Id", session);
    }
    for (name, value) in &upstream.headers {
        encode::header(out, name, value.as_bytes());
    }
    if let Some(principal) = to.credentials.identity {
        principal.identity_lines(out);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = head.forwarded_for {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    // A trusted proxy's own values were passed on above.
    let sent = |name: &str| {
        peer.trusted
            && head
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if !sent("x-forwarded-proto") {
        out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    }
    if let (Some(host), false) = (head.host, sent("x-forwarded-host")) {
        encode::header(out, "X-Forwarded-Host", host);
    }
    encode::header(out, "X-Request-Id", request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn is_authorization(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization")
}

fn is_credential(name: &str, api_key_header: Option<&str>) -> bool {
    is_authorization(name) || api_key_header.is_some_and(|k| k.eq_ignore_ascii_case(name))
}

/// The headers that say how the request reached the gateway.
fn is_forwarding(name: &str) -> bool {
    ["x-forwarded-proto", "x-forwarded-host", "forwarded"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}
