//! The table size of a service, chosen from its backend count.
//!
//! The size buys low *disruption* (when one of N backends leaves, ideally
//! only its 1/N of the flows move) and balance. With the race fill
//! ([`super::race`]) each backend holds at most 1.05× its share (+1 slot)
//! whatever the size; what the size sets is how often a leaving backend's
//! slot lands on a backend at its cap and pushes another slot on, which
//! falls with the slots a backend λ = M/N and rises slowly with N.
//!
//! So the size is the smallest rung of [`SIZE_LADDER`] (the smallest prime
//! ≥ 2^k, k = 8..=20) holding [`slots_wanted`] = `32·N·⌈log₂N⌉` slots: λ
//! from 64 slots a backend at 2–4 backends to 352 at 1489, and
//! [`MAX_TABLE_SIZE`] = 1048583 (8 MiB of ring) beyond. Measured at the
//! worst N of each size (the most backends that get it; `cargo bench
//! --bench maglev`): flows moved / ideal, mean (worst) over leaving
//! backends, and the fullest / emptiest backend's slots / its share:
//!
//! | size    | N    | λ   | moved         | share       |
//! |---------|------|-----|---------------|-------------|
//! | 257     | 4    | 64  | 1.000 (1.027) | 1.027/0.949 |
//! | 521     | 5    | 104 | 1.086 (1.209) | 1.056/0.950 |
//! | 2053    | 16   | 128 | 1.032 (1.099) | 1.052/0.904 |
//! | 4099    | 25   | 163 | 1.062 (1.128) | 1.055/0.781 |
//! | 32771   | 128  | 256 | 1.100 (1.156) | 1.051/0.891 |
//! | 131101  | 455  | 288 | 1.171 (1.211) | 1.052/0.871 |
//! | 524309  | 1489 | 352 | 1.096 (1.147) | 1.051/0.886 |
//! | 1048583 | 2730 | 384 | 1.078 (1.125) | 1.052/0.883 |
//!
//! The cap bounds shares from above only: below it a backend keeps what
//! rendezvous gives it, a binomial draw around its share (0.78 of it at
//! worst above), which leaves it less loaded, never more.
//!
//! Plain Maglev, the fill this replaced, grew like N²/M instead: at 1000
//! backends 6.7× with 65537 slots and still 4.8× with 524309; at 100
//! backends 1.57× with 65537. The race takes about as many steps as
//! Maglev's fill (M·ln M): 21 ms for 1000 backends' 524309 slots, 1.4× plain
//! Maglev's time; 250 ms (13.7×) when every backend has a weight of its
//! own, each step then going through a heap of weights.
//!
//! - **One listed backend** gets the 2-slot table: every flow goes to it
//!   whatever the size, and going to two backends moves exactly the new
//!   one's share however different the tables are, so there is nothing
//!   for a bigger table to keep.
//! - **Rungs double**, so a service changes size (and its table is
//!   reshuffled: established flows keep their conntrack entry, a flow that
//!   arrives through another director may move) only when its backend count
//!   about doubles or halves.
//! - **N counts every listed backend, whatever its weight.** Every director
//!   must compute the same table from the same configuration (DR and ECMP
//!   send one flow's packets through different directors). Weight 0 is how
//!   both a configured drain (the same everywhere) and a DOWN health verdict
//!   (each director's own, see `health::apply`) reach the planner, so a
//!   size that counted only weighted backends would differ between
//!   directors that judge a backend differently — and would reshuffle the
//!   whole table when one backend is drained, the opposite of a drain.

/// The sizes a service can get automatically: the smallest prime ≥ 2^k for
/// k = 8..=20 (checked by a test). The 2-slot table of a one-backend
/// service is below the ladder.
pub const SIZE_LADDER: [u32; 13] = [
    257, 521, 1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 524309, 1048583,
];

/// The table of a service with at most one listed backend.
pub const SINGLE_BACKEND_TABLE_SIZE: u32 = 2;

/// The largest automatic size (8 MiB of ring per service).
pub const MAX_TABLE_SIZE: u32 = SIZE_LADDER[SIZE_LADDER.len() - 1];

/// The automatic table size for a service listing `backends` backends
/// (weight 0 included; see the module doc for why).
pub fn table_size_for(backends: usize) -> u32 {
    if backends <= 1 {
        return SINGLE_BACKEND_TABLE_SIZE;
    }
    let wanted = slots_wanted(backends);
    SIZE_LADDER
        .iter()
        .copied()
        .find(|&m| u64::from(m) >= wanted)
        .unwrap_or(MAX_TABLE_SIZE)
}

/// `32·N·⌈log₂N⌉`: the slots that keep the disruption of `backends` (≥ 2)
/// backends under about 1.17× the ideal; the size is the first rung at or
/// above.
pub fn slots_wanted(backends: usize) -> u64 {
    let n = backends.max(1) as u64;
    let ceil_log2 = u64::from(u64::BITS - (n - 1).leading_zeros());
    n.saturating_mul(32 * ceil_log2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::is_prime;

    #[test]
    fn ladder_rungs_are_the_smallest_primes_above_powers_of_two() {
        for (k, &m) in (8..).zip(SIZE_LADDER.iter()) {
            let p = 1u32 << k;
            assert!(is_prime(m), "{m}");
            assert!(m >= p && (p..m).all(|x| !is_prime(x)), "2^{k}: {m}");
        }
        assert!(is_prime(SINGLE_BACKEND_TABLE_SIZE));
    }

    #[test]
    fn golden_sizes() {
        // Pinned: every director (and every agent version during an upgrade)
        // must give a service the same size, or their tables differ.
        let golden: &[(usize, u32)] = &[
            (0, 2),
            (1, 2),
            (2, 257),
            (4, 257),
            (5, 521),
            (8, 1031),
            (10, 2053),
            (16, 2053),
            (17, 4099),
            (32, 8209),
            (100, 32771),
            (128, 32771),
            (129, 65537),
            (256, 65537),
            (1000, 524309),
            (1489, 524309),
            (1490, 1048583),
            (100_000, 1048583),
        ];
        for &(n, m) in golden {
            assert_eq!(table_size_for(n), m, "{n} backends");
        }
    }

    #[test]
    fn sizes_are_prime_bounded_monotone_and_hold_every_backend() {
        let mut last = 0;
        for n in 0..20_000 {
            let m = table_size_for(n);
            assert!(is_prime(m), "{n}: {m}");
            assert!((SINGLE_BACKEND_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&m));
            assert!(m as usize >= n, "{n} backends fit in {m} slots");
            assert!(m >= last, "monotone: {n} backends get {m} < {last}");
            last = m;
        }
        assert_eq!(table_size_for(usize::MAX), MAX_TABLE_SIZE, "no overflow");
    }

    #[test]
    fn at_least_64_slots_a_backend_and_256_from_128_backends_up_to_4096() {
        // The slots a backend bound the cap's rounding (1/λ over the
        // share) and, with N, the disruption (module doc).
        for n in 2..=4096usize {
            let per_backend = table_size_for(n) as usize / n;
            assert!(per_backend >= 64, "{n}: {per_backend}");
            assert!(n < 128 || per_backend >= 256, "{n}: {per_backend}");
        }
    }
}
