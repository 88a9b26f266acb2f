//! What travels between shards and the management shard, over `crossbeam` channels at a
//! tick, never per request.
//!
//! Owns: the message types. Upward: [`MetricsDelta`](crate::metrics::MetricsDelta).
//! Downward: [`ShardCommand`]. Must not: carry anything a receiver would need to lock.

use crate::router::LocalPage;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// A pre-rendered page body the shards serve as is.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// The gateway's own pages as last merged by the management shard.
#[derive(Debug, Clone)]
pub struct Pages {
    /// When the management shard began its last merge before this render: every delta a
    /// shard sent up before this instant is counted in these pages.
    pub merged_at: Instant,
    pages: Vec<Page>,
}

impl Pages {
    /// `render` gives each page's content; called at a management tick when pages are read.
    pub fn render(merged_at: Instant, mut render: impl FnMut(LocalPage) -> Page) -> Pages {
        Pages {
            merged_at,
            pages: LocalPage::ALL.iter().map(|p| render(*p)).collect(),
        }
    }

    pub fn get(&self, page: LocalPage) -> Option<&Page> {
        self.pages.get(page as usize)
    }
}

/// Health of every upstream, by slot (true: may receive traffic).
pub type HealthMap = Arc<Vec<bool>>;

/// Sent from the management shard down to each shard.
#[derive(Debug, Clone)]
pub enum ShardCommand {
    /// A new config generation: swapped in at the shard's next tick, between requests.
    Config(Arc<crate::snapshot::ConfigUpdate>),
    Pages(Arc<Pages>),
    Health(HealthMap),
    /// Per upstream: whether it speaks the stateless 2026-07-28 revision, as probed with
    /// `server/discover` (`None`: not probed or no clear answer).
    Revisions(Arc<Vec<Option<bool>>>),
    /// A session revoked through the admin API (`sessions.store: "redis"`).
    Revoke(crate::store::SessionKey),
    /// Shutting down: stop accepting, finish the requests in flight, then stop.
    Drain,
}
