//! The per-shard cache of verified tokens: a client reusing its token costs a short hash
//! and a lookup, not a signature check.
//!
//! Found by a hash of the token's last 32 bytes (its signature, for a JWT) under a
//! random key, then the whole token compared: SipHash over all of a token, or a SHA-256 of
//! it, cost more than the rest of the request's gateway work (measured with callgrind:
//! SHA-256 +78% instructions per request, SipHash of the whole token +4%). The random key
//! means no client can aim a token at another's slot. Bounded by
//! `security.authentication.tokenCacheSize` entries, oldest out first; an entry is used
//! only while its token is valid (`exp`, `nbf`, with the leeway). A shard's cache belongs to
//! one config generation: a reload (new keys, a key removed) starts an empty one.
//!
//! Owns: that map and its bound. Must not: verify anything, or be shared between shards.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::principal::Principal;

/// How many bytes of a token's end are hashed.
const HASHED_TAIL: usize = 32;

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Slots = HashMap<u64, Vec<(Rc<[u8]>, Rc<Principal>)>, BuildHasherDefault<Prehashed>>;

pub struct TokenCache {
    capacity: usize,
    keyed: RandomState,
    slots: Slots,
    len: usize,
    /// Insertion order, for eviction.
    order: VecDeque<Rc<[u8]>>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            keyed: RandomState::new(),
            slots: Slots::default(),
            len: 0,
            order: VecDeque::new(),
        }
    }

    fn slot_of(&self, token: &[u8]) -> u64 {
        let bytes = token;
        let tail = &bytes[bytes.len().saturating_sub(HASHED_TAIL)..];
        let mut hasher = self.keyed.build_hasher();
        hasher.write(tail);
        hasher.write_usize(bytes.len());
        hasher.finish()
    }

    fn find(&self, token: &[u8]) -> Option<&Rc<Principal>> {
        let slot = self.slots.get(&self.slot_of(token))?;
        slot.iter().find(|(t, _)| &**t == token).map(|(_, p)| p)
    }

    /// The principal of a token verified before, while it is still valid at `now_ms`
    /// (`leeway_ms` allowed on both ends, as when it was verified).
    pub fn get(&mut self, token: &[u8], now_ms: u64, leeway_ms: u64) -> Option<Rc<Principal>> {
        let principal = self.find(token)?;
        let expired = principal
            .expires_ms
            .is_some_and(|exp| now_ms > exp.saturating_add(leeway_ms));
        let early = principal
            .not_before_ms
            .is_some_and(|nbf| now_ms.saturating_add(leeway_ms) < nbf);
        if expired {
            self.remove(token);
            return None;
        }
        (!early).then(|| principal.clone())
    }

    /// The method that verified a cached token, if it is cached.
    pub fn peek_method(&self, token: &[u8]) -> Option<mcp_gateway_config::AuthMethod> {
        self.find(token).map(|p| p.method)
    }

    fn remove(&mut self, token: &[u8]) {
        let key = self.slot_of(token);
        if let Some(slot) = self.slots.get_mut(&key) {
            let before = slot.len();
            slot.retain(|(t, _)| &**t != token);
            self.len -= before - slot.len();
            if slot.is_empty() {
                self.slots.remove(&key);
            }
        }
    }

    pub fn insert(&mut self, token: &[u8], principal: Rc<Principal>) {
        if self.capacity == 0 {
            return;
        }
        self.remove(token);
        while self.len >= self.capacity {
            match self.order.pop_front() {
                Some(old) => self.remove(&old),
                None => break,
            }
        }
        let token: Rc<[u8]> = Rc::from(token);
        let key = self.slot_of(&token);
        self.slots
            .entry(key)
            .or_default()
            .push((token.clone(), principal));
        self.len += 1;
        self.order.push_back(token);
        // Entries removed on expiry leave their place in `order`; keep it bounded too.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let order = std::mem::take(&mut self.order);
            self.order = order
                .into_iter()
                .filter(|t| self.find(t).is_some())
                .collect();
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_gateway_config::AuthMethod;

    fn principal(exp: Option<u64>) -> Rc<Principal> {
        let mut p = Principal::new("s", AuthMethod::Jwt, vec![], vec![]);
        p.expires_ms = exp;
        Rc::new(p)
    }

    #[test]
    fn bounded_and_expiring() {
        let mut cache = TokenCache::new(2);
        cache.insert(b"t1", principal(Some(10_000)));
        cache.insert(b"t2", principal(None));
        cache.insert(b"t3", principal(None));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"t1", 0, 0).is_none(), "oldest evicted");
        cache.insert(b"t4", principal(Some(10_000)));
        assert!(cache.get(b"t4", 10_500, 1_000).is_some(), "within leeway");
        assert!(cache.get(b"t4", 11_001, 1_000).is_none(), "expired");
        assert!(cache.get(b"t4", 0, 0).is_none(), "gone once expired");
        let mut none = TokenCache::new(0);
        none.insert(b"t5", principal(None));
        assert!(none.is_empty());
    }

    #[test]
    fn tokens_with_the_same_end_are_told_apart() {
        let mut cache = TokenCache::new(8);
        let tail = "x".repeat(40);
        let (a, b) = (
            format!("a.{tail}").into_bytes(),
            format!("b.{tail}").into_bytes(),
        );
        cache.insert(&a, principal(None));
        assert!(cache.get(&b, 0, 0).is_none(), "same tail, other token");
        cache.insert(&b, principal(None));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a, 0, 0).is_some() && cache.get(&b, 0, 0).is_some());
        cache.insert(&a, principal(None));
        assert_eq!(cache.len(), 2, "inserting again replaces");
    }
}
