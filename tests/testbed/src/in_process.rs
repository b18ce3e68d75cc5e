//! The agent core in the test's own process, over a fresh data plane: what
//! the core's tests and the apply benchmarks drive directly, without a
//! source or an agent binary.
use std::path::Path;
use std::time::Duration;

use ballast_agent::core::{Agent, AgentOptions};
use ballast_agent::dataplane::{Director, LoadOptions, NodeSettings, XdpAttachMode};
use ballast_agent::standalone::desired::DEFAULT_TOA_MSS;

/// An agent core over a data plane loaded with maps pinned at `pin_dir`,
/// attached to no interface, written from `settings`; `ring_slots` and
/// `backend_slots` as the agent's flags. No inventory, metrics or sweeper.
/// Call inside `packet::in_private_netns`.
pub fn agent(
    pin_dir: &Path,
    settings: NodeSettings,
    ring_slots: u32,
    backend_slots: Option<u32>,
) -> Agent {
    let load = LoadOptions {
        interface: None,
        pin_dir: pin_dir.to_path_buf(),
        ring_slots,
        backend_slots,
        conntrack_entries: Some(65_536),
        mode: XdpAttachMode::Auto,
    };
    let director = Director::open(&load, &settings, None).expect("opening the data plane");
    Agent::new(
        director,
        settings,
        AgentOptions {
            toa_mss: DEFAULT_TOA_MSS,
            inventory: None,
            metrics: None,
            sweep_interval: Duration::ZERO,
            standby: None,
            garp_from: None,
        },
    )
}
