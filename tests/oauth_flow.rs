//! The MCP authorization flow end to end, with the gateway as the OAuth 2.1 resource server:
//! the official MCP Python SDK's client OAuth support (`OAuthClientProvider`), given only the
//! gateway's MCP URL, gets the 401, discovers the RFC 9728 metadata it names and the
//! authorization server that names, registers (RFC 7591), authorizes with PKCE, gets a JWT
//! for the gateway's `resource` (RFC 8707) from a small test authorization server
//! (`tests/python/oauth_server.py`, whose JWKS file the gateway reads), and calls a tool of
//! a Python SDK server through the gateway. A token minted for another resource is refused.

mod common;

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
mod python_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use python_support::*;
use serde_json::{json, Value};

/// The MCP server, the authorization server and the gateway in front of the first, whose
/// `resource` is the URL clients reach it at.
struct Stack {
    gw: Gateway,
    auth: PyServer,
    _mcp: PyServer,
    _dir: TempDir,
    /// `http://127.0.0.1:<gateway port>`.
    resource: String,
    /// `http://127.0.0.1:<authorization server port>`.
    issuer: String,
}

impl Stack {
    fn start() -> Stack {
        let dir = TempDir::new("oauth-flow");
        let jwks = dir.path().join("jwks.json");
        let mcp = PyServer::start(CURRENT, "modern_server.py", &["behind-oauth"]);
        // Writes its JWKS to the file before it says READY.
        let auth = PyServer::start(CURRENT, "oauth_server.py", &[&jwks.to_string_lossy()]);
        assert!(jwks.exists(), "no JWKS file:\n{}", auth.logs.text());
        let issuer = auth.url("");
        // The resource must be the URL clients use, so the port is chosen before the start.
        let port = closed_port();
        let resource = format!("http://127.0.0.1:{port}");
        let mut c = config(json!([server("echo", &mcp.url("/mcp"))]));
        c["server"]["port"] = json!(port);
        c["security"] = json!({"authentication": {
            "enabled": true,
            "methods": ["oauth2"],
            "oauth2": {
                "issuers": [{"issuer": issuer, "jwksFile": jwks}],
                "resource": resource,
                "scopesSupported": ["mcp:tools"]
            }
        }});
        // With authentication on, the management port's pages need the admin token.
        c["sessions"] = json!({"adminToken": ADMIN_TOKEN});
        let gw = Gateway::start(&c);
        assert_eq!(gw.data_addr().port(), port, "{}", gw.banner);
        Stack {
            gw,
            auth,
            _mcp: mcp,
            _dir: dir,
            resource,
            issuer,
        }
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp/echo", self.resource)
    }

    fn auth_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.auth.port))
    }

    /// A JSON page of the authorization server.
    fn auth_json(&self, target: &str) -> Value {
        let r = Client::connect(self.auth_addr()).get(target);
        assert_eq!(
            r.status, 200,
            "GET {target} on the authorization server: {r:?}"
        );
        r.json()
    }

    /// A token signed by the authorization server's key, for audience `aud`.
    fn mint(&self, aud: &str) -> String {
        let doc = self.auth_json(&format!("/mint?aud={aud}&sub=mallory&scope=mcp:tools"));
        doc["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A stateless (2026-07-28) `tools/call` of `echo` with `text`, through the gateway, with
    /// `token` as the bearer (none: no credentials).
    fn echo(&self, token: Option<&str>, text: &str) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b));
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": text},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }});
        let body = serde_json::to_vec(&body).expect("json");
        self.gw.client().post("/mcp/echo", &headers, &body)
    }

    fn auth_metric(&self, result: &str) -> f64 {
        let series = format!("mcp_gateway_auth_total{{method=\"oauth2\",result=\"{result}\"}}");
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let r = Client::connect(self.gw.mgmt_addr()).request(
            "GET",
            "/metrics",
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(r.status, 200, "GET /metrics on the management port: {r:?}");
        metric_value(&r.text(), &series).unwrap_or(0.0)
    }
}

/// One exchange the SDK client made: method, URL, status, whether it carried a token.
fn exchange(e: &Value) -> (String, String, u64, bool) {
    (
        e[0].as_str().unwrap_or("").to_string(),
        e[1].as_str().unwrap_or("").to_string(),
        e[2].as_u64().unwrap_or(0),
        e[3].as_bool().unwrap_or(false),
    )
}

#[test]
fn sdk_client_discovers_the_authorization_server_gets_a_token_and_calls_a_tool() {
    let s = Stack::start();
    let seen = run_client("oauth_client.py", &[&s.mcp_url(), "through the gateway"]);

    // The tool answered through the gateway.
    assert_eq!(seen["echo"], "through the gateway", "{seen}");
    assert_eq!(seen["is_error"], false, "{seen}");
    assert!(
        seen["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("echo"))),
        "{seen}"
    );

    // How it got there: the 401, the gateway's metadata, the AS's metadata, registration,
    // authorization, token, then the MCP requests again, now with the token.
    let exchanges: Vec<_> = seen["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(exchange)
        .collect();
    let steps: Vec<(&str, String, u64)> = exchanges
        .iter()
        .take(6)
        .map(|(m, u, s, _)| {
            (
                m.as_str(),
                u.split('?').next().unwrap_or("").to_string(),
                *s,
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("POST", s.mcp_url(), 401),
            (
                "GET",
                format!("{}/.well-known/oauth-protected-resource", s.resource),
                200
            ),
            (
                "GET",
                format!("{}/.well-known/oauth-authorization-server", s.issuer),
                200
            ),
            ("POST", format!("{}/register", s.issuer), 201),
            ("GET", format!("{}/authorize", s.issuer), 302),
            ("POST", format!("{}/token", s.issuer), 200),
        ],
        "{seen}"
    );
    assert!(!exchanges[0].3, "the first request carried a token: {seen}");
    let after: Vec<_> = exchanges[6..].iter().collect();
    assert!(!after.is_empty(), "{seen}");
    for (method, url, status, token) in after {
        assert_eq!(
            (method.as_str(), url.as_str(), *status, *token),
            ("POST", s.mcp_url().as_str(), 200, true),
            "{seen}"
        );
    }

    // The client took the resource from the gateway's metadata and sent it (RFC 8707) to
    // both endpoints; the token names it as its audience.
    assert_eq!(seen["resource_metadata"]["resource"], s.resource, "{seen}");
    assert_eq!(
        seen["resource_metadata"]["authorization_servers"],
        json!([s.issuer]),
        "{seen}"
    );
    assert_eq!(seen["authorize_params"]["resource"], s.resource, "{seen}");
    assert_eq!(seen["authorize_params"]["code_challenge_method"], "S256");
    let claims = &seen["claims"];
    assert_eq!(claims["aud"], s.resource, "{seen}");
    assert_eq!(claims["iss"], s.issuer, "{seen}");
    assert_eq!(claims["sub"], "alice", "{seen}");
    assert_eq!(claims["client_id"], seen["client_id"], "{seen}");

    // The authorization server saw the gateway's resource at /authorize and /token.
    let auth = s.auth_json("/seen");
    assert_eq!(auth["authorize_resources"], json!([s.resource]), "{auth}");
    assert_eq!(auth["token_resources"], json!([s.resource]), "{auth}");
    assert_eq!(auth["registrations"], json!([seen["client_id"]]), "{auth}");

    // The gateway counted the refusal and the verified token.
    let counted = eventually(Duration::from_secs(5), || {
        (s.auth_metric("ok") >= 1.0).then_some(())
    });
    assert!(counted.is_some(), "oauth2 ok never counted");
}

#[test]
fn a_token_minted_for_another_resource_is_refused() {
    let s = Stack::start();
    // The same issuer and key: only the audience decides.
    let own = s.mint(&s.resource);
    let r = s.echo(Some(&own), "let me in");
    assert_eq!(r.status, 200, "a token for this resource: {r:?}");
    assert!(r.text().contains("let me in"), "{r:?}");

    let other_gateway = format!("http://127.0.0.1:{}", closed_port());
    for aud in ["https://other.example", other_gateway.as_str()] {
        let token = s.mint(aud);
        let r = s.echo(Some(&token), "let me in");
        let v = assert_json_error(&r, 401);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("another resource")),
            "aud {aud}: {v}"
        );
        let challenge = r.header("www-authenticate").unwrap_or("");
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("resource_metadata="),
            "aud {aud}: {r:?}"
        );
    }
    let counted = eventually(Duration::from_secs(5), || {
        (s.auth_metric("wrong_audience") >= 2.0).then_some(())
    });
    assert!(counted.is_some(), "wrong_audience never counted");
}

#[test]
fn the_401_names_the_metadata_and_the_metadata_names_the_authorization_server() {
    let s = Stack::start();
    let r = s.echo(None, "anyone");
    assert_json_error(&r, 401);
    let challenge = r.header("www-authenticate").unwrap_or("");
    let metadata_url = format!("{}/.well-known/oauth-protected-resource", s.resource);
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains("realm=\"mcp-gateway\"")
            && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{r:?}"
    );

    // RFC 9728 metadata, without credentials: at the URL the challenge names and at the
    // path-based URL clients try when a challenge names none.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp/echo",
    ] {
        let r = s.gw.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{path}: {r:?}"
        );
        let doc = r.json();
        assert_eq!(doc["resource"], s.resource, "{path}: {doc}");
        assert_eq!(
            doc["authorization_servers"],
            json!([s.issuer]),
            "{path}: {doc}"
        );
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]), "{doc}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{doc}");
    }

    // The authorization server named there describes itself (RFC 8414) as that issuer.
    let asm = s.auth_json("/.well-known/oauth-authorization-server");
    assert_eq!(asm["issuer"], s.issuer, "{asm}");
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
    ] {
        assert!(
            asm[endpoint]
                .as_str()
                .is_some_and(|u| u.starts_with(&s.issuer)),
            "{endpoint}: {asm}"
        );
    }
}
