//! Checks of `security.authentication`, `security.rbac` and `security.headers`, building
//! their runtime form on the way: key files are read and parsed here (on the loading
//! thread), so a bad PEM or JWKS is a config error with its path, never a 401 later.
//!
//! Owns: what those values mean, and the warnings about them (a plain `key`, a short
//! `jwtSecret`, authentication on with nothing to check credentials against).
//! Must not: verify credentials, or read anything but the key files named.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

use super::http::breaks_header_line;
use super::{in_range, MAX_INTERVAL_MS};
use crate::error::ConfigError;
use crate::runtime::{Pattern, PolicyRule};
use crate::runtime_security::{
    ApiKey, AuthMethod, Authentication, ClaimNames, Grant, JwtSettings, KeyFamily, OAuth2Settings,
    OAuthIssuer, Outbound, PemKey, Rbac, Role, SecurityHeaders, ServerMatch, TokenExchange,
    UpstreamCredentials,
};
use crate::user::{
    AuthenticationSection, HeadersSection, JwtSection, OAuth2Section, RbacSection, UserConfig,
};

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
    CheckedSecurity {
        credentials,
        auth,
        rbac,
        headers,
        warnings,
    }
}

/// Each server's `credentials`: a token exchange names an issuer with a token endpoint and
/// needs bearer tokens to exchange.
fn check_credentials(
    user: &UserConfig,
    auth: &Authentication,
    errors: &mut Vec<ConfigError>,
) -> Vec<UpstreamCredentials> {
    let issuers = auth.oauth2.as_ref().map_or(&[][..], |o| &o.issuers[..]);
    let mut all = Vec::with_capacity(user.upstream.servers.len());
    for (index, server) in user.upstream.servers.iter().enumerate() {
        let section = &server.credentials;
        let exchange = &section.token_exchange;
        let at = format!("upstream.servers[{index}].credentials.tokenExchange");
        let exchange = if exchange.audience.is_empty() {
            None
        } else {
            let found = issuers
                .iter()
                .position(|i| i.issuer == exchange.issuer && i.token_endpoint.is_some());
            if found.is_none() {
                let known: Vec<&str> = issuers
                    .iter()
                    .filter(|i| i.token_endpoint.is_some())
                    .map(|i| i.issuer.as_str())
                    .collect();
                errors.push(
                    ConfigError::new(
                        format!("{at}.issuer"),
                        format!(
                            "`{}` is no oauth2 issuer with a `tokenEndpoint`",
                            exchange.issuer
                        ),
                    )
                    .with_allowed(if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        known.join(", ")
                    }),
                );
            }
            if server.forward_auth {
                errors.push(ConfigError::new(
                    at.clone(),
                    "a token exchange replaces the client's token: `forwardAuth` must be false",
                ));
            }
            if !(auth.accepts(AuthMethod::Jwt) || auth.accepts(AuthMethod::OAuth2)) {
                errors.push(ConfigError::new(
                    at.clone(),
                    "needs bearer tokens to exchange: `jwt` or `oauth2` in security.authentication.methods",
                ));
            }
            found.map(|issuer| TokenExchange {
                issuer,
                audience: exchange.audience.clone(),
                scope: Some(exchange.scope.clone()).filter(|s| !s.is_empty()),
            })
        };
        let wants_auth = section.identity || !section.token_exchange.audience.is_empty();
        if wants_auth && !auth.enabled {
            errors.push(ConfigError::new(
                format!("upstream.servers[{index}].credentials"),
                "needs security.authentication.enabled: without it there is no one to vouch for",
            ));
        }
        all.push(UpstreamCredentials {
            identity: section.identity,
            exchange,
        });
    }
    all
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

fn check_jwt(
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

fn claim_names(jwt: &JwtSection) -> ClaimNames {
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

fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
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
fn read_jwks(path: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<JwkSet> {
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

fn check_oauth2(
    section: &OAuth2Section,
    jwt: &JwtSection,
    errors: &mut Vec<ConfigError>,
) -> Option<OAuth2Settings> {
    let path = format!("{AUTH}.oauth2");
    let mut issuers = Vec::new();
    for (index, entry) in section.issuers.iter().enumerate() {
        let at = format!("{path}.issuers[{index}]");
        check_https(&format!("{at}.issuer"), &entry.issuer, errors);
        for (key, url) in [
            ("jwksUrl", &entry.jwks_url),
            ("introspectionUrl", &entry.introspection_url),
        ] {
            if let Some(url) = url {
                check_https(&format!("{at}.{key}"), url, errors);
            }
        }
        let jwks = entry
            .jwks_file
            .as_ref()
            .and_then(|file| read_jwks(&format!("{at}.jwksFile"), file, errors));
        if entry.jwks_url.is_none()
            && entry.jwks_file.is_none()
            && entry.introspection_url.is_none()
        {
            errors.push(ConfigError::new(
                at.clone(),
                "needs `jwksUrl`, `jwksFile` or `introspectionUrl` to check its tokens",
            ));
        }
        if entry.introspection_url.is_some()
            && (entry.client_id.is_none() || entry.client_secret.is_none())
        {
            errors.push(ConfigError::new(
                at.clone(),
                "introspection needs `clientId` and `clientSecret` (RFC 7662 callers authenticate)",
            ));
        }
        let introspection = entry.introspection_url.as_deref().and_then(|url| {
            outbound(url)
                .map_err(|e| errors.push(ConfigError::new(format!("{at}.introspectionUrl"), e)))
                .ok()
        });
        let token_endpoint = entry.token_endpoint.as_deref().and_then(|url| {
            check_https(&format!("{at}.tokenEndpoint"), url, errors);
            outbound(url)
                .map_err(|e| errors.push(ConfigError::new(format!("{at}.tokenEndpoint"), e)))
                .ok()
        });
        if entry.token_endpoint.is_some()
            && (entry.client_id.is_none() || entry.client_secret.is_none())
        {
            errors.push(ConfigError::new(
                at.clone(),
                "token exchange needs `clientId` and `clientSecret` (the gateway authenticates)",
            ));
        }
        issuers.push(OAuthIssuer {
            issuer: entry.issuer.clone(),
            jwks_url: entry.jwks_url.clone(),
            jwks_file: entry.jwks_file.clone(),
            jwks,
            introspection_url: entry.introspection_url.clone(),
            introspection,
            token_endpoint,
            client_id: entry.client_id.clone(),
            client_secret: entry.client_secret.clone(),
        });
    }
    in_range(
        errors,
        &format!("{path}.maxPendingIntrospections"),
        section.max_pending_introspections,
        1,
        100_000,
    );
    if issuers.is_empty() {
        return None;
    }
    let resource = match &section.resource {
        Some(resource) => {
            check_https(&format!("{path}.resource"), resource, errors);
            resource.trim_end_matches('/').to_string()
        }
        None => {
            errors.push(ConfigError::new(
                format!("{path}.resource"),
                "required with issuers: the identifier tokens must be issued for (RFC 8707)",
            ));
            String::new()
        }
    };
    Some(OAuth2Settings {
        issuers,
        resource,
        scopes_supported: section.scopes_supported.clone(),
        required_scopes: section.required_scopes.clone(),
        max_pending_introspections: usize::try_from(section.max_pending_introspections)
            .unwrap_or(0),
        leeway: millis(jwt.leeway),
        claims: claim_names(jwt),
    })
}

/// An `http(s)://host[:port]/path` URL the shards call, its host resolved now.
fn outbound(url: &str) -> Result<Outbound, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("`{url}` is not an http(s) URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{url}` has a bad port"))?;
            (host, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.contains(char::is_whitespace) {
        return Err(format!("`{url}` is not a usable URL"));
    }
    let addr = crate::url::Resolver::default().resolve(host, port)?;
    Ok(Outbound {
        tls,
        host: host.to_string(),
        authority: authority.to_string(),
        addr,
        path: path.to_string(),
    })
}

/// Issuer, metadata and resource URLs: `https://`, or `http://` on a loopback host.
fn check_https(path: &str, url: &str, errors: &mut Vec<ConfigError>) {
    let allowed = "https://host[/path], or http:// on a loopback address";
    let ok = if let Some(rest) = url.strip_prefix("https://") {
        !rest.is_empty() && !url.contains(char::is_whitespace)
    } else if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    } else {
        false
    };
    if !ok {
        errors.push(
            ConfigError::new(path, format!("`{url}` is not an https URL")).with_allowed(allowed),
        );
    }
}

fn check_rbac(section: &RbacSection, user: &UserConfig, errors: &mut Vec<ConfigError>) -> Rbac {
    let path = "security.rbac";
    let groups: Vec<&str> = user
        .upstream
        .servers
        .iter()
        .filter_map(|s| s.group.as_deref())
        .collect();
    let mut roles = Vec::new();
    for (name, rules) in &section.roles {
        if name.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.roles"),
                "a role name is empty",
            ));
        }
        let mut grants = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let at = format!("{path}.roles.{name}[{index}]");
            let mut servers = Vec::new();
            for (i, server) in rule.servers.iter().enumerate() {
                let matcher = ServerMatch::parse(server);
                if let ServerMatch::Group(group) = &matcher {
                    if !groups.contains(&group.as_str()) {
                        let message = format!("no server is in group `{group}`");
                        errors.push(ConfigError::new(format!("{at}.servers[{i}]"), message));
                    }
                }
                if server.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{at}.servers[{i}]"),
                        "must not be empty",
                    ));
                }
                servers.push(matcher);
            }
            let mut allow = Vec::new();
            for (i, rule) in rule.allow.iter().enumerate() {
                if rule.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{at}.allow[{i}]"),
                        "must not be empty",
                    ));
                }
                allow.push(PolicyRule::parse(rule));
            }
            grants.push(Grant { servers, allow });
        }
        roles.push(Role {
            name: name.clone(),
            grants,
        });
    }
    let rbac = Rbac {
        enabled: section.enabled,
        roles,
        default_roles: section.default_roles.clone(),
    };
    check_role_names(
        &format!("{path}.defaultRoles"),
        &section.default_roles,
        &rbac,
        errors,
    );
    rbac
}

fn check_headers(section: &HeadersSection, errors: &mut Vec<ConfigError>) -> SecurityHeaders {
    let path = "security.headers";
    let named = [
        (
            "strictTransportSecurity",
            "Strict-Transport-Security",
            &section.strict_transport_security,
        ),
        (
            "xContentTypeOptions",
            "X-Content-Type-Options",
            &section.x_content_type_options,
        ),
        ("xFrameOptions", "X-Frame-Options", &section.x_frame_options),
        (
            "xXssProtection",
            "X-XSS-Protection",
            &section.x_xss_protection,
        ),
        (
            "contentSecurityPolicy",
            "Content-Security-Policy",
            &section.content_security_policy,
        ),
        (
            "referrerPolicy",
            "Referrer-Policy",
            &section.referrer_policy,
        ),
    ];
    let mut lines = Vec::new();
    let mut hsts = None;
    for (key, header, value) in named {
        if breaks_header_line(value) || value.chars().any(|c| !(' '..='~').contains(&c)) {
            errors.push(
                ConfigError::new(format!("{path}.{key}"), "not a valid header value")
                    .with_allowed("printable ASCII"),
            );
            continue;
        }
        if value.trim().is_empty() || !section.enabled {
            continue;
        }
        let line = format!("{header}: {}", value.trim());
        if header == "Strict-Transport-Security" {
            hsts = Some(line);
        } else {
            lines.push(line);
        }
    }
    SecurityHeaders {
        lines,
        hsts,
        upstream: section.enabled && section.upstream,
    }
}
