//! End to end in network namespaces: the controller against the fake API
//! server and two agents in node mode, each in its own director namespace,
//! with a client and backends (see `cluster_support`). A VirtualServer
//! created through the API carries real TCP traffic through both directors;
//! restarts of agents and controllers, a leader change, and the API server
//! going away change nothing on the wire.

mod cluster_support;

use std::time::Duration;

use cluster_support::{Cluster, NODES};

fn prefix(tag: char) -> String {
    format!("bcl{tag}{}", std::process::id() % 10_000)
}

const B1: &str = "198.51.100.11:8080";
const B2: &str = "198.51.100.12:8080";

#[test]
fn a_virtual_server_applied_through_the_api_forwards_through_both_directors() {
    let mut c = Cluster::new(&prefix('a'), 2, &[1, 2]);
    c.start_controller("ctl-1");
    for i in 0..2 {
        c.start_agent(i);
    }
    for i in 0..2 {
        c.agent(i).wait_log("controller link up");
    }
    // One VIP announced by each node: each VIP's traffic crosses its node.
    let vip_a = Cluster::vip_announced_by(NODES[0], &[]);
    let vip_b = Cluster::vip_announced_by(NODES[1], &[vip_a]);
    c.virtual_server("alpha", vip_a);
    c.virtual_server("beta", vip_b);

    let greeting = c.wait_served(vip_a, "alpha through node-a");
    assert!(greeting.starts_with('b'), "{greeting}");
    c.wait_served(vip_b, "beta through node-b");
    for _ in 0..4 {
        c.probe(vip_a).unwrap();
        c.probe(vip_b).unwrap();
    }
    assert!(c.new_flows(0, vip_a) >= 5, "node-a carried alpha's flows");
    assert_eq!(c.new_flows(1, vip_a), 0, "node-b does not announce alpha");
    assert!(c.new_flows(1, vip_b) >= 5, "node-b carried beta's flows");
    assert_eq!(c.new_flows(0, vip_b), 0, "node-a does not announce beta");
    // Both nodes direct both objects (a failover needs no push).
    for i in 0..2 {
        assert_eq!(c.programmed_backends(i, vip_a), [B1, B2], "node {i}");
        assert_eq!(c.programmed_backends(i, vip_b), [B1, B2], "node {i}");
    }

    // An EndpointSlice change reaches both data planes.
    c.set_endpoints(&[2]);
    for i in 0..2 {
        eventually(&c, "b1 gone from both directors", |c| {
            c.programmed_backends(i, vip_a) == [B2] && c.programmed_backends(i, vip_b) == [B2]
        });
    }
    for _ in 0..6 {
        let g = c.probe(vip_a).unwrap();
        assert!(g.starts_with("b2 "), "only b2 serves now: {g}");
    }
}

/// Polls `check` every 200 ms for up to 30 s.
#[track_caller]
fn eventually(c: &Cluster, what: &str, check: impl Fn(&Cluster) -> bool) {
    let deadline = std::time::Instant::now() + cluster_support::CONVERGE;
    while !check(c) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {what}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
