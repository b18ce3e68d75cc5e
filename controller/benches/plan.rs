//! Planning benchmark: 10k VirtualServers, each with a serviceRef to a
//! Service with 10 endpoints, on 10 nodes, addresses from a pool.
//!
//! Prints the full computation time and peak heap (a counting allocator),
//! and the cost of one endpoint change through the incremental planner, with
//! the ratio against the full plan measured in the same run.
//! Run: `cargo bench -p ballast-controller --bench plan`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ballast_controller::fixtures::*;
use ballast_controller::plan::{Observed, PlanOptions, Planner, plan};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const OBJECTS: u32 = 10_000;
const ENDPOINTS: u32 = 10;
const NODES: u32 = 10;

fn world() -> Observed {
    scale_world(OBJECTS, ENDPOINTS, NODES)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let w = world();
    let options = PlanOptions::default();

    // Full plan: peak heap above the input, then time (median of 5).
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let p = plan(&w, options);
    let peak_mb = (PEAK.load(Ordering::Relaxed) - before) as f64 / 1e6;
    let served = p
        .statuses
        .values()
        .filter(|s| s.ready.status == ballast_controller::plan::CondStatus::True)
        .count();
    assert_eq!(served, OBJECTS as usize, "every object should be Ready");
    drop(p);
    let full = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let p = plan(&w, options);
                let d = t.elapsed();
                drop(p);
                d
            })
            .collect(),
    );

    // One endpoint flips readiness, applied incrementally (median of 200).
    let mut planner = Planner::new(&w, options);
    let mut times = Vec::new();
    for k in 0..200u32 {
        let i = (k * 7919) % OBJECTS;
        let slice = scale_endpoint_change(i, k % 2 != 0);
        let t = Instant::now();
        planner.apply_endpoint_slice(slice);
        times.push(t.elapsed());
    }
    let one = median(times);

    println!("plan: {OBJECTS} VirtualServers x {ENDPOINTS} endpoints, {NODES} nodes");
    println!(
        "  full plan        {:>9.1} ms   (target <= 200 ms)",
        full.as_secs_f64() * 1e3
    );
    println!("  full plan peak   {peak_mb:>9.1} MB   (target <= 300 MB, heap above the input)");
    println!(
        "  one endpoint chg {:>9.3} ms   (target <= 5 ms)",
        one.as_secs_f64() * 1e3
    );
    println!(
        "  full / incremental ratio: {:.0}x",
        full.as_secs_f64() / one.as_secs_f64()
    );
}
