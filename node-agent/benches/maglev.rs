//! Maglev disruption: when one of N backends leaves, the flows that move,
//! as a ratio to the ideal (only the leaving backend's 1/N), for the
//! automatic table size (`maglev::table_size_for`) beside the fixed 65537
//! every service had before, measured in the same run.
//! Target: automatic <= 1.2x ideal at every N.
//! Run: `cargo bench -p ballast-agent --bench maglev` (no root needed).
//!
//! How flows are counted: `shared/maglev_disruption.rs` (the `scale` bench
//! prints the same figures). Build times are printed as a ratio to the
//! baseline's, with the tables' ring memory (8 bytes a slot). A second
//! table shows each automatic size at its worst: for the most backends
//! that still get it.
use ballast_agent::maglev;

#[path = "shared/maglev_disruption.rs"]
mod maglev_disruption;
use maglev_disruption::{backends, disruption};

const BASELINE_SIZE: u32 = maglev::CLASSIC_TABLE_SIZE;
const NS: [usize; 4] = [4, 10, 100, 1000];
const TARGET: f64 = 1.2;

fn main() {
    println!(
        "Maglev disruption when one of N backends leaves (flows moved / ideal), automatic size vs fixed {BASELINE_SIZE}"
    );
    println!(
        "{:>5} | {:>9} {:>7} {:>9} | {:>9} {:>7} | {:>12}",
        "N", "auto size", "ring", "ratio", "fixed", "ratio", "build vs fixed"
    );
    let mut missed = Vec::new();
    for n in NS {
        let all = backends(n);
        let size = maglev::table_size_for(n);
        let auto = disruption(&all, size);
        let fixed = disruption(&all, BASELINE_SIZE);
        println!(
            "{n:>5} | {size:>9} {:>5}KiB {:>8.3}x | {BASELINE_SIZE:>9} {:>6.3}x | {:>11.2}x",
            u64::from(size) * 8 / 1024,
            auto.ratio,
            fixed.ratio,
            auto.build.as_secs_f64() / fixed.build.as_secs_f64(),
        );
        if n >= 10 && auto.ratio > TARGET {
            missed.push(format!("N={n}: {:.3}x", auto.ratio));
        }
    }
    // The worst case of each size: the most backends that still get it
    // (past the last, the size stops growing with N).
    println!("Worst case of each automatic size: the most backends that get it");
    println!("{:>9} | {:>5} {:>9}", "size", "N", "ratio");
    let mut n = 2;
    loop {
        let size = maglev::table_size_for(n);
        // The last N this size holds by the rule (the cap holds all beyond).
        while maglev::slots_wanted(n + 1) <= u64::from(size) {
            n += 1;
        }
        let f = disruption(&backends(n), size);
        println!("{size:>9} | {n:>5} {:>8.3}x", f.ratio);
        if n >= 10 && f.ratio > TARGET {
            missed.push(format!("N={n}: {:.3}x", f.ratio));
        }
        if size == maglev::MAX_TABLE_SIZE {
            println!("beyond {n} backends the size stays {size}");
            break;
        }
        n += 1;
    }
    if missed.is_empty() {
        println!("target <= {TARGET}x at N = 10, 100, 1000: met");
    } else {
        println!(
            "target <= {TARGET}x at N = 10, 100, 1000: MISSED at {} (automatic sizes stop at {}: see maglev/size.rs)",
            missed.join(", "),
            maglev::MAX_TABLE_SIZE
        );
    }
}
