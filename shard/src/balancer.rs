//! Load-balancing selection for the default group: weighted round-robin with a veto.
//!
//! Owns: the choice among a group's members. A selector is built from the members' weights
//! and asked for the next member; the caller vetoes members (unhealthy) while it iterates.
//! Must not: know about sockets, health probing or config files. Further algorithms (least
//! connections, hashing) plug in as more variants of [`Selector`].

/// Interleaved weighted round-robin (the LVS scheme): O(1) per pick when weights are equal,
/// no schedule table however many members there are.
#[derive(Debug, Clone)]
pub struct WeightedRoundRobin {
    weights: Vec<u32>,
    max_weight: u32,
    gcd: u32,
    index: usize,
    current_weight: u32,
    /// Picks in one whole period of the schedule: each member's weight over the gcd.
    period: u64,
}

impl WeightedRoundRobin {
    /// `start` staggers shards so they do not walk the members in lockstep.
    pub fn new(weights: Vec<u32>, start: usize) -> Self {
        let max_weight = weights.iter().copied().max().unwrap_or(0);
        let gcd = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
        let index = if weights.is_empty() {
            0
        } else {
            start % weights.len()
        };
        let gcd = gcd.max(1);
        let period = weights.iter().map(|w| u64::from(w / gcd)).sum();
        Self {
            weights,
            max_weight,
            gcd,
            index,
            current_weight: 0,
            period,
        }
    }

    fn step(&mut self) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 || self.max_weight == 0 {
            return None;
        }
        loop {
            self.index = (self.index + 1) % n;
            if self.index == 0 {
                self.current_weight = self.current_weight.saturating_sub(self.gcd);
                if self.current_weight == 0 {
                    self.current_weight = self.max_weight;
                }
            }
            if self.weights[self.index] >= self.current_weight {
                return Some(self.index);
            }
        }
    }

    /// Next member position the caller accepts; `None` when every member is vetoed.
    ///
    /// A whole period of the schedule picks each member (of non-zero weight) at least once.
    /// It can be long (one weight of 1000 among 1000 members of weight 1: ~2000 picks over
    /// a million steps), so after as many vetoed picks as there are members, one pass over
    /// the members decides whether walking on can succeed: when all are down (a common
    /// failure) a request costs O(members), not the whole period.
    pub fn next(&mut self, mut acceptable: impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        for picked in 0..self.period {
            if picked == n as u64 && !(0..n).any(|i| self.weights[i] > 0 && acceptable(i)) {
                return None;
            }
            let pick = self.step()?;
            if acceptable(pick) {
                return Some(pick);
            }
        }
        None
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The selection point where algorithms plug in.
#[derive(Debug, Clone)]
pub enum Selector {
    WeightedRoundRobin(WeightedRoundRobin),
}

impl Selector {
    pub fn next(&mut self, acceptable: impl FnMut(usize) -> bool) -> Option<usize> {
        match self {
            Selector::WeightedRoundRobin(w) => w.next(acceptable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_rotate() {
        let mut w = WeightedRoundRobin::new(vec![1, 1, 1], 0);
        let picks: Vec<_> = (0..6).map(|_| w.next(|_| true).unwrap()).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weights_are_respected() {
        let mut w = WeightedRoundRobin::new(vec![3, 1], 0);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[w.next(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn a_lone_acceptable_member_is_found_behind_a_heavy_one() {
        let mut weights = vec![1; 1000];
        weights[0] = 1000;
        let mut w = WeightedRoundRobin::new(weights, 0);
        for _ in 0..3 {
            assert_eq!(w.next(|i| i == 777), Some(777));
        }
        assert_eq!(w.next(|_| false), None);
    }

    #[test]
    fn veto_skips_and_all_vetoed_is_none() {
        let mut w = WeightedRoundRobin::new(vec![1, 1, 1], 0);
        for _ in 0..5 {
            assert_eq!(w.next(|i| i == 2), Some(2));
        }
        assert_eq!(w.next(|_| false), None);
        assert_eq!(WeightedRoundRobin::new(vec![], 0).next(|_| true), None);
    }
}
