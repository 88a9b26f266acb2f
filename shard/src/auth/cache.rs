//! The per-shard cache of verified tokens: a client reusing its token costs a hash and a
//! lookup, not a signature check.
//!
//! Keyed by the SHA-256 of the token, so no token is kept in memory; bounded by
//! `security.authentication.tokenCacheSize` entries, oldest out first; an entry is used
//! only while its token is valid (`exp`, `nbf`, with the leeway). A shard's cache belongs to
//! one config generation: a reload (new keys, a key removed) starts an empty one.
//!
//! Owns: that map and its bound. Must not: verify anything, or be shared between shards.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::principal::Principal;

pub type TokenDigest = [u8; 32];

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenDigest, Rc<Principal>>,
    /// Insertion order, for eviction.
    order: VecDeque<TokenDigest>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The principal of a token verified before, while it is still valid at `now_ms`
    /// (`leeway_ms` allowed on both ends, as when it was verified).
    pub fn get(
        &mut self,
        digest: &TokenDigest,
        now_ms: u64,
        leeway_ms: u64,
    ) -> Option<Rc<Principal>> {
        let principal = self.entries.get(digest)?;
        let expired = principal
            .expires_ms
            .is_some_and(|exp| now_ms > exp.saturating_add(leeway_ms));
        let early = principal
            .not_before_ms
            .is_some_and(|nbf| now_ms.saturating_add(leeway_ms) < nbf);
        if expired {
            self.entries.remove(digest);
            return None;
        }
        (!early).then(|| principal.clone())
    }

    /// The method that verified a cached token, if it is cached.
    pub fn peek_method(&self, digest: &TokenDigest) -> Option<mcp_gateway_config::AuthMethod> {
        self.entries.get(digest).map(|p| p.method)
    }

    pub fn insert(&mut self, digest: TokenDigest, principal: Rc<Principal>) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        if self.entries.insert(digest, principal).is_none() {
            self.order.push_back(digest);
        }
        // Entries removed on expiry leave their place in `order`; keep it bounded too.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|d| entries.contains_key(d));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        cache.insert([1; 32], principal(Some(10_000)));
        cache.insert([2; 32], principal(None));
        cache.insert([3; 32], principal(None));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32], 0, 0).is_none(), "oldest evicted");
        cache.insert([4; 32], principal(Some(10_000)));
        assert!(
            cache.get(&[4; 32], 10_500, 1_000).is_some(),
            "within leeway"
        );
        assert!(cache.get(&[4; 32], 11_001, 1_000).is_none(), "expired");
        assert!(cache.get(&[4; 32], 0, 0).is_none(), "gone once expired");
        let mut none = TokenCache::new(0);
        none.insert([5; 32], principal(None));
        assert!(none.is_empty());
    }
}
