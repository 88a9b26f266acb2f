//! The gateway as an OAuth 2.1 resource server, over real sockets: RFC 9728 metadata,
//! audience and scopes, an issuer's keys fetched and refreshed on an unknown `kid` (at most
//! once a minute), opaque tokens introspected (RFC 7662) and cached, and upstream
//! credentials by token exchange (RFC 8693). The Python SDK's OAuth client is in
//! `tests/oauth_flow.rs`.

mod auth_support;
mod common;

use auth_support::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::time::Duration;

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
    // A refused token is refused again without asking (each shard asked at most once).
    let asked = n();
    for _ in 0..4 {
        assert_json_error(&status("revoked-token"), 401);
    }
    assert!(
        n() <= asked + 1,
        "refusals are remembered: {} > {}",
        n(),
        asked + 1
    );

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

#[test]
fn upstreams_get_an_exchanged_token_never_the_clients() {
    let dir = TempDir::new("exchange");
    make_keys(dir.path());
    let jwks = write_jwks(dir.path(), "as-1");
    let resource = "http://127.0.0.1:8080";
    let refused = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
    let idp = {
        let (refused, calls) = (refused.clone(), calls.clone());
        Upstream::start(move |req, s| {
            if let Ok(mut c) = calls.lock() {
                c.push(req.clone());
            }
            let deny = refused
                .lock()
                .map(|t| !t.is_empty() && req.body_text().contains(&*t))
                .unwrap_or(false);
            if deny {
                let body = br#"{"error":"invalid_target"}"#;
                respond(s, req, 400, &[("Content-Type", "application/json")], body);
            } else {
                let body = json!({"access_token": "exchanged-for-search", "token_type": "Bearer",
                                  "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                  "expires_in": 300});
                respond(
                    s,
                    req,
                    200,
                    &[("Content-Type", "application/json")],
                    body.to_string().as_bytes(),
                );
            }
            Flow::Close
        })
    };
    let issuer = idp.url("");
    let search = upstream();
    let mut c = config(json!([{
        "id": "search", "url": search.url(""),
        "credentials": {"tokenExchange": {"issuer": issuer, "audience": "https://search.internal", "scope": "search:read"}}
    }]));
    c["security"] = json!({"authentication": {
        "enabled": true,
        "methods": ["apikey", "oauth2"],
        "apiKeys": [{"name": "ci", "keyHash": key_hash(API_KEY)}],
        "oauth2": {
            "issuers": [{"issuer": issuer, "jwksFile": jwks, "tokenEndpoint": idp.url("/token"),
                         "clientId": "gateway", "clientSecret": "gateway-secret"}],
            "resource": resource
        }
    }});
    let gw = Gateway::start(&c);
    let key = EncodingKey::from_rsa_pem(&read(dir.path(), "jwk.pem")).expect("rsa");
    let token = |sub: &str| {
        let c = claims(json!({"iss": issuer, "aud": resource, "sub": sub}));
        sign(Algorithm::RS256, &key, &c, Some("as-1"))
    };
    let alice = token("alice");
    let call = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]);

    assert_eq!(call(&alice).status, 200);
    let seen = search
        .requests()
        .pop()
        .expect("the upstream got the request");
    assert_eq!(seen.header_count("authorization"), 1, "{seen:?}");
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer exchanged-for-search")
    );
    let asked = calls.lock().map(|c| c[0].clone()).expect("an exchange");
    let form = asked.body_text();
    for part in [
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        &format!("subject_token={alice}"),
        "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
        "audience=https%3A%2F%2Fsearch.internal",
        "resource=https%3A%2F%2Fsearch.internal",
        "scope=search%3Aread",
    ] {
        assert!(form.contains(part), "{part} not in {form}");
    }
    assert!(asked
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
    // Cached per shard: a few more calls, at most one more exchange (the other shard).
    for _ in 0..4 {
        assert_eq!(call(&alice).status, 200);
    }
    assert!(calls.lock().map(|c| c.len()).unwrap_or(0) <= 2);

    // The issuer will not give this client a token for the server: 403, nothing upstream.
    let mallory = token("mallory");
    if let Ok(mut t) = refused.lock() {
        *t = mallory.clone();
    }
    let before = search.request_count();
    assert_json_error(&call(&mallory), 403);
    // An API key has no token to exchange.
    assert_json_error(&get_with(&gw, "/x", &[("X-API-Key", API_KEY)]), 403);
    assert_eq!(search.request_count(), before);
}

#[test]
fn the_jwt_method_takes_keys_from_a_url_without_its_hmac_keys() {
    let dir = TempDir::new("jwt-url");
    make_keys(dir.path());
    let set = json!({"keys": [
        rsa_jwk(dir.path(), "jwk", "k1"),
        // A secret published by mistake: never a key to verify with.
        {"kty": "oct", "kid": "k-oct", "k": base64url(b"published-secret-0123456789abcdef")}
    ]});
    let idp = Upstream::start(move |req, s| {
        respond(
            s,
            req,
            200,
            &[("Content-Type", "application/json")],
            set.to_string().as_bytes(),
        );
        Flow::Close
    });
    let up = upstream();
    let c = auth_config(
        &up,
        dir.path(),
        json!({"enabled": true, "methods": ["jwt"],
               "jwt": {"jwksUrl": idp.url("/jwks"), "issuer": ISSUER, "audience": AUDIENCE}}),
    );
    let gw = Gateway::start(&c);
    let rsa = EncodingKey::from_rsa_pem(&read(dir.path(), "jwk.pem")).expect("rsa");
    let ok = claims(json!({}));
    let call = |t: &str| get_with(&gw, "/x", &[("Authorization", &bearer(t))]).status;
    assert_eq!(call(&sign(Algorithm::RS256, &rsa, &ok, Some("k1"))), 200);
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"published-secret-0123456789abcdef"),
        &ok,
        Some("k-oct"),
    );
    assert_eq!(call(&forged), 401);
}
