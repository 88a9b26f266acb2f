//! Merging the shards' metric deltas into process totals.
//!
//! Owns: the totals (counters, status classes, error kinds, per-upstream counts, the HDR
//! latency histogram). Must not: render (see `render`) or talk to shards.

use hdrhistogram::Histogram;
use mcp_gateway_shard::metrics::{new_latency_histogram, Counters, MetricsDelta, UpstreamCounters};

pub struct Totals {
    pub counts: Counters,
    pub per_upstream: Vec<UpstreamCounters>,
    pub latency_us: Histogram<u64>,
    /// Requests merged per shard, to show each shard is alive and serving.
    pub per_shard_requests: Vec<u64>,
    /// Per shard, per slot: (requests in flight, connections open), as last reported.
    gauges: Vec<Vec<(u32, u32)>>,
    /// Per shard: the config generation it last said it runs on.
    pub generations: Vec<u64>,
}

impl Totals {
    pub fn new(upstreams: usize, shards: usize) -> Self {
        Self {
            counts: Counters::default(),
            per_upstream: vec![UpstreamCounters::default(); upstreams],
            latency_us: new_latency_histogram(),
            per_shard_requests: vec![0; shards],
            gauges: vec![vec![(0, 0); upstreams]; shards],
            generations: vec![1; shards],
        }
    }

    /// A reload added slots (there are never fewer).
    pub fn fit(&mut self, slots: usize) {
        if slots > self.per_upstream.len() {
            self.per_upstream.resize(slots, UpstreamCounters::default());
            for shard in &mut self.gauges {
                shard.resize(slots, (0, 0));
            }
        }
    }

    /// A new server took slot `slot`: its counters start from zero.
    pub fn reset(&mut self, slot: usize) {
        if let Some(c) = self.per_upstream.get_mut(slot) {
            *c = UpstreamCounters::default();
        }
    }

    /// (requests in flight, connections open) to slot `slot`, over all shards.
    pub fn slot_gauges(&self, slot: usize) -> (u64, u64) {
        self.gauges
            .iter()
            .filter_map(|shard| shard.get(slot))
            .fold((0, 0), |(f, o), (sf, so)| {
                (f + u64::from(*sf), o + u64::from(*so))
            })
    }

    pub fn merge(&mut self, d: &MetricsDelta) {
        self.counts.add(&d.counts);
        for (index, c) in &d.upstreams {
            if let Some(t) = self.per_upstream.get_mut(*index as usize) {
                t.requests += c.requests;
                t.errors += c.errors;
                t.status_5xx += c.status_5xx;
                t.latency_us_sum += c.latency_us_sum;
            }
        }
        if let Some(g) = self.generations.get_mut(d.shard) {
            *g = d.generation.max(*g);
        }
        if let Some(shard) = self.gauges.get_mut(d.shard) {
            for g in &d.gauges {
                if let Some(slot) = shard.get_mut(g.slot as usize) {
                    *slot = (g.in_flight, g.open);
                }
            }
        }
        let _ = self.latency_us.add(&d.latency_us);
        if let Some(s) = self.per_shard_requests.get_mut(d.shard) {
            *s += d.counts.requests;
        }
    }

    pub fn responses(&self) -> u64 {
        self.counts.status_classes.iter().sum()
    }

    pub fn errors_total(&self) -> u64 {
        self.counts.errors.iter().sum::<u64>()
            + self.per_upstream.iter().map(|u| u.errors).sum::<u64>()
    }

    pub fn active_connections(&self) -> u64 {
        self.counts
            .connections_opened
            .saturating_sub(self.counts.connections_closed)
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
            d.counts.requests = 5;
            d.counts.status_classes[2] = 5;
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
        assert_eq!(t.counts.requests, 10);
        assert_eq!(t.responses(), 10);
        assert_eq!(t.per_upstream[1].requests, 10);
        assert_eq!(t.latency_us.len(), 2);
        assert_eq!(t.per_shard_requests, vec![5, 5]);
    }
}
