//! Checks of `security.authentication`, `security.rbac` and `security.headers`, building
//! their runtime form on the way: key files are read and parsed here (on the loading
//! thread), so a bad PEM or JWKS is a config error with its path, never a 401 later.
//!
//! Owns: what those values mean, and the warnings about them (a plain `key`, a short
//! `jwtSecret`, authentication on with nothing to check credentials against).
//! Must not: verify credentials, or read anything but the key files named. The `jwt`
//! method's keys are in `jwt`, issuers in `oauth`, roles, headers and server credentials in
//! `access`.

mod access;
mod jwt;
mod oauth;

pub use jwt::parse_jwks;

use access::{check_credentials, check_headers, check_rbac};
use jwt::check_jwt;
use oauth::check_oauth2;

use sha2::{Digest, Sha256};

use super::in_range;
use crate::error::ConfigError;
use crate::runtime::Pattern;
use crate::runtime_security::{
    ApiKey, AuthMethod, Authentication, Rbac, SecurityHeaders, UpstreamCredentials,
};
use crate::user::{AuthenticationSection, UserConfig};

const AUTH: &str = "security.authentication";
/// The role the admin API and the management pages ask for.
pub const ADMIN_ROLE: &str = "admin";
/// The shortest HMAC secret without a warning (RFC 7518 §3.2: at least the hash's size).
const MIN_HMAC_SECRET: usize = 32;
const ALGORITHM_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// The `security` settings in runtime form, and what deserves a warning.
#[derive(Debug, Clone)]
pub struct CheckedSecurity {
    /// Per `upstream.servers` element, its `credentials`.
    pub credentials: Vec<UpstreamCredentials>,
    pub auth: Authentication,
    pub rbac: Rbac,
    pub headers: SecurityHeaders,
    pub ddos: crate::runtime_security::Ddos,
    pub warnings: Vec<ConfigError>,
}

pub fn check(
    user: &UserConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> CheckedSecurity {
    let mut warnings = Vec::new();
    let section = &user.security.authentication;
    let rbac = check_rbac(&user.security.rbac, user, errors);
    let methods = check_methods(section, errors);
    let api_keys = check_api_keys(section, &rbac, env, errors, &mut warnings);
    let jwt = check_jwt(section, errors, &mut warnings);
    let oauth2 = check_oauth2(&section.oauth2, &section.jwt, errors);
    if section.api_key_header.is_empty() {
        errors.push(ConfigError::new(
            format!("{AUTH}.apiKeyHeader"),
            "must not be empty",
        ));
    } else if let Some(e) =
        super::http::check_header_name(&format!("{AUTH}.apiKeyHeader"), &section.api_key_header)
    {
        errors.push(e);
    }
    let mut public = Vec::new();
    for (index, path) in section.public.iter().enumerate() {
        if !path.starts_with('/') {
            errors.push(
                ConfigError::new(
                    format!("{AUTH}.public[{index}]"),
                    format!("`{path}` is not a path"),
                )
                .with_allowed("/exact/path, or /prefix* "),
            );
        }
        public.push(Pattern::parse(path));
    }
    in_range(
        errors,
        &format!("{AUTH}.tokenCacheSize"),
        section.token_cache_size,
        0,
        10_000_000,
    );
    let auth = Authentication {
        enabled: section.enabled,
        methods,
        api_key_header: section.api_key_header.clone(),
        api_keys,
        jwt,
        oauth2,
        public,
        forward_identity: section.forward_identity,
        token_cache_size: usize::try_from(section.token_cache_size).unwrap_or(0),
    };
    if auth.enabled {
        warn_unusable_methods(&auth, &mut warnings);
        let unscoped = auth
            .jwt
            .as_ref()
            .is_some_and(|j| j.issuer.is_none() && j.audience.is_none());
        if auth.accepts(AuthMethod::Jwt) && unscoped {
            warnings.push(ConfigError::new(
                format!("{AUTH}.jwt"),
                "neither `issuer` nor `audience` is set: any token these keys signed is accepted, whoever it was meant for",
            ));
        }
    } else if auth.forward_identity {
        errors.push(ConfigError::new(
            format!("{AUTH}.forwardIdentity"),
            "needs authentication on: without it there is no identity to send, and upstreams must not trust X-Auth-* headers",
        ));
    }
    let headers = check_headers(&user.security.headers, errors);
    let credentials = check_credentials(user, &auth, errors);
    let ddos = &user.security.ddos;
    let ddos = crate::runtime_security::Ddos {
        deny: super::ip_blocks("security.ddos.deny", &ddos.deny, errors),
        allow: super::ip_blocks("security.ddos.allow", &ddos.allow, errors),
        max_connections_per_ip: usize::try_from(ddos.max_connections_per_ip).unwrap_or(0),
    };
    in_range(
        errors,
        "security.ddos.maxConnectionsPerIp",
        user.security.ddos.max_connections_per_ip,
        0,
        10_000_000,
    );
    CheckedSecurity {
        credentials,
        ddos,
        auth,
        rbac,
        headers,
        warnings,
    }
}

fn check_methods(
    section: &AuthenticationSection,
    errors: &mut Vec<ConfigError>,
) -> Vec<AuthMethod> {
    let mut methods = Vec::new();
    for (index, name) in section.methods.iter().enumerate() {
        let path = format!("{AUTH}.methods[{index}]");
        match AuthMethod::parse(name) {
            Some(AuthMethod::Mtls) if section.enabled => errors.push(ConfigError::new(
                path,
                "mtls needs TLS termination (server.ssl), which this build does not serve yet",
            )),
            Some(method) if !methods.contains(&method) => methods.push(method),
            Some(_) => errors.push(ConfigError::new(path, format!("`{name}` is listed twice"))),
            None => errors.push(
                ConfigError::new(path, format!("unknown method `{name}`"))
                    .with_allowed("apikey, jwt, oauth2, mtls"),
            ),
        }
    }
    methods
}

/// Authentication on with a listed method that has nothing to check against: its
/// credentials are all refused (fail closed), which is worth saying.
fn warn_unusable_methods(auth: &Authentication, warnings: &mut Vec<ConfigError>) {
    for method in &auth.methods {
        let empty = match method {
            AuthMethod::ApiKey => auth.api_keys.is_empty(),
            AuthMethod::Jwt => auth.jwt.is_none(),
            AuthMethod::OAuth2 => auth.oauth2.is_none(),
            AuthMethod::Mtls => false,
        };
        if empty {
            warnings.push(ConfigError::new(
                format!("{AUTH}.methods"),
                format!(
                    "`{}` is listed but nothing is configured to check it against: its credentials are refused",
                    method.name()
                ),
            ));
        }
    }
    if auth.methods.is_empty() {
        warnings.push(ConfigError::new(
            format!("{AUTH}.methods"),
            "authentication is on with no method: every request outside `public` is refused",
        ));
    }
}

fn check_api_keys(
    section: &AuthenticationSection,
    rbac: &Rbac,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Vec<ApiKey> {
    let mut keys: Vec<ApiKey> = Vec::new();
    for (index, entry) in section.api_keys.iter().enumerate() {
        let path = format!("{AUTH}.apiKeys[{index}]");
        if entry.name.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                "must not be empty",
            ));
        } else if keys.iter().any(|k| k.name == entry.name) {
            let message = format!("`{}` names two keys", entry.name);
            errors.push(ConfigError::new(format!("{path}.name"), message));
        }
        let sha256 = match (&entry.key_hash, &entry.key) {
            (Some(hash), None) => parse_key_hash(hash).or_else(|| {
                errors.push(
                    ConfigError::new(format!("{path}.keyHash"), "not a SHA-256 key hash")
                        .with_allowed("sha256: and 64 lowercase hex digits"),
                );
                None
            }),
            (None, Some(key)) => match super::http::expand_vars(key, env) {
                Ok(key) if key.len() >= 16 => {
                    let hash = key_hash(&key);
                    warnings.push(ConfigError::new(
                        format!("{path}.key"),
                        format!("a plain key in the config; store its hash instead: \"keyHash\": \"{}\"", hash_text(&hash)),
                    ));
                    Some(hash)
                }
                Ok(_) => {
                    errors.push(
                        ConfigError::new(format!("{path}.key"), "too short to be a secret")
                            .with_allowed("at least 16 characters"),
                    );
                    None
                }
                Err(problems) => {
                    for problem in problems {
                        errors.push(ConfigError::new(format!("{path}.key"), problem));
                    }
                    None
                }
            },
            _ => {
                errors.push(ConfigError::new(
                    path.clone(),
                    "needs exactly one of `keyHash` and `key`",
                ));
                None
            }
        };
        check_role_names(&format!("{path}.roles"), &entry.roles, rbac, errors);
        if let Some(sha256) = sha256 {
            if keys.iter().any(|k| k.sha256 == sha256) {
                errors.push(ConfigError::new(
                    path.clone(),
                    "the same key is listed twice",
                ));
            }
            keys.push(ApiKey {
                name: entry.name.clone(),
                sha256,
                roles: entry.roles.clone(),
                scopes: entry.scopes.clone(),
            });
        }
    }
    keys
}

/// SHA-256 of a key's UTF-8 bytes.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `sha256:` and lowercase hex: the form `keyHash` takes.
pub fn hash_text(hash: &[u8; 32]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// Roles must exist when RBAC is on (`admin` always does).
fn check_role_names(path: &str, roles: &[String], rbac: &Rbac, errors: &mut Vec<ConfigError>) {
    if !rbac.enabled {
        return;
    }
    for role in roles {
        if role != ADMIN_ROLE && rbac.role(role).is_none() {
            let known: Vec<&str> = rbac.roles.iter().map(|r| r.name.as_str()).collect();
            errors.push(
                ConfigError::new(path, format!("unknown role `{role}`"))
                    .with_allowed(format!("{ADMIN_ROLE}, {}", known.join(", "))),
            );
        }
    }
}

fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
