//! What `security.authentication`, `security.rbac` and `security.headers` accept, refuse
//! and warn about.

use super::{errors, loaded, parse, parse_with_env};
use crate::{AuthMethod, ServerMatch};

fn with_security(security: &str) -> String {
    format!(
        r#"{{"upstream": {{"servers": [{{"id": "a", "url": "http://127.0.0.1:3001", "group": "docs"}}]}},
            "security": {security}}}"#
    )
}

const HASH: &str = "sha256:5c0bf2c3b3e4d4ce1bfb0e85b5b8d0c3b64d4a6a6f1bb4e0f1e4b0c6a8d9e1f2";

#[test]
fn the_original_example_loads_and_warns_that_nothing_checks_credentials() {
    let text =
        with_security(r#"{"authentication": {"enabled": true, "methods": ["jwt", "apikey"]}}"#);
    let loaded = crate::parse_document("t", &text, &|_| None).expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].contains("`jwt` is listed but nothing is configured"),
        "{warnings:#?}"
    );
    assert!(loaded.config.security.auth.enabled);
}

#[test]
fn a_plain_key_loads_with_a_warning_that_prints_its_hash() {
    let text = with_security(
        r#"{"authentication": {"enabled": true, "methods": ["apikey"],
            "apiKeys": [{"name": "dev", "key": "${DEV_KEY}", "roles": ["admin"]}]}}"#,
    );
    let env = |name: &str| (name == "DEV_KEY").then(|| "0123456789abcdef".to_string());
    let loaded = crate::parse_document("t", &text, &env).expect("loads");
    let warning = loaded.warnings[0].to_string();
    // printf %s 0123456789abcdef | sha256sum
    assert!(
        warning.contains("\"keyHash\": \"sha256:9f9f5111f7b27a781f1f1ddde5ebc2dd2b796bfc7365c9c28b548e564176929f\""),
        "{warning}"
    );
    let key = &loaded.config.security.auth.api_keys[0];
    assert_eq!(key.name, "dev");
    assert_eq!(
        crate::hash_text(&key.sha256),
        crate::hash_text(&crate::key_hash("0123456789abcdef"))
    );
    let unset = errors(parse(&text));
    assert!(
        unset[0].contains("environment variable `DEV_KEY` is not set"),
        "{unset:#?}"
    );
}

#[test]
fn mistakes_are_all_reported_with_their_paths() {
    let text = with_security(
        r#"{"authentication": {"enabled": true, "methods": ["apikey", "saml", "apikey", "mtls"],
            "apiKeyHeader": "X API",
            "apiKeys": [{"name": "", "keyHash": "md5:abc"}, {"name": "b"}, {"name": "c", "key": "short"},
                        {"name": "d", "keyHash": "HASH", "roles": ["ghost"]}],
            "jwt": {"publicKeys": ["/nonexistent.pem"], "algorithms": ["HS256", "none"], "leeway": -1},
            "oauth2": {"issuers": [{"issuer": "http://idp.example", "introspectionUrl": "https://idp.example/i"}]},
            "public": ["health"]},
          "rbac": {"enabled": true, "roles": {"reader": [{"servers": ["group:nope"], "allow": ["tools/list"]}]},
                   "defaultRoles": ["nobody"]},
          "headers": {"xFrameOptions": "DENY\r\nX-Evil: 1"}}"#
            .replace("HASH", HASH)
            .as_str(),
    );
    let found = errors(parse(&text));
    let expected = [
        "security.authentication.methods[1]: unknown method `saml`",
        "security.authentication.methods[2]: `apikey` is listed twice",
        "security.authentication.methods[3]: mtls needs TLS termination",
        "security.authentication.apiKeys[0].name: must not be empty",
        "security.authentication.apiKeys[0].keyHash: not a SHA-256 key hash",
        "security.authentication.apiKeys[1]: needs exactly one of `keyHash` and `key`",
        "security.authentication.apiKeys[2].key: too short to be a secret",
        "security.authentication.apiKeys[3].roles: unknown role `ghost`",
        "security.authentication.jwt.publicKeys[0]: cannot read `/nonexistent.pem`",
        "security.authentication.jwt.algorithms[1]: unknown algorithm `none`",
        "security.authentication.jwt.leeway: -1 is out of range",
        "security.authentication.oauth2.issuers[0].issuer: `http://idp.example` is not an https URL",
        "security.authentication.oauth2.issuers[0]: introspection needs `clientId` and `clientSecret`",
        "security.authentication.oauth2.resource: required with issuers",
        "security.authentication.apiKeyHeader: header name `X API`",
        "security.authentication.public[0]: `health` is not a path",
        "security.rbac.roles.reader[0].servers[0]: no server is in group `nope`",
        "security.rbac.defaultRoles: unknown role `nobody`",
        "security.headers.xFrameOptions: not a valid header value",
    ];
    for start in expected {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "missing {start:?} in {found:#?}"
        );
    }
}

#[test]
fn unknown_keys_in_the_new_sections_are_found_by_the_schema_walk() {
    let text = with_security(
        r#"{"authentication": {"apiKeys": [{"name": "a", "keyHsh": "x"}], "jwt": {"audiance": "x"}},
            "rbac": {"roles": {"r": [{"servers": ["*"], "alow": ["*"]}]}}}"#,
    );
    let found = errors(parse(&text));
    for start in [
        "security.authentication.apiKeys[0].keyHsh: unknown key `keyHsh`, did you mean `keyHash`?",
        "security.authentication.jwt.audiance: unknown key `audiance`, did you mean `audience`?",
        "security.rbac.roles.r[0].alow: unknown key `alow`, did you mean `allow`?",
    ] {
        assert!(
            found.iter().any(|e| e.starts_with(start)),
            "missing {start:?} in {found:#?}"
        );
    }
}

#[test]
fn a_full_section_compiles() {
    let text = with_security(
        r#"{"authentication": {"enabled": true, "methods": ["oauth2", "apikey", "jwt"],
            "apiKeys": [{"name": "ci", "keyHash": "HASH", "roles": ["reader"], "scopes": ["mcp:tools"]}],
            "jwtSecret": "0123456789abcdef0123456789abcdef", "jwt": {"issuer": "https://idp", "leeway": 5000},
            "oauth2": {"issuers": [{"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks"}],
                       "resource": "https://gw.example/", "scopesSupported": ["mcp:tools"]},
            "public": ["/health", "/open/*"], "forwardIdentity": true},
          "rbac": {"enabled": true, "roles": {"reader": [{"servers": ["search-*", "group:docs"], "allow": ["tools/call:search_*"]}]},
                   "defaultRoles": ["reader"]},
          "headers": {"upstream": true, "referrerPolicy": ""}}"#
            .replace("HASH", HASH)
            .as_str(),
    );
    let config = loaded(parse_with_env(&text, &[]));
    let auth = &config.security.auth;
    assert_eq!(
        auth.methods,
        [AuthMethod::OAuth2, AuthMethod::ApiKey, AuthMethod::Jwt]
    );
    assert!(auth.is_public("/open/x") && auth.is_public("/health") && !auth.is_public("/healthz"));
    let jwt = auth.jwt.as_ref().expect("jwt");
    assert_eq!(jwt.leeway.as_millis(), 5000);
    assert_eq!(jwt.claims.roles, "roles");
    let oauth = auth.oauth2.as_ref().expect("oauth2");
    assert_eq!(
        oauth.resource, "https://gw.example",
        "trailing slash dropped"
    );
    let grant = &config.security.rbac.roles[0].grants[0];
    assert!(grant
        .servers
        .iter()
        .any(|s| *s == ServerMatch::Group("docs".into())));
    assert!(grant.servers[0].covers("search-web", None) && !grant.servers[0].covers("web", None));
    let headers = &config.security.headers;
    assert!(headers.upstream);
    assert!(!headers
        .lines
        .iter()
        .any(|l| l.starts_with("Referrer-Policy")));
    assert!(headers.hsts.is_some());
}

#[test]
fn a_token_exchange_names_an_issuer_with_a_token_endpoint() {
    let text = r#"{"upstream": {"servers": [
        {"id": "a", "url": "http://127.0.0.1:3001", "forwardAuth": true,
         "credentials": {"tokenExchange": {"issuer": "https://nobody", "audience": "https://a"}}},
        {"id": "b", "url": "http://127.0.0.1:3002",
         "credentials": {"identity": true, "tokenExchange": {"issuer": "https://idp.example", "audience": "https://b", "scope": "b:read"}}}]},
      "security": {"authentication": {"enabled": true, "methods": ["oauth2"],
        "oauth2": {"issuers": [{"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks",
                                "tokenEndpoint": "http://127.0.0.1:9/token", "clientId": "gw", "clientSecret": "s"}],
                   "resource": "https://gw.example"}}}}"#;
    let found = errors(parse(text));
    for start in [
        "upstream.servers[0].credentials.tokenExchange.issuer: `https://nobody` is no oauth2 issuer with a `tokenEndpoint` (allowed: https://idp.example)",
        "upstream.servers[0].credentials.tokenExchange: a token exchange replaces the client's token",
    ] {
        assert!(found.iter().any(|e| e.starts_with(start)), "missing {start:?} in {found:#?}");
    }
    assert_eq!(found.len(), 2, "{found:#?}");
    let ok = text
        .replace(r#""forwardAuth": true,"#, "")
        .replace("https://nobody", "https://idp.example");
    let config = loaded(parse(&ok));
    let b = &config.upstreams[1].credentials;
    assert!(b.identity);
    let exchange = b.exchange.as_ref().expect("exchange");
    assert_eq!(
        (
            exchange.issuer,
            exchange.audience.as_str(),
            exchange.scope.as_deref()
        ),
        (0, "https://b", Some("b:read"))
    );
}

#[test]
fn public_paths_are_not_reached_through_dot_segments_or_encodings() {
    let text =
        with_security(r#"{"authentication": {"enabled": true, "public": ["/health", "/open/*"]}}"#);
    let auth = loaded(parse(&text)).security.auth;
    assert!(auth.is_public("/open/page") && auth.is_public("/health"));
    for path in [
        "/open/../mcp/a",
        "/open/%2e%2e/admin",
        "/open/..%2Fadmin",
        "/open/a%5c..",
        "/open\\..\\x",
        "/open/./x",
    ] {
        assert!(!auth.is_public(path), "{path}");
    }
}

#[test]
fn an_issuer_ca_file_must_hold_certificates() {
    let dir = std::env::temp_dir().join(format!("gw-ca-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let bad = dir.join("bad.pem");
    let _ = std::fs::write(&bad, "not a certificate");
    let text = with_security(&format!(
        r#"{{"authentication": {{"enabled": true, "methods": ["oauth2"],
            "oauth2": {{"issuers": [{{"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks",
                                     "caFile": "{}"}}, {{"issuer": "https://b.example", "jwksUrl": "https://b.example/k",
                                     "caFile": "/nonexistent/ca.pem"}}],
                       "resource": "https://gw.example"}}}}}}"#,
        bad.display()
    ));
    let found = errors(parse(&text));
    assert!(
        found.iter().any(
            |e| e.starts_with("security.authentication.oauth2.issuers[0].caFile: ")
                && e.contains("holds no PEM certificate")
        ),
        "{found:#?}"
    );
    assert!(found.iter().any(|e| e.starts_with("security.authentication.oauth2.issuers[1].caFile: cannot read")), "{found:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ddos_lists_take_addresses_and_blocks() {
    let text = with_security(
        r#"{"ddos": {"deny": ["203.0.113.0/24", "nope", "10.0.0.0/33"], "allow": ["::1"]}}"#,
    );
    let found = errors(parse(&text));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("security.ddos.deny[1]: `nope` is not an IP address or CIDR block"),
        "{found:#?}"
    );
    let ok = with_security(r#"{"ddos": {"deny": ["203.0.113.0/24"], "allow": ["203.0.113.7"]}}"#);
    let ddos = loaded(parse(&ok)).security.ddos;
    assert!(ddos.refuses("203.0.113.9".parse().expect("ip")));
    assert!(!ddos.refuses("203.0.113.7".parse().expect("ip")));
    assert!(!ddos.refuses("198.51.100.1".parse().expect("ip")));
}
