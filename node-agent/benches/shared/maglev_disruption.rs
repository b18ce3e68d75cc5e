//! Shared by the `maglev` and `scale` benches: the disruption when one of
//! N backends leaves, as a ratio to the ideal (only the leaving backend's
//! 1/N of the flows move), and the balance of the table.
//!
//! Flows are counted as table slots: a flow lands on slot hash % M, so the
//! share of slots whose backend changed is the share of uniformly hashed
//! flows that move. Each figure is the mean over several leaving backends
//! (all of them for N <= 10, ten spread over the list otherwise), at the
//! same table size before and after.
use std::time::{Duration, Instant};

use ballast_agent::maglev::{self, MaglevBackend};

/// N backends keyed as the planner keys them (address << 16 | port).
pub fn backends(n: usize) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| {
            let addr = u32::from(std::net::Ipv4Addr::new(
                10,
                1,
                (i / 250) as u8,
                (i % 250) as u8 + 1,
            ));
            MaglevBackend {
                key: (u64::from(addr) << 16) | 8080,
                weight: 1,
            }
        })
        .collect()
}

pub struct Figure {
    /// Flows moved / ideal, mean over the leaving backends.
    pub ratio: f64,
    /// The largest of those ratios.
    pub worst: f64,
    /// The fullest and the emptiest backend's slots / the ideal share.
    pub max_share: f64,
    pub min_share: f64,
    /// Time to build the table with every backend (fastest of three).
    pub build: Duration,
}

/// The agent's tables (`maglev::build_table`).
pub fn agent_table(backends: &[MaglevBackend], size: u32) -> Vec<u32> {
    maglev::build_table(backends, size).expect("table")
}

/// Disruption and balance when one of `all` leaves a table of `size`
/// slots built by `build`.
pub fn disruption(
    all: &[MaglevBackend],
    size: u32,
    build: impl Fn(&[MaglevBackend], u32) -> Vec<u32>,
) -> Figure {
    let n = all.len();
    // The fastest of three builds: the machine may be shared.
    let mut build_time = Duration::MAX;
    let mut before = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        before = build(all, size);
        build_time = build_time.min(start.elapsed());
    }
    let mut held = vec![0u32; n];
    for &b in &before {
        held[b as usize] += 1;
    }
    let ideal = f64::from(size) / n as f64;
    let leavers: Vec<usize> = if n <= 10 {
        (0..n).collect()
    } else {
        (0..10).map(|i| i * n / 10 + n / 20).collect()
    };
    let (mut sum, mut worst) = (0.0, 0.0f64);
    for &gone in &leavers {
        let rest: Vec<MaglevBackend> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != gone)
            .map(|(_, b)| *b)
            .collect();
        let after = build(&rest, size);
        // Compare by key: indices shift once an element is removed.
        let moved = before
            .iter()
            .zip(&after)
            .filter(|&(&b, &a)| all[b as usize].key != rest[a as usize].key)
            .count();
        let ratio = moved as f64 / ideal;
        sum += ratio;
        worst = worst.max(ratio);
    }
    Figure {
        ratio: sum / leavers.len() as f64,
        worst,
        max_share: f64::from(*held.iter().max().unwrap()) / ideal,
        min_share: f64::from(*held.iter().min().unwrap()) / ideal,
        build: build_time,
    }
}
