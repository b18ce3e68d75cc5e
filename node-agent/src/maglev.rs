//! Weighted lookup tables in the shape of Maglev's (Eisenbud et al.,
//! "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
//! §3.4): a prime number M of slots, each naming a backend, the data plane
//! picking slot hash % M. The slots are filled by a bounded-load race along
//! Maglev's permutations ([`race`] says how and why), not by Maglev's own
//! fill, whose disruption grows like N²/M: one of 1000 backends leaving
//! moved 6.7× the flows it had at 65537 slots. The race keeps it under 1.2×
//! at every size the agent chooses, each backend within 1.05× its share.
//!
//! Every node builds its table independently, and upstream ECMP may send the
//! packets of one flow to different nodes over time; consistent forwarding
//! therefore needs every node — and every agent version during a rolling
//! upgrade — to compute the identical table from the same backend set. That
//! is why the hashes below are spelled out instead of taken from `std`, the
//! race uses integer arithmetic only, and a golden test pins the output.
//! (Agents from before the race fill tables differently: during an upgrade
//! from one, flows that change directors may move once, as after a
//! table-size change; established flows keep their conntrack entries.)

mod race;
mod size;
pub use size::{
    MAX_TABLE_SIZE, SINGLE_BACKEND_TABLE_SIZE, SIZE_LADDER, slots_wanted, table_size_for,
};

/// The size the Maglev paper evaluates, and the one this agent gave every
/// service before sizes were chosen per service ([`table_size_for`]): a
/// large table for the tests below.
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
    let racers: Vec<race::Racer> = active
        .iter()
        .map(|&(key, owner, weight)| {
            let (offset, skip) = permutation(key, size);
            race::Racer {
                owner,
                weight,
                offset,
                skip,
            }
        })
        .collect();
    Ok(race::fill(&racers, m))
}

/// A backend's permutation of the slots of a table of `size` (prime)
/// slots, as Maglev defines it: its j-th slot is (offset + j·skip) mod
/// size, which visits every slot once since 1 ≤ skip < size.
pub fn permutation(key: u64, size: u32) -> (u64, u64) {
    let m = u64::from(size);
    (offset_hash(key) % m, skip_hash(key) % (m - 1).max(1) + 1)
}

const EMPTY: u32 = u32::MAX;

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
            // At most the cap (1.05× the share, rounded up), and the
            // race's rendezvous leaves little below it at 9362 slots each.
            assert!(*n as f64 <= (ideal * 1.05).ceil(), "backend {i}: {n}");
            assert!(*n as f64 >= ideal * 0.95, "backend {i}: {n} vs {ideal}");
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
                let want = f64::from(CLASSIC_TABLE_SIZE) * f64::from(w) / f64::from(total);
                let got = c[i] as f64;
                // Above: the cap. Below: what rendezvous leaves a backend,
                // a binomial draw around its share (within 3 deviations).
                assert!(
                    got <= (want * 1.05).ceil() && got >= want - 3.0 * want.sqrt(),
                    "weights {weights:?}: backend {i} got {got} slots, share {want:.1}"
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

    /// Flows moved when each of `leavers` leaves, as a ratio to the
    /// ideal (only its own 1/N), averaged; and the largest share of the
    /// other backends' slots that moved.
    fn removal_cost(all: &[MaglevBackend], size: u32, leavers: &[usize]) -> (f64, f64) {
        let n = all.len();
        let before = build_table(all, size).unwrap();
        let (mut ratio_sum, mut worst_kept) = (0.0, 0.0f64);
        for &removed in leavers {
            let rest: Vec<MaglevBackend> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != removed)
                .map(|(_, b)| *b)
                .collect();
            let after = build_table(&rest, size).unwrap();
            let (mut moved_total, mut kept_slots, mut kept_moved) = (0usize, 0usize, 0usize);
            for (&old, &new) in before.iter().zip(&after) {
                // Compare by identity: indices shift once an element is removed.
                let moved = all[old as usize].key != rest[new as usize].key;
                moved_total += usize::from(moved);
                if old as usize != removed {
                    kept_slots += 1;
                    kept_moved += usize::from(moved);
                }
            }
            ratio_sum += moved_total as f64 / (f64::from(size) / n as f64);
            worst_kept = worst_kept.max(kept_moved as f64 / kept_slots as f64);
        }
        (ratio_sum / leavers.len() as f64, worst_kept)
    }

    #[test]
    fn removal_moves_at_most_1_2_times_the_ideal_at_automatic_sizes() {
        for n in [3usize, 10, 50, 100] {
            let all = backends(n);
            let leavers: Vec<usize> = (0..5).map(|i| i * n / 5).collect();
            let (ratio, kept) = removal_cost(&all, table_size_for(n), &leavers);
            assert!(ratio <= 1.2, "n={n}: {ratio:.3}x the ideal");
            assert!(
                kept < 0.03,
                "n={n}: {kept:.4} of surviving backends' slots moved"
            );
        }
    }

    #[test]
    fn removal_from_a_large_table_moves_little_but_the_leavers_slots() {
        for n in [3usize, 10, 100] {
            let (ratio, kept) = removal_cost(&backends(n), CLASSIC_TABLE_SIZE, &[n / 2]);
            assert!(ratio <= 1.05, "n={n}: {ratio:.3}x the ideal");
            assert!(kept < 0.01, "n={n}: {kept:.4}");
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
        let digest = |t: &[u32]| t.iter().fold(0u64, |h, &e| mix64(h ^ u64::from(e)));
        assert_eq!(digest(&big), GOLDEN_DIGEST);
        // Several weights: the race's steps interleave groups of weights.
        let mut weighted = backends(40);
        for (i, b) in weighted.iter_mut().enumerate() {
            b.weight = [1, 2, 3, 100][i % 4];
        }
        let t = build_table(&weighted, 4099).unwrap();
        assert_eq!(digest(&t), GOLDEN_WEIGHTED_DIGEST);
    }

    const GOLDEN_13: [u32; 13] = [0, 1, 0, 2, 0, 1, 1, 2, 1, 2, 1, 1, 2];
    const GOLDEN_DIGEST: u64 = 783424917703243807;
    const GOLDEN_WEIGHTED_DIGEST: u64 = 13128651373893649158;
}
