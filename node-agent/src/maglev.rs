//! Weighted Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Every node builds its table independently, and upstream ECMP may send the
//! packets of one flow to different nodes over time; consistent forwarding
//! therefore needs every node — and every agent version during a rolling
//! upgrade — to compute the identical table from the same backend set. That
//! is why the hashes below are spelled out instead of taken from `std`, and
//! why a golden test pins the output.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

mod size;
pub use size::{
    MAX_TABLE_SIZE, SINGLE_BACKEND_TABLE_SIZE, SIZE_LADDER, slots_wanted, table_size_for,
};

/// The size the Maglev paper evaluates, and the one this agent gave every
/// service before sizes were chosen per service ([`table_size_for`]): the
/// benchmark's baseline, and a large table for the tests below.
pub const CLASSIC_TABLE_SIZE: u32 = 65537;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaglevBackend {
    /// Stable identity of the backend (e.g. a hash of address:port). It alone
    /// decides the backend's slot preferences, so it must not depend on the
    /// backend's position in any list.
    pub key: u64,
    /// Relative share of table slots; 0 = no slots (draining).
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("Maglev table size {0} is not prime")]
    NotPrime(u32),
    #[error(
        "Maglev table size {size} is smaller than the number of backends with weight > 0 ({backends})"
    )]
    TooSmall { size: u32, backends: usize },
    #[error("backends #{first} and #{second} share the key {key:#018x}; keys must be unique")]
    DuplicateKey {
        key: u64,
        first: usize,
        second: usize,
    },
}

/// Deterministic primality test (trial division; table sizes are small and
/// this runs once per configuration change).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n = u64::from(n);
    let mut d: u64 = 5;
    while d * d <= n {
        if n.is_multiple_of(d) || n.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// Builds a lookup table of `size` entries, each an index into `backends`.
///
/// Returns an empty table when no backend has a positive weight, so the
/// caller can tell "nothing to send to" apart from a real table.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    // Sorting by key makes the result independent of input order: the fill
    // order below breaks ties between backends competing for a slot.
    let mut active: Vec<(u64, u32, u32)> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(i, b)| (b.key, i as u32, b.weight))
        .collect();
    if active.is_empty() {
        return Ok(Vec::new());
    }
    if (size as usize) < active.len() {
        return Err(MaglevError::TooSmall {
            size,
            backends: active.len(),
        });
    }
    active.sort_unstable();
    if let Some(w) = active.windows(2).find(|w| w[0].0 == w[1].0) {
        let (a, b) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
        return Err(MaglevError::DuplicateKey {
            key: w[0].0,
            first: a as usize,
            second: b as usize,
        });
    }

    let m = u64::from(size);
    // Per backend: next candidate slot in its permutation and its step. The
    // permutation is offset + j·skip (mod M); with M prime and 1 ≤ skip < M
    // it visits every slot exactly once.
    let mut table = Table {
        slots: vec![EMPTY; size as usize],
        next: active.iter().map(|a| offset_hash(a.0) % m).collect(),
        skip: active
            .iter()
            .map(|a| skip_hash(a.0) % (m - 1) + 1)
            .collect(),
        m,
        filled: 0,
    };
    let weights: Vec<u32> = active.iter().map(|a| a.2).collect();
    let place = |i: usize| table.place(i, active[i].1);
    let max = u64::from(*weights.iter().max().unwrap_or(&1));
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    // Both orders are identical (tested); rounds are cheaper while weights
    // are similar, the heap when a few heavy backends would make most rounds
    // skip over light ones.
    if max * weights.len() as u64 <= 8 * sum {
        claims_by_rounds(&weights, place);
    } else {
        claims_by_heap(&weights, place);
    }
    Ok(table.slots)
}

const EMPTY: u32 = u32::MAX;

struct Table {
    slots: Vec<u32>,
    next: Vec<u64>,
    skip: Vec<u64>,
    m: u64,
    filled: u64,
}

impl Table {
    /// Gives backend `i` the next free slot in its permutation; true once
    /// the table is full.
    fn place(&mut self, i: usize, owner: u32) -> bool {
        let (skip, m) = (self.skip[i], self.m);
        let mut c = self.next[i];
        while self.slots[c as usize] != EMPTY {
            c += skip;
            if c >= m {
                c -= m;
            }
        }
        self.slots[c as usize] = owner;
        c += skip;
        if c >= m {
            c -= m;
        }
        self.next[i] = c;
        self.filled += 1;
        self.filled == m
    }
}

// Weighting: in every round each backend (in key order) gains `weight` credit
// and claims one slot whenever its credit reaches the maximum weight. Slot
// counts thus track weight ratios, and the heaviest backend claims one slot
// per round like an unweighted backend in the paper. `place` is called for
// each claim in order and returns true to stop.

fn claims_by_rounds(weights: &[u32], mut place: impl FnMut(usize) -> bool) {
    let max = u64::from(*weights.iter().max().unwrap_or(&1));
    let mut credit = vec![0u64; weights.len()];
    loop {
        for (i, &w) in weights.iter().enumerate() {
            // w ≤ max, so at most one claim per backend per round.
            credit[i] += u64::from(w);
            if credit[i] >= max {
                credit[i] -= max;
                if place(i) {
                    return;
                }
            }
        }
    }
}

/// Same order as [`claims_by_rounds`]: backend i's k-th claim falls in the
/// first round r (0-based) with (r+1)·w ≥ k·max, so claims are replayed from
/// a heap keyed by (round, backend) without visiting idle backends.
fn claims_by_heap(weights: &[u32], mut place: impl FnMut(usize) -> bool) {
    let max = u64::from(*weights.iter().max().unwrap_or(&1));
    let round_of = |k: u64, w: u32| (k * max).div_ceil(u64::from(w)) - 1;
    let mut claims = vec![0u64; weights.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, &w)| Reverse((round_of(1, w), i)))
        .collect();
    while let Some(Reverse((_, i))) = heap.pop() {
        if place(i) {
            return;
        }
        claims[i] += 1;
        heap.push(Reverse((round_of(claims[i] + 1, weights[i]), i)));
    }
}

/// SplitMix64's finaliser: a fixed, well-studied 64-bit mixer, so slot
/// preferences never change with the Rust version or the process.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// Offset and skip must be independent functions of the key, otherwise
// backends with equal offsets would also walk in lockstep.
fn offset_hash(key: u64) -> u64 {
    mix64(key ^ 0x6261_6c6c_6173_742d) // "ballast-"
}

fn skip_hash(key: u64) -> u64 {
    mix64(mix64(key ^ 0x6d61_676c_6576_2d32)) // "maglev-2"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn backends(n: usize) -> Vec<MaglevBackend> {
        (0..n)
            .map(|i| MaglevBackend {
                key: mix64(i as u64 + 1000),
                weight: 1,
            })
            .collect()
    }

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in table {
            c[e as usize] += 1;
        }
        c
    }

    #[test]
    fn primes() {
        let primes: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            primes,
            [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59
            ]
        );
        assert!(is_prime(65537));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(65535));
        assert!(!is_prime(65539 * 3));
        assert!(!is_prime(u32::MAX));
    }

    #[test]
    fn every_slot_filled_with_equal_shares() {
        let b = backends(7);
        let t = build_table(&b, CLASSIC_TABLE_SIZE).unwrap();
        assert_eq!(t.len(), CLASSIC_TABLE_SIZE as usize);
        assert!(t.iter().all(|&e| (e as usize) < b.len()));
        let c = counts(&t, b.len());
        let ideal = CLASSIC_TABLE_SIZE as f64 / 7.0;
        for (i, n) in c.iter().enumerate() {
            assert!(
                (*n as f64 - ideal).abs() / ideal < 0.01,
                "backend {i}: {n} vs {ideal}"
            );
        }
    }

    #[test]
    fn shares_follow_weights() {
        let weight_sets: [&[u32]; 4] = [
            &[1, 2, 3, 4],
            &[10, 1],
            &[100, 100, 50, 1000, 7],
            &[65535, 1000],
        ];
        for weights in weight_sets {
            let b: Vec<MaglevBackend> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| MaglevBackend {
                    key: mix64(i as u64),
                    weight: w,
                })
                .collect();
            let t = build_table(&b, CLASSIC_TABLE_SIZE).unwrap();
            let c = counts(&t, b.len());
            let total: u32 = weights.iter().sum();
            for (i, &w) in weights.iter().enumerate() {
                let want = f64::from(w) / f64::from(total);
                let got = c[i] as f64 / f64::from(CLASSIC_TABLE_SIZE);
                assert!(
                    (got - want).abs() <= want * 0.01,
                    "weights {weights:?}: backend {i} got {got:.5}, want {want:.5}"
                );
            }
        }
    }

    #[test]
    fn zero_weight_gets_nothing() {
        let mut b = backends(3);
        b[1].weight = 0;
        let t = build_table(&b, 251).unwrap();
        assert!(!t.contains(&1));
        assert!(t.contains(&0) && t.contains(&2));

        for w in &mut b {
            w.weight = 0;
        }
        assert_eq!(build_table(&b, 251).unwrap(), Vec::<u32>::new());
        assert_eq!(build_table(&[], 251).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn errors() {
        assert_eq!(
            build_table(&backends(2), 65536),
            Err(MaglevError::NotPrime(65536))
        );
        assert_eq!(build_table(&backends(2), 1), Err(MaglevError::NotPrime(1)));
        assert_eq!(
            build_table(&backends(5), 3),
            Err(MaglevError::TooSmall {
                size: 3,
                backends: 5
            })
        );
        let mut b = backends(3);
        b[2].key = b[0].key;
        assert_eq!(
            build_table(&b, 251),
            Err(MaglevError::DuplicateKey {
                key: b[0].key,
                first: 0,
                second: 2
            })
        );
        // Smallest legal table: one slot per backend.
        let t = build_table(&backends(3), 3).unwrap();
        let mut sorted = t.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
    }

    #[test]
    fn removal_is_minimally_disruptive() {
        for n in [3usize, 10, 50, 100] {
            let all = backends(n);
            let before = build_table(&all, CLASSIC_TABLE_SIZE).unwrap();
            let removed = n / 2;
            let rest: Vec<MaglevBackend> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != removed)
                .map(|(_, b)| *b)
                .collect();
            let after = build_table(&rest, CLASSIC_TABLE_SIZE).unwrap();
            let mut moved_total = 0usize;
            let (mut kept_slots, mut kept_moved) = (0usize, 0usize);
            for (&old, &new) in before.iter().zip(&after) {
                // Compare by identity: indices shift once an element is removed.
                let moved = all[old as usize].key != rest[new as usize].key;
                moved_total += usize::from(moved);
                if old as usize != removed {
                    kept_slots += 1;
                    kept_moved += usize::from(moved);
                }
            }
            let moved_frac = moved_total as f64 / before.len() as f64;
            let kept_frac = kept_moved as f64 / kept_slots as f64;
            assert!(
                moved_frac < 1.0 / n as f64 + 0.02,
                "n={n}: {moved_frac:.4} of all slots moved"
            );
            assert!(
                kept_frac < 0.02,
                "n={n}: {kept_frac:.4} of surviving backends' slots moved"
            );
        }
    }

    #[test]
    fn weight_change_is_minimally_disruptive() {
        let mut b = backends(10);
        let before = build_table(&b, CLASSIC_TABLE_SIZE).unwrap();
        b[3].weight = 0; // drain one backend
        let after = build_table(&b, CLASSIC_TABLE_SIZE).unwrap();
        let untouched = (0..before.len()).filter(|&s| before[s] != 3).count();
        let moved = (0..before.len())
            .filter(|&s| before[s] != 3 && before[s] != after[s])
            .count();
        assert!((moved as f64 / untouched as f64) < 0.02);
        assert!(!after.contains(&3));
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut b = backends(20);
        for (i, x) in b.iter_mut().enumerate() {
            x.weight = 1 + (i as u32 % 4);
        }
        let t1 = build_table(&b, 4099).unwrap();
        let mut shuffled = b.clone();
        shuffled.reverse();
        shuffled.swap(0, 7);
        shuffled.swap(3, 12);
        let t2 = build_table(&shuffled, 4099).unwrap();
        let keys1: Vec<u64> = t1.iter().map(|&i| b[i as usize].key).collect();
        let keys2: Vec<u64> = t2.iter().map(|&i| shuffled[i as usize].key).collect();
        assert_eq!(keys1, keys2);
    }

    #[test]
    fn deterministic_golden() {
        // Pins the exact output: if this changes, nodes running different
        // agent versions would disagree on where a flow goes.
        let b = [
            MaglevBackend { key: 1, weight: 1 },
            MaglevBackend { key: 2, weight: 2 },
            MaglevBackend { key: 3, weight: 1 },
        ];
        let t = build_table(&b, 13).unwrap();
        assert_eq!(t, build_table(&b, 13).unwrap());
        assert_eq!(t, GOLDEN_13);
        let big = build_table(&backends(5), CLASSIC_TABLE_SIZE).unwrap();
        let digest = big.iter().fold(0u64, |h, &e| mix64(h ^ u64::from(e)));
        assert_eq!(digest, GOLDEN_DIGEST);
    }

    const GOLDEN_13: [u32; 13] = [0, 1, 1, 1, 0, 1, 0, 2, 1, 2, 1, 1, 2];
    const GOLDEN_DIGEST: u64 = 11286293312192582543;

    #[test]
    fn claim_orders_agree() {
        let mut state = 0x5eed_u64;
        let mut rnd = || {
            state = mix64(state);
            state
        };
        for _ in 0..200 {
            let n = 1 + (rnd() % 40) as usize;
            let cap = [1, 3, 100, 65535][(rnd() % 4) as usize];
            let mut weights: Vec<u32> = (0..n).map(|_| (rnd() % (cap + 1)) as u32).collect();
            weights[0] = weights[0].max(1);
            let order = |by_heap: bool| {
                let mut seen = Vec::new();
                let place = |i| {
                    seen.push(i);
                    seen.len() == 3000
                };
                if by_heap {
                    claims_by_heap(&weights, place);
                } else {
                    claims_by_rounds(&weights, place);
                }
                seen
            };
            assert_eq!(order(false), order(true), "weights {weights:?}");
        }
    }

    #[test]
    fn builds_large_tables_fast() {
        let b = backends(100);
        let start = Instant::now();
        let t = build_table(&b, CLASSIC_TABLE_SIZE).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(t.len(), CLASSIC_TABLE_SIZE as usize);
        // Generous for debug builds on a loaded CI machine; release is ~1 ms.
        assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    }
}
