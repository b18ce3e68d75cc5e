//! The agent's command line in network namespaces, as root: `realserver`
//! (and `--remove`) on a DR backend, the Prometheus endpoint of
//! `standalone --metrics`, and the generic-XDP fallback of the default
//! attach mode with `cleanup` detaching it.
//!
//! Every namespace is `blcli<x><pid>-*` and every pin root
//! `/sys/fs/bpf/ballast-test-cli-<pid>-<x>`, so this binary runs beside the
//! other test binaries; all of it is removed by Drop guards, on failure too.
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast_agent::lifecycle::identity::Interface;
use ballast_testbed::{
    self as testbed, BackendRouting, Testbed, TestbedSpec,
    agent::{self, AGENT_START, Agent, Netns, PinRoot, WorkDir, standalone_args, stdout_ok},
    arp::{Arp, ArpSocket},
    http, netns, prometheus, require_root,
    servers::{self, BackendServer},
};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);
const NEEDS_ROOT: &str = "network namespaces, XDP and bpffs pins";

/// `blcli<tag><pid>`: the namespace prefix of one test.
fn prefix(tag: char) -> String {
    format!("blcli{tag}{}", std::process::id() % 1000)
}

/// A pin root of this binary, `ballast-test-cli-<pid>-<tag>`.
fn pin_root(tag: char) -> PinRoot {
    PinRoot::new(&format!("ballast-test-cli-{}-{tag}", std::process::id()))
}

/// `ballast-agent --pin-root R <args>` in network namespace `ns`: the pins
/// and the inventory are keyed by the interface's namespace and ifindex,
/// which `stats` and `cleanup` resolve in their own namespace.
fn agent_cmd(ns: &str, pin_root: &Path, args: &[&str]) -> Output {
    agent::output(BIN, ns, pin_root, args)
}

/// The pin directory of `interface` in `ns` under `pin_root`.
fn pin_dir(ns: &str, pin_root: &Path, interface: &'static str) -> PathBuf {
    testbed::in_netns(ns, move || Interface::resolve(interface))
        .unwrap()
        .unwrap()
        .pin_dir(pin_root)
}

fn stats_json(ns: &str, pin_root: &Path, interface: &str) -> serde_json::Value {
    let out = stdout_ok(&agent_cmd(
        ns,
        pin_root,
        &["stats", "--json", "--interface", interface],
    ));
    serde_json::from_str(&out).unwrap()
}

fn virtual_server(forwarding: &str, target_port: u16, backends: &[usize]) -> String {
    let mut s = format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
         metadata: {{name: web, namespace: default}}\nspec:\n  addresses: [{}]\n  \
         ports:\n    - {{name: http, port: 80, protocol: TCP, targetPort: {target_port}}}\n  \
         forwarding: {forwarding}\n  scheduler: Maglev\n  backends:\n    static:\n",
        testbed::VIP
    );
    for &i in backends {
        s.push_str(&format!(
            "      - {{address: {}, weight: 1}}\n",
            testbed::backend_addr(i)
        ));
    }
    s
}

// ---------------------------------------------------------------- helpers

/// "addr/len" of every IPv4 address on `dev` in `ns`.
fn ipv4_addrs(ns: &str, dev: &str) -> Vec<String> {
    let out = netns::ip_in(ns, &["-j", "-4", "addr", "show", "dev", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            format!(
                "{}/{}",
                a["local"].as_str().unwrap_or("?"),
                a["prefixlen"].as_u64().unwrap_or(0)
            )
        })
        .collect()
}

const ARP_SYSCTLS: [&str; 4] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.lo.arp_ignore",
    "net.ipv4.conf.lo.arp_announce",
];

/// The ARP sysctls of the test's own (the host's) namespace.
fn host_arp_sysctls() -> Vec<String> {
    ARP_SYSCTLS
        .iter()
        .map(|k| {
            let p = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::read_to_string(&p).unwrap().trim().to_string()
        })
        .collect()
}

fn ns_arp_sysctls(ns: &str) -> Vec<String> {
    ARP_SYSCTLS
        .iter()
        .map(|k| testbed::sysctl_get(ns, k).unwrap())
        .collect()
}

fn realserver(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, BIN, "realserver"])
        .args(args)
        .output()
        .unwrap()
}

fn macs(set: &BTreeSet<[u8; 6]>) -> Vec<String> {
    set.iter().map(testbed::format_mac).collect()
}

// ---------------------------------------------------------------- tests

/// `realserver --vip` on a DR backend: VIP on lo and the ARP sysctls in
/// that namespace only; DR traffic reaches the backend with the client's
/// address; the backend neither answers ARP for the VIP nor uses it as ARP
/// source. `--remove` takes the VIP off (twice is fine) and DR stops.
#[test]
fn realserver_configures_a_dr_backend_and_remove_undoes_it() {
    require_root(NEEDS_ROOT);
    let p = prefix('r');
    let tb = Testbed::build(&TestbedSpec::new(&p).backends(1)).unwrap();
    let pins = pin_root('r');
    let work = WorkDir::new(&format!("cli-{p}"));
    tb.attach_test_xdp_pass().unwrap();
    tb.set_backend_mode(BackendRouting::DirectToClient).unwrap();
    let b1 = tb.backend_ns(1).to_string();
    let vip = testbed::VIP;
    let vip_cidr = format!("{vip}/32");

    // A fresh namespace may inherit the host's IPv4 `all` settings: start
    // from the kernel defaults so the binary has to set them.
    for k in ARP_SYSCTLS {
        tb.sysctl(&b1, k, "0").unwrap();
    }
    assert!(!ipv4_addrs(&b1, "lo").contains(&vip_cidr));
    let host_before = host_arp_sysctls();

    let server = BackendServer::start(&b1, "b1", "0.0.0.0:80".parse().unwrap()).unwrap();
    std::fs::write(work.conf().join("dr.yaml"), virtual_server("DR", 80, &[1])).unwrap();
    let mut agent = Agent::start(
        BIN,
        tb.director_ns(),
        pins.path(),
        &standalone_args(tb.director_if(), &work.conf(), &[]),
        &work.file("agent.log"),
    );
    agent.wait_log("configuration applied");

    let out = realserver(&b1, &["--vip", &vip.to_string()]);
    let stdout = stdout_ok(&out);
    assert!(
        stdout.contains(&format!("configured {vip_cidr} on lo")),
        "{stdout}"
    );

    // The VIP on lo, and the ARP sysctls, in the backend's namespace only.
    assert!(
        ipv4_addrs(&b1, "lo").contains(&vip_cidr),
        "{:?}",
        ipv4_addrs(&b1, "lo")
    );
    assert!(!ipv4_addrs(&b1, "eth0").contains(&vip_cidr));
    assert_eq!(ns_arp_sysctls(&b1), ["1", "2", "1", "2"], "{ARP_SYSCTLS:?}");
    assert_eq!(host_arp_sysctls(), host_before, "host sysctls untouched");
    let host_lo = Command::new("ip")
        .args(["-4", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host_lo.stdout).contains(&vip.to_string()),
        "the VIP went on the host's lo"
    );

    // DR through the director: the backend sees the client and answers it
    // directly. Its neighbours are flushed so it must ARP for the client
    // now, with arp_announce in force.
    netns::ip_in(&b1, &["neigh", "flush", "all"]).unwrap();
    let arp = ArpSocket::open(tb.client_ns(), tb.host_if());
    let n = 20;
    let results = servers::tcp_probes(tb.client_ns(), SocketAddrV4::new(vip, 80), n, 4, T).unwrap();
    for r in &results {
        let line = r.as_ref().expect("DR connection through the director");
        assert!(
            line.starts_with(&format!("b1 {}:", testbed::CLIENT_ADDR)),
            "backend saw {line}"
        );
    }
    assert_eq!(server.connections(), n as u64);
    assert!(
        server
            .peers()
            .iter()
            .all(|p| *p.ip() == testbed::CLIENT_ADDR),
        "{:?}",
        server.peers()
    );
    let snap = stats_json(tb.director_ns(), pins.path(), tb.director_if());
    let svc = &snap["services"][0];
    assert_eq!(svc["mode"], "DR");
    assert_eq!(svc["counters"]["new_flows"], n as u64, "{snap}");
    assert_eq!(
        svc["counters"]["reply_packets"], 0,
        "DR replies bypass the director: {snap}"
    );

    // arp_announce=2: the backend's ARP requests (for the client) carry
    // its own address, never the VIP.
    let backend_mac = testbed::backend_mac(1);
    let from_backend: Vec<Arp> = arp
        .frames(Duration::from_millis(100))
        .into_iter()
        .filter(|a| a.sha == backend_mac)
        .collect();
    assert!(
        from_backend
            .iter()
            .any(|a| a.op == 1 && a.tpa == testbed::CLIENT_ADDR),
        "the backend resolved the client: {from_backend:?}"
    );
    assert!(
        from_backend
            .iter()
            .all(|a| a.spa == testbed::backend_addr(1)),
        "ARP from the backend uses the VIP as source: {from_backend:?}"
    );

    // arp_ignore=1: only the director (which announces the VIP) answers ARP
    // for it on the shared segment.
    let director = testbed::DIRECTOR_MAC;
    let answers = arp.who_answers(vip);
    assert!(answers.contains(&director), "{:?}", macs(&answers));
    assert!(!answers.contains(&backend_mac), "{:?}", macs(&answers));
    // Control: with arp_ignore back at 0 the same probe hears the backend...
    tb.sysctl(&b1, "net.ipv4.conf.all.arp_ignore", "0").unwrap();
    let answers = arp.who_answers(vip);
    assert!(answers.contains(&backend_mac), "{:?}", macs(&answers));
    // ...and running realserver again (idempotent) silences it again.
    stdout_ok(&realserver(&b1, &["--vip", &vip.to_string()]));
    assert_eq!(ns_arp_sysctls(&b1), ["1", "2", "1", "2"]);
    let answers = arp.who_answers(vip);
    assert!(answers.contains(&director), "{:?}", macs(&answers));
    assert!(!answers.contains(&backend_mac), "{:?}", macs(&answers));

    // --remove takes the VIP off lo; twice is not an error.
    let stdout = stdout_ok(&realserver(&b1, &["--vip", &vip.to_string(), "--remove"]));
    assert!(stdout.contains(&format!("removed {vip_cidr}")), "{stdout}");
    assert!(!ipv4_addrs(&b1, "lo").contains(&vip_cidr));
    let stdout = stdout_ok(&realserver(&b1, &["--vip", &vip.to_string(), "--remove"]));
    assert!(
        stdout.contains(&format!("{vip_cidr} was not on lo")),
        "{stdout}"
    );
    assert!(!ipv4_addrs(&b1, "lo").contains(&vip_cidr));
    // Without the VIP the backend no longer takes DR traffic.
    let r = servers::tcp_probe(
        tb.client_ns(),
        SocketAddrV4::new(vip, 80),
        Duration::from_secs(1),
    );
    assert!(r.is_err(), "DR still served after --remove: {r:?}");
    assert_eq!(host_arp_sysctls(), host_before, "host sysctls untouched");

    assert!(agent.stop(T).success(), "{}", agent.log());
}

/// `standalone --metrics`: /metrics in the Prometheus text format with the
/// service and backend counters of real traffic, consistent with `stats`
/// and with what the backends saw; /healthz; 404 elsewhere.
#[test]
fn metrics_endpoint_serves_the_traffic_counters() {
    require_root(NEEDS_ROOT);
    let p = prefix('m');
    let tb = Testbed::build(&TestbedSpec::new(&p).backends(2)).unwrap();
    let pins = pin_root('m');
    let work = WorkDir::new(&format!("cli-{p}"));
    tb.attach_test_xdp_pass().unwrap();
    let servers: Vec<BackendServer> = tb.serve(8080).unwrap();
    std::fs::write(
        work.conf().join("web.yaml"),
        virtual_server("FullNAT", 8080, &[1, 2]),
    )
    .unwrap();
    let metrics_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9469);
    let ma = metrics_addr.to_string();
    let mut agent = Agent::start(
        BIN,
        tb.director_ns(),
        pins.path(),
        &standalone_args(
            tb.director_if(),
            &work.conf(),
            &[
                "--metrics",
                &ma,
                "--refusal-rate",
                "4000",
                "--refusal-burst",
                "100",
            ],
        ),
        &work.file("agent.log"),
    );
    agent.wait_log("configuration applied");
    agent.wait_log("serving /metrics");
    // The refusal limit, shared out over the CPUs, is what the program reads.
    let limit_pin = pin_dir(tb.director_ns(), pins.path(), testbed::HOST_IF).join("refusal_limit");
    let limit: aya::maps::Array<_, ballast_agent::abi::RefusalLimit> = aya::maps::Array::try_from(
        aya::maps::Map::Array(aya::maps::MapData::from_pin(&limit_pin).unwrap()),
    )
    .unwrap();
    let cpus = aya::util::nr_cpus().unwrap() as u32;
    assert_eq!(
        limit.get(&0, 0).unwrap(),
        ballast_agent::abi::RefusalLimit {
            per_cpu_rate: 4000u32.div_ceil(cpus),
            burst: 100u32.div_ceil(cpus),
        }
    );

    // The listener is bound asynchronously after the log line.
    let deadline = Instant::now() + T;
    let before = loop {
        match http::get(tb.director_ns(), metrics_addr, "/metrics") {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("metrics not up yet: {e:#}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("GET /metrics: {e:#}\n{}", agent.log()),
        }
    };
    assert_eq!(before.status, 200, "{}", before.body);
    let svc = [
        ("mode", "FullNAT"),
        ("service", "default/web:http"),
        ("vip", "203.0.113.10:80/TCP"),
    ];
    let s = prometheus::parse(&before.body);
    assert_eq!(
        prometheus::sample(&s, "ballast_service_new_flows_total", &svc),
        0.0
    );

    let n = 30;
    let results =
        servers::tcp_probes(tb.client_ns(), SocketAddrV4::new(testbed::VIP, 80), n, 6, T).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Let the last FIN/ACKs through before comparing snapshots.
    std::thread::sleep(Duration::from_millis(300));

    let stats_before = stats_json(tb.director_ns(), pins.path(), tb.director_if());
    let r = http::get(tb.director_ns(), metrics_addr, "/metrics").unwrap();
    let stats_after = stats_json(tb.director_ns(), pins.path(), tb.director_if());

    assert_eq!(r.status, 200, "{}", r.body);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "content-type {ct:?}"
    );
    for m in [
        "ballast_service_packets_total",
        "ballast_service_new_flows_total",
        "ballast_backend_new_flows_total",
        "ballast_packets_verdict_total",
    ] {
        assert!(
            r.body.contains(&format!("# TYPE {m} counter")),
            "no TYPE line for {m}:\n{}",
            r.body
        );
    }
    let s = prometheus::parse(&r.body);
    let flows = prometheus::sample(&s, "ballast_service_new_flows_total", &svc);
    let packets = prometheus::sample(&s, "ballast_service_packets_total", &svc);
    assert_eq!(flows, n as f64, "one new flow per connection");
    // At least SYN, ACK and FIN per connection.
    assert!(packets >= 3.0 * n as f64, "{packets} packets");
    assert!(prometheus::sample(&s, "ballast_service_bytes_total", &svc) > 0.0);
    assert!(
        prometheus::sample(&s, "ballast_service_reply_packets_total", &svc) > 0.0,
        "FullNAT replies come back through the director"
    );
    let mut sum = 0.0;
    for (i, server) in servers.iter().enumerate() {
        let backend = format!("{}:8080", testbed::backend_addr(i + 1));
        let l = [
            ("backend", backend.as_str()),
            ("service", "default/web:http"),
        ];
        let bf = prometheus::sample(&s, "ballast_backend_new_flows_total", &l);
        assert_eq!(
            bf,
            server.connections() as f64,
            "{backend}: flows vs connections accepted"
        );
        assert!(prometheus::sample(&s, "ballast_backend_packets_total", &l) >= bf);
        sum += bf;
    }
    assert_eq!(sum, n as f64, "per-backend flows add up");
    let verdicts: f64 = s
        .iter()
        .filter(|((name, _), _)| name == "ballast_packets_verdict_total")
        .map(|(_, v)| v)
        .sum();
    assert!(verdicts >= packets, "every packet has a verdict");

    // The same numbers as `stats --json` at the same moment.
    for (field, metric) in [
        ("new_flows", "ballast_service_new_flows_total"),
        ("packets", "ballast_service_packets_total"),
        ("reply_packets", "ballast_service_reply_packets_total"),
    ] {
        let lo = stats_before["services"][0]["counters"][field]
            .as_u64()
            .unwrap() as f64;
        let hi = stats_after["services"][0]["counters"][field]
            .as_u64()
            .unwrap() as f64;
        let m = prometheus::sample(&s, metric, &svc);
        assert!(
            lo <= m && m <= hi,
            "{metric} = {m}, stats {field} {lo}..{hi}"
        );
    }

    let h = http::get(tb.director_ns(), metrics_addr, "/healthz").unwrap();
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let nf = http::get(tb.director_ns(), metrics_addr, "/no-such-page").unwrap();
    assert_eq!(nf.status, 404, "{}", nf.body);

    assert!(agent.stop(T).success(), "{}", agent.log());
    let dir = pin_dir(tb.director_ns(), pins.path(), testbed::HOST_IF);
    assert!(dir.exists());
    stdout_ok(&agent_cmd(
        tb.director_ns(),
        pins.path(),
        &["cleanup", "--interface", tb.director_if()],
    ));
    assert!(!dir.exists());
    assert!(!pins.run_dir().exists(), "inventory left");
}

/// `ip -d link show` of one interface in a namespace.
fn link_details(ns: &str, ifname: &str) -> String {
    let out = netns::ip_in(ns, &["-d", "link", "show", "dev", ifname]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates an interface whose driver has no native XDP: `dummy` where the
/// kernel has it, else a bridge (which never has).
fn add_interface_without_native_xdp(ns: &str, ifname: &str) -> &'static str {
    for kind in ["dummy", "bridge"] {
        if netns::ip_in(ns, &["link", "add", ifname, "type", kind]).is_ok() {
            netns::ip_in(ns, &["link", "set", ifname, "up"]).unwrap();
            return kind;
        }
    }
    panic!("cannot create a dummy or bridge interface");
}

/// Default attach mode on an interface without native XDP: native fails,
/// generic is used with a warning; `--xdp-mode native` refuses instead;
/// `cleanup` detaches the program and removes the pins.
#[test]
fn auto_mode_falls_back_to_generic_xdp_and_cleanup_detaches() {
    require_root(NEEDS_ROOT);
    let p = prefix('g');
    let ns = Netns::new(format!("{p}-n"));
    netns::ip_in(&ns.0, &["link", "set", "lo", "up"]).unwrap();
    let ifname = "blx0";
    let kind = add_interface_without_native_xdp(&ns.0, ifname);
    let pins = pin_root('g');
    let work = WorkDir::new(&format!("cli-{p}"));
    std::fs::write(
        work.conf().join("web.yaml"),
        virtual_server("FullNAT", 8080, &[1]),
    )
    .unwrap();
    let pin_dir = pin_dir(&ns.0, pins.path(), ifname);

    // Native only: a clear error, no silent fallback, nothing attached.
    let mut native = Agent::start(
        BIN,
        &ns.0,
        pins.path(),
        &standalone_args(ifname, &work.conf(), &["--xdp-mode", "native"]),
        &work.file("native.log"),
    );
    let st = native.wait_exit(AGENT_START);
    let log = native.log();
    assert!(!st.success(), "native mode on a {kind} succeeded:\n{log}");
    assert!(
        log.contains(&format!(
            "interface {ifname}: cannot attach XDP in native mode"
        )),
        "{log}"
    );
    assert!(log.contains("Operation not supported"), "{log}");
    assert!(
        !log.contains("native XDP unavailable") && !log.contains("attached XDP program"),
        "fell back instead of failing:\n{log}"
    );
    let link = link_details(&ns.0, ifname);
    assert!(!link.contains("xdp"), "{link}");
    assert!(!pin_dir.join("link").exists());

    // Auto (the default): generic, with a warning.
    let mut agent = Agent::start(
        BIN,
        &ns.0,
        pins.path(),
        &standalone_args(ifname, &work.conf(), &[]),
        &work.file("auto.log"),
    );
    agent.wait_log("configuration applied");
    let log = agent.log();
    let warning = log
        .lines()
        .find(|l| l.contains("native XDP unavailable"))
        .unwrap_or_else(|| panic!("no fallback warning:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("generic (skb) mode"),
        "{warning}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("attached XDP program") && l.contains("generic")),
        "{log}"
    );
    let link = link_details(&ns.0, ifname);
    assert!(
        link.contains("xdpgeneric") && link.contains("prog/xdp id") && link.contains("ballast_xdp"),
        "{link}"
    );
    assert!(!link.contains("xdpdrv") && !link.contains("xdpoffload"));
    assert!(pin_dir.join("link").exists());

    // The pinned link outlives the agent...
    assert!(agent.stop(T).success(), "{}", agent.log());
    assert!(link_details(&ns.0, ifname).contains("xdpgeneric"));

    // ...and an agent asking for native mode does not silently adopt the
    // generic attachment: it tries native, fails, and leaves the working
    // generic one in place.
    let mut native = Agent::start(
        BIN,
        &ns.0,
        pins.path(),
        &standalone_args(ifname, &work.conf(), &["--xdp-mode", "native"]),
        &work.file("native-over-generic.log"),
    );
    let st = native.wait_exit(AGENT_START);
    let log = native.log();
    assert!(
        !st.success(),
        "native over a pinned generic link succeeded:\n{log}"
    );
    assert!(!log.contains("adopted pinned XDP link"), "{log}");
    assert!(log.contains("cannot attach XDP in native mode"), "{log}");
    assert!(link_details(&ns.0, ifname).contains("xdpgeneric"));
    assert!(pin_dir.join("link").exists());

    // ...until cleanup, which detaches it and removes the pins.
    let out = stdout_ok(&agent_cmd(
        &ns.0,
        pins.path(),
        &["cleanup", "--interface", ifname],
    ));
    assert!(out.contains("program detached"), "{out}");
    assert!(!pin_dir.exists());
    assert!(!pins.run_dir().exists(), "inventory left");
    // The link is released asynchronously once its last pin is gone.
    let deadline = Instant::now() + T;
    loop {
        let link = link_details(&ns.0, ifname);
        if !link.contains("xdp") {
            break;
        }
        assert!(Instant::now() < deadline, "still attached: {link}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = stdout_ok(&agent_cmd(
        &ns.0,
        pins.path(),
        &["cleanup", "--interface", ifname],
    ));
    assert!(out.contains("nothing pinned"), "{out}");
}
