//! `security.authentication.jwt` and `jwtSecret`: key files read and parsed (PEM and JWKS),
//! algorithms and claim names checked.
//!
//! Owns: the `jwt` method's settings and reading its key files. Must not: verify tokens.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::oauth::check_https;
use super::{millis, ALGORITHM_NAMES, AUTH, MIN_HMAC_SECRET};
use crate::error::ConfigError;
use crate::runtime_security::{ClaimNames, JwtSettings, KeyFamily, PemKey};
use crate::user::{AuthenticationSection, JwtSection};
use crate::validate::{in_range, MAX_INTERVAL_MS};

pub(super) fn check_jwt(
    section: &AuthenticationSection,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<JwtSettings> {
    let jwt = &section.jwt;
    let path = format!("{AUTH}.jwt");
    let secret = section.jwt_secret.clone().filter(|s| !s.is_empty());
    if let Some(secret) = &secret {
        if secret.len() < MIN_HMAC_SECRET {
            warnings.push(ConfigError::new(
                format!("{AUTH}.jwtSecret"),
                format!("shorter than {MIN_HMAC_SECRET} bytes: HMAC tokens signed with it can be brute-forced"),
            ));
        }
    }
    let mut public_keys = Vec::new();
    for (index, file) in jwt.public_keys.iter().enumerate() {
        if let Some(key) = read_pem(&format!("{path}.publicKeys[{index}]"), file, errors) {
            public_keys.push(key);
        }
    }
    let jwks = jwt
        .jwks_file
        .as_ref()
        .and_then(|file| read_jwks(&format!("{path}.jwksFile"), file, errors));
    if let Some(url) = &jwt.jwks_url {
        check_https(&format!("{path}.jwksUrl"), url, errors);
    }
    let algorithms = check_algorithms(&format!("{path}.algorithms"), &jwt.algorithms, errors);
    check_claim_names(&path, jwt, errors);
    in_range(
        errors,
        &format!("{path}.leeway"),
        jwt.leeway,
        0,
        MAX_INTERVAL_MS,
    );
    if secret.is_none() && public_keys.is_empty() && jwks.is_none() && jwt.jwks_url.is_none() {
        return None;
    }
    Some(JwtSettings {
        secret,
        public_keys,
        jwks,
        jwks_file: jwt.jwks_file.clone(),
        jwks_url: jwt.jwks_url.clone(),
        issuer: jwt.issuer.clone().filter(|s| !s.is_empty()),
        audience: jwt.audience.clone().filter(|s| !s.is_empty()),
        algorithms,
        leeway: millis(jwt.leeway),
        claims: claim_names(jwt),
    })
}

pub(super) fn claim_names(jwt: &JwtSection) -> ClaimNames {
    ClaimNames {
        roles: jwt.roles_claim.clone(),
        scopes: jwt.scopes_claim.clone(),
    }
}

fn check_claim_names(path: &str, jwt: &JwtSection, errors: &mut Vec<ConfigError>) {
    if jwt.roles_claim.is_empty() {
        errors.push(ConfigError::new(
            format!("{path}.rolesClaim"),
            "must not be empty",
        ));
    }
    if jwt.scopes_claim.is_empty() {
        errors.push(ConfigError::new(
            format!("{path}.scopesClaim"),
            "must not be empty",
        ));
    }
}

fn check_algorithms(path: &str, names: &[String], errors: &mut Vec<ConfigError>) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match name.parse::<Algorithm>() {
            Ok(alg) => algorithms.push(alg),
            Err(_) => errors.push(
                ConfigError::new(
                    format!("{path}[{index}]"),
                    format!("unknown algorithm `{name}`"),
                )
                .with_allowed(ALGORITHM_NAMES),
            ),
        }
    }
    algorithms
}

/// Reads a PEM public key and learns its family by parsing it.
fn read_pem(path: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<PemKey> {
    let pem = match std::fs::read(file) {
        Ok(pem) => pem,
        Err(e) => {
            errors.push(ConfigError::new(path, format!("cannot read `{file}`: {e}")));
            return None;
        }
    };
    let family = if DecodingKey::from_rsa_pem(&pem).is_ok() {
        KeyFamily::Rsa
    } else if DecodingKey::from_ec_pem(&pem).is_ok() {
        KeyFamily::Ec
    } else if DecodingKey::from_ed_pem(&pem).is_ok() {
        KeyFamily::Ed
    } else {
        errors.push(
            ConfigError::new(path, format!("`{file}` is not a PEM public key"))
                .with_allowed("an RSA, EC (P-256, P-384) or Ed25519 public key in PEM"),
        );
        return None;
    };
    Some(PemKey {
        path: file.to_string(),
        family,
        pem,
    })
}

/// Reads a JWKS file; every key in it must be usable.
pub(super) fn read_jwks(path: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<JwkSet> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            errors.push(ConfigError::new(path, format!("cannot read `{file}`: {e}")));
            return None;
        }
    };
    match parse_jwks(&text) {
        Ok(set) => Some(set),
        Err(problem) => {
            errors.push(ConfigError::new(path, format!("`{file}`: {problem}")));
            None
        }
    }
}

/// A JSON Web Key Set whose every key can verify signatures.
pub fn parse_jwks(text: &str) -> Result<JwkSet, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    for (index, jwk) in set.keys.iter().enumerate() {
        DecodingKey::from_jwk(jwk).map_err(|e| format!("key {index} is not usable: {e}"))?;
    }
    Ok(set)
}
