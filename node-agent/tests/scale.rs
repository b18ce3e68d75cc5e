//! Thousands of services through the real agent core (`Agent::apply`, in
//! process) on a director attached to a veth in the namespace testbed: the
//! last service forwards a real TCP connection; a reload that changes
//! nothing writes nothing (no map entry, no inventory); one removed backend
//! rewrites that service alone. The 10k-service version is the issue's
//! configuration (VIPs 203.0.113.100–139 × 250 ports).
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use ballast_agent::abi;
use ballast_agent::core::{
    Agent, AgentOptions, Announcements, ApplyReport, Backend, InventoryPlace, NodeDesired, Service,
    Settings,
};
use ballast_agent::lifecycle::identity::{self, Interface};
use ballast_api::{Forwarding, Protocol};
use ballast_testbed::lab::{director_settings, open_director};
use ballast_testbed::{SNAT_ADDR, Testbed, TestbedSpec, in_netns, require_root, servers};

const T: Duration = Duration::from_secs(5);
const PORTS_PER_VIP: usize = 250;
const BACKENDS: usize = 4;

/// Service `i`: VIP 203.0.113.(100 + i / 250), port 1000 + i % 250, the
/// testbed's backends `backends` on 8080.
fn service(i: usize, backends: &[usize]) -> Service {
    Service::new(
        format!("scale/svc-{i}"),
        (vip(i), 1000 + (i % PORTS_PER_VIP) as u16, Protocol::Tcp),
        Forwarding::FullNat,
        backends.iter().map(|&b| Backend {
            address: ballast_testbed::backend_addr(b),
            port: 8080,
            weight: 1,
        }),
    )
}

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, 100 + (i / PORTS_PER_VIP) as u8)
}

fn version(version: u64, services: Vec<Service>) -> NodeDesired {
    NodeDesired {
        version,
        settings: Settings {
            snat_addrs: vec![SNAT_ADDR],
            ..Default::default()
        },
        announce: Announcements {
            l2: services.iter().map(|s| s.vip).collect(),
            bgp: Default::default(),
        },
        services,
    }
}

/// Removes the pins and the inventory however the test ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir_all(identity::run_root(&self.0));
    }
}

/// The backends (`bN`) that answered `count` connections to the last
/// service; every connection must succeed.
fn backends_reached(tb: &Testbed, n: usize, count: usize) -> BTreeSet<String> {
    let last = n - 1;
    let target = SocketAddrV4::new(vip(last), 1000 + (last % PORTS_PER_VIP) as u16);
    servers::tcp_probes(tb.client_ns(), target, count, 4, T)
        .unwrap()
        .into_iter()
        .map(|r| {
            let line = r.unwrap_or_else(|e| panic!("connection to {target}: {e:#}"));
            line.split_whitespace().next().unwrap().to_string()
        })
        .collect()
}

fn load_and_forward(n: usize) {
    require_root("XDP and network namespaces");
    let prefix = format!("bsc{}", std::process::id() % 1000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(BACKENDS)).unwrap();
    tb.attach_test_xdp_pass().unwrap();
    let _servers = tb.serve(8080).unwrap();
    let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/ballast-{prefix}")));
    let iface = in_netns(tb.director_ns(), || Interface::resolve(tb.director_if()))
        .unwrap()
        .unwrap();
    let director = open_director(&tb, &iface.pin_dir(&pins.0), abi::RING_SLOTS_DEFAULT).unwrap();
    let mut agent = Agent::new(
        director,
        director_settings(),
        AgentOptions {
            toa_mss: 1452,
            inventory: Some(InventoryPlace {
                pin_root: pins.0.clone(),
                key: iface.key,
            }),
            metrics: None,
            sweep_interval: Duration::ZERO,
            standby: None,
            garp_from: None,
        },
    );
    // From the director's namespace: new backends' next hops are resolved
    // with `ip` there.
    let apply = |agent: &mut Agent, d: NodeDesired| {
        in_netns(tb.director_ns(), || agent.apply(d))
            .unwrap()
            .unwrap()
    };
    let all: Vec<usize> = (1..=BACKENDS).collect();
    let services: Vec<Service> = (0..n).map(|i| service(i, &all)).collect();
    let ok = |v: u64| ApplyReport {
        applied_version: v,
        errors: vec![],
        programmed: n,
    };

    // The inventory is written apart from the apply (the run loop does it
    // in the background, coalesced), here at once.
    assert_eq!(apply(&mut agent, version(1, services.clone())), ok(1));
    let cold = agent.last_apply().clone();
    assert_eq!(cold.dataplane.tables_written, n);
    assert!(
        agent.write_inventory().unwrap(),
        "written after the cold load"
    );
    let inventory = std::fs::read(ballast_agent::inventory::path_for(&pins.0, &iface.key)).unwrap();
    assert_eq!(
        backends_reached(&tb, n, 40),
        ["b1", "b2", "b3", "b4"].map(String::from).into()
    );

    // The same services again: nothing is written, not even the inventory.
    assert_eq!(apply(&mut agent, version(2, services.clone())), ok(2));
    let no_op = agent.last_apply();
    assert_eq!(
        (
            no_op.dataplane.entries_written,
            no_op.dataplane.tables_written
        ),
        (0, 0),
        "{no_op:?}"
    );
    assert!(!agent.write_inventory().unwrap(), "not stale after a no-op");
    assert_eq!(
        std::fs::read(ballast_agent::inventory::path_for(&pins.0, &iface.key)).unwrap(),
        inventory
    );

    // Backend 1 leaves the last service: its retirement, its new table and
    // its service entry are all that is written.
    let mut changed = services;
    changed[n - 1] = service(n - 1, &[2, 3, 4]);
    assert_eq!(apply(&mut agent, version(3, changed)), ok(3));
    let one = agent.last_apply();
    assert_eq!(
        (one.dataplane.entries_written, one.dataplane.tables_written),
        (3, 1),
        "{one:?}"
    );
    assert!(agent.write_inventory().unwrap(), "stale after one change");
    assert_eq!(
        backends_reached(&tb, n, 30),
        ["b2", "b3", "b4"].map(String::from).into()
    );
}

/// About 8 s in a debug build on a shared 2-core VM, so it runs in CI as
/// it is (no 2k-service stand-in needed).
#[test]
fn ten_thousand_services_load_and_the_last_forwards() {
    load_and_forward(10_000);
}
