//! The JSON Web Key Sets the gateway fetches: each OAuth issuer's `jwksUrl` and the `jwt`
//! method's (HTTPS, or HTTP on loopback; HMAC keys in them dropped), fetched when a config
//! is loaded, and key sources refreshed when a
//! token names a `kid` nobody knows (an issuer's URL again, or the `jwt` method's
//! `jwksFile` read again), at most once a minute per source.
//!
//! Fetches block (`ureq`), so they run on the thread that loads a config and on this
//! module's refresh thread, never on a shard or in the management shard's loop, which only
//! sends a request down a channel and takes the answer at a later tick.
//!
//! Owns: fetching and merging key sets, the refresh thread and its rate limit. Must not:
//! verify tokens (the shards do) or change anything but key sets in a config.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use mcp_gateway_config::GatewayConfig;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set accepted.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// A source is fetched again at most this often.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Fetches one key set; over https, trusting `ca_certs` (DER) instead of the Mozilla roots
/// when given.
pub fn fetch(url: &str, ca_certs: Option<&[Vec<u8>]>) -> Result<JwkSet, String> {
    let mut config = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT));
    if let Some(certs) = ca_certs {
        let roots: Vec<ureq::tls::Certificate<'static>> = certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        config = config.tls_config(tls);
    }
    let agent: ureq::Agent = config.build().into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let mut set = mcp_gateway_config::parse_jwks(&text)?;
    // A published key set holds no secrets: an HMAC key in it is one anyone can read.
    set.keys
        .retain(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)));
    Ok(set)
}

fn read_file(file: &str) -> Result<JwkSet, String> {
    std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| mcp_gateway_config::parse_jwks(&t))
}

/// `base` with the keys of `more` whose `kid` it lacks.
fn merged(base: Option<&JwkSet>, more: JwkSet) -> JwkSet {
    let mut set = base.cloned().unwrap_or(JwkSet { keys: Vec::new() });
    for key in more.keys {
        if !set
            .keys
            .iter()
            .any(|k| k.common.key_id.is_some() && k.common.key_id == key.common.key_id)
        {
            set.keys.push(key);
        }
    }
    set
}

/// Fetches every issuer's `jwksUrl` into `config` (beside its `jwksFile` keys). A failed
/// fetch is a warning, not an error: that issuer's tokens are refused until a refresh
/// succeeds, and the rest of the config applies.
pub fn fill(config: &mut GatewayConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(jwt) = config.security.auth.jwt.as_mut() {
        if let Some(url) = jwt.jwks_url.clone() {
            match fetch(&url, None) {
                Ok(set) => jwt.jwks = Some(merged(jwt.jwks.as_ref(), set)),
                Err(e) => warnings.push(format!(
                    "cannot fetch the JWT keys from {url}: {e}; tokens signed with them are refused until a fetch succeeds"
                )),
            }
        }
    }
    let Some(oauth) = config.security.auth.oauth2.as_mut() else {
        return warnings;
    };
    for issuer in &mut oauth.issuers {
        let Some(url) = issuer.jwks_url.clone() else {
            continue;
        };
        match fetch(&url, issuer.ca_certs.as_deref()) {
            Ok(set) => issuer.jwks = Some(merged(issuer.jwks.as_ref(), set)),
            Err(e) => warnings.push(format!(
                "cannot fetch the keys of issuer {} from {url}: {e}; its tokens are refused until a fetch succeeds",
                issuer.issuer
            )),
        }
    }
    warnings
}

/// The key sources of `config` named by `bits` (see `auth::key_source_bit`), fetched or
/// read again; `None` when nothing changed or nothing could be read.
fn refreshed(config: &GatewayConfig, bits: u64) -> Option<GatewayConfig> {
    let mut next = config.clone();
    let mut changed = false;
    if bits & 1 != 0 {
        if let Some(jwt) = next.security.auth.jwt.as_mut() {
            // The file read again and the URL fetched again: a key dropped from both goes.
            let file = jwt.jwks_file.as_ref().and_then(|file| {
                read_file(file)
                    .map_err(|e| tracing::warn!(file = %file, error = %e, "cannot read the JWKS file again"))
                    .ok()
            });
            let fetched = jwt.jwks_url.as_ref().and_then(|url| {
                fetch(url, None)
                    .map_err(
                        |e| tracing::warn!(url = %url, error = %e, "cannot fetch the JWT keys"),
                    )
                    .ok()
            });
            let set = match (file, fetched) {
                (Some(file), Some(more)) => Some(merged(Some(&file), more)),
                (one, other) => one.or(other),
            };
            if set.is_some() && set.as_ref() != jwt.jwks.as_ref() {
                jwt.jwks = set;
                changed = true;
            }
        }
    }
    if let Some(oauth) = next.security.auth.oauth2.as_mut() {
        for (i, issuer) in oauth.issuers.iter_mut().enumerate() {
            if bits & (1 << (1 + i.min(62))) == 0 {
                continue;
            }
            let Some(url) = issuer.jwks_url.clone() else {
                continue;
            };
            // The file's keys (read again) and the URL's: a key the issuer dropped goes.
            let file = issuer.jwks_file.as_deref().and_then(|f| read_file(f).ok());
            match fetch(&url, issuer.ca_certs.as_deref()) {
                Ok(set) => {
                    let set = merged(file.as_ref(), set);
                    if Some(&set) != issuer.jwks.as_ref() {
                        issuer.jwks = Some(set);
                        changed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.issuer, url = %url, error = %e, "cannot fetch the issuer's keys")
                }
            }
        }
    }
    changed.then_some(next)
}

/// A refresh asked for: the sources of this generation's config.
pub struct Ask {
    pub generation: u64,
    pub config: Arc<GatewayConfig>,
    pub sources: u64,
}

/// A refresh done: the config with the new key sets.
pub struct Refreshed {
    pub generation: u64,
    pub config: GatewayConfig,
}

/// The management shard's end of the refresh thread, and the rate limit per source.
pub struct Refresher {
    asks: Sender<Ask>,
    pub done: Receiver<Refreshed>,
    /// Per source bit: when it was last asked for.
    last: [Option<Instant>; 64],
}

impl Refresher {
    /// Starts the refresh thread.
    pub fn spawn() -> std::io::Result<Refresher> {
        let (asks, asked) = crossbeam_channel::bounded::<Ask>(4);
        let (tell, done) = crossbeam_channel::bounded::<Refreshed>(4);
        std::thread::Builder::new()
            .name("key-refresh".into())
            .spawn(move || {
                for ask in asked {
                    tracing::info!(
                        sources = ask.sources,
                        "refreshing keys: a token named an unknown kid"
                    );
                    if let Some(config) = refreshed(&ask.config, ask.sources) {
                        let _ = tell.send(Refreshed {
                            generation: ask.generation,
                            config,
                        });
                    }
                }
            })?;
        Ok(Refresher {
            asks,
            done,
            last: [None; 64],
        })
    }

    /// Asks for the sources in `misses` not asked for within `REFRESH_INTERVAL`.
    pub fn ask(&mut self, misses: u64, generation: u64, config: &Arc<GatewayConfig>) {
        let mut sources = 0u64;
        for bit in 0..64 {
            if misses & (1 << bit) == 0 {
                continue;
            }
            let last = &mut self.last[bit];
            if last.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL) {
                *last = Some(Instant::now());
                sources |= 1 << bit;
            }
        }
        if sources != 0 {
            let ask = Ask {
                generation,
                config: config.clone(),
                sources,
            };
            if self.asks.try_send(ask).is_err() {
                tracing::debug!("the key refresh thread is busy");
            }
        }
    }
}
