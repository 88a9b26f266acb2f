//! Verifying JSON Web Tokens (`jsonwebtoken`): the gateway's own keys (`jwtSecret`, PEM
//! files, a JWKS) for the `jwt` method, or an OAuth issuer's keys for `oauth2`.
//!
//! A key verifies only the algorithms of its family (an HMAC secret HS*, an RSA key RS* and
//! PS*, an EC key ES*, an Ed25519 key EdDSA), further limited by `jwt.algorithms`; so an HS
//! token signed with an RSA public key as its secret finds no key, and `alg: none` is not
//! an algorithm at all. `exp` is required; `exp` and `nbf` are checked here in
//! milliseconds with the leeway, `iss` and `aud` against the config.
//!
//! Owns: key rings and the checks of one token. Must not: cache (the caller does), or
//! fetch keys.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_gateway_config::{AuthMethod, ClaimNames, JwtSettings, KeyFamily};
use serde_json::{Map, Value};

use super::principal::Principal;
use super::AuthFailure;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];
const ED: [Algorithm; 1] = [Algorithm::EdDSA];

/// One key and the algorithms it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The keys of one token source.
#[derive(Default)]
pub struct KeyRing {
    pub keys: Vec<VerifyKey>,
}

impl KeyRing {
    /// The `jwt` method's keys. `allowed` empty: every algorithm of each key's family.
    pub fn from_settings(jwt: &JwtSettings) -> KeyRing {
        let mut ring = KeyRing::default();
        let allowed = &jwt.algorithms;
        if let Some(secret) = &jwt.secret {
            ring.push(
                None,
                DecodingKey::from_secret(secret.as_bytes()),
                &HMAC,
                allowed,
            );
        }
        for pem in &jwt.public_keys {
            let (key, family) = match pem.family {
                KeyFamily::Rsa => (DecodingKey::from_rsa_pem(&pem.pem), &RSA[..]),
                KeyFamily::Ec => (DecodingKey::from_ec_pem(&pem.pem), &EC[..]),
                KeyFamily::Ed => (DecodingKey::from_ed_pem(&pem.pem), &ED[..]),
            };
            // Parsed at load time already; a failure here cannot happen.
            if let Ok(key) = key {
                ring.push(None, key, family, allowed);
            }
        }
        if let Some(set) = &jwt.jwks {
            ring.add_jwks(set, allowed);
        }
        ring
    }

    /// Adds every usable key of a JWKS.
    pub fn add_jwks(&mut self, set: &JwkSet, allowed: &[Algorithm]) {
        for jwk in &set.keys {
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                self.push(jwk.common.key_id.clone(), key, jwk_family(jwk), allowed);
            }
        }
    }

    fn push(
        &mut self,
        kid: Option<String>,
        key: DecodingKey,
        family: &[Algorithm],
        allowed: &[Algorithm],
    ) {
        let algorithms: Vec<Algorithm> = family
            .iter()
            .copied()
            .filter(|a| allowed.is_empty() || allowed.contains(a))
            .collect();
        if !algorithms.is_empty() {
            self.keys.push(VerifyKey {
                kid,
                key,
                algorithms,
            });
        }
    }

    pub fn knows_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The algorithms a JWK may verify: the one it names, else its key type's family.
fn jwk_family(jwk: &Jwk) -> &'static [Algorithm] {
    let family: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &RSA,
        AlgorithmParameters::EllipticCurve(_) => &EC,
        AlgorithmParameters::OctetKeyPair(_) => &ED,
        AlgorithmParameters::OctetKey(_) => &HMAC,
    };
    match jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok())
    {
        Some(named) => family
            .iter()
            .position(|a| *a == named)
            .map_or(&[][..], |i| &family[i..=i]),
        None => family,
    }
}

/// What a verified token must also satisfy.
pub struct TokenRules<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub leeway_ms: u64,
    pub claims: &'a ClaimNames,
    pub method: AuthMethod,
}

/// The claims of a token signed by a key of `ring`, checked against `rules` at `now_ms`.
pub fn verify(
    token: &str,
    ring: &KeyRing,
    rules: &TokenRules<'_>,
    now_ms: u64,
) -> Result<Principal, AuthFailure> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Malformed)?;
    let alg = header.alg;
    let mut candidates = ring
        .keys
        .iter()
        .filter(|k| k.algorithms.contains(&alg))
        .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        .peekable();
    if candidates.peek().is_none() {
        return Err(match &header.kid {
            Some(kid) if !ring.knows_kid(kid) => AuthFailure::UnknownKey,
            _ => AuthFailure::Algorithm,
        });
    }
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let mut claims = None;
    for key in candidates {
        if let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            claims = Some(data.claims);
            break;
        }
    }
    let claims = claims.ok_or(AuthFailure::BadSignature)?;
    check_claims(&claims, rules, now_ms)
}

/// Time, issuer and audience; then the principal the claims name.
pub fn check_claims(
    claims: &Map<String, Value>,
    rules: &TokenRules<'_>,
    now_ms: u64,
) -> Result<Principal, AuthFailure> {
    let millis = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_f64)
            .map(|s| (s * 1000.0) as u64)
    };
    let exp = millis("exp").ok_or(AuthFailure::Malformed)?;
    if now_ms > exp.saturating_add(rules.leeway_ms) {
        return Err(AuthFailure::Expired);
    }
    let nbf = millis("nbf");
    if nbf.is_some_and(|nbf| now_ms.saturating_add(rules.leeway_ms) < nbf) {
        return Err(AuthFailure::NotYetValid);
    }
    if let Some(issuer) = rules.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(AuthFailure::WrongIssuer);
        }
    }
    if let Some(audience) = rules.audience {
        if !names_audience(claims.get("aud"), audience) {
            return Err(AuthFailure::WrongAudience);
        }
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .or_else(|| claims.get("client_id").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .ok_or(AuthFailure::Malformed)?;
    let roles = strings(claims.get(&rules.claims.roles), ',');
    let scopes = match claims.get(&rules.claims.scopes) {
        Some(value) => strings(Some(value), ' '),
        // RFC 9068 names it `scope`; Azure and others use `scp`.
        None => strings(claims.get("scp"), ' '),
    };
    let mut principal = Principal::new(subject, rules.method, roles, scopes);
    principal.expires_ms = Some(exp);
    principal.not_before_ms = nbf;
    Ok(principal)
}

/// `aud` is one string or an array of them (RFC 7519 §4.1.3); a trailing `/` is ignored.
pub fn names_audience(aud: Option<&Value>, want: &str) -> bool {
    let want = want.trim_end_matches('/');
    let same = |v: &Value| v.as_str().is_some_and(|s| s.trim_end_matches('/') == want);
    match aud {
        Some(Value::Array(items)) => items.iter().any(same),
        Some(one) => same(one),
        None => false,
    }
}

/// A claim that is an array of strings, or one string of `sep`-separated values.
fn strings(value: Option<&Value>, sep: char) -> Vec<Box<str>> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(Box::from)
            .collect(),
        Some(Value::String(s)) => s
            .split(sep)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Box::from)
            .collect(),
        _ => Vec::new(),
    }
}
