//! List answers narrowed to what the caller may call: a `tools/list`, `prompts/list`,
//! `resources/list` or `resources/templates/list` answer keeps only the entries the
//! caller's roles (`security.rbac`) and the server's own `policy` both allow, so a client is
//! never offered a tool it would be refused.
//!
//! An entry is kept when the call it offers is allowed: a tool by `tools/call:<name>`, a
//! prompt by `prompts/get:<name>`, a resource by `resources/read:<uri>`, and a resource
//! template by `resources/read:<uriTemplate>`: a template is matched by its template text
//! (`file:///docs/{path}` is kept by `resources/read:file:///docs/*`). An entry without that
//! field offers nothing callable and is dropped.
//!
//! Every JSON-RPC response (an object with `result`) in an answer is filtered, whatever its
//! id: on the answer to a POST that is the answer to its own calls; on an event stream
//! that may replay answers (a GET, a legacy SSE stream) every list kind is filtered in every
//! response. A filtered message is encoded again (key order may change); an event stream's
//! other events pass byte for byte.
//!
//! Owns: which list kinds a request asks for, and the filter over parsed JSON (event
//! streams: `list_events`). Must not: do I/O (`list_response` and `stream` feed it), or
//! decide access (`auth::rbac`, `stateless::permits` do).

use mcp_gateway_config::{Policy, PolicyRule};
use serde_json::Value;

use super::stateless;
use crate::auth::rbac;

/// The longest list answer (a JSON body, or one event of a stream) the gateway reads whole
/// to filter it; a longer one is refused (502), never passed unfiltered.
pub const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// One list method: what it is called, where its answer keeps its entries, and the call an
/// entry offers.
struct Kind {
    list: &'static str,
    key: &'static str,
    call: &'static str,
    name: &'static str,
}

const KINDS: [Kind; 4] = [
    Kind {
        list: "tools/list",
        key: "tools",
        call: "tools/call",
        name: "name",
    },
    Kind {
        list: "prompts/list",
        key: "prompts",
        call: "prompts/get",
        name: "name",
    },
    Kind {
        list: "resources/list",
        key: "resources",
        call: "resources/read",
        name: "uri",
    },
    Kind {
        list: "resources/templates/list",
        key: "resourceTemplates",
        call: "resources/read",
        name: "uriTemplate",
    },
];

/// A set of list methods (bit `i` stands for `KINDS[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListKinds(u8);

impl ListKinds {
    pub const NONE: ListKinds = ListKinds(0);
    pub const ALL: ListKinds = ListKinds((1 << KINDS.len()) - 1);

    /// The kind of a list method; none for any other method.
    pub fn of_method(method: &str) -> ListKinds {
        KINDS
            .iter()
            .position(|k| k.list == method)
            .map_or(ListKinds::NONE, |i| ListKinds(1 << i))
    }

    pub fn with(self, other: ListKinds) -> ListKinds {
        ListKinds(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn kinds(self) -> impl Iterator<Item = &'static Kind> {
        KINDS
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, k)| k)
    }
}

/// What list answers of one exchange are filtered by.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter<'a> {
    pub kinds: ListKinds,
    /// What the caller's roles allow on the server, when less than everything.
    pub roles: Option<&'a [PolicyRule]>,
    /// The server's own policy.
    pub policy: &'a Policy,
    /// `application/json` answers are filtered too (the answer to a POST); otherwise only
    /// event streams are.
    pub json: bool,
}

/// An answer that could not be filtered, so must not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfilterable {
    /// Not JSON (or nested deeper than the parser goes).
    NotJson,
    /// Over [`MAX_LIST_BYTES`].
    TooLarge,
}

impl Unfilterable {
    pub fn reason(self) -> &'static str {
        match self {
            Unfilterable::NotJson => "a list answer that is not JSON",
            Unfilterable::TooLarge => "a list answer over the size the gateway filters",
        }
    }
}

impl ListFilter<'_> {
    fn permits(&self, call: &str, name: &str) -> bool {
        let (call, name) = (call.as_bytes(), Some(name.as_bytes()));
        stateless::permits(self.policy, call, name)
            && self.roles.is_none_or(|r| rbac::permits(r, call, name))
    }

    /// Filters the lists of every response in `message` (one JSON-RPC message, or a batch).
    /// Returns whether it held a response at all (and so must be encoded again).
    pub fn filter_value(&self, message: &mut Value) -> bool {
        match message {
            Value::Array(batch) => batch
                .iter_mut()
                .fold(false, |seen, m| self.filter_value(m) | seen),
            Value::Object(fields) => {
                let Some(Value::Object(result)) = fields.get_mut("result") else {
                    return false;
                };
                for kind in self.kinds.kinds() {
                    if let Some(Value::Array(entries)) = result.get_mut(kind.key) {
                        entries.retain(|entry| {
                            entry
                                .get(kind.name)
                                .and_then(Value::as_str)
                                .is_some_and(|name| self.permits(kind.call, name))
                        });
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// A whole `application/json` answer, filtered and encoded again.
    pub fn filter_json(&self, body: &[u8]) -> Result<Vec<u8>, Unfilterable> {
        if body.len() > MAX_LIST_BYTES {
            return Err(Unfilterable::TooLarge);
        }
        let mut message: Value = serde_json::from_slice(body).map_err(|_| Unfilterable::NotJson)?;
        if !self.filter_value(&mut message) {
            return Ok(body.to_vec());
        }
        serde_json::to_vec(&message).map_err(|_| Unfilterable::NotJson)
    }

    /// An event's data, filtered: `Ok(None)` when it holds no response (it passes
    /// unchanged), `Err` when it is not JSON.
    pub(super) fn filter_data(&self, data: &[u8]) -> Result<Option<Vec<u8>>, Unfilterable> {
        let mut message: Value = serde_json::from_slice(data).map_err(|_| Unfilterable::NotJson)?;
        if !self.filter_value(&mut message) {
            return Ok(None);
        }
        serde_json::to_vec(&message)
            .map(Some)
            .map_err(|_| Unfilterable::NotJson)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn test_filter<'a>(
        kinds: ListKinds,
        roles: Option<&'a [PolicyRule]>,
        policy: &'a Policy,
        json: bool,
    ) -> ListFilter<'a> {
        ListFilter {
            kinds,
            roles,
            policy,
            json,
        }
    }

    pub(crate) fn rules(list: &[&str]) -> Vec<PolicyRule> {
        list.iter().map(|r| PolicyRule::parse(r)).collect()
    }

    pub(crate) fn tools_answer() -> Value {
        json!({"jsonrpc": "2.0", "id": 3, "result": {
            "tools": [
                {"name": "echo", "inputSchema": {}},
                {"name": "search_web"},
                {"name": "delete_all"},
                {"title": "no name"}
            ],
            "nextCursor": "c2"
        }})
    }

    fn names(v: &Value, key: &str, field: &str) -> Vec<String> {
        v["result"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[field].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn kinds_of_methods() {
        assert_eq!(ListKinds::of_method("tools/call"), ListKinds::NONE);
        let both = ListKinds::of_method("tools/list").with(ListKinds::of_method("prompts/list"));
        assert!(!both.is_empty());
        assert_eq!(both.kinds().count(), 2);
        assert_eq!(ListKinds::ALL.kinds().count(), 4);
        assert!(ListKinds::of_method("resources/templates/list")
            .kinds()
            .all(|k| k.key == "resourceTemplates"));
    }

    #[test]
    fn tools_by_roles_and_policy() {
        let roles = rules(&["tools/list", "tools/call:echo", "tools/call:search_*"]);
        let policy = Policy {
            allow: vec![],
            deny: rules(&["tools/call:search_web"]),
        };
        let filter = test_filter(
            ListKinds::of_method("tools/list"),
            Some(&roles),
            &policy,
            true,
        );
        let body = serde_json::to_vec(&tools_answer()).unwrap_or_default();
        let out = filter
            .filter_json(&body)
            .map(|b| serde_json::from_slice(&b));
        let Ok(Ok(v)) = out else {
            panic!("not filtered: {out:?}")
        };
        assert_eq!(names(&v, "tools", "name"), ["echo"]);
        assert_eq!(v["result"]["nextCursor"], "c2");
        assert_eq!(v["id"], 3);
    }

    #[test]
    fn no_roles_means_the_policy_alone() {
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, None, &policy, true);
        let mut v = tools_answer();
        assert!(filter.filter_value(&mut v));
        // Only the entry without a name is gone: it offers nothing to call.
        assert_eq!(
            names(&v, "tools", "name"),
            ["echo", "search_web", "delete_all"]
        );
        assert_eq!(v["result"]["tools"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn prompts_resources_and_templates() {
        let roles = rules(&[
            "prompts/get:greet",
            "resources/read:file:///docs/*",
            "resources/read:mem://a",
        ]);
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, Some(&roles), &policy, true);
        let mut batch = json!([
            {"jsonrpc": "2.0", "id": 1, "result": {"prompts": [{"name": "greet"}, {"name": "leak"}]}},
            {"jsonrpc": "2.0", "id": 2, "result": {"resources": [
                {"uri": "mem://a"}, {"uri": "mem://b"}, {"uri": "file:///docs/x"}]}},
            {"jsonrpc": "2.0", "id": 3, "result": {"resourceTemplates": [
                {"uriTemplate": "file:///docs/{path}"}, {"uriTemplate": "file:///etc/{path}"}]}},
            {"jsonrpc": "2.0", "id": 4, "error": {"code": 1, "message": "x"}}
        ]);
        assert!(filter.filter_value(&mut batch));
        assert_eq!(names(&batch[0], "prompts", "name"), ["greet"]);
        assert_eq!(
            names(&batch[1], "resources", "uri"),
            ["mem://a", "file:///docs/x"]
        );
        assert_eq!(
            names(&batch[2], "resourceTemplates", "uriTemplate"),
            ["file:///docs/{path}"]
        );
        assert_eq!(batch[3]["error"]["code"], 1);
    }

    #[test]
    fn only_the_kinds_asked_for() {
        let roles = rules(&["tools/call:echo"]);
        let policy = Policy::default();
        let filter = test_filter(
            ListKinds::of_method("prompts/list"),
            Some(&roles),
            &policy,
            true,
        );
        let mut v = tools_answer();
        filter.filter_value(&mut v);
        assert_eq!(
            names(&v, "tools", "name").len(),
            3,
            "tools are not a prompt list"
        );
        let mut request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(!filter.filter_value(&mut request));
    }

    #[test]
    fn unfilterable_answers() {
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, None, &policy, true);
        assert_eq!(filter.filter_json(b"{\"res"), Err(Unfilterable::NotJson));
        let deep = "[".repeat(10_000);
        assert_eq!(
            filter.filter_json(deep.as_bytes()),
            Err(Unfilterable::NotJson)
        );
        let big = vec![b' '; MAX_LIST_BYTES + 1];
        assert_eq!(filter.filter_json(&big), Err(Unfilterable::TooLarge));
        // No response inside: the bytes pass as they came.
        let note = br#"{"jsonrpc":"2.0","method":"notifications/message"}"#;
        assert_eq!(filter.filter_json(note).as_deref(), Ok(&note[..]));
    }

    #[test]
    fn duplicate_keys_are_resolved_before_the_client_sees_them() {
        let roles = rules(&["tools/call:echo"]);
        let policy = Policy::default();
        let filter = test_filter(ListKinds::ALL, Some(&roles), &policy, true);
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_all"}],"tools":[{"name":"echo"},{"name":"delete_all"}]}}"#;
        let out = filter.filter_json(body).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("delete_all"), "{text}");
    }
}
