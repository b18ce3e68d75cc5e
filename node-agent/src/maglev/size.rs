//! The Maglev table size of a service, chosen from its backend count.
//!
//! Why not the paper's M ≥ 100·N: that rule bounds load imbalance (here
//! each backend gets ⌊M/N⌋ or ⌈M/N⌉ slots, so M ≥ 64·N already bounds it at
//! 1/64). What the size also buys is low *disruption*: when one of N
//! backends leaves, ideally only its 1/N of the flows move. Measured with
//! this crate's tables (`cargo bench --bench maglev`: flows moved / ideal,
//! mean over leaving backends), the excess grows like N²/M, not N/M:
//!
//! | N    | M = 257 | 2053 | 8209 | 65537 | 262147 | 1048583 |
//! |------|---------|------|------|-------|--------|---------|
//! | 4    | 1.09    | 1.02 | 1.01 | 1.00  |        |         |
//! | 10   | 1.43    | 1.16 | 1.06 | 1.02  |        |         |
//! | 32   |         | 1.98 | 1.39 | 1.13  | 1.05   |         |
//! | 100  |         |      | 2.91 | 1.57  | 1.25   | 1.10    |
//! | 1000 |         |      |      | 6.7   | 6.0    | 3.0     |
//!
//! So the size is the smallest rung of [`SIZE_LADDER`] (the smallest prime
//! ≥ 2^k, k = 8..=16) holding [`slots_wanted`] = `8·N²·⌈log₂N⌉` slots: at
//! most 1.17× wherever the ladder reaches (N ≤ 32; the bench prints each
//! rung at its worst N), and [`MAX_TABLE_SIZE`] = 65537 beyond: the size
//! every service had before sizes were chosen, so no service costs more
//! ring than it did (8 bytes a slot; 64 such services fill the default
//! storage). Larger tables would lower the disruption of large services
//! (1.10× at 100 backends with 1048583 slots, against 1.57× at 65537) at 16×
//! the memory and rebuild time, and 1000 backends would still need ~10⁸
//! slots for 1.2× (6.7× at 65537): past a few dozen backends, lower
//! disruption needs another table construction, not a larger table.
//! `--maglev-size` forces a larger size for every service when memory
//! allows.
//!
//! - **One listed backend** gets the 2-slot table: every flow goes to it
//!   whatever the size, and going to two backends moves exactly the new
//!   one's share however different the tables are, so there is nothing
//!   for a bigger table to keep.
//! - **Rungs double**, so a service changes size (and its table is
//!   reshuffled: established flows keep their conntrack entry, a flow that
//!   arrives through another director may move) only when its backend count
//!   grows or shrinks by a factor of about √2.
//! - **N counts every listed backend, whatever its weight.** Every director
//!   must compute the same table from the same configuration (DR and ECMP
//!   send one flow's packets through different directors). Weight 0 is how
//!   both a configured drain (the same everywhere) and a DOWN health verdict
//!   (each director's own, see `health::apply`) reach the planner, so a
//!   size that counted only weighted backends would differ between
//!   directors that judge a backend differently — and would reshuffle the
//!   whole table when one backend is drained, the opposite of a drain.

/// The sizes a service can get automatically: the smallest prime ≥ 2^k for
/// k = 8..=16 (checked by a test). The 2-slot table of a one-backend
/// service is below the ladder.
pub const SIZE_LADDER: [u32; 9] = [257, 521, 1031, 2053, 4099, 8209, 16411, 32771, 65537];

/// The table of a service with at most one listed backend.
pub const SINGLE_BACKEND_TABLE_SIZE: u32 = 2;

/// The largest automatic size (512 KiB of ring per service): the fixed size
/// every service had before, so no service costs more than it did.
pub const MAX_TABLE_SIZE: u32 = SIZE_LADDER[SIZE_LADDER.len() - 1];

/// The automatic Maglev table size for a service listing `backends`
/// backends (weight 0 included; see the module doc for why).
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

/// `8·N²·⌈log₂N⌉`: the slots that keep the disruption of `backends` (≥ 2)
/// backends near 1.15× the ideal; the size is the first rung at or above.
pub fn slots_wanted(backends: usize) -> u64 {
    let n = backends.max(1) as u64;
    let ceil_log2 = u64::from(u64::BITS - (n - 1).leading_zeros());
    n.saturating_mul(n).saturating_mul(8 * ceil_log2)
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
            (3, 257),
            (4, 257),
            (5, 1031),
            (8, 2053),
            (10, 4099),
            (16, 8209),
            (32, 65537),
            (50, 65537),
            (64, 65537),
            (100, 65537),
            (120, 65537),
            (1000, 65537),
            (262_144, 65537),
        ];
        for &(n, m) in golden {
            assert_eq!(table_size_for(n), m, "{n} backends");
        }
    }

    #[test]
    fn sizes_are_prime_bounded_monotone_and_hold_every_backend() {
        let mut last = 0;
        for n in 0..5000 {
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
    fn at_least_64_slots_a_backend_up_to_16k_backends() {
        // Each backend gets ⌊M/N⌋ or ⌈M/N⌉ slots, so this bounds the load
        // imbalance at 1/64 (the paper's M ≥ 100·N bounds it at 1%).
        for n in 2..=(MAX_TABLE_SIZE as usize / 64) {
            assert!(table_size_for(n) as usize >= 64 * n, "{n}");
        }
    }
}
