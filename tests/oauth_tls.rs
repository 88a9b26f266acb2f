//! An OAuth issuer over HTTPS with a private CA (`caFile`): its JWKS fetched and its
//! introspection endpoint called over TLS (ureq on the loading thread, rustls via
//! monoio-rustls on the shards), and the same issuer refused when the CA is another one.

mod auth_support;
mod common;

use auth_support::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

/// A CA (`{name}-ca.pem`) and a server certificate it signed for 127.0.0.1 (`{name}.pem`,
/// `{name}.key`).
fn make_ca(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let subject = format!("/CN={name} test CA");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca,
            "-days", "2", "-subj", &subject,
        ],
    );
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    let ext = ext.to_string_lossy().into_owned();
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

#[test]
fn an_issuer_behind_a_private_ca_is_reached_over_tls() {
    let dir = TempDir::new("oauth-tls");
    let d = dir.path();
    make_keys(d);
    make_ca(d, "idp");
    make_ca(d, "other");
    let jwks = write_jwks(d, "as-1");
    let resource = "http://127.0.0.1:8080";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/https_issuer.py");
    let mut child = Command::new("python3")
        .args([script, "idp.pem", "idp.key", &jwks, resource])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the issuer's port");
    let _idp = KillOnDrop(child);
    let issuer = format!("https://127.0.0.1:{}", line.trim());

    let up = Upstream::fixed("ok");
    let config_with_ca = |ca: &str| {
        let mut c = config(json!([server("a", &up.url(""))]));
        c["security"] = json!({"authentication": {
            "enabled": true,
            "methods": ["oauth2"],
            "oauth2": {
                "issuers": [{"issuer": issuer, "jwksUrl": format!("{issuer}/jwks"),
                             "introspectionUrl": format!("{issuer}/introspect"),
                             "clientId": "gw", "clientSecret": "gw-secret",
                             "caFile": d.join(ca).to_string_lossy()}],
                "resource": resource
            }
        }});
        c
    };
    let key = EncodingKey::from_rsa_pem(&read(d, "jwk.pem")).expect("rsa");
    let jwt = sign(
        Algorithm::RS256,
        &key,
        &claims(json!({"iss": issuer, "aud": resource})),
        Some("as-1"),
    );

    let gw = Gateway::start(&config_with_ca("idp-ca.pem"));
    let call = |gw: &Gateway, t: &str| get_with(gw, "/x", &[("Authorization", &bearer(t))]);
    assert_eq!(call(&gw, &jwt).status, 200, "keys fetched over TLS");
    assert_eq!(
        call(&gw, "opaque-over-tls").status,
        200,
        "introspected over TLS"
    );
    assert_json_error(&call(&gw, "opaque-unknown"), 401);

    // Another CA: neither the keys nor the introspection endpoint can be trusted.
    let wary = Gateway::start(&config_with_ca("other-ca.pem"));
    assert_json_error(&call(&wary, &jwt), 401);
    assert_json_error(&call(&wary, "opaque-over-tls"), 503);
}
