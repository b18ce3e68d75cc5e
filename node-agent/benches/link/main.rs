//! Link benchmark (issue 14): the controller -> agent link at 10k services,
//! everything in one process on loopback: the fake API server, the
//! controller (planning loop + link server, plain TCP) and one agent (the
//! agent core over a real data plane, fed by the link client).
//!
//! Figures, each against a baseline measured in the same run:
//! - Full sync: wall time from the agent's dial to the controller holding
//!   its Ack of the whole node state (hash equal to the plan's), and the
//!   snapshot's encoded size. Baseline: the same state taken straight
//!   through a link session and an `Agent` on a second data plane, i.e.
//!   the agent's own share of the work; the ratio is what the controller
//!   and the link add (the replan the agent's arrival causes, encoding, the
//!   transfer). Then the agent's own share of one endpoint delta, the same
//!   way (session, core, answer; `--bench delta` measures it 200 times,
//!   phase by phase).
//! - One endpoint change: an EndpointSlice edit (one endpoint out, one in)
//!   timed from the API write returning to the new set of backends being
//!   in the agent's maps (polled: the service entry, its Maglev ring and
//!   the backend slots, as the XDP program reads them), and to the
//!   controller receiving the agent's Ack. Baseline: the same write's trip
//!   from being sent to a plain watcher of EndpointSlices (what the
//!   controller's reflector waits for at least; counted from the write
//!   sent, as the fake API server delivers the event before it answers). The controller's
//!   debounce is leading-edge (a change after a quiet spell is planned at once), so with the
//!   gap between changes above it, it adds nothing; it is printed. Each change waits for the previous one's Ack plus a gap.
//! - Bytes of that one-endpoint delta against the full snapshot.
//!
//! The data plane is loaded and pinned, not attached (as the other benches
//! and the packet lab do): attached in node mode, the agent also resolves a
//! next hop per new backend address (`ip route get`, a few ms each), which
//! these figures leave out.
//!
//! Measured here (2 shared cores, other builds running; 10k objects, 1000
//! changes, the code of stop 10): one change reaches the agent's maps at
//! p50 8.9 / p90 12.7 / p99 17.5 ms (max 271), against a watch p99 of 5.3
//! ms; the controller plans each in 4.7 ms (mean), the agent's share is
//! ~2 ms. Full sync 970 kB in 0.55 s (1.4x the direct baseline, 0.38 s).
//! The delta is 95 bytes, 1/10211 of the snapshot. (At stop 9 the same
//! change took p50 2240 / p99 2678 ms: every push rewrote every object's
//! status, the status pass held the loop, and the agent converted and
//! applied its whole state per delta.)
//!
//! Run as root: `nice cargo bench -p ballast-agent --bench link`. Knobs
//! (environment): BALLAST_LINK_OBJECTS (10000), BALLAST_LINK_CHANGES (1000),
//! BALLAST_LINK_DEBOUNCE_MS (the controller's default), BALLAST_LINK_GAP_MS
//! (150).

mod measure;
mod probe;
mod world;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_agent::abi;
use ballast_agent::core::{self, Agent};
use ballast_agent::dataplane::NodeSettings;
use ballast_agent::dataplane::maps::Maps;
use ballast_agent::link::client::{self, LinkOptions};
use ballast_agent::link::convert::Defaults;
use ballast_agent::link::session::{Session, Step, Work};
use ballast_controller::k8s::leader::LeaseConfig;
use ballast_controller::k8s::run::{DEFAULT_DEBOUNCE, DEFAULT_RESYNC, Handle, Options, start};
use ballast_controller::link::{AgentReports, Security, node_state, serve, wire_sizes};
use ballast_controller::metrics::Metrics;
use ballast_controller::plan::{NodePlan, PlanOptions};
use ballast_fake_apiserver::FakeApiServer;
use ballast_proto::content_hash;
use ballast_proto::v1::{ControllerMessage, agent_message, controller_message::Kind};
use ballast_testbed::packet::in_private_netns;
use measure::{Samples, SeenAt, ms};
use prost::Message;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use world::{NODE, VIP_PORT};

const SNAT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SNAT_PORTS: (u16, u16) = (10_000, 29_999);
/// How long any one step may take before the bench fails.
const STEP_LIMIT: Duration = Duration::from_secs(600);
const CHANGE_LIMIT: Duration = Duration::from_secs(30);
/// Polling interval of the maps and the reports while a change travels.
const POLL: Duration = Duration::from_micros(50);

struct Config {
    objects: usize,
    changes: usize,
    debounce: Duration,
    gap: Duration,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        .unwrap_or(default)
}

impl Config {
    fn from_env() -> Config {
        let c = Config {
            objects: env_or("BALLAST_LINK_OBJECTS", 10_000) as usize,
            changes: env_or("BALLAST_LINK_CHANGES", 1_000) as usize,
            debounce: Duration::from_millis(env_or(
                "BALLAST_LINK_DEBOUNCE_MS",
                DEFAULT_DEBOUNCE.as_millis() as u64,
            )),
            gap: Duration::from_millis(env_or("BALLAST_LINK_GAP_MS", 150)),
        };
        assert!(c.objects >= 1 && c.changes >= 1, "objects and changes >= 1");
        c
    }
}

fn main() {
    ballast_testbed::require_root(
        "the link benchmark loads the XDP data plane in a scratch network namespace",
    );
    let cfg = Config::from_env();
    in_private_netns(move |_ifindex| run(cfg));
}

/// Pin directories of the two data planes, removed on drop.
struct Pins(PathBuf);

impl Pins {
    fn new() -> Pins {
        let dir =
            PathBuf::from("/sys/fs/bpf/ballast-bench-link").join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        Pins(dir)
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn settings() -> NodeSettings {
    NodeSettings {
        snat_addrs: vec![SNAT_ADDR],
        snat_ports: SNAT_PORTS,
        ..Default::default()
    }
}

fn defaults() -> Defaults {
    Defaults {
        snat_addrs: vec![SNAT_ADDR],
        snat_ports: SNAT_PORTS,
    }
}

/// An agent core over a fresh data plane pinned at `pin_dir`.
fn agent(pin_dir: &Path) -> Agent {
    ballast_testbed::in_process::agent(pin_dir, settings(), abi::RING_SLOTS_DEFAULT, None)
}

fn controller_options(debounce: Duration) -> Options {
    Options {
        plan: PlanOptions::default(),
        lease: LeaseConfig {
            namespace: world::NAMESPACE.into(),
            name: "ballast-controller".into(),
            identity: "bench".into(),
            duration: Duration::from_secs(15),
        },
        retry_period: Duration::from_secs(3),
        debounce,
        resync: DEFAULT_RESYNC,
        // Short: the agent dials a settled controller (see `run`).
        agent_grace: Duration::from_secs(1),
    }
}

/// Waits until the controller holds the agent's Ack of the node's whole
/// plan (`objects` services, same content hash); the version and the plan.
async fn synced(handle: &Handle, reports: &AgentReports, objects: usize) -> (u64, NodePlan) {
    let mut plans = handle.plans.clone();
    let mut changes = reports.changes();
    let mut want: Option<(Vec<u8>, NodePlan)> = None;
    loop {
        let plan = plans.borrow_and_update().clone();
        if let Some(np) = plan.as_ref().and_then(|p| p.nodes.get(NODE))
            && np.services.len() == objects
            && want.as_ref().is_none_or(|(_, w)| w != np)
        {
            want = Some((content_hash(&node_state(0, np)).to_vec(), np.clone()));
        }
        if let (Some((hash, np)), Some(r)) = (&want, reports.get(NODE))
            && r.applied_hash == *hash
        {
            return (r.applied_version, np.clone());
        }
        tokio::select! {
            _ = plans.changed() => {}
            _ = changes.changed() => {}
        }
    }
}

/// The agent's own share, without controller or link: `state` taken
/// through a link session and an agent core on a second data plane, as
/// the link client takes it (the baseline of the full sync), then a delta
/// replacing one endpoint of the edited service at the next version, taken
/// the same way (session, core, answer; the state file left out).
fn direct_apply(
    rt: &Runtime,
    pin_dir: &Path,
    state: &ballast_proto::v1::NodeState,
) -> (Duration, Duration) {
    let _in_runtime = rt.enter();
    let mut agent = agent(pin_dir);
    let mut session = Session::new(defaults(), None);
    let mut timed = |msg: Kind, version: u64| {
        let t = Instant::now();
        let Step::Apply(mut c) = session.receive(ControllerMessage { kind: Some(msg) }) else {
            panic!("version {version} not applied")
        };
        let report = match c.take_work() {
            Work::Whole(d) => agent.apply(d),
            Work::Change(ch) => agent.apply_change(ch),
        }
        .expect("applying directly");
        let answer = session.applied(*c, &report);
        let took = t.elapsed();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.applied_version, version);
        assert_eq!(report.programmed, state.services.len());
        assert!(matches!(answer.kind, Some(agent_message::Kind::Ack(_))));
        took
    };
    let full = timed(Kind::Snapshot(state.clone()), state.version);
    let mut edited = state
        .services
        .iter()
        .find(|s| s.object.as_ref().is_some_and(|o| o.name == world::EDITED))
        .expect("the edited service")
        .clone();
    edited.ports[0].backends[0].address = Ipv4Addr::new(172, 18, 0, 1).octets().to_vec();
    let delta = ballast_proto::v1::Delta {
        base_version: state.version,
        version: state.version + 1,
        upserted: vec![edited],
        ..Default::default()
    };
    (full, timed(Kind::Delta(delta), state.version + 1))
}

/// Waits until the API server's resourceVersion holds still for a second
/// (the controller's status writes after the full sync are done).
fn quiesce(api: &FakeApiServer) {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut last = api.resource_version();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = api.resource_version();
        if now == last {
            return;
        }
        assert!(Instant::now() < deadline, "the API server never went quiet");
        last = now;
    }
}

fn node_plan(handle: &Handle) -> NodePlan {
    handle.plans.borrow().as_ref().expect("planned").nodes[NODE].clone()
}

fn applied(reports: &AgentReports) -> u64 {
    reports.get(NODE).map_or(0, |r| r.applied_version)
}

fn timeout<T>(
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> impl std::future::Future<Output = T> {
    let what = what.to_string();
    async move {
        tokio::time::timeout(STEP_LIMIT, f)
            .await
            .unwrap_or_else(|_| panic!("{what}: no result within {STEP_LIMIT:?}"))
    }
}

fn run(cfg: Config) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pins = Pins::new();
    eprintln!("creating {} VirtualServers through the API...", cfg.objects);
    let t = Instant::now();
    let api = rt.block_on(async {
        let s = FakeApiServer::start().await;
        world::create(&s, cfg.objects).await;
        s
    });
    let created = t.elapsed();
    let client = {
        let _in_runtime = rt.enter();
        api.client()
    };

    // The controller, settled (its grace for absent agents over) before
    // the agent dials, so the full sync is a new agent meeting a warm
    // controller.
    let reports = AgentReports::new();
    let metrics = Arc::new(Metrics::new());
    let (link_stop, link_stopped) = oneshot::channel::<()>();
    let t = Instant::now();
    let (handle, link, link_addr) = rt.block_on(async {
        let handle = start(
            client.clone(),
            controller_options(cfg.debounce),
            metrics.clone(),
            reports.clone(),
        )
        .await
        .expect("starting the controller");
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding the link");
        let addr = listener.local_addr().unwrap();
        let served = serve(
            listener,
            Security::Insecure,
            handle.link_inputs(),
            reports.clone(),
            async {
                let _ = link_stopped.await;
            },
        );
        let link = tokio::spawn(async move { served.await.expect("link server") });
        let mut settled = handle.settled.clone();
        timeout("controller settled", settled.wait_for(|s| *s))
            .await
            .unwrap();
        (handle, link, addr)
    });
    let controller_ready = t.elapsed();

    eprintln!("full sync...");
    let pin_a = pins.0.join("a");
    let agent_a = agent(&pin_a);
    let (agent_handle, requests) = core::channel();
    let (agent_stop, agent_stopped) = oneshot::channel::<()>();
    let (feed_stop, feed_stopped) = oneshot::channel::<()>();
    // The core holds the data plane's mmapped ring, which is Send but not
    // Sync: it runs on a thread of its own (node mode runs it on the main
    // task), with this runtime's timers and I/O.
    let runtime = rt.handle().clone();
    let core_task = std::thread::spawn(move || {
        runtime.block_on(agent_a.run(requests, async {
            let _ = agent_stopped.await;
        }))
    });
    let link_options = LinkOptions {
        node_name: NODE.into(),
        controllers: vec![format!("http://{link_addr}")],
        tls: None,
        heartbeat: Duration::from_secs(1),
        state_file: None,
        backoff: (Duration::from_millis(100), Duration::from_secs(1)),
    };
    let t_dial = Instant::now();
    let feed = rt.spawn(client::run(
        link_options,
        agent_handle,
        Session::new(defaults(), None),
        async {
            let _ = feed_stopped.await;
        },
    ));
    let (version, full_plan) =
        rt.block_on(timeout("full sync", synced(&handle, &reports, cfg.objects)));
    let full_sync = t_dial.elapsed();
    let snapshot = node_state(version, &full_plan);
    let snapshot_bytes = ControllerMessage {
        kind: Some(Kind::Snapshot(snapshot.clone())),
    }
    .encoded_len();

    let maps = Maps::open_pinned(&pin_a).expect("the agent's pinned maps");
    let programmed = maps.read_programmed().expect("reading the maps");
    assert_eq!(
        programmed.services.len(),
        cfg.objects,
        "every service in the agent's maps"
    );
    let vip = full_plan
        .services
        .iter()
        .find(|(k, _)| &*k.name == world::EDITED)
        .and_then(|(_, s)| s.vips.first().copied())
        .expect("the edited VirtualServer has a VIP");
    let IpAddr::V4(vip) = vip else {
        panic!("an IPv4 pool")
    };
    let key = probe::tcp_key(vip, VIP_PORT);
    let initial: BTreeSet<Ipv4Addr> = world::endpoints_after(0).into_iter().collect();
    assert_eq!(
        probe::ring_backends(&maps, &key),
        Some(initial),
        "the edited service's backends"
    );

    eprintln!("baseline: applying the same state directly...");
    let (direct, direct_one) = direct_apply(&rt, &pins.0.join("b"), &snapshot);
    quiesce(&api);

    eprintln!("{} endpoint changes...", cfg.changes);
    let seen = SeenAt::default();
    let watcher = rt.spawn(measure::watch_slices(
        client.clone(),
        world::NAMESPACE,
        api.resource_version().to_string(),
        seen.clone(),
    ));
    eprintln!(
        "  events still queued at the controller: {}",
        metrics.events_queued.get()
    );
    let reconciles_before = Reconciles::of(&metrics);
    let path = Route {
        client: &client,
        handle: &handle,
        reports: &reports,
        maps: &maps,
        key,
    };
    let changes = endpoint_changes(&rt, &path, &seen, &cfg);
    let reconcile = Reconciles::of(&metrics).mean_since(&reconciles_before);

    watcher.abort();
    let _ = feed_stop.send(());
    let _ = agent_stop.send(());
    let _ = link_stop.send(());
    rt.block_on(async {
        feed.await.expect("link client task");
        link.await.expect("link server task");
        handle.shutdown().await;
        api.shutdown().await;
    });
    core_task.join().expect("agent thread").expect("agent run");
    drop(maps);
    drop(pins);

    let sync = FullSync {
        created,
        controller_ready,
        time: full_sync,
        direct,
        direct_one,
        snapshot_bytes,
    };
    print(&cfg, &sync, changes, reconcile);
}

/// What a change travels through, and where it is watched.
struct Route<'a> {
    client: &'a kube::Client,
    handle: &'a Handle,
    reports: &'a AgentReports,
    /// The agent's maps, opened from their pins.
    maps: &'a Maps,
    /// The edited service.
    key: abi::SvcKey,
}

/// The latency samples, each counted from the write returning (the
/// watch's from the write sent), and the first change's delta size.
struct Changes {
    to_maps: Vec<Duration>,
    to_ack: Vec<Duration>,
    to_watch: Vec<Duration>,
    delta_bytes: usize,
}

/// `cfg.changes` EndpointSlice edits, one at a time: each waits for the
/// new backends in the maps and the Ack, then for `cfg.gap`.
fn endpoint_changes(rt: &Runtime, path: &Route, seen: &SeenAt, cfg: &Config) -> Changes {
    let mut out = Changes {
        to_maps: Vec::new(),
        to_ack: Vec::new(),
        to_watch: Vec::new(),
        delta_bytes: 0,
    };
    for k in 1..=cfg.changes {
        let eps = world::endpoints_after(k);
        let want: BTreeSet<Ipv4Addr> = eps.iter().copied().collect();
        let (before, acked_before) = (node_plan(path.handle), applied(path.reports));
        let sent = Instant::now();
        let rv = rt.block_on(world::apply_slice(path.client, &eps));
        let written = Instant::now();
        let (mut in_maps, mut acked) = (None, None);
        while in_maps.is_none() || acked.is_none() {
            if in_maps.is_none()
                && probe::ring_backends(path.maps, &path.key).as_ref() == Some(&want)
            {
                in_maps = Some(written.elapsed());
            }
            if acked.is_none() && applied(path.reports) > acked_before {
                acked = Some(written.elapsed());
            }
            assert!(
                written.elapsed() < CHANGE_LIMIT,
                "change {k} did not reach the agent within {CHANGE_LIMIT:?} (maps: {in_maps:?}, ack: {acked:?})"
            );
            std::thread::sleep(POLL);
        }
        out.to_maps.push(in_maps.expect("seen"));
        out.to_ack.push(acked.expect("seen"));
        out.to_watch
            .push(seen.wait(&rv, CHANGE_LIMIT).saturating_duration_since(sent));
        if k == 1 {
            out.delta_bytes = wire_sizes(&before, &node_plan(path.handle), acked_before).delta;
        }
        if k % 100 == 0 {
            eprintln!("  {k} changes");
        }
        std::thread::sleep(cfg.gap);
    }
    out
}

/// The controller's reconcile histogram (planning; status writes run apart).
struct Reconciles {
    count: u64,
    sum: f64,
}

impl Reconciles {
    fn of(metrics: &Metrics) -> Reconciles {
        Reconciles {
            count: metrics.reconcile_duration.get_sample_count(),
            sum: metrics.reconcile_duration.get_sample_sum(),
        }
    }

    /// Count and mean duration of the reconciles since `before`.
    fn mean_since(&self, before: &Reconciles) -> (u64, Duration) {
        let n = self.count - before.count;
        let mean = (self.sum - before.sum) / n.max(1) as f64;
        (n, Duration::from_secs_f64(mean))
    }
}

struct FullSync {
    created: Duration,
    controller_ready: Duration,
    /// Dial to Ack.
    time: Duration,
    /// The same state applied straight through an Agent.
    direct: Duration,
    /// Then one endpoint changed by a delta, the same way.
    direct_one: Duration,
    snapshot_bytes: usize,
}

fn print(cfg: &Config, sync: &FullSync, changes: Changes, reconcile: (u64, Duration)) {
    let snapshot_bytes = sync.snapshot_bytes;
    let delta_bytes = changes.delta_bytes;
    let (maps_s, ack_s, watch_s) = (
        Samples::new(changes.to_maps),
        Samples::new(changes.to_ack),
        Samples::new(changes.to_watch),
    );
    println!(
        "link: {} VirtualServers ({} static backends each; one serviceRef-backed), one agent, loopback, plain TCP",
        cfg.objects,
        world::BACKENDS
    );
    println!(
        "  world created through the API          {:>8.1} s",
        sync.created.as_secs_f64()
    );
    println!(
        "  controller ready (lists, plan, settle)  {:>8.1} s",
        sync.controller_ready.as_secs_f64()
    );
    println!("full sync: agent dial -> controller holds its Ack of the whole state");
    println!("  snapshot                               {snapshot_bytes:>10} bytes");
    println!(
        "  time                                   {:>10.3} s",
        sync.time.as_secs_f64()
    );
    println!(
        "  baseline: the same state taken straight through a session and an Agent {:.3} s",
        sync.direct.as_secs_f64()
    );
    println!(
        "  full sync / direct apply ratio: {:.2}x",
        sync.time.as_secs_f64() / sync.direct.as_secs_f64()
    );
    println!(
        "one endpoint change (EndpointSlice write returned -> ...), {} changes, controller debounce {} ms{}, gap {} ms",
        cfg.changes,
        cfg.debounce.as_millis(),
        if cfg.debounce == DEFAULT_DEBOUNCE {
            " (its default)"
        } else {
            ""
        },
        cfg.gap.as_millis()
    );
    println!("                                  p50      p90      p99      max  (ms)");
    println!(
        "  in the agent's maps        {}   (target p99 <= 50 ms)",
        maps_s.row()
    );
    println!("  Ack at the controller      {}", ack_s.row());
    println!(
        "  API watch event (baseline) {}   (from the write sent)",
        watch_s.row()
    );
    println!(
        "  maps p99 / watch p99 ratio: {:.1}x; maps p50 minus the watch p50: {:.2} ms",
        ms(maps_s.pct(0.99)) / ms(watch_s.pct(0.99)).max(1e-3),
        ms(maps_s.pct(0.5)) - ms(watch_s.pct(0.5))
    );
    println!(
        "  controller reconciles meanwhile: {}, mean {:.1} ms (planning only: status writes run apart)",
        reconcile.0,
        ms(reconcile.1)
    );
    println!(
        "  the agent's own share of one endpoint change (session + core + answer, no link; a {:.3} s full sync the same way): {:.2} ms",
        sync.direct.as_secs_f64(),
        ms(sync.direct_one)
    );
    println!(
        "one-endpoint delta {delta_bytes} bytes / snapshot {snapshot_bytes} bytes = 1/{:.0}   (target <= 1/1000)",
        snapshot_bytes as f64 / delta_bytes as f64
    );
}
