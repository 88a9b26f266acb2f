//! Stateless session affinity: the `Mcp-Session-Id` a client sees is a token that carries,
//! authenticated and encrypted (ChaCha20-Poly1305, ring), which replica issued the session and the
//! upstream's own session id. Any shard of any gateway process holding the same secret can
//! open it: no shared store.
//!
//! Token: base64url(nonce[12] || seal(version[1] || expires[4] || replica[8] || session)).
//! The key is derived once from `sessions.secret` with HKDF-SHA256. Nonces are a per-codec
//! random prefix plus a counter, so they never repeat within a codec, and two codecs (shards,
//! processes) collide only if their 64-bit random prefixes do.
//!
//! Owns: sealing and opening tokens. Must not: do I/O, or decide HTTP statuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};
use thiserror::Error;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + 4 + 8;
/// Binds tokens to their purpose: a token sealed for anything else will not open.
const AAD: &[u8] = b"mcp-gateway session v1";
/// The purpose of legacy SSE message-endpoint tokens (`/sse/{id}/message?t=...`): they carry
/// the upstream's endpoint path instead of a session id, and never open as session tokens.
const ENDPOINT_AAD: &[u8] = b"mcp-gateway sse endpoint v1";
/// The purpose of `loadBalancer.sticky` cookies: an upstream only, never a session.
const STICKY_AAD: &[u8] = b"mcp-gateway sticky v1";
/// Upstream session ids longer than this are refused (tokens stay well under 200 bytes
/// for ids up to 100 bytes; ids are usually UUIDs, 36 bytes).
pub const MAX_UPSTREAM_SESSION: usize = 256;
/// The longest raw (decoded) token: everything is sealed on the stack, no allocation.
const MAX_RAW: usize = NONCE_LEN + HEADER_LEN + MAX_UPSTREAM_SESSION + TAG_LEN;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    #[error("session token is not valid base64url or too short")]
    Malformed,
    #[error("session token failed authentication (forged, truncated or another secret)")]
    Forged,
    #[error("session token expired")]
    Expired,
    #[error("upstream session id too long to carry")]
    TooLong,
    #[error("the session's replica is no longer configured or is down")]
    Gone,
    #[error("the session was ended or revoked")]
    Revoked,
}

/// What an opened token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub replica: u64,
    pub upstream_session: Vec<u8>,
    pub expires_unix: u32,
}

/// A replica's identity inside tokens: stable across processes (derived from its id), so
/// config order does not matter.
pub fn replica_id(upstream_id: &str) -> u64 {
    let digest = Sha256::digest(upstream_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Seals and opens tokens; one per shard.
pub struct SessionCodec {
    /// `None` only if the AEAD refused the key, which a 32-byte ChaCha20 key never is:
    /// then every token fails to seal or open rather than the gateway panicking.
    cipher: Option<LessSafeKey>,
    ttl_secs: u32,
    nonce_prefix: [u8; 8],
    counter: u32,
}

impl SessionCodec {
    /// Derives the key from the secret (HKDF-SHA256) once.
    pub fn new(secret: &[u8], ttl_secs: u32) -> SessionCodec {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"mcp-gateway sessions"), secret);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(b"session-token-key v1", &mut key);
        let cipher = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .ok()
            .map(LessSafeKey::new);
        if cipher.is_none() {
            tracing::error!("session key rejected by the AEAD: session tokens will not work");
        }
        let mut codec = SessionCodec {
            cipher,
            ttl_secs: ttl_secs.max(1),
            nonce_prefix: [0; 8],
            counter: 0,
        };
        codec.reseed();
        codec
    }

    fn reseed(&mut self) {
        if getrandom::getrandom(&mut self.nonce_prefix).is_err() {
            // No OS randomness: mix time and address so prefixes still differ per codec.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let here = self as *const SessionCodec as u64;
            self.nonce_prefix =
                (t ^ here.rotate_left(32) ^ u64::from(std::process::id())).to_be_bytes();
        }
        self.counter = 0;
    }

    fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        if self.counter == u32::MAX {
            self.reseed();
        }
        self.counter += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.nonce_prefix);
        nonce[8..].copy_from_slice(&self.counter.to_be_bytes());
        nonce
    }

    /// The token for a session `replica` issued, valid for the TTL from `now_unix`.
    pub fn seal(
        &mut self,
        replica: u64,
        upstream_session: &[u8],
        now_unix: u64,
    ) -> Result<String, TokenError> {
        self.seal_for(AAD, replica, upstream_session, now_unix)
    }

    /// Opens a token a client sent back.
    pub fn open(&self, token: &[u8], now_unix: u64) -> Result<Opened, TokenError> {
        self.open_for(AAD, token, now_unix)
    }

    /// A legacy SSE message-endpoint token: `replica` and its endpoint path and query.
    pub fn seal_endpoint(
        &mut self,
        replica: u64,
        endpoint: &[u8],
        now_unix: u64,
    ) -> Result<String, TokenError> {
        self.seal_for(ENDPOINT_AAD, replica, endpoint, now_unix)
    }

    /// Opens a message-endpoint token (`upstream_session` is the endpoint path and query).
    pub fn open_endpoint(&self, token: &[u8], now_unix: u64) -> Result<Opened, TokenError> {
        self.open_for(ENDPOINT_AAD, token, now_unix)
    }

    /// A `loadBalancer.sticky` cookie value naming `replica`.
    pub fn seal_sticky(&mut self, replica: u64, now_unix: u64) -> Result<String, TokenError> {
        self.seal_for(STICKY_AAD, replica, b"", now_unix)
    }

    /// The replica a sticky cookie names.
    pub fn open_sticky(&self, token: &[u8], now_unix: u64) -> Result<u64, TokenError> {
        self.open_for(STICKY_AAD, token, now_unix)
            .map(|o| o.replica)
    }

    fn seal_for(
        &mut self,
        aad: &'static [u8],
        replica: u64,
        upstream_session: &[u8],
        now_unix: u64,
    ) -> Result<String, TokenError> {
        if upstream_session.len() > MAX_UPSTREAM_SESSION {
            return Err(TokenError::TooLong);
        }
        let expires =
            u32::try_from(now_unix.saturating_add(u64::from(self.ttl_secs))).unwrap_or(u32::MAX);
        let nonce = self.next_nonce();
        let plain_len = HEADER_LEN + upstream_session.len();
        let mut raw = [0u8; MAX_RAW];
        raw[..NONCE_LEN].copy_from_slice(&nonce);
        let plain = &mut raw[NONCE_LEN..NONCE_LEN + plain_len];
        plain[0] = VERSION;
        plain[1..5].copy_from_slice(&expires.to_be_bytes());
        plain[5..13].copy_from_slice(&replica.to_be_bytes());
        plain[HEADER_LEN..].copy_from_slice(upstream_session);
        let cipher = self.cipher.as_ref().ok_or(TokenError::TooLong)?;
        let tag = cipher
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), plain)
            .map_err(|_| TokenError::TooLong)?;
        let tag = tag.as_ref();
        let end = NONCE_LEN + plain_len;
        raw[end..end + TAG_LEN].copy_from_slice(tag);
        Ok(URL_SAFE_NO_PAD.encode(&raw[..end + TAG_LEN]))
    }

    fn open_for(
        &self,
        aad: &'static [u8],
        token: &[u8],
        now_unix: u64,
    ) -> Result<Opened, TokenError> {
        let mut raw = [0u8; MAX_RAW + 3];
        let len = URL_SAFE_NO_PAD
            .decode_slice(token, &mut raw)
            .map_err(|_| TokenError::Malformed)?;
        if !(NONCE_LEN + HEADER_LEN + TAG_LEN..=MAX_RAW).contains(&len) {
            return Err(TokenError::Malformed);
        }
        let (nonce, sealed) = raw[..len].split_at_mut(NONCE_LEN);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let cipher = self.cipher.as_ref().ok_or(TokenError::Forged)?;
        let plain = cipher
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                sealed,
            )
            .map_err(|_| TokenError::Forged)?;
        if plain.len() < HEADER_LEN || plain[0] != VERSION {
            return Err(TokenError::Forged);
        }
        let mut expires = [0u8; 4];
        expires.copy_from_slice(&plain[1..5]);
        let expires_unix = u32::from_be_bytes(expires);
        if u64::from(expires_unix) < now_unix {
            return Err(TokenError::Expired);
        }
        let mut replica = [0u8; 8];
        replica.copy_from_slice(&plain[5..13]);
        Ok(Opened {
            replica: u64::from_be_bytes(replica),
            upstream_session: plain[HEADER_LEN..].to_vec(),
            expires_unix,
        })
    }
}

/// A random secret for a gateway started without `sessions.secret`.
pub fn generated_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    if getrandom::getrandom(&mut secret).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        secret = Sha256::digest(format!("{t}-{}", std::process::id())).to_vec();
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn round_trip_across_codecs_with_the_same_secret() {
        let mut a = SessionCodec::new(b"0123456789abcdef-shared", 3600);
        let b = SessionCodec::new(b"0123456789abcdef-shared", 3600);
        let replica = replica_id("mcp-server-2");
        let token = a
            .seal(replica, b"8f6c1d6e-0b7a-4c55-9a3e-2d1f0c9b8a77", NOW)
            .unwrap();
        assert!(token.len() < 200, "token is {} bytes", token.len());
        let opened = b.open(token.as_bytes(), NOW + 10).unwrap();
        assert_eq!(opened.replica, replica);
        assert_eq!(
            opened.upstream_session,
            b"8f6c1d6e-0b7a-4c55-9a3e-2d1f0c9b8a77"
        );
    }

    #[test]
    fn forged_truncated_expired_and_foreign_tokens_fail() {
        let mut a = SessionCodec::new(b"0123456789abcdef-one", 60);
        let other = SessionCodec::new(b"0123456789abcdef-two", 60);
        let token = a.seal(7, b"abc", NOW).unwrap();
        assert_eq!(other.open(token.as_bytes(), NOW), Err(TokenError::Forged));
        assert_eq!(
            a.open(&token.as_bytes()[..token.len() - 3], NOW),
            Err(TokenError::Forged)
        );
        let mut flipped = token.clone().into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(&flipped, NOW), Err(TokenError::Forged));
        assert_eq!(a.open(token.as_bytes(), NOW + 61), Err(TokenError::Expired));
        assert_eq!(a.open(b"not a token!", NOW), Err(TokenError::Malformed));
        assert_eq!(a.open(b"", NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn endpoint_and_session_tokens_do_not_open_as_each_other() {
        let mut a = SessionCodec::new(b"0123456789abcdef", 60);
        let endpoint = a
            .seal_endpoint(9, b"/messages/?session_id=ab", NOW)
            .unwrap();
        let session = a.seal(9, b"ab", NOW).unwrap();
        assert_eq!(
            a.open_endpoint(endpoint.as_bytes(), NOW)
                .unwrap()
                .upstream_session,
            b"/messages/?session_id=ab"
        );
        assert_eq!(a.open(endpoint.as_bytes(), NOW), Err(TokenError::Forged));
        assert_eq!(
            a.open_endpoint(session.as_bytes(), NOW),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn nonces_never_repeat_within_a_codec() {
        let mut a = SessionCodec::new(b"0123456789abcdef", 60);
        let t1 = a.seal(1, b"same", NOW).unwrap();
        let t2 = a.seal(1, b"same", NOW).unwrap();
        assert_ne!(t1, t2);
        assert_ne!(replica_id("a"), replica_id("b"));
    }
}
