//! `ballast-agent standalone` as a user runs it: YAML in a directory, an
//! invalid document beside a valid one, reload on change, `stats`, and a
//! SIGKILL + restart in the middle of a transfer that must complete.
use std::net::SocketAddrV4;
use std::time::Duration;

use ballast_agent::lifecycle::identity::Interface;
use ballast_testbed::{
    self as testbed, Testbed, TestbedSpec,
    agent::{self, PinRoot, WorkDir, start_standalone, stdout_ok},
    require_root, servers,
};

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
  scheduler: Maglev
  clientAddress: TOA
  persistence: {timeoutSeconds: 0}
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}
      - {address: 198.51.100.12, weight: 1}
"#;

const BAD: &str = r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: broken, namespace: default}
spec:
  addresses: [203.0.113.11]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  forwarding: DR
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}
"#;

#[test]
fn standalone_serves_yaml_survives_sigkill_and_reloads() {
    require_root("network namespaces, XDP and bpffs pins");
    let prefix = format!("bsa{}", std::process::id() % 1000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2)).unwrap();
    let work = WorkDir::new(&prefix);
    tb.attach_test_xdp_pass().unwrap();
    let _servers: Vec<_> = tb.serve(8080).unwrap();

    let conf = work.conf();
    std::fs::write(conf.join("web.yaml"), WEB).unwrap();
    std::fs::write(
        conf.join("broken.yaml"),
        BAD.replace("forwarding: DR", "forwarding: DR\n  clientAddress: TOA"),
    )
    .unwrap();
    let pins = PinRoot::new(&format!("ballast-{prefix}"));
    let pin_root = pins.path();
    let log = work.file("agent.log");
    let mut agent = start_standalone(BIN, &tb, pin_root, &conf, &[], &log);
    agent.wait_log_count("configuration applied", 1);

    // The invalid document is named with its field; the valid one forwards.
    let l = agent.log();
    assert!(
        l.contains("broken.yaml") && l.contains("clientAddress"),
        "error names the document and field:\n{l}"
    );
    let vip = SocketAddrV4::new(testbed::VIP, 80);
    let results = servers::tcp_probes(tb.client_ns(), vip, 20, 4, T).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    // SIGKILL the agent mid-transfer and start a new one: the pinned data
    // plane keeps forwarding and the new agent adopts it.
    let ns = tb.client_ns().to_string();
    let transfer = std::thread::spawn(move || {
        servers::tcp_transfer(&ns, vip, 300 * 1024, Duration::from_millis(4))
    });
    std::thread::sleep(Duration::from_millis(400));
    agent.kill();
    std::thread::sleep(Duration::from_millis(300));
    let mut agent = start_standalone(BIN, &tb, pin_root, &conf, &[], &log);
    agent.wait_log_count("configuration applied", 2);
    let report = transfer
        .join()
        .unwrap()
        .expect("transfer survives the agent's SIGKILL and restart");
    assert_eq!(report.bytes_received, 300 * 1024);
    assert!(
        agent.log().contains("adopted pinned XDP link"),
        "{}",
        agent.log()
    );

    // Reload on change: drain backend 1; new connections all go to b2.
    std::fs::write(
        conf.join("web.yaml"),
        WEB.replacen("weight: 1}", "weight: 0}", 1),
    )
    .unwrap();
    agent.wait_log_count("configuration applied", 3);
    let results = servers::tcp_probes(tb.client_ns(), vip, 20, 4, T).unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().map(|l| l.starts_with("b2")).unwrap_or(false)),
        "{results:?}"
    );

    // stats, run in the agent's namespace (pins are keyed by the
    // interface's namespace and ifindex), sees the traffic.
    let out = agent::output(
        BIN,
        tb.director_ns(),
        pin_root,
        &["stats", "--json", "--interface", tb.director_if()],
    );
    let snap: serde_json::Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    let flows = snap["services"][0]["counters"]["new_flows"]
        .as_u64()
        .unwrap();
    assert!(flows >= 41, "stats counted {flows} flows");
    assert_eq!(snap["services"][0]["name"], "default/web:http");

    drop(agent);
    let pin_dir = testbed::in_netns(tb.director_ns(), || {
        Interface::resolve(testbed::HOST_IF).map(|i| i.key)
    })
    .unwrap()
    .unwrap();
    let pin_dir = ballast_agent::dataplane::pin_dir_for(pin_root, &pin_dir);
    assert!(pin_dir.exists());
    let out = agent::output(
        BIN,
        tb.director_ns(),
        pin_root,
        &["cleanup", "--interface", tb.director_if()],
    );
    stdout_ok(&out);
    assert!(!pin_dir.exists());
}

/// The gratuitous ARPs the client saw for `vip` in the next `wait`: sent
/// by the director's MAC, sender and target both the VIP.
fn gratuitous_arps(
    arp: &testbed::arp::ArpSocket,
    vip: std::net::Ipv4Addr,
    wait: Duration,
) -> usize {
    arp.frames(wait)
        .into_iter()
        .filter(|a| a.op == 1 && a.spa == vip && a.tpa == vip && a.sha == testbed::DIRECTOR_MAC)
        .count()
}

#[test]
fn a_vip_the_agent_starts_announcing_is_announced_with_gratuitous_arps() {
    require_root("network namespaces, XDP and bpffs pins");
    let prefix = format!("bsg{}", std::process::id() % 1000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2)).unwrap();
    let work = WorkDir::new(&prefix);
    tb.attach_test_xdp_pass().unwrap();
    let conf = work.conf();
    std::fs::write(conf.join("web.yaml"), WEB).unwrap();
    let pins = PinRoot::new(&format!("ballast-{prefix}"));
    let arp = testbed::arp::ArpSocket::open(tb.client_ns(), "eth0");
    let mut agent = start_standalone(BIN, &tb, pins.path(), &conf, &[], &work.file("agent.log"));
    agent.wait_log_count("configuration applied", 1);
    // 0, 100 ms, 300 ms and 1 s after the apply (the fifth comes at 5 s).
    let vip = testbed::VIP;
    let first = gratuitous_arps(&arp, vip, Duration::from_millis(1500));
    assert!(
        (3..=4).contains(&first),
        "{first} gratuitous ARPs for {vip} in 1.5 s\n{}",
        agent.log()
    );
    // A second VIP added by a reload gets its own; the first gets no more
    // once its schedule is done.
    let more = WEB.replace(
        "addresses: [203.0.113.10]",
        "addresses: [203.0.113.10, 203.0.113.12]",
    );
    std::fs::write(conf.join("web.yaml"), more).unwrap();
    agent.wait_log_count("configuration applied", 2);
    let frames = arp.frames(Duration::from_millis(1500));
    let count = |v: std::net::Ipv4Addr| {
        frames
            .iter()
            .filter(|a| a.op == 1 && a.spa == v && a.tpa == v && a.sha == testbed::DIRECTOR_MAC)
            .count()
    };
    assert!(
        count(std::net::Ipv4Addr::new(203, 0, 113, 12)) >= 3,
        "{frames:?}"
    );
}
