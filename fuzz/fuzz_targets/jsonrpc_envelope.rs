//! The JSON-RPC body check behind a server's `policy` (`mcp::stateless::check_body`, with
//! `permits`, `decode_name`, `method_index`). Input: a flags byte; when its low bit is set,
//! a first line `method[ name]` standing for the `Mcp-Method` / `Mcp-Name` headers; then
//! the body.
//!
//! Properties: no panic; a body that is no JSON never passes; a policy only ever takes
//! passes away; the metric slot is in range; lifecycle methods pass every policy.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_gateway_config::{Policy, PolicyRule};
use mcp_gateway_shard::mcp::stateless::{self, BodyCheck, OTHER_METHOD};

fn policy(allow: &[&str], deny: &[&str]) -> Policy {
    Policy {
        allow: allow.iter().map(|r| PolicyRule::parse(r)).collect(),
        deny: deny.iter().map(|r| PolicyRule::parse(r)).collect(),
    }
}

/// No policy, a deny list, an allow list with a deny inside it.
fn policies() -> &'static [Policy; 3] {
    static POLICIES: OnceLock<[Policy; 3]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [
            Policy::default(),
            policy(&[], &["tools/call:drop_*", "resources/read:file:///etc/*"]),
            policy(
                &["tools/*", "prompts/get:greet", "ping"],
                &["tools/call:rm"],
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (check, body) = if flags & 1 == 1 {
        let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = &rest[..cut];
        let (method, name) = match line.iter().position(|b| *b == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        let name = name
            .and_then(stateless::decode_name)
            .map(|n| n.into_owned());
        let check = BodyCheck {
            method: Some(method.to_vec()),
            name,
            roles: None,
        };
        (check, rest.get(cut + 1..).unwrap_or(b""))
    } else {
        let check = BodyCheck {
            method: None,
            name: None,
            roles: None,
        };
        (check, rest)
    };

    let [open, deny, allow] = policies();
    let open_result = stateless::check_body(body, &check, open);
    // Only JSON passes (and of JSON, only JSON-RPC messages the gateway reads as the
    // server will: `shape` refuses the rest).
    let is_json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    if !is_json {
        assert!(open_result.is_err(), "a body that is no JSON passed");
    }
    if let Ok(Some(slot)) = open_result.as_ref().map(|c| c.counted) {
        assert!(slot <= OTHER_METHOD);
    }
    for p in [deny, allow] {
        let result = stateless::check_body(body, &check, p);
        if result.is_ok() {
            assert!(
                open_result.is_ok(),
                "a policy let through what no policy refused"
            );
        }
        if let Ok(checked) = result {
            assert_eq!(
                open_result.as_ref().ok(),
                Some(&checked),
                "another metric slot or other lists"
            );
        }
    }

    // The policy decision on the raw method and name (as from headers).
    if let Some(method) = &check.method {
        let name = check.name.as_deref();
        assert!(stateless::permits(open, method, name));
        let _ = stateless::method_index(method);
        let _ = stateless::is_listen(method);
        let _ = stateless::describe(&String::from_utf8_lossy(method), name);
        for p in policies() {
            assert!(stateless::permits(p, b"initialize", name));
            let _ = stateless::permits(p, method, name);
        }
    }
});
