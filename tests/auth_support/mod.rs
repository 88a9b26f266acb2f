//! Helpers of the authentication tests (`tests/auth.rs`, `tests/oauth.rs`): keys made with
//! openssl, JWKs, signed tokens, and a gateway config with a `security.authentication`.
#![allow(dead_code)]

use super::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

pub const API_KEY: &str = "ci-key-0123456789abcdef";
pub const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";
pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "mcp-gateway";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `sha256:<hex>` of a key, as `keyHash` takes it.
pub fn key_hash(key: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{key}' | sha256sum"))
        .output()
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", hex.split_whitespace().next().unwrap_or(""))
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(status.status.success(), "openssl {args:?}: {status:?}");
}

/// Key pairs for every family, made with openssl in `dir`: `{name}.pem` (private, PKCS#8)
/// and `{name}.pub.pem`.
pub fn make_keys(dir: &Path) {
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

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("key file")
}

pub fn base64url(bytes: &[u8]) -> String {
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
pub fn write_jwks(dir: &Path, kid: &str) -> String {
    let jwks = json!({"keys": [rsa_jwk(dir, "jwk", kid)]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).expect("write jwks");
    path.to_string_lossy().into_owned()
}

pub fn claims(extra: Value) -> Value {
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

pub fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

/// An upstream that records requests and answers 200.
pub fn upstream() -> Upstream {
    Upstream::fixed("ok")
}

pub fn auth_config(up: &Upstream, dir: &Path, auth: Value) -> Value {
    let mut c = config(json!([server("a", &up.url(""))]));
    c["security"] = json!({"authentication": auth});
    let _ = dir;
    c
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn get_with(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Response {
    gw.client().request("GET", target, headers, b"")
}

/// The modulus of `{name}.pem` as a JWK (RSA, `kid`).
pub fn rsa_jwk(dir: &Path, name: &str, kid: &str) -> Value {
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
