//! `loadBalancer.sticky`: cookie-based stickiness for plain HTTP routes (the default group).
//! The first response names its upstream in a cookie sealed like MCP session tokens (AEAD,
//! so clients can neither read nor forge it, and every shard and gateway process with the
//! same secret honours it); later requests carrying it go to the same upstream while it is
//! healthy.
//!
//! Owns: the cookie's name, format and the choice it implies. Must not: write responses
//! (the upstream exchange adds the `Set-Cookie` line).

use crate::http::request::RequestHead;
use crate::snapshot::Snapshot;
use crate::state::Shard;

/// The cookie's name.
pub const COOKIE: &str = "mcpgw_sticky";

/// Where a default-group request goes, and the `Set-Cookie` value to send when the client
/// did not already carry a valid cookie for that upstream.
pub struct StickyPick {
    pub upstream: usize,
    pub set_cookie: Option<String>,
}

/// Picks an upstream of the default group, honouring the client's cookie when `sticky`.
pub fn pick_default(
    head: &RequestHead<'_, '_>,
    shard: &Shard,
    snap: &Snapshot,
) -> Option<StickyPick> {
    if !snap.config.load_balancer.sticky {
        let upstream = shard.pick_default()?;
        return Some(StickyPick {
            upstream,
            set_cookie: None,
        });
    }
    let now = unix_now();
    let remembered = cookie_value(head)
        .and_then(|token| shard.sessions.borrow().open_sticky(token, now).ok())
        .and_then(|replica| snap.routes.replica(replica))
        .filter(|&i| {
            snap.config.upstreams[i].group.is_none() && shard.takes_new(i) && !shard.avoided(i)
        });
    if let Some(upstream) = remembered {
        return Some(StickyPick {
            upstream,
            set_cookie: None,
        });
    }
    let upstream = shard.pick_default()?;
    let replica = snap.routes.replica_ids[upstream];
    let token = shard.sessions.borrow_mut().seal_sticky(replica, now).ok()?;
    let max_age = snap.config.sessions.ttl.as_secs();
    Some(StickyPick {
        upstream,
        set_cookie: Some(format!(
            "{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        )),
    })
}

/// The value of our cookie in the request's `Cookie` header(s), if any.
fn cookie_value<'b>(head: &RequestHead<'_, 'b>) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = crate::http::trim_ascii(pair);
            pair.strip_prefix(COOKIE.as_bytes())?.strip_prefix(b"=")
        })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
