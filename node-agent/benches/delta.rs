//! The agent's side of one link delta (issue 14's latency target, issue
//! 11's "a reload costs what changed"): N services (10k by default, four
//! backends each, one VirtualServer each with a VIP of its own announced
//! over L2, as the controller sends them)
//! held by a link `Session` over a real `Agent` and data plane; then
//! deltas that each replace one backend of one service, taken through the
//! path the link client takes (session receive -> core apply -> session
//! answer -> the state file kept), phase by phase (each phase's own
//! percentile; the total's beside them). No controller, no
//! network: what the agent itself costs per change.
//!
//! Baseline, in the same run: the snapshot of the whole state taken the
//! same way (the full sync's agent share); the per-delta figures are
//! printed beside it as a ratio. A version-only delta (nothing changed)
//! is measured too.
//!
//! Measured here (2 shared, loaded cores, 200 deltas): one delta p50 0.18
//! ms / p99 1.4 ms in all (receive 0.13 ms, most of it hashing the 10k
//! announced VIPs; apply 0.04; the state file 0.007, an append), against
//! 0.3 s for the full snapshot the same way (ratio 0.0006 at p50). Before
//! deltas were taken in place the same delta cost ~50-200 ms (the link
//! bench's former "whole state converted + applied" line) and writing the
//! whole state file ~4 ms.
//!
//! Run as root: `nice cargo bench -p ballast-agent --bench delta`. Knobs:
//! BALLAST_DELTA_SERVICES (10000), BALLAST_DELTA_CHANGES (200).
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballast_agent::abi;
use ballast_agent::core::Agent;
use ballast_agent::dataplane::NodeSettings;
use ballast_agent::link::convert::Defaults;
use ballast_agent::link::persist;
use ballast_agent::link::session::{Session, Step, Work};
use ballast_proto::v1::{self, ControllerMessage, agent_message, controller_message::Kind};
use ballast_testbed::packet::in_private_netns;

const SNAT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SNAT_PORTS: (u16, u16) = (10_000, 29_999);
const BACKENDS: usize = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        .unwrap_or(default)
}

fn backend(i: usize, b: usize) -> Vec<u8> {
    Ipv4Addr::new(10, (i >> 8) as u8, (i & 0xff) as u8, b as u8 + 1)
        .octets()
        .to_vec()
}

/// VirtualServer `svc-i`: a VIP of its own, port 80, four backends.
fn service(i: usize) -> v1::Service {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32);
    v1::Service {
        object: Some(v1::ObjectRef {
            kind: v1::ObjectKind::VirtualServer as i32,
            namespace: "bench".into(),
            name: format!("svc-{i:05}"),
        }),
        vips: vec![vip.octets().to_vec()],
        ports: vec![v1::Port {
            port: 80,
            protocol: v1::Protocol::Tcp as i32,
            backends: (0..BACKENDS)
                .map(|b| v1::Backend {
                    address: backend(i, b),
                    port: 8080,
                    weight: 1,
                })
                .collect(),
        }],
        forwarding: v1::Forwarding::FullNat as i32,
        ..Default::default()
    }
}

fn settings() -> NodeSettings {
    NodeSettings {
        snat_addrs: vec![SNAT_ADDR],
        snat_ports: SNAT_PORTS,
        ..Default::default()
    }
}

fn agent(pin_dir: PathBuf, n: usize) -> Agent {
    let ring_slots = abi::RING_SLOTS_DEFAULT.max(n as u32 * 300);
    ballast_testbed::in_process::agent(&pin_dir, settings(), ring_slots, None)
}

/// One message's trip through the agent, by phase.
#[derive(Default, Clone, Copy)]
struct Trip {
    receive: Duration,
    apply: Duration,
    answer: Duration,
    persist: Duration,
}

impl Trip {
    fn total(&self) -> Duration {
        self.receive + self.apply + self.answer + self.persist
    }
}

/// What the link client does with one message (`link::client::handle`).
fn trip(
    session: &mut Session,
    agent: &mut Agent,
    msg: ControllerMessage,
    keeper: &mut persist::Keeper,
) -> Trip {
    let mut t = Trip::default();
    let start = Instant::now();
    let step = session.receive(msg);
    t.receive = start.elapsed();
    let Step::Apply(mut candidate) = step else {
        panic!("not applied")
    };
    let version = candidate.version;
    let start = Instant::now();
    let report = match candidate.take_work() {
        Work::Whole(d) => agent.apply(d),
        Work::Change(c) => agent.apply_change(c),
    }
    .expect("apply");
    t.apply = start.elapsed();
    let start = Instant::now();
    let answer = session.applied(*candidate, &report);
    t.answer = start.elapsed();
    assert!(
        matches!(answer.kind, Some(agent_message::Kind::Ack(_))),
        "{answer:?}"
    );
    assert_eq!(session.applied_version(), version);
    let start = Instant::now();
    let held = &session.held().expect("held").state;
    keeper.keep(held, session.last_delta()).expect("persist");
    t.persist = start.elapsed();
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Each phase's own percentile (and the total's).
fn pct(trips: &[Trip], p: f64) -> (Trip, Duration) {
    let at = |f: fn(&Trip) -> Duration| {
        let mut v: Vec<Duration> = trips.iter().map(f).collect();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let t = Trip {
        receive: at(|t| t.receive),
        apply: at(|t| t.apply),
        answer: at(|t| t.answer),
        persist: at(|t| t.persist),
    };
    (t, at(Trip::total))
}

fn row(name: &str, (t, total): (Trip, Duration), full: &Trip) {
    println!(
        "  {name:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} | {:>9.3} {:>9.5}x",
        ms(t.receive),
        ms(t.apply),
        ms(t.answer),
        ms(t.persist),
        ms(total),
        total.as_secs_f64() / full.total().as_secs_f64()
    );
}

fn run(n: usize, changes: usize) {
    let dir = PathBuf::from("/sys/fs/bpf/ballast-bench-delta").join(std::process::id().to_string());
    // Under /run, as the agent keeps it (tmpfs).
    let run_dir = PathBuf::from(format!("/run/ballast-bench-delta-{}", std::process::id()));
    let state_file = run_dir.join("node-state.pb");
    let mut keeper = persist::Keeper::new(state_file.clone());
    let mut agent = agent(dir.clone(), n);
    let defaults = Defaults {
        snat_addrs: vec![SNAT_ADDR],
        snat_ports: SNAT_PORTS,
    };
    let mut session = Session::new(defaults, None);
    // Every VIP announced over L2, as a single director announces them.
    let services: Vec<v1::Service> = (0..n).map(service).collect();
    let mut l2: Vec<Vec<u8>> = services.iter().map(|s| s.vips[0].clone()).collect();
    l2.sort_by(|a, b| ballast_proto::state::address_order(a, b));
    let mut state = v1::NodeState {
        version: 1,
        services,
        announcements: Some(v1::Announcements { l2, bgp: vec![] }),
        ..Default::default()
    };
    let full = trip(
        &mut session,
        &mut agent,
        ControllerMessage {
            kind: Some(Kind::Snapshot(state.clone())),
        },
        &mut keeper,
    );
    let mut trips = Vec::new();
    let mut empty = Vec::new();
    for k in 0..changes {
        let i = (k * 7919) % n;
        let mut s = state.services[i].clone();
        s.ports[0].backends[k % BACKENDS].address = Ipv4Addr::new(172, 17, (k >> 8) as u8, k as u8)
            .octets()
            .to_vec();
        state.services[i] = s.clone();
        let delta = v1::Delta {
            base_version: state.version,
            version: state.version + 1,
            upserted: vec![s],
            ..Default::default()
        };
        state.version += 1;
        trips.push(trip(
            &mut session,
            &mut agent,
            ControllerMessage {
                kind: Some(Kind::Delta(delta)),
            },
            &mut keeper,
        ));
        if k % 10 == 0 {
            let delta = v1::Delta {
                base_version: state.version,
                version: state.version + 1,
                ..Default::default()
            };
            state.version += 1;
            empty.push(trip(
                &mut session,
                &mut agent,
                ControllerMessage {
                    kind: Some(Kind::Delta(delta)),
                },
                &mut keeper,
            ));
        }
    }
    assert_eq!(
        session.held().expect("held").hash,
        ballast_proto::content_hash(&state),
        "the held hash is the whole state's"
    );
    assert_eq!(
        persist::load(&state_file).expect("reading the kept state"),
        Some(state.clone()),
        "the kept state (snapshot and log) reads back as the whole state"
    );
    println!(
        "{n} services x {BACKENDS} backends; {changes} one-backend deltas (+{} version-only), no controller, no network",
        empty.len()
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>10}",
        "ms", "receive", "apply", "answer", "persist", "total", "vs full"
    );
    row("full snapshot (base)", (full, full.total()), &full);
    row("one delta p50", pct(&trips, 0.5), &full);
    row("one delta p99", pct(&trips, 0.99), &full);
    row("version-only p50", pct(&empty, 0.5), &full);
    println!(
        "  node-state.pb {} bytes, node-state.log {} bytes (appended per delta, folded past a quarter of the snapshot)",
        std::fs::metadata(&state_file).map_or(0, |m| m.len()),
        std::fs::metadata(persist::log_path(&state_file)).map_or(0, |m| m.len())
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&run_dir);
}

fn main() {
    ballast_testbed::require_root("the delta benchmark loads the XDP data plane");
    let n = env_or("BALLAST_DELTA_SERVICES", 10_000);
    let changes = env_or("BALLAST_DELTA_CHANGES", 200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    in_private_netns(move |_| {
        let _in_runtime = rt.enter();
        run(n, changes)
    });
}
