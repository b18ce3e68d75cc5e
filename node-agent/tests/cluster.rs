//! End to end in network namespaces: the controller against the fake API
//! server and two agents in node mode, each in its own director namespace,
//! with a client and backends (see `cluster_support`). A VirtualServer
//! created through the API carries real TCP traffic through both directors;
//! restarts of agents and controllers, a leader change, and the API server
//! going away change nothing on the wire.

mod cluster_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ballast_testbed::{TRANSFER_CHUNK, TransferReport, tcp_transfer};
use cluster_support::{Cluster, NODES};
use serde_json::Value;

fn prefix(tag: char) -> String {
    format!("bcl{tag}{}", std::process::id() % 10_000)
}

const B1: &str = "198.51.100.11:8080";
const B2: &str = "198.51.100.12:8080";

#[test]
fn a_virtual_server_applied_through_the_api_forwards_through_both_directors() {
    let mut c = Cluster::new(&prefix('a'), 2, &[1, 2]);
    c.start_controller("ctl-1", 0);
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
    for i in 0..2 {
        c.wait_listed(i, vip_a);
        c.wait_listed(i, vip_b);
    }
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

/// A connection through `vip` streaming `chunks` KiB, one every 20 ms,
/// on its own thread: it must survive whatever happens meanwhile.
fn long_transfer(
    c: &Cluster,
    vip: Ipv4Addr,
    chunks: usize,
) -> std::thread::JoinHandle<anyhow::Result<TransferReport>> {
    let ns = c.tb.client_ns().to_string();
    std::thread::spawn(move || {
        tcp_transfer(
            &ns,
            SocketAddrV4::new(vip, 80),
            chunks * TRANSFER_CHUNK,
            Duration::from_millis(20),
        )
    })
}

#[track_caller]
fn survived(what: &str, t: std::thread::JoinHandle<anyhow::Result<TransferReport>>) {
    let report = t
        .join()
        .expect("transfer thread")
        .unwrap_or_else(|e| panic!("{what}: the connection broke: {e:#}"));
    assert_eq!(report.bytes_received, report.bytes_sent, "{what}");
}

/// After a restart or a leader change: no agent applied anything new and
/// both data planes program what they did before.
#[track_caller]
fn nothing_changed<W: PartialEq + std::fmt::Debug>(
    c: &Cluster,
    versions: [usize; 2],
    wire: &impl Fn(&Cluster) -> W,
    before: &W,
) {
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        [applied(c, 0), applied(c, 1)],
        versions,
        "nothing was resent:\n{}",
        c.logs()
    );
    assert_eq!(&wire(c), before);
}

/// How many versions node `i`'s agent has applied from controllers.
fn applied(c: &Cluster, i: usize) -> usize {
    c.agents[i]
        .as_ref()
        .unwrap()
        .process
        .log()
        .matches("applied the controller's version")
        .count()
}

#[test]
fn agent_and_controller_restarts_a_leader_change_and_a_lost_api_server_change_nothing_on_the_wire()
{
    let mut c = Cluster::new(&prefix('r'), 2, &[1, 2]);
    c.start_controller("ctl-1", 0);
    for i in 0..2 {
        c.start_agent(i);
    }
    let vip_a = Cluster::vip_announced_by(NODES[0], &[]);
    let vip_b = Cluster::vip_announced_by(NODES[1], &[vip_a]);
    c.virtual_server("alpha", vip_a);
    c.virtual_server("beta", vip_b);
    c.wait_served(vip_a, "alpha");
    c.wait_served(vip_b, "beta");
    for i in 0..2 {
        c.wait_listed(i, vip_a);
        c.wait_listed(i, vip_b);
    }
    let wire = |c: &Cluster| {
        (0..2)
            .map(|i| {
                (
                    c.programmed_backends(i, vip_a),
                    c.programmed_backends(i, vip_b),
                )
            })
            .collect::<Vec<_>>()
    };
    let both = (
        vec![B1.to_string(), B2.into()],
        vec![B1.to_string(), B2.into()],
    );
    let before = vec![both.clone(), both];
    // Each VIP is served once its announcer has it; the other node may
    // apply it a moment later.
    eventually(&c, "both nodes program both objects", |c| wire(c) == before);

    // 1. node-a's agent restarts under an open connection: it re-applies
    //    the state it kept, says Hello with its version and hash, and the
    //    controller, holding the same content, sends nothing.
    let versions_a = applied(&c, 0);
    let t = long_transfer(&c, vip_a, 300);
    std::thread::sleep(Duration::from_millis(500));
    c.agent(0).stop(Duration::from_secs(10));
    c.start_agent(0);
    c.agent(0)
        .wait_log("re-applied the node state kept by the previous run");
    c.agent(0).wait_log_count("controller link up", 2);
    survived("agent restart", t);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        applied(&c, 0),
        versions_a,
        "nothing was resent:\n{}",
        c.logs()
    );
    assert_eq!(wire(&c), before);

    // 2. The controller restarts (same address): agents reconnect, the new
    //    controller adopts their versions, no VIP moves.
    let versions = [applied(&c, 0), applied(&c, 1)];
    // "controller link up" counts each agent reaches (node-a restarted once).
    let ups = [3, 2];
    let t = long_transfer(&c, vip_b, 300);
    c.stop_controller(0);
    c.start_controller("ctl-2", 0);
    for (i, up) in ups.into_iter().enumerate() {
        c.agent(i).wait_log_count("controller link up", up);
    }
    survived("controller restart", t);
    nothing_changed(&c, versions, &wire, &before);
    // Still announced by node-a: new connections cross it, none node-b.
    // (At least one more new flow: a connection whose source port repeats
    // an earlier one's may find that flow's entry still there.)
    let flows_a = c.new_flows(0, vip_a);
    for _ in 0..3 {
        c.probe(vip_a).unwrap();
    }
    assert!(
        c.new_flows(0, vip_a) > flows_a,
        "alpha still announced by node-a"
    );
    assert_eq!(c.new_flows(1, vip_a), 0, "node-b never carried alpha");

    // 3. Leader change: a standby on the second address takes over when
    //    the leader stops; the agents find it there.
    let standby = c.start_controller("ctl-3", 1);
    std::thread::sleep(Duration::from_secs(1));
    let t = long_transfer(&c, vip_a, 300);
    c.stop_controller(1); // ctl-2, the leader
    for i in 0..2 {
        eventually(&c, "the agents reach the new leader", |c| {
            let log = c.agents[i].as_ref().unwrap().process.log();
            log.lines()
                .rfind(|l| l.contains("controller link"))
                .is_some_and(|l| l.contains("controller link up") && l.contains(":9444"))
        });
    }
    survived("leader change", t);
    nothing_changed(&c, versions, &wire, &before);
    assert!(
        c.controllers[standby]
            .handle
            .as_ref()
            .unwrap()
            .leader
            .borrow()
            .to_owned()
    );

    // 4. The API server goes away: the controller cannot renew its lease
    //    and steps down; the agents keep forwarding what they applied.
    let t = long_transfer(&c, vip_a, 400);
    let t2 = long_transfer(&c, vip_b, 400);
    let api = c.api.take().unwrap();
    c.rt.block_on(api.shutdown());
    survived("API server gone (alpha)", t);
    survived("API server gone (beta)", t2);
    for _ in 0..4 {
        c.probe(vip_a).unwrap();
        c.probe(vip_b).unwrap();
    }
    assert_eq!(wire(&c), before);
}

/// The VirtualServer's status once `check` holds for it.
#[track_caller]
fn status_when(c: &Cluster, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + cluster_support::CONVERGE;
    loop {
        if let Some(status) = c.virtual_server_object(name).map(|o| o["status"].clone()) {
            if check(&status) {
                return status;
            }
            last = status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: timed out waiting for {what}; last status:\n{}\n{}",
            serde_json::to_string_pretty(&last).unwrap(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[test]
fn status_shows_what_each_agent_programmed_and_a_refusal_names_the_object() {
    let mut c = Cluster::new(&prefix('s'), 2, &[1, 2]);
    c.start_controller("ctl-1", 0);
    // Ring storage for two services of two backends (257 slots each): a
    // third one does not fit.
    for i in 0..2 {
        c.start_agent_with(i, &["--ring-slots", "600"]);
    }
    let vip_a = Cluster::vip_announced_by(NODES[0], &[]);
    let vip_b = Cluster::vip_announced_by(NODES[1], &[vip_a]);
    c.virtual_server("alpha", vip_a);
    c.virtual_server("beta", vip_b);
    c.wait_served(vip_a, "alpha");
    c.wait_served(vip_b, "beta");

    let alpha = status_when(&c, "alpha", "2/2 programmed", |s| {
        s["programmedNodes"] == "2/2" && condition(s, "Programmed")["status"] == "True"
    });
    let nodes = alpha["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{alpha}");
    for n in nodes {
        assert_eq!(n["programmed"], true, "{n}");
        assert!(n["appliedVersion"].as_u64().unwrap() >= 1, "{n}");
        let announcing = n["name"] == NODES[0];
        assert_eq!(
            n["announcing"], announcing,
            "only node-a announces alpha: {n}"
        );
    }
    assert_eq!(alpha["announcedBy"], NODES[0], "the ANNOUNCED BY column");

    // A third object no agent has room for: both refuse it, its status
    // says why, and the others keep serving and stay programmed.
    let vip_c = Cluster::vip_announced_by(NODES[0], &[vip_a, vip_b]);
    c.virtual_server("gamma", vip_c);
    let gamma = status_when(
        &c,
        "gamma",
        "Programmed False with the agents' reason",
        // Refused, not Pending: before both agents have answered, the
        // condition is already False ("0/2 director nodes have applied").
        |s| {
            condition(s, "Programmed")["reason"] == "Refused"
                && s["nodes"].as_array().is_some_and(|ns| {
                    ns.len() == 2
                        && ns
                            .iter()
                            .all(|n| n["message"].as_str().is_some_and(|m| m.contains("ring")))
                })
        },
    );
    let message = condition(&gamma, "Programmed")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("ring"), "the agent's reason: {message}");
    assert_eq!(gamma["programmedNodes"], "0/2", "{gamma}");
    assert!(
        gamma.get("announcedBy").is_none(),
        "refused everywhere: announced by nobody: {gamma}"
    );
    for n in gamma["nodes"].as_array().unwrap() {
        assert_eq!(n["programmed"], false, "{n}");
        assert_eq!(
            n["announcing"], false,
            "a refusing node announces nothing: {n}"
        );
        assert!(
            n["message"].as_str().is_some_and(|m| m.contains("ring")),
            "{n}"
        );
    }
    c.probe(vip_a).unwrap();
    c.probe(vip_b).unwrap();
    let alpha = c.virtual_server_object("alpha").unwrap()["status"].clone();
    assert_eq!(alpha["programmedNodes"], "2/2", "{alpha}");
    assert_eq!(condition(&alpha, "Programmed")["status"], "True", "{alpha}");
}

#[test]
fn an_agent_with_a_certificate_from_another_ca_is_refused_and_serves_nothing() {
    let mut c = Cluster::new(&prefix('t'), 1, &[1]);
    c.start_controller("ctl-1", 0);
    let stranger = ballast_testbed::pki::Ca::new("another CA");
    c.start_agent_as(0, stranger.agent(NODES[0]), &[]);
    c.start_agent(1);
    // node-a's agent is refused on its first RPC (under TLS 1.3 its
    // handshake seems to succeed) and keeps retrying.
    let refused = |c: &Cluster| {
        let log = c.agents[0].as_ref().unwrap().process.log();
        log.lines()
            .rfind(|l| l.contains("controller link: ") && l.contains(":9443"))
            .map(str::to_string)
    };
    eventually(&c, "node-a's agent refused", |c| refused(c).is_some());
    std::thread::sleep(Duration::from_secs(2));
    let log = c.agents[0].as_ref().unwrap().process.log();
    assert!(!log.contains("controller link up"), "{log}");
    // What the agent sees at its first RPC varies with the race between
    // the controller's TLS alert and its close (UnknownCA, the connection
    // closed, a broken pipe); that it never got a stream is what counts,
    // and the controller never counted it connected (status below).
    assert!(refused(&c).is_some());
    // The controller counts it absent: node-b alone directs, so a VIP
    // node-a would have announced is served by node-b.
    let vip = Cluster::vip_announced_by(NODES[0], &[]);
    c.virtual_server("alpha", vip);
    c.wait_served(vip, "alpha through node-b");
    c.wait_listed(1, vip);
    assert!(c.new_flows(1, vip) >= 1);
    let status = status_when(&c, "alpha", "node-a absent", |s| {
        s["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["name"] == NODES[0] && n["programmed"] == false)
        })
    });
    assert_eq!(status["programmedNodes"], "1/1", "{status}");
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
