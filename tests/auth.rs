//! Authentication over real sockets: API keys and JWTs accepted and refused as the issue's
//! matrix lists (valid, expired, not yet valid, wrong audience or issuer, forged, `alg:
//! none`, an HS token made with an RSA public key, unknown `kid`, a key revoked by a reload,
//! a key in the wrong header), `/health` without credentials and other pages behind them,
//! credentials kept from upstreams, identity passed on, JSON and JSON-RPC refusals with
//! `WWW-Authenticate`, the OAuth resource-server metadata and audience check, and the
//! `mcp_gateway_auth_total` metric.

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const API_KEY: &str = "ci-key-0123456789abcdef";
const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "mcp-gateway";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `sha256:<hex>` of a key, as `keyHash` takes it.
fn key_hash(key: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{key}' | sha256sum"))
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", hex.split_whitespace().next().unwrap_or(""))
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(status.status.success(), "openssl {args:?}: {status:?}");
}

/// Key pairs for every family, made with openssl in `dir`: `{name}.pem` (private, PKCS#8)
/// and `{name}.pub.pem`.
fn make_keys(dir: &Path) {
    for (name, args) in [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "other",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "jwk",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
        ),
        (
            "ec",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        ("ed", &["-algorithm", "ed25519"][..]),
    ] {
        let private = format!("{name}.pem");
        let mut all = vec!["genpkey"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-out", &private]);
        openssl(dir, &all);
        let public = format!("{name}.pub.pem");
        openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("key file")
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A JWKS file with the `jwk` key's public half under `kid`.
fn write_jwks(dir: &Path, kid: &str) -> String {
    let out = Command::new("openssl")
        .args(["rsa", "-in", "jwk.pem", "-noout", "-modulus"])
        .current_dir(dir)
        .output()
        .expect("openssl modulus");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().trim_start_matches("Modulus=");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap_or(0))
        .collect();
    let jwks = json!({"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "n": base64url(&bytes), "e": "AQAB"}]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).expect("write jwks");
    path.to_string_lossy().into_owned()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "roles": ["reader"]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

/// An upstream that records requests and answers 200.
fn upstream() -> Upstream {
    Upstream::fixed("ok")
}

fn auth_config(up: &Upstream, dir: &Path, auth: Value) -> Value {
    let mut c = config(json!([server("a", &up.url(""))]));
    c["security"] = json!({"authentication": auth});
    let _ = dir;
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn get_with(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Response {
    gw.client().request("GET", target, headers, b"")
}

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
fn oauth_metadata_audience_and_scopes() {
    let up = upstream();
    let dir = TempDir::new("oauth");
    make_keys(dir.path());
    let jwks = write_jwks(dir.path(), "as-1");
    let resource = "http://127.0.0.1:8080";
    let c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["oauth2"],
            "oauth2": {
                "issuers": [{"issuer": "http://127.0.0.1:9", "jwksFile": jwks}],
                "resource": resource,
                "scopesSupported": ["mcp:tools"],
                "requiredScopes": ["mcp:tools"]
            }
        }),
    );
    let gw = Gateway::start(&c);
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp/a",
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let doc = r.json();
        assert_eq!(doc["resource"], resource, "{doc}");
        assert_eq!(doc["authorization_servers"], json!(["http://127.0.0.1:9"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
    }

    // No token: 401 naming where the metadata is.
    let r = gw.client().post(
        "/mcp/a",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_json_error(&r, 401);
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains(
            "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\""
        ),
        "{r:?}"
    );

    let key = EncodingKey::from_rsa_pem(&read(dir.path(), "jwk.pem")).expect("rsa");
    let token = |extra: Value| {
        let c = claims(
            json!({"iss": "http://127.0.0.1:9", "aud": resource, "scope": "mcp:tools other"}),
        );
        let mut c = c;
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        sign(Algorithm::RS256, &key, &c, Some("as-1"))
    };
    let call = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]);
    assert_eq!(call(&token(json!({}))).status, 200);
    // A token minted for another resource.
    assert_json_error(&call(&token(json!({"aud": "https://other.example"}))), 401);
    // From another issuer.
    assert_json_error(&call(&token(json!({"iss": "https://evil.example"}))), 401);
    // Without the required scope: 403 naming it.
    let r = call(&token(json!({"scope": "other"})));
    assert_json_error(&r, 403);
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"mcp:tools\""),
        "{r:?}"
    );
}

/// The modulus of `{name}.pem` as a JWK (RSA, `kid`).
fn rsa_jwk(dir: &Path, name: &str, kid: &str) -> Value {
    let out = Command::new("openssl")
        .args(["rsa", "-in", &format!("{name}.pem"), "-noout", "-modulus"])
        .current_dir(dir)
        .output()
        .expect("openssl modulus");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().trim_start_matches("Modulus=");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap_or(0))
        .collect();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": base64url(&bytes), "e": "AQAB"})
}

#[test]
fn issuer_keys_are_fetched_and_refreshed_on_an_unknown_kid_at_most_once_a_minute() {
    let dir = TempDir::new("jwks-url");
    make_keys(dir.path());
    let published = std::sync::Arc::new(std::sync::Mutex::new(
        json!({"keys": [rsa_jwk(dir.path(), "jwk", "k1")]}),
    ));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let idp = {
        let (published, fetches) = (published.clone(), fetches.clone());
        Upstream::start(move |req, s| {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = published.lock().map(|v| v.to_string()).unwrap_or_default();
            respond(
                s,
                req,
                200,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
            Flow::Close
        })
    };
    let up = upstream();
    let issuer = idp.url("");
    let resource = "http://127.0.0.1:8080";
    let c = auth_config(
        &up,
        dir.path(),
        json!({
            "enabled": true,
            "methods": ["oauth2"],
            "oauth2": {"issuers": [{"issuer": issuer, "jwksUrl": idp.url("/jwks")}], "resource": resource}
        }),
    );
    let gw = Gateway::start(&c);
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched at load"
    );
    let d = dir.path();
    let token = |pem: &str, kid: &str| {
        let key = EncodingKey::from_rsa_pem(&read(d, pem)).expect("rsa");
        sign(
            Algorithm::RS256,
            &key,
            &claims(json!({"iss": issuer, "aud": resource})),
            Some(kid),
        )
    };
    let status = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]).status;
    assert_eq!(status(&token("jwk.pem", "k1")), 200);

    // The issuer rotates to a new key: the first token with it is refused and makes the
    // gateway fetch the keys again; the next one passes.
    if let Ok(mut keys) = published.lock() {
        *keys = json!({"keys": [rsa_jwk(d, "jwk", "k1"), rsa_jwk(d, "other", "k2")]});
    }
    let rotated = token("other.pem", "k2");
    assert_eq!(status(&rotated), 401);
    let passed = eventually(Duration::from_secs(5), || {
        (status(&rotated) == 200).then_some(())
    });
    assert!(passed.is_some(), "the rotated key was never fetched");
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A kid the issuer never published: refused, and no new fetch within the minute.
    let unknown = token("rsa.pem", "k3");
    assert_eq!(status(&unknown), 401);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&unknown), 401);
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "refreshed at most once a minute"
    );
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
fn opaque_tokens_are_introspected_once_and_cached() {
    let resource = "http://127.0.0.1:8080";
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
    let idp = {
        let calls = calls.clone();
        Upstream::start(move |req, s| {
            if let Ok(mut c) = calls.lock() {
                c.push(req.clone());
            }
            let body = req.body_text();
            let answer = if body.starts_with("token=good-opaque-token&") {
                json!({"active": true, "sub": "svc", "aud": resource, "exp": now() + 600,
                       "scope": "mcp:tools", "roles": ["reader"]})
            } else if body.starts_with("token=other-audience&") {
                json!({"active": true, "sub": "svc", "aud": "https://other.example", "exp": now() + 600})
            } else {
                json!({"active": false})
            };
            respond(
                s,
                req,
                200,
                &[("Content-Type", "application/json")],
                answer.to_string().as_bytes(),
            );
            Flow::Close
        })
    };
    let up = upstream();
    let dir = TempDir::new("introspect");
    let oauth = |url: String| {
        json!({
            "enabled": true,
            "methods": ["oauth2"],
            "oauth2": {
                "issuers": [{"issuer": "http://127.0.0.1:9", "introspectionUrl": url,
                             "clientId": "gateway", "clientSecret": "s3cret&more"}],
                "resource": resource
            }
        })
    };
    let gw = Gateway::start(&auth_config(&up, dir.path(), oauth(idp.url("/introspect"))));
    let status = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]);
    let n = || calls.lock().map(|c| c.len()).unwrap_or(0);

    assert_eq!(status("good-opaque-token").status, 200);
    assert_eq!(n(), 1);
    let seen = calls.lock().map(|c| c[0].clone()).expect("a call");
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // base64("gateway:s3cret%26more")
    assert_eq!(
        seen.header("authorization"),
        Some("Basic Z2F0ZXdheTpzM2NyZXQlMjZtb3Jl")
    );
    assert_eq!(
        seen.body_text(),
        "token=good-opaque-token&token_type_hint=access_token"
    );
    // The identity reached the upstream's request as the principal; cached now.
    for _ in 0..3 {
        assert_eq!(status("good-opaque-token").status, 200);
    }
    assert!(
        n() <= 2,
        "a shard asks once, then serves the token from its cache: {}",
        n()
    );

    assert_json_error(&status("revoked-token"), 401);
    assert_json_error(&status("other-audience"), 401);

    // An issuer that cannot be reached: 503, retry later, not the client's fault.
    let dir2 = TempDir::new("introspect-down");
    let down = format!("http://127.0.0.1:{}/introspect", closed_port());
    let gw2 = Gateway::start(&auth_config(&up, dir2.path(), oauth(down)));
    let r = get_with(
        &gw2,
        "/x",
        &[("Authorization", &bearer("good-opaque-token"))],
    );
    assert_json_error(&r, 503);
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
}
