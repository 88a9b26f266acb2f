//! Custom request filters, for programs that embed the gateway: a plain trait a program
//! implements and registers before the shards start, with the phase it runs in and a
//! priority.
//!
//! A filter sees the request head, where it is routed and who sent it (the principal, once
//! authentication names one), and may add or remove headers of the upstream request, or
//! answer the request itself (a JSON error, or a JSON-RPC error on MCP paths, with the
//! status it chose). It runs on the shard's thread, per request: it must not block, and it
//! shares nothing with other shards but what it brings (it is `Send + Sync` because every
//! shard calls the same one).
//!
//! With no filter registered, a request pays one length check. Filters cannot change how
//! a message is framed or what the gateway wrote or checked: header edits that name a
//! framing or hop-by-hop header, `Host`, a forwarding header, `X-Request-Id`,
//! `Content-Type` or an `Mcp-*` header are refused when made; a header the server's config
//! sets wins over a filter's. Edits apply to requests proxied to a server, not to those the
//! legacy-SSE bridge serves (those get the filter's verdict only).
//!
//! Owns: the trait, what a filter sees and may change, and the ordered list. Must not:
//! know about any particular filter.

use crate::http::{is_hop_by_hop, is_protected};
use std::sync::Arc;

/// Where in the request's phases a filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FilterPhase {
    /// Right after routing and the Origin/Host checks, before authentication.
    AfterRoute,
    /// After the MCP header rules, just before the upstream is chosen.
    BeforeUpstream,
}

/// Where the request is routed, as a filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteInfo<'a> {
    /// `/mcp/{id}` or `/sse/{id}...`: that server or group id.
    Server(&'a str),
    /// Any other path: the default group.
    Default,
}

/// What a filter is shown.
pub struct FilterRequest<'a> {
    pub method: &'a str,
    /// Path and query, as the client sent them.
    pub target: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub route: RouteInfo<'a>,
    /// Who the request authenticated as; `None` while no authentication names anyone.
    pub principal: Option<&'a str>,
    /// The client's address.
    pub peer_ip: &'a str,
}

impl FilterRequest<'_> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// A filter's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Answer now with this status (400..=599; others become 403) and message.
    Respond {
        status: u16,
        message: String,
    },
}

/// A request filter. Implement it, register it with [`Filters::add`].
pub trait RequestFilter: Send + Sync {
    /// A short name, for logs.
    fn name(&self) -> &str;

    /// Decides about one request; may edit the upstream request's headers.
    fn filter(&self, request: &FilterRequest<'_>, edits: &mut HeaderEdits) -> Verdict;
}

/// Header changes for the upstream request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    pub(crate) add: Vec<(String, String)>,
    pub(crate) remove: Vec<String>,
}

/// Why a header edit was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error(
        "`{0}` frames the message or belongs to the connection; filters cannot set or remove it"
    )]
    Protected(String),
    #[error("`{0}` is not a valid header name")]
    BadName(String),
    #[error("a header value may not contain CR, LF or NUL")]
    BadValue,
}

fn check_name(name: &str) -> Result<(), EditError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(EditError::BadName(name.to_string()));
    }
    // Framing, hop-by-hop, and what the gateway itself writes or checked (forwarding
    // headers, the request id, `Content-Type`, every `Mcp-*` header).
    let protected =
        is_hop_by_hop(name) || is_protected(name) || name.eq_ignore_ascii_case("expect");
    if protected {
        return Err(EditError::Protected(name.to_string()));
    }
    Ok(())
}

impl HeaderEdits {
    /// Adds a header to the upstream request (after any of the same name is removed).
    pub fn add(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        check_name(name)?;
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(EditError::BadValue);
        }
        self.remove(name)?;
        self.add.push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// Removes every header of this name from the upstream request.
    pub fn remove(&mut self, name: &str) -> Result<(), EditError> {
        check_name(name)?;
        if !self.remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            self.remove.push(name.to_ascii_lowercase());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Whether a client header of this name is dropped.
    pub(crate) fn removes(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

/// The registered filters, in the order they run: by phase, then priority (lower first),
/// then registration order.
#[derive(Clone, Default)]
pub struct Filters {
    list: Vec<(FilterPhase, i32, Arc<dyn RequestFilter>)>,
}

impl Filters {
    pub fn new() -> Filters {
        Filters::default()
    }

    pub fn add(&mut self, phase: FilterPhase, priority: i32, filter: Arc<dyn RequestFilter>) {
        let at = self
            .list
            .iter()
            .position(|(p, q, _)| (*p, *q) > (phase, priority))
            .unwrap_or(self.list.len());
        self.list.insert(at, (phase, priority, filter));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The filters of one phase, in order.
    pub fn of(&self, phase: FilterPhase) -> impl Iterator<Item = &dyn RequestFilter> {
        self.list
            .iter()
            .filter(move |(p, _, _)| *p == phase)
            .map(|(_, _, f)| f.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);
    impl RequestFilter for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn filter(&self, _: &FilterRequest<'_>, _: &mut HeaderEdits) -> Verdict {
            Verdict::Continue
        }
    }

    #[test]
    fn filters_run_by_phase_then_priority_then_order() {
        let mut f = Filters::new();
        f.add(FilterPhase::BeforeUpstream, 0, Arc::new(Named("late")));
        f.add(FilterPhase::AfterRoute, 5, Arc::new(Named("b")));
        f.add(FilterPhase::AfterRoute, -1, Arc::new(Named("a")));
        f.add(FilterPhase::AfterRoute, 5, Arc::new(Named("c")));
        let names: Vec<&str> = f.of(FilterPhase::AfterRoute).map(|f| f.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(f.of(FilterPhase::BeforeUpstream).count(), 1);
    }

    #[test]
    fn edits_cannot_touch_framing() {
        let mut e = HeaderEdits::default();
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Host",
            "Connection",
            "TE",
            "Upgrade",
            "X-Forwarded-For",
            "X-Request-Id",
            "Mcp-Session-Id",
            "mcp-method",
            "Content-Type",
        ] {
            assert!(
                matches!(e.add(name, "x"), Err(EditError::Protected(_))),
                "{name}"
            );
            assert!(e.remove(name).is_err(), "{name}");
        }
        assert_eq!(e.add("X-Ok", "a\r\nb"), Err(EditError::BadValue));
        assert!(matches!(e.add("bad name", "v"), Err(EditError::BadName(_))));
        assert!(e.add("X-Tenant", "acme").is_ok());
        assert!(e.removes("x-tenant"));
        assert!(e.remove("Authorization").is_ok());
        assert!(e.removes("authorization"));
    }
}
