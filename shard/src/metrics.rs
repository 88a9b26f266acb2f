//! A shard's own metrics: plain counters and an HDR histogram, no atomics, handed upward as
//! a delta at every tick and reset.
//!
//! Owns: what is counted per request and the delta message. Must not: merge across shards
//! or render anything (the management shard does both).

use crate::error::ErrorKind;
use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, 1 us to 10 minutes, 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram always accepts (low >= 1, high >= 2 * low, sigfig <= 5);
    // the unit test below builds one.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounters {
    pub requests: u64,
    pub errors: u64,
    pub status_5xx: u64,
    pub latency_us_sum: u64,
}

/// Process-wide counters: what a shard counted since its last tick, and (merged) the
/// management shard's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests whose head was parsed (local pages and proxied ones).
    pub requests: u64,
    pub proxied: u64,
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub status_classes: [u64; 6],
    pub errors: [u64; ErrorKind::ALL.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Connections closed at accept, by `admission::Refused` reason.
    pub connections_refused: [u64; crate::admission::Refused::ALL.len()],
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_retries: u64,
    /// Proxied requests whose client left before the response was complete (nginx's 499).
    pub client_aborts: u64,
    /// Connections ended by a panic in the gateway's code (a bug; the shard goes on).
    pub panics: u64,
    /// Pages served that do not wait for a merge (`/health`, `/info`), plus one per tick
    /// while a read waits for one: when non-zero the management shard renders at its next
    /// tick.
    pub pages_wanted: u64,
    /// MCP requests by method (from `Mcp-Method`, or from a body the gateway had to read),
    /// in the order of `mcp::stateless::METHODS`, then `other`.
    pub mcp_methods: [u64; MCP_METHOD_SLOTS],
    /// Authentication outcomes: by method (`auth::method_row`), by result
    /// (`auth::result_column`).
    pub auth: [[u64; AUTH_RESULT_COLUMNS]; AUTH_METHOD_ROWS],
}

use crate::auth::{AUTH_METHOD_ROWS, AUTH_RESULT_COLUMNS};

/// One slot per named method plus `other`.
pub const MCP_METHOD_SLOTS: usize = crate::mcp::stateless::METHODS.len() + 1;

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.proxied += o.proxied;
        for (t, v) in self.status_classes.iter_mut().zip(o.status_classes) {
            *t += v;
        }
        for (t, v) in self.errors.iter_mut().zip(o.errors) {
            *t += v;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.connections_opened += o.connections_opened;
        self.connections_closed += o.connections_closed;
        for (t, v) in self
            .connections_refused
            .iter_mut()
            .zip(o.connections_refused)
        {
            *t += v;
        }
        self.upstream_connects += o.upstream_connects;
        self.upstream_reuses += o.upstream_reuses;
        self.upstream_retries += o.upstream_retries;
        self.client_aborts += o.client_aborts;
        self.panics += o.panics;
        self.pages_wanted += o.pages_wanted;
        for (t, v) in self.mcp_methods.iter_mut().zip(o.mcp_methods) {
            *t += v;
        }
        for (row, other) in self.auth.iter_mut().zip(&o.auth) {
            for (t, v) in row.iter_mut().zip(other) {
                *t += v;
            }
        }
    }
}

/// What a shard counted since its last tick.
#[derive(Debug, Clone)]
pub struct MetricsDelta {
    pub shard: usize,
    /// The config generation the shard runs on.
    pub generation: u64,
    pub counts: Counters,
    /// Only upstreams that saw traffic, as (slot, counters).
    pub upstreams: Vec<(u32, UpstreamCounters)>,
    /// Gauges of the slots whose values changed since the last delta.
    pub gauges: Vec<SlotGauge>,
    pub latency_us: Histogram<u64>,
    /// Key sources whose JWKS lacked a token's `kid` (`auth::key_source_bit`).
    pub key_misses: u64,
}

/// What one shard has going on with one upstream slot right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotGauge {
    pub slot: u32,
    /// Requests proxied to it and not yet ended.
    pub in_flight: u32,
    /// Connections open to it (busy and idle).
    pub open: u32,
}

impl MetricsDelta {
    pub fn new(shard: usize) -> Self {
        Self {
            shard,
            generation: 0,
            counts: Counters::default(),
            upstreams: Vec::new(),
            gauges: Vec::new(),
            latency_us: new_latency_histogram(),
            key_misses: 0,
        }
    }
}

/// The shard-local accumulator.
pub struct ShardMetrics {
    delta: MetricsDelta,
    per_upstream: Vec<UpstreamCounters>,
    touched: Vec<u32>,
    /// Per slot: requests in flight now.
    in_flight: Vec<u32>,
    /// Per slot: the (in flight, open) last sent up.
    reported: Vec<(u32, u32)>,
}

impl ShardMetrics {
    pub fn new(shard: usize, upstreams: usize) -> Self {
        Self {
            delta: MetricsDelta::new(shard),
            per_upstream: vec![UpstreamCounters::default(); upstreams],
            touched: Vec::new(),
            in_flight: vec![0; upstreams],
            reported: vec![(0, 0); upstreams],
        }
    }

    /// A new config generation has `slots` upstream slots (never fewer than before).
    pub fn fit(&mut self, slots: usize) {
        if slots > self.per_upstream.len() {
            self.per_upstream.resize(slots, UpstreamCounters::default());
            self.in_flight.resize(slots, 0);
            self.reported.resize(slots, (0, 0));
        }
    }

    /// A request to `slot` started (`true`) or ended (`false`).
    pub fn upstream_in_flight(&mut self, slot: usize, started: bool) {
        if let Some(n) = self.in_flight.get_mut(slot) {
            *n = if started {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }

    /// Adds to the next delta the gauges that changed; `open(slot)` counts its connections.
    pub fn gauges(&mut self, open: impl Fn(usize) -> usize) {
        for (slot, (reported, in_flight)) in
            self.reported.iter_mut().zip(&self.in_flight).enumerate()
        {
            let now = (*in_flight, u32::try_from(open(slot)).unwrap_or(u32::MAX));
            if now != *reported {
                *reported = now;
                self.delta.gauges.push(SlotGauge {
                    slot: slot as u32,
                    in_flight: now.0,
                    open: now.1,
                });
            }
        }
    }

    pub fn request_started(&mut self) {
        self.delta.counts.requests += 1;
    }

    pub fn response(&mut self, status: u16, latency_us: u64, bytes_in: u64, bytes_out: u64) {
        let class = usize::from(status / 100).min(5);
        self.delta.counts.status_classes[class] += 1;
        self.delta.counts.bytes_in += bytes_in;
        self.delta.counts.bytes_out += bytes_out;
        let _ = self.delta.latency_us.record(latency_us.max(1));
    }

    /// One authentication outcome (see `Counters::auth`).
    pub fn auth(&mut self, row: usize, column: usize) {
        if let Some(count) = self
            .delta
            .counts
            .auth
            .get_mut(row)
            .and_then(|r| r.get_mut(column))
        {
            *count += 1;
        }
    }

    pub fn error(&mut self, kind: ErrorKind) {
        self.delta.counts.errors[kind.index()] += 1;
    }

    pub fn upstream(&mut self, index: usize, status: u16, latency_us: u64, failed: bool) {
        self.delta.counts.proxied += 1;
        self.upstream_only(index, status, latency_us, failed);
    }

    /// A failed attempt at `index` that another replica takes over: the upstream's errors
    /// count it, the proxied requests count the request once, at its end.
    pub fn upstream_attempt_failed(&mut self, index: usize, status: u16, latency_us: u64) {
        self.upstream_only(index, status, latency_us, true);
    }

    fn upstream_only(&mut self, index: usize, status: u16, latency_us: u64, failed: bool) {
        let Some(c) = self.per_upstream.get_mut(index) else {
            return;
        };
        if *c == UpstreamCounters::default() {
            self.touched.push(index as u32);
        }
        c.requests += 1;
        c.latency_us_sum += latency_us;
        if failed {
            c.errors += 1;
        }
        if status >= 500 {
            c.status_5xx += 1;
        }
    }

    pub fn connection_opened(&mut self) {
        self.delta.counts.connections_opened += 1;
    }

    pub fn connection_refused(&mut self, why: crate::admission::Refused) {
        self.delta.counts.connections_refused[why.index()] += 1;
    }

    pub fn connection_closed(&mut self) {
        self.delta.counts.connections_closed += 1;
    }

    pub fn upstream_connect(&mut self, reused: bool) {
        if reused {
            self.delta.counts.upstream_reuses += 1;
        } else {
            self.delta.counts.upstream_connects += 1;
        }
    }

    /// An MCP request whose method is known, by its `mcp::stateless::method_index` slot.
    pub fn mcp_method(&mut self, slot: usize) {
        if let Some(count) = self.delta.counts.mcp_methods.get_mut(slot) {
            *count += 1;
        }
    }

    pub fn page_wanted(&mut self) {
        self.delta.counts.pages_wanted += 1;
    }

    pub fn upstream_retry(&mut self) {
        self.delta.counts.upstream_retries += 1;
    }

    pub fn client_abort(&mut self) {
        self.delta.counts.client_aborts += 1;
    }

    pub fn panicked(&mut self) {
        self.delta.counts.panics += 1;
    }

    /// Takes everything counted since the last call and starts afresh.
    pub fn take_delta(&mut self) -> MetricsDelta {
        let shard = self.delta.shard;
        let mut delta = std::mem::replace(&mut self.delta, MetricsDelta::new(shard));
        delta.upstreams = self
            .touched
            .drain(..)
            .filter_map(|i| {
                let c = self.per_upstream.get_mut(i as usize)?;
                Some((i, std::mem::take(c)))
            })
            .collect();
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_is_sparse_and_resets() {
        let mut m = ShardMetrics::new(0, 1000);
        m.request_started();
        m.response(200, 150, 10, 20);
        m.upstream(7, 200, 150, false);
        m.upstream(7, 502, 50, true);
        let d = m.take_delta();
        assert_eq!(d.counts.requests, 1);
        assert_eq!(d.counts.proxied, 2);
        assert_eq!(d.counts.status_classes[2], 1);
        assert_eq!(
            d.upstreams,
            vec![(
                7,
                UpstreamCounters {
                    requests: 2,
                    errors: 1,
                    status_5xx: 1,
                    latency_us_sum: 200
                }
            )]
        );
        assert_eq!(d.latency_us.len(), 1);
        let d = m.take_delta();
        assert_eq!(d.counts.requests, 0);
        assert!(d.upstreams.is_empty());
    }
}
