//! `ballast-agent standalone --sweep-interval`: the agent's sweeper thread
//! deletes an expired conntrack entry from the pinned map and keeps a live
//! one; `/metrics` shows the tables' occupancy and what was swept, `stats`
//! the occupancy.
//!
//! Namespaces are `bsw<pid>-*`, the pin root
//! `/sys/fs/bpf/ballast-test-sweep-<pid>`; Drop guards remove both (and the
//! agent's /run inventory), on failure too.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData};
use ballast_agent::abi::{self, CtValue, FlowKey};
use ballast_agent::dataplane::clock::DataplaneClock;
use ballast_agent::dataplane::maps::Maps;
use ballast_agent::lifecycle::identity::Interface;
use ballast_testbed::agent::{self, Agent, Log, PinRoot, WorkDir, stdout_ok};
use ballast_testbed::{self as testbed, Testbed, TestbedSpec, http, prometheus, require_root};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);

const WEB: &str = r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: web, namespace: default}
spec:
  addresses: [203.0.113.10]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  forwarding: FullNAT
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}
"#;

/// GET /metrics from inside the director's namespace; the body of a 200.
fn metrics(ns: &str, addr: SocketAddrV4) -> anyhow::Result<String> {
    let r = http::get(ns, addr, "/metrics")?;
    anyhow::ensure!(r.status == 200, "/metrics: status {}", r.status);
    Ok(r.body)
}

/// The value of the one sample `series` (name and labels as rendered).
fn sample(body: &str, series: &str) -> f64 {
    prometheus::series(&prometheus::parse(body), series)
}

#[test]
fn the_agent_sweeps_expired_flows_and_reports_the_tables() {
    require_root("network namespaces, XDP and bpffs pins");
    let prefix = format!("bsw{}", std::process::id() % 1000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(1)).unwrap();
    let pins = PinRoot::new(&format!("ballast-test-sweep-{}", std::process::id()));
    let work = WorkDir::new(&prefix);
    std::fs::write(work.conf().join("web.yaml"), WEB).unwrap();
    let metrics_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9469);

    let mut cmd = agent::command(BIN, tb.director_ns(), pins.path());
    cmd.env("RUST_LOG", "info,ballast_agent=debug")
        .args([
            "standalone",
            "--interface",
            tb.director_if(),
            "--snat-address",
            "198.51.100.3",
            "--config",
        ])
        .arg(work.conf())
        .args(["--sweep-interval", "200ms", "--metrics"])
        .arg(metrics_addr.to_string());
    let mut agent = Agent::spawn(cmd, &work.file("agent.log"), Log::Fresh);
    agent.wait_log("configuration applied");
    agent.wait_log("sweeping expired flows");
    agent.wait_log("swept flow tables");

    // Two flows written into the agent's pinned conntrack: one closed a
    // minute ago (the default closing timeout is 10 s), one active now.
    let pin_dir = testbed::in_netns(tb.director_ns(), || Interface::resolve(testbed::HOST_IF))
        .unwrap()
        .unwrap()
        .pin_dir(pins.path());
    let mut map =
        Map::from_map_data(MapData::from_pin(pin_dir.join("conntrack")).unwrap()).unwrap();
    let mut ct: HashMap<&mut MapData, FlowKey, CtValue> = HashMap::try_from(&mut map).unwrap();
    let key = |host: u8| FlowKey {
        saddr: abi::be_addr(Ipv4Addr::new(192, 0, 2, host)),
        daddr: abi::be_addr(testbed::VIP),
        sport: abi::be_port(40000),
        dport: abi::be_port(80),
        proto: 6,
        pad: [0; 3],
    };
    // The data plane's clock and tick rate, as the agent configured them.
    let clock = DataplaneClock::open_pinned(&pin_dir).unwrap();
    let now = clock.now().unwrap();
    let cfg = Maps::open_pinned(&pin_dir).unwrap().read_config().unwrap();
    let s = u64::from(cfg.hz);
    assert!(s > 0, "hz configured");
    let closed = CtValue {
        last_seen: now - 60 * s,
        state: abi::CT_CLOSING,
        ..Default::default()
    };
    let active = CtValue {
        last_seen: now,
        state: abi::CT_ESTABLISHED,
        ..Default::default()
    };
    ct.insert(key(200), closed, 0).unwrap();
    ct.insert(key(201), active, 0).unwrap();

    let deadline = Instant::now() + T;
    while ct.get(&key(200), 0).is_ok() {
        assert!(
            Instant::now() < deadline,
            "expired entry never swept:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ct.get(&key(201), 0).unwrap(), active, "live entry kept");

    // /metrics: one more completed sweep after the delete is reflected.
    let deadline = Instant::now() + T;
    let body = loop {
        let b = metrics(tb.director_ns(), metrics_addr);
        match b {
            Ok(b) if sample(&b, r#"ballast_flow_table_swept_total{table="conntrack"}"#) >= 1.0 => {
                break b;
            }
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no swept entry in /metrics: {other:?}\n{}", agent.log()),
        }
    };
    assert!(sample(&body, "ballast_flow_table_sweeps_total") >= 1.0);
    assert_eq!(
        sample(&body, r#"ballast_flow_table_capacity{table="conntrack"}"#),
        f64::from(1u32 << 21)
    );
    // The live entry at least (no traffic went through, so nothing else).
    assert_eq!(
        sample(&body, r#"ballast_flow_table_entries{table="conntrack"}"#),
        1.0,
        "{body}"
    );
    sample(&body, r#"ballast_flow_table_entries{table="persist"}"#);

    // `stats`: the occupancy, counted by itself.
    let out = agent::output(
        BIN,
        tb.director_ns(),
        pins.path(),
        &["stats", "--interface", tb.director_if()],
    );
    let text = stdout_ok(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("conntrack "))
        .unwrap_or_else(|| panic!("no conntrack line in\n{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..3], ["conntrack", "1", "2097152"], "{text}");

    drop(map);
    drop(agent);
    let out = agent::output(
        BIN,
        tb.director_ns(),
        pins.path(),
        &["cleanup", "--interface", tb.director_if()],
    );
    stdout_ok(&out);
}
