//! Authentication over real sockets: API keys and JWTs accepted and refused as the issue's
//! matrix lists (valid, expired, not yet valid, wrong audience or issuer, forged, `alg:
//! none`, an HS token made with an RSA public key, unknown `kid`, a key revoked by a reload,
//! a key in the wrong header), `/health` without credentials and other pages behind them,
//! credentials kept from upstreams, identity passed on, JSON and JSON-RPC refusals with
//! `WWW-Authenticate`, the management port behind the admin role, and the
//! `mcp_gateway_auth_total` metric.

mod auth_support;
mod common;

use auth_support::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn api_keys_are_checked_kept_from_upstreams_and_counted() {
    let up = upstream();
    let dir = TempDir::new("auth");
    let c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["apikey", "jwt"],
            "apiKeys": [{"name": "ci", "keyHash": key_hash(API_KEY), "roles": ["reader", "ops"]}],
            "jwtSecret": SECRET,
            "forwardIdentity": true
        }),
    );
    let gw = Gateway::start(&c);

    // No credential: 401 with a challenge per scheme, and nothing upstream.
    let r = gw.get("/x");
    assert_json_error(&r, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(challenges.iter().any(|c| c.starts_with("Bearer")), "{r:?}");
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("ApiKey") && c.contains("X-API-Key")),
        "{r:?}"
    );
    assert_eq!(up.request_count(), 0);

    // The right key: through, the key kept back, a forged identity header dropped, the
    // real identity passed on.
    let r = get_with(
        &gw,
        "/x",
        &[("X-API-Key", API_KEY), ("X-Auth-Subject", "root")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.requests().pop().expect("request upstream");
    assert_eq!(seen.header("x-api-key"), None, "{seen:?}");
    assert_eq!(seen.header_count("x-auth-subject"), 1, "{seen:?}");
    assert_eq!(seen.header("x-auth-subject"), Some("ci"));
    assert_eq!(seen.header("x-auth-method"), Some("apikey"));
    assert_eq!(seen.header("x-auth-roles"), Some("reader,ops"));

    // A wrong key, and the right key in the wrong header.
    assert_json_error(
        &get_with(&gw, "/x", &[("X-API-Key", "ci-key-0123456789abcdeX")]),
        401,
    );
    assert_json_error(&get_with(&gw, "/x", &[("X-Api-Token", API_KEY)]), 401);
    assert_json_error(
        &get_with(&gw, "/x", &[("Authorization", &bearer(API_KEY))]),
        401,
    );
    assert_eq!(up.request_count(), 1);

    // Pages: /health is public, the others need credentials.
    assert_eq!(gw.get("/health").status, 200);
    assert_json_error(&gw.get("/stats"), 401);
    assert_eq!(
        get_with(&gw, "/stats", &[("X-API-Key", API_KEY)]).status,
        200
    );

    // On an MCP path the refusal is a JSON-RPC error.
    let r = gw.client().post(
        "/mcp/a",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    );
    let v = assert_json_error(&r, 401);
    // Refused before the body is read: the id is unknown (null), as JSON-RPC says.
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert!(r.header("www-authenticate").is_some(), "{r:?}");

    let metrics = eventually(Duration::from_secs(5), || {
        // With authentication on, the pages need credentials (any role on the data port).
        let page = get_with(&gw, "/metrics", &[("X-API-Key", API_KEY)]).text();
        let ok = metric_value(
            &page,
            "mcp_gateway_auth_total{method=\"apikey\",result=\"ok\"}",
        )?;
        let bad = metric_value(
            &page,
            "mcp_gateway_auth_total{method=\"apikey\",result=\"unknown_key\"}",
        )?;
        (ok >= 3.0 && bad >= 1.0).then_some(page)
    });
    assert!(metrics.is_some(), "auth metrics never counted");
}

#[test]
fn jwts_are_accepted_and_refused_as_the_matrix_says() {
    let up = upstream();
    let dir = TempDir::new("jwt");
    make_keys(dir.path());
    let jwks = write_jwks(dir.path(), "k1");
    let pem = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["jwt"],
            "jwtSecret": SECRET,
            "jwt": {
                "publicKeys": [pem("rsa.pub.pem"), pem("ec.pub.pem"), pem("ed.pub.pem")],
                "jwksFile": jwks,
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "leeway": 30000
            }
        }),
    );
    let gw = Gateway::start(&c);
    let d = dir.path();
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let rsa = EncodingKey::from_rsa_pem(&read(d, "rsa.pem")).expect("rsa key");
    let other = EncodingKey::from_rsa_pem(&read(d, "other.pem")).expect("rsa key");
    let jwk = EncodingKey::from_rsa_pem(&read(d, "jwk.pem")).expect("rsa key");
    let ec = EncodingKey::from_ec_pem(&read(d, "ec.pem")).expect("ec key");
    let ed = EncodingKey::from_ed_pem(&read(d, "ed.pem")).expect("ed key");
    let ok = claims(json!({}));
    let status = |token: &str| get_with(&gw, "/x", &[("Authorization", &bearer(token))]).status;

    for (what, token) in [
        ("HS256", sign(Algorithm::HS256, &hs, &ok, None)),
        ("HS512", sign(Algorithm::HS512, &hs, &ok, None)),
        ("RS256", sign(Algorithm::RS256, &rsa, &ok, None)),
        ("PS256", sign(Algorithm::PS256, &rsa, &ok, None)),
        ("ES256", sign(Algorithm::ES256, &ec, &ok, None)),
        ("EdDSA", sign(Algorithm::EdDSA, &ed, &ok, None)),
        ("JWKS kid", sign(Algorithm::RS256, &jwk, &ok, Some("k1"))),
        (
            "expired within the leeway",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"exp": now() - 5})),
                None,
            ),
        ),
        (
            "audience in an array",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"aud": ["x", AUDIENCE]})),
                None,
            ),
        ),
    ] {
        assert_eq!(status(&token), 200, "{what} should pass");
        // Again: served from the shard's cache, same answer.
        assert_eq!(status(&token), 200, "{what} (cached) should pass");
    }

    let forged = {
        // Signed by a key the gateway does not have.
        sign(Algorithm::RS256, &other, &ok, None)
    };
    let tampered = {
        // A valid token whose payload was changed after signing.
        let good = sign(Algorithm::HS256, &hs, &ok, None);
        let parts: Vec<&str> = good.split('.').collect();
        let admin = base64url(claims(json!({"roles": ["admin"]})).to_string().as_bytes());
        format!("{}.{}.{}", parts[0], admin, parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(ok.to_string().as_bytes())
    );
    // The RSA public key used as an HMAC secret: the classic algorithm-confusion attack.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&read(d, "rsa.pub.pem")),
        &ok,
        None,
    );
    for (what, token) in [
        (
            "expired",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"exp": now() - 120})),
                None,
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"nbf": now() + 120})),
                None,
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"aud": "other"})),
                None,
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                &hs,
                &claims(json!({"iss": "https://evil"})),
                None,
            ),
        ),
        (
            "no exp",
            sign(Algorithm::HS256, &hs, &claims(json!({"exp": null})), None),
        ),
        (
            "no sub",
            sign(Algorithm::HS256, &hs, &claims(json!({"sub": null})), None),
        ),
        ("forged signature", forged),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("HS256 made with the RSA public key", confused),
        ("unknown kid", sign(Algorithm::RS256, &jwk, &ok, Some("k2"))),
        ("garbage", "not.a.token".to_string()),
    ] {
        let r = get_with(&gw, "/x", &[("Authorization", &bearer(&token))]);
        assert_json_error(&r, 401);
        assert!(r.header("www-authenticate").is_some(), "{what}: {r:?}");
    }
    let passed = up.request_count();
    assert_eq!(passed, 18, "only the good tokens reached the upstream");
}

#[test]
fn without_an_hmac_secret_an_hs_token_finds_no_key() {
    let up = upstream();
    let dir = TempDir::new("jwt-rsa");
    make_keys(dir.path());
    let pem = dir
        .path()
        .join("rsa.pub.pem")
        .to_string_lossy()
        .into_owned();
    let c = auth_config(
        &up,
        dir.path(),
        json!({"enabled": true, "methods": ["jwt"], "jwt": {"publicKeys": [pem], "algorithms": ["RS256"]}}),
    );
    let gw = Gateway::start(&c);
    let public = read(dir.path(), "rsa.pub.pem");
    let rsa = EncodingKey::from_rsa_pem(&read(dir.path(), "rsa.pem")).expect("rsa");
    let ok = claims(json!({}));
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
        &ok,
        None,
    );
    let status = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]).status;
    assert_eq!(status(&sign(Algorithm::RS256, &rsa, &ok, None)), 200);
    assert_eq!(status(&confused), 401, "algorithm confusion");
    assert_eq!(
        status(&sign(Algorithm::PS256, &rsa, &ok, None)),
        401,
        "not in `algorithms`"
    );
}

#[test]
fn a_key_removed_by_a_reload_is_refused() {
    let up = upstream();
    let dir = TempDir::new("revoke");
    let auth = |keys: Value| json!({"enabled": true, "methods": ["apikey"], "apiKeys": keys});
    let both = json!([
        {"name": "ci", "keyHash": key_hash(API_KEY)},
        {"name": "ops", "keyHash": key_hash("ops-key-0123456789abcdef")}
    ]);
    let mut c = auth_config(&up, dir.path(), auth(both));
    let gw = Gateway::start(&c);
    let status = |key: &str| get_with(&gw, "/x", &[("X-API-Key", key)]).status;
    assert_eq!(status(API_KEY), 200);
    assert_eq!(status("ops-key-0123456789abcdef"), 200);

    c["security"]["authentication"] =
        auth(json!([{"name": "ops", "keyHash": key_hash("ops-key-0123456789abcdef")}]));
    let path = gw.dir.path().join("gateway.json");
    std::fs::write(&path, serde_json::to_string_pretty(&c).expect("json")).expect("write");
    let revoked = eventually(Duration::from_secs(10), || {
        (status(API_KEY) == 401).then_some(())
    });
    assert!(revoked.is_some(), "the removed key still works");
    assert_eq!(status("ops-key-0123456789abcdef"), 200);
}

#[test]
fn the_management_port_needs_the_admin_role_or_the_admin_token() {
    let up = upstream();
    let dir = TempDir::new("mgmt-auth");
    let mut c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["apikey"],
            "apiKeys": [
                {"name": "root", "keyHash": key_hash("admin-key-0123456789"), "roles": ["admin"]},
                {"name": "ci", "keyHash": key_hash(API_KEY), "roles": ["reader"]}
            ]
        }),
    );
    c["sessions"] = json!({"adminToken": "admin-token-0123456789"});
    let gw = Gateway::start(&c);
    let mgmt = |path: &str, headers: &[(&str, &str)]| {
        Client::connect(gw.mgmt_addr()).request("GET", path, headers, b"")
    };
    assert_eq!(mgmt("/health", &[]).status, 200, "public");
    for path in ["/stats", "/metrics", "/", "/api/config"] {
        let r = mgmt(path, &[]);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.starts_with("ApiKey")),
            "{r:?}"
        );
        assert_eq!(
            mgmt(path, &[("X-API-Key", API_KEY)]).status,
            403,
            "{path}: not an admin"
        );
        assert_eq!(
            mgmt(path, &[("X-API-Key", "admin-key-0123456789")]).status,
            200,
            "{path}"
        );
        let token = [("Authorization", "Bearer admin-token-0123456789")];
        assert_eq!(mgmt(path, &token).status, 200, "{path}: the admin token");
    }
    // The data port's pages need credentials, any role.
    assert_eq!(
        get_with(&gw, "/stats", &[("X-API-Key", API_KEY)]).status,
        200
    );
}

#[test]
fn a_role_narrowed_to_some_calls_cannot_use_a_plain_route() {
    let up = upstream();
    let dir = TempDir::new("rbac-plain");
    let mut c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["apikey"],
            "apiKeys": [
                {"name": "ci", "keyHash": key_hash(API_KEY), "roles": ["reader"]},
                {"name": "ops", "keyHash": key_hash("ops-key-0123456789abcdef"), "roles": ["ops"]}
            ]
        }),
    );
    c["security"]["rbac"] = json!({"enabled": true, "roles": {
        "reader": [{"servers": ["a"], "allow": ["tools/list"]}],
        "ops": [{"servers": ["*"], "allow": ["*"]}]
    }});
    let gw = Gateway::start(&c);
    // The default group reads no JSON-RPC: a body could call anything there.
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}"#;
    let call = |key: &str| {
        gw.client().post(
            "/",
            &[("X-API-Key", key), ("Content-Type", "application/json")],
            body,
        )
    };
    assert_json_error(&call(API_KEY), 403);
    assert_eq!(up.request_count(), 0);
    assert_eq!(call("ops-key-0123456789abcdef").status, 200);
}

#[test]
fn forward_auth_passes_only_the_credential_that_authenticated_once() {
    let up = upstream();
    let mut c = config(json!([{"id": "a", "url": up.url(""), "forwardAuth": true}]));
    c["security"] = json!({"authentication": {
        "enabled": true,
        "methods": ["jwt", "apikey"],
        "apiKeys": [{"name": "ci", "keyHash": key_hash(API_KEY)}],
        "jwtSecret": SECRET
    }});
    let gw = Gateway::start(&c);
    let jwt = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims(json!({})),
        None,
    );
    let bearer_jwt = bearer(&jwt);

    // The bearer token decided: it goes once (the copy checked), the key header stays here.
    let r = get_with(
        &gw,
        "/x",
        &[
            ("Authorization", &bearer_jwt),
            ("Authorization", "Bearer evil"),
            ("X-API-Key", "unchecked"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.requests().pop().expect("upstream request");
    assert_eq!(seen.header_count("authorization"), 1, "{seen:?}");
    assert_eq!(seen.header("authorization"), Some(bearer_jwt.as_str()));
    assert_eq!(seen.header("x-api-key"), None);

    // An API key decided: it goes (`jwt` comes first in `methods`, so a bearer token sent
    // beside it would have decided instead).
    let r = get_with(&gw, "/x", &[("X-API-Key", API_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.requests().pop().expect("upstream request");
    assert_eq!(seen.header("x-api-key"), Some(API_KEY));
}
