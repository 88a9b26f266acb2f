//! Merging the shards' metric deltas into process totals.
//!
//! Owns: the totals (counters, status classes, error kinds, per-upstream counts, the HDR
//! latency histogram). Must not: render (see `render`) or talk to shards.

use hdrhistogram::Histogram;
use mcp_gateway_shard::error::ErrorKind;
use mcp_gateway_shard::metrics::{new_latency_histogram, MetricsDelta, UpstreamCounters};

pub struct Totals {
    pub requests: u64,
    pub proxied: u64,
    pub status_classes: [u64; 6],
    pub errors: [u64; ErrorKind::ALL.len()],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_retries: u64,
    pub per_upstream: Vec<UpstreamCounters>,
    pub latency_us: Histogram<u64>,
    /// Deltas merged per shard, to show each shard is alive and serving.
    pub per_shard_requests: Vec<u64>,
}

impl Totals {
    pub fn new(upstreams: usize, shards: usize) -> Self {
        Self {
            requests: 0,
            proxied: 0,
            status_classes: [0; 6],
            errors: [0; ErrorKind::ALL.len()],
            bytes_in: 0,
            bytes_out: 0,
            connections_opened: 0,
            connections_closed: 0,
            upstream_connects: 0,
            upstream_reuses: 0,
            upstream_retries: 0,
            per_upstream: vec![UpstreamCounters::default(); upstreams],
            latency_us: new_latency_histogram(),
            per_shard_requests: vec![0; shards],
        }
    }

    pub fn merge(&mut self, d: &MetricsDelta) {
        self.requests += d.requests;
        self.proxied += d.proxied;
        for (t, v) in self.status_classes.iter_mut().zip(d.status_classes) {
            *t += v;
        }
        for (t, v) in self.errors.iter_mut().zip(d.errors) {
            *t += v;
        }
        self.bytes_in += d.bytes_in;
        self.bytes_out += d.bytes_out;
        self.connections_opened += d.connections_opened;
        self.connections_closed += d.connections_closed;
        self.upstream_connects += d.upstream_connects;
        self.upstream_reuses += d.upstream_reuses;
        self.upstream_retries += d.upstream_retries;
        for (index, c) in &d.upstreams {
            if let Some(t) = self.per_upstream.get_mut(*index as usize) {
                t.requests += c.requests;
                t.errors += c.errors;
                t.status_5xx += c.status_5xx;
                t.latency_us_sum += c.latency_us_sum;
            }
        }
        let _ = self.latency_us.add(&d.latency_us);
        if let Some(s) = self.per_shard_requests.get_mut(d.shard) {
            *s += d.requests;
        }
    }

    pub fn responses(&self) -> u64 {
        self.status_classes.iter().sum()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum::<u64>() + self.per_upstream.iter().map(|u| u.errors).sum::<u64>()
    }

    pub fn active_connections(&self) -> u64 {
        self.connections_opened
            .saturating_sub(self.connections_closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_two_shards_exactly() {
        let mut t = Totals::new(3, 2);
        for shard in 0..2 {
            let mut d = MetricsDelta::new(shard);
            d.requests = 5;
            d.status_classes[2] = 5;
            d.upstreams = vec![(
                1,
                UpstreamCounters {
                    requests: 5,
                    ..Default::default()
                },
            )];
            let _ = d.latency_us.record(100);
            t.merge(&d);
        }
        assert_eq!(t.requests, 10);
        assert_eq!(t.responses(), 10);
        assert_eq!(t.per_upstream[1].requests, 10);
        assert_eq!(t.latency_us.len(), 2);
        assert_eq!(t.per_shard_requests, vec![5, 5]);
    }
}
