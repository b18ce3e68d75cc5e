//! Shared by the `maglev` and `scale` benches: the Maglev disruption when
//! one of N backends leaves, as a ratio to the ideal (only the leaving
//! backend's 1/N of the flows move).
//!
//! Flows are counted as table slots: a flow lands on slot hash % M, so the
//! share of slots whose backend changed is the share of uniformly hashed
//! flows that move. Each figure is the mean over several leaving backends
//! (all of them for N <= 10, ten spread over the list otherwise).
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
    /// Flows moved / ideal.
    pub ratio: f64,
    /// Time to build the table with every backend.
    pub build: Duration,
}

/// Mean disruption ratio when one of `all` leaves a table of `size` slots.
pub fn disruption(all: &[MaglevBackend], size: u32) -> Figure {
    let n = all.len();
    let start = Instant::now();
    let before = maglev::build_table(all, size).expect("table");
    let build = start.elapsed();
    let leavers: Vec<usize> = if n <= 10 {
        (0..n).collect()
    } else {
        (0..10).map(|i| i * n / 10 + n / 20).collect()
    };
    let mut sum = 0.0;
    for &gone in &leavers {
        let rest: Vec<MaglevBackend> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != gone)
            .map(|(_, b)| *b)
            .collect();
        let after = maglev::build_table(&rest, size).expect("table");
        // Compare by key: indices shift once an element is removed.
        let moved = before
            .iter()
            .zip(&after)
            .filter(|&(&b, &a)| all[b as usize].key != rest[a as usize].key)
            .count();
        sum += (moved as f64 / f64::from(size)) / (1.0 / n as f64);
    }
    Figure {
        ratio: sum / leavers.len() as f64,
        build,
    }
}
