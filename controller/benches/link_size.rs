//! Link size benchmark: bytes on the wire for one node of the 10k-object
//! scale world (10 endpoints each, 10 nodes): the full snapshot, and the
//! delta after one endpoint change through the incremental planner, with
//! their ratio (target: delta <= 1/1000 of the full sync). Sizes are the
//! encoded `ControllerMessage`s, before gRPC's 5-byte framing.
//! Run: `cargo bench -p ballast-controller --bench link_size` (the figures
//! do not depend on the build profile; `--profile dev` gives them sooner).

use ballast_controller::fixtures::{scale_endpoint_change, scale_world};
use ballast_controller::link::wire_sizes;
use ballast_controller::plan::{PlanOptions, Planner};

const OBJECTS: u32 = 10_000;
const ENDPOINTS: u32 = 10;
const NODES: u32 = 10;

fn main() {
    let mut planner = Planner::new(
        &scale_world(OBJECTS, ENDPOINTS, NODES),
        PlanOptions::default(),
    );
    let node = "node-0";
    let old = planner.plan().nodes[node].clone();
    assert_eq!(
        old.services.len(),
        OBJECTS as usize,
        "every object on {node}"
    );
    planner.apply_endpoint_slice(scale_endpoint_change(OBJECTS / 2, false));
    let new = &planner.plan().nodes[node];
    let sizes = wire_sizes(&old, new, 1);

    println!("link size: {OBJECTS} VirtualServers x {ENDPOINTS} endpoints, one node of {NODES}");
    println!("  full snapshot      {:>10} bytes", sizes.snapshot);
    println!("  one-endpoint delta {:>10} bytes", sizes.delta);
    println!(
        "  delta / full ratio: 1/{:.0}   (target <= 1/1000)",
        sizes.snapshot as f64 / sizes.delta as f64
    );
}
