//! The MCP method on the request path: the 2026-07-28 routing headers (`Mcp-Method`,
//! `Mcp-Name`), the per-server method `policy`, and the body check that keeps a client from
//! saying one thing in its headers and another in its body.
//!
//! Owns: reading the routing headers (never the body) for routing and counting, deciding
//! the policy, and checking a buffered JSON-RPC body against headers, policy and roles
//! (and saying which list methods it calls, whose answers `lists` filters).
//! Must not: read sockets or write responses; the pipeline buffers the body and answers.

use std::borrow::Cow;

use base64::Engine;
use mcp_gateway_config::Policy;
use serde_json::Value;

use super::lists::ListKinds;
use crate::error::GatewayError;
use crate::http::request::RequestHead;

/// Methods counted under their own name in metrics; anything else counts as `other`.
pub const METHODS: [&str; 24] = [
    "initialize",
    "server/discover",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "elicitation/create",
];
/// The metric slot of methods outside `METHODS`.
pub const OTHER_METHOD: usize = METHODS.len();

/// Methods a policy never blocks: without them no client could start, probe or keep a
/// session, or cancel what it started.
const LIFECYCLE: [&str; 5] = [
    "initialize",
    "notifications/initialized",
    "ping",
    "server/discover",
    "notifications/cancelled",
];

/// The methods whose `Mcp-Name` header mirrors a body parameter, and which parameter.
const NAME_PARAMS: [(&str, &str); 3] = [
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
];

/// The longest body the gateway buffers to check it against headers and policy.
pub const MAX_CHECKED_BODY: u64 = 4 * 1024 * 1024;

/// The metric slot of a method.
pub fn method_index(method: &[u8]) -> usize {
    METHODS
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(OTHER_METHOD)
}

/// Whether a request's response is a long-lived stream rather than an answer to wait for:
/// such a POST stream is timed like a GET stream, not like a tool call.
pub fn is_listen(method: &[u8]) -> bool {
    method == b"subscriptions/listen"
}

/// The routing headers of a request, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutingHeaders<'b> {
    pub method: Option<&'b [u8]>,
    pub name: Option<&'b [u8]>,
}

/// Reads `Mcp-Method` and `Mcp-Name`. A routing header sent twice is refused: readers that
/// take the first and the last copy would disagree about where the request goes.
pub fn routing_headers<'b>(head: &RequestHead<'_, 'b>) -> Result<RoutingHeaders<'b>, GatewayError> {
    let mut found = RoutingHeaders::default();
    let mut versions = 0;
    for h in head.headers.iter() {
        let slot = if h.name.eq_ignore_ascii_case("mcp-method") {
            &mut found.method
        } else if h.name.eq_ignore_ascii_case("mcp-name") {
            &mut found.name
        } else {
            if h.name.eq_ignore_ascii_case("mcp-protocol-version") {
                versions += 1;
                if versions > 1 {
                    return Err(GatewayError::HeaderMismatch(
                        "MCP-Protocol-Version sent more than once",
                    ));
                }
            }
            continue;
        };
        if slot.is_some() {
            return Err(GatewayError::HeaderMismatch(
                "Mcp-Method or Mcp-Name sent more than once",
            ));
        }
        *slot = Some(crate::http::trim_ascii(h.value));
    }
    Ok(found)
}

/// `Mcp-Name` as meant: sent plain, or as `=?base64?...?=` for values a header line cannot
/// carry (non-ASCII, edge whitespace). `None` for a malformed wrapper, which then matches
/// nothing.
pub fn decode_name(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(payload) = raw
        .strip_prefix(b"=?base64?")
        .and_then(|r| r.strip_suffix(b"?="))
    else {
        return Some(Cow::Borrowed(raw));
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
        .map(Cow::Owned)
}

/// Methods no policy or role blocks (see `LIFECYCLE`).
pub fn is_lifecycle(method: &[u8]) -> bool {
    LIFECYCLE.iter().any(|m| m.as_bytes() == method)
}

/// Whether the server's policy lets this call through.
pub fn permits(policy: &Policy, method: &[u8], name: Option<&[u8]>) -> bool {
    if is_lifecycle(method) {
        return true;
    }
    let allowed = policy.allow.is_empty() || policy.allow.iter().any(|r| r.matches(method, name));
    allowed && !policy.deny.iter().any(|r| r.matches(method, name))
}

/// What the body of a request must agree with before it goes upstream.
#[derive(Debug, Clone)]
pub struct BodyCheck {
    /// `Mcp-Method` as sent, when it was.
    pub method: Option<Vec<u8>>,
    /// `Mcp-Name`, decoded, when it was sent.
    pub name: Option<Vec<u8>>,
    /// What the principal's roles allow on this server (`security.rbac`), when that is
    /// less than everything.
    pub roles: Option<Vec<mcp_gateway_config::PolicyRule>>,
}

/// What a body that passed its check says about the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checked {
    /// The metric slot of the method, when it was learnt from the body alone (one message,
    /// no `Mcp-Method` header).
    pub counted: Option<usize>,
    /// The list methods the body calls: their answers are filtered (a body is checked only
    /// when a policy or the caller's roles narrow what may be called).
    pub lists: ListKinds,
}

/// Checks a whole buffered request body: when routing headers were sent, the body must say
/// the same (else -32020), and every message in it must pass the policy and the caller's
/// roles.
pub fn check_body(
    body: &[u8],
    check: &BodyCheck,
    policy: &Policy,
) -> Result<Checked, GatewayError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|_| GatewayError::BadJson)?;
    let messages = match &parsed {
        Value::Array(batch) => batch.iter().collect::<Vec<_>>(),
        one => vec![one],
    };
    if let Some(header_method) = &check.method {
        // The stateless revision has no batches: one message, the one the headers name.
        let [message] = messages.as_slice() else {
            return Err(GatewayError::HeaderMismatch(
                "Mcp-Method does not match the request body's method",
            ));
        };
        let method = message.get("method").and_then(Value::as_str);
        if method.map(str::as_bytes) != Some(header_method.as_slice()) {
            return Err(GatewayError::HeaderMismatch(
                "Mcp-Method does not match the request body's method",
            ));
        }
        if let Some(body_name) = method.and_then(|m| named_param(message, m)) {
            if check.name.as_deref() != Some(body_name.as_bytes()) {
                return Err(GatewayError::HeaderMismatch(
                    "Mcp-Name does not match the request body's name",
                ));
            }
        }
    }
    let mut lists = ListKinds::NONE;
    for message in &messages {
        let method = match shape(message)? {
            Shape::Call(method) => method,
            // A response to a server's request: not a call, nothing to authorize.
            Shape::Response => continue,
        };
        lists = lists.with(ListKinds::of_method(method));
        let name = named_param(message, method).map(str::as_bytes);
        if name.is_none() && NAME_PARAMS.iter().any(|(m, _)| *m == method) {
            // Checked against name rules, a call without its name must not pass as one
            // that names nothing forbidden.
            return Err(GatewayError::BadRequest(
                "tools/call, prompts/get and resources/read need their name (or uri) as a string",
            ));
        }
        if !permits(policy, method.as_bytes(), name) {
            return Err(GatewayError::PolicyDenied(describe(method, name)));
        }
        if let Some(roles) = &check.roles {
            if !crate::auth::rbac::permits(roles, method.as_bytes(), name) {
                return Err(GatewayError::RoleDenied(describe(method, name)));
            }
        }
    }
    let counted_from_body = match (&check.method, messages.as_slice()) {
        (None, [one]) => one.get("method").and_then(Value::as_str),
        _ => None,
    };
    Ok(Checked {
        counted: counted_from_body.map(|m| method_index(m.as_bytes())),
        lists,
    })
}

/// What a checked message is.
enum Shape<'v> {
    Call(&'v str),
    Response,
}

/// A request or notification (a string `method`), or a response (`result` or `error`);
/// anything else is refused, as are keys that differ from `method`, `params`, `name` or
/// `uri` only in case: a server that reads keys without regard to case (Go's
/// `encoding/json`) would otherwise run a call the gateway never checked.
fn shape(message: &Value) -> Result<Shape<'_>, GatewayError> {
    let refuse = || {
        GatewayError::BadRequest(
            "each JSON-RPC message needs a string `method`, or `result` or `error`",
        )
    };
    let Value::Object(fields) = message else {
        return Err(refuse());
    };
    let lookalike = |map: &serde_json::Map<String, Value>, names: &[&str]| {
        map.keys()
            .any(|k| names.iter().any(|n| k != n && k.eq_ignore_ascii_case(n)))
    };
    if lookalike(fields, &["method", "params", "result", "error"]) {
        return Err(GatewayError::BadRequest(
            "a JSON-RPC member name differs from `method`, `params`, `result` or `error` only in case",
        ));
    }
    if let Some(Value::Object(params)) = fields.get("params") {
        if lookalike(params, &["name", "uri"]) {
            return Err(GatewayError::BadRequest(
                "a parameter name differs from `name` or `uri` only in case",
            ));
        }
    }
    match fields.get("method") {
        Some(Value::String(method)) => Ok(Shape::Call(method)),
        Some(_) => Err(refuse()),
        None if fields.contains_key("result") || fields.contains_key("error") => {
            Ok(Shape::Response)
        }
        None => Err(refuse()),
    }
}

/// The body parameter a name-bearing method is about (the tool, prompt or resource).
fn named_param<'v>(message: &'v Value, method: &str) -> Option<&'v str> {
    let key = NAME_PARAMS.iter().find(|(m, _)| *m == method)?.1;
    message.get("params")?.get(key)?.as_str()
}

/// `method` or `method name`, for the error message and the log.
pub fn describe(method: &str, name: Option<&[u8]>) -> String {
    match name {
        Some(name) => format!("{method} {}", String::from_utf8_lossy(name)),
        None => method.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_gateway_config::PolicyRule;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|r| PolicyRule::parse(r)).collect(),
            deny: deny.iter().map(|r| PolicyRule::parse(r)).collect(),
        }
    }

    fn check(method: Option<&str>, name: Option<&str>) -> BodyCheck {
        BodyCheck {
            method: method.map(|m| m.as_bytes().to_vec()),
            name: name.map(|n| n.as_bytes().to_vec()),
            roles: None,
        }
    }

    const CALL: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_table","arguments":{}}}"#;

    #[test]
    fn methods_are_counted_by_slot() {
        assert_eq!(METHODS[method_index(b"tools/call")], "tools/call");
        assert_eq!(method_index(b"x/y"), OTHER_METHOD);
    }

    #[test]
    fn names_decode() {
        assert_eq!(decode_name(b"search").as_deref(), Some(&b"search"[..]));
        assert_eq!(
            decode_name(b"=?base64?w6liw6k=?=").as_deref(),
            Some("ébé".as_bytes())
        );
        assert_eq!(decode_name(b"=?base64?!!?="), None);
    }

    #[test]
    fn policy_allows_and_denies() {
        let p = policy(&["tools/*"], &["tools/call:drop_*"]);
        assert!(permits(&p, b"tools/list", None));
        assert!(permits(&p, b"tools/call", Some(b"search")));
        assert!(!permits(&p, b"tools/call", Some(b"drop_table")));
        assert!(!permits(&p, b"prompts/get", Some(b"x")));
        assert!(permits(&p, b"initialize", None), "lifecycle always passes");
        assert!(permits(&Policy::default(), b"anything", None));
    }

    #[test]
    fn body_must_agree_with_headers() {
        let none = Policy::default();
        assert!(check_body(CALL, &check(Some("tools/call"), Some("drop_table")), &none).is_ok());
        let err = check_body(CALL, &check(Some("tools/call"), Some("search")), &none);
        assert_eq!(err.map_err(|e| e.jsonrpc_code()), Err(-32020));
        let err = check_body(CALL, &check(Some("tools/list"), None), &none);
        assert_eq!(err.map_err(|e| e.jsonrpc_code()), Err(-32020));
        let err = check_body(CALL, &check(Some("tools/call"), None), &none);
        assert_eq!(err.map_err(|e| e.jsonrpc_code()), Err(-32020));
        let err = check_body(b"{not json", &check(None, None), &none);
        assert_eq!(err.map_err(|e| e.jsonrpc_code()), Err(-32700));
    }

    #[test]
    fn messages_the_gateway_cannot_read_as_it_checks_are_refused() {
        let p = policy(&[], &["tools/call:drop_*"]);
        for body in [
            // A server reading keys without regard to case would run these.
            br#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"drop_x"}}"#
                .as_slice(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"drop_x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"drop_x"}}"#,
            // A call without its name, a method that is no string, a message that is none.
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5]"#,
        ] {
            let err = check_body(body, &check(None, None), &p);
            assert_eq!(
                err.map_err(|e| e.status()).err(),
                Some(400),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let ok = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe"}}"#;
        assert!(check_body(ok, &check(None, None), &p).is_ok());
    }

    #[test]
    fn policy_applies_to_every_message_of_a_batch() {
        let p = policy(&[], &["tools/call:drop_*"]);
        assert!(check_body(CALL, &check(None, None), &p).is_err());
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"drop_x"}}]"#;
        let err = check_body(batch, &check(None, None), &p);
        assert_eq!(err.map_err(|e| e.status()), Err(403));
        let response = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
        assert!(check_body(response, &check(None, None), &p).is_ok());
    }

    #[test]
    fn list_calls_are_reported() {
        let p = policy(&[], &["tools/call:drop_*"]);
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let checked = check_body(list, &check(None, None), &p);
        assert_eq!(
            checked.ok().map(|c| (c.lists, c.counted)),
            Some((
                ListKinds::of_method("tools/list"),
                Some(method_index(b"tools/list"))
            ))
        );
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"prompts/list"},
            {"jsonrpc":"2.0","id":2,"method":"resources/list"}]"#;
        let lists = check_body(batch, &check(None, None), &p)
            .ok()
            .map(|c| c.lists);
        let both =
            ListKinds::of_method("prompts/list").with(ListKinds::of_method("resources/list"));
        assert_eq!(lists, Some(both));
        let call = check_body(CALL, &check(None, None), &Policy::default());
        assert_eq!(call.ok().map(|c| c.lists), Some(ListKinds::NONE));
    }
}
