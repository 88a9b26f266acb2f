//! `security.authentication.oauth2`: the issuers whose tokens the gateway accepts, the
//! endpoints shards call (resolved here, on the loading thread), and the resource.
//!
//! Owns: those checks and the https-or-loopback rule. Must not: fetch anything.

use super::jwt::{claim_names, read_jwks};
use super::millis;
use crate::error::ConfigError;
use crate::runtime_security::{OAuth2Settings, OAuthIssuer, Outbound};
use crate::user::{JwtSection, OAuth2Section};
use crate::validate::in_range;

use super::AUTH;

pub(super) fn check_oauth2(
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
        let ca_certs = entry
            .ca_file
            .as_ref()
            .and_then(|file| read_ca(&format!("{at}.caFile"), file, errors));
        issuers.push(OAuthIssuer {
            issuer: entry.issuer.clone(),
            jwks_url: entry.jwks_url.clone(),
            jwks_file: entry.jwks_file.clone(),
            jwks,
            introspection_url: entry.introspection_url.clone(),
            introspection,
            ca_certs,
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

/// The certificates of a PEM CA file, as DER.
fn read_ca(path: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let pem = match std::fs::read(file) {
        Ok(pem) => pem,
        Err(e) => {
            errors.push(ConfigError::new(path, format!("cannot read `{file}`: {e}")));
            return None;
        }
    };
    let certs: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Some(certs),
        _ => {
            errors.push(
                ConfigError::new(path, format!("`{file}` holds no PEM certificate"))
                    .with_allowed("one or more -----BEGIN CERTIFICATE----- blocks"),
            );
            None
        }
    }
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
pub(super) fn check_https(path: &str, url: &str, errors: &mut Vec<ConfigError>) {
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
