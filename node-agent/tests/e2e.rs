//! End to end: the director attached in native XDP to a veth in a network
//! namespace topology, real TCP and UDP from a client namespace to backend
//! namespaces, as root.
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use ballast_agent::abi;
use ballast_testbed::lab::{self, Lab};
use ballast_testbed::{self as testbed, BackendRouting, Sniffer, require_root, servers};

const T: Duration = Duration::from_secs(5);
const NEEDS_ROOT: &str = "XDP and network namespaces";

fn prefix(tag: &str) -> String {
    format!("be{tag}{}", std::process::id() % 1000)
}

/// Backend name -> (connections, peer addresses seen).
fn tally(results: &[anyhow::Result<String>]) -> BTreeMap<String, (usize, Vec<String>)> {
    let mut m: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for r in results {
        let line = r.as_ref().expect("connection through the director");
        let mut it = line.split_whitespace();
        let e = m.entry(it.next().unwrap().to_string()).or_default();
        e.0 += 1;
        e.1.push(it.next().unwrap().split(':').next().unwrap().to_string());
    }
    m
}

#[test]
fn fullnat_tcp_udp_with_toa() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&prefix("f"), 3).unwrap();
    lab.serve(8080).unwrap();
    let mut tcp = lab::service(
        "e2e/web:http",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 1), (2, 1), (3, 1)],
    );
    tcp.flags = abi::SVC_TOA;
    tcp.mss_max = 1452;
    let udp = lab::service(
        "e2e/dns:dns",
        abi::MODE_FULLNAT,
        17,
        53,
        8080,
        &[(1, 1), (2, 1), (3, 1)],
    );
    lab.apply(vec![tcp, udp]).unwrap();

    let sniff = Sniffer::start(lab.tb.backend_ns(1), "eth0", Some(8080)).unwrap();
    let results = servers::tcp_probes(
        lab.tb.client_ns(),
        SocketAddrV4::new(testbed::VIP, 80),
        90,
        8,
        T,
    )
    .unwrap();
    let t = tally(&results);
    assert_eq!(t.len(), 3, "all three backends serve: {t:?}");
    for (name, (_, peers)) in &t {
        assert!(
            peers.iter().all(|p| *p == testbed::SNAT_ADDR.to_string()),
            "{name} saw {peers:?}, not the SNAT address"
        );
    }
    let syns = sniff.wait_for_syns(1, T);
    assert!(!syns.is_empty(), "backend 1 saw SYNs");
    for s in &syns {
        let toa = s.toa().expect("TOA option in the SYN");
        assert_eq!(*toa.ip(), testbed::CLIENT_ADDR);
        assert_ne!(toa.port(), 0);
        assert_eq!(*s.src.ip(), testbed::SNAT_ADDR);
        assert!(
            s.ip_checksum_ok && s.tcp_checksum_ok,
            "checksums after TOA insertion"
        );
        assert!(s.mss().unwrap_or(0) <= 1452, "MSS clamped");
    }

    let line =
        servers::udp_probe(lab.tb.client_ns(), SocketAddrV4::new(testbed::VIP, 53), T).unwrap();
    assert!(
        line.ends_with(&format!("{}", testbed::SNAT_ADDR))
            || line.contains(&testbed::SNAT_ADDR.to_string()),
        "{line}"
    );
}

#[test]
fn dr_backend_sees_the_client() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&prefix("d"), 2).unwrap();
    lab.tb
        .set_backend_mode(BackendRouting::DirectToClient)
        .unwrap();
    lab.tb.add_vip_to_backends(testbed::VIP).unwrap();
    lab.serve(80).unwrap();
    lab.apply(vec![lab::service(
        "e2e/dr:http",
        abi::MODE_DR,
        6,
        80,
        80,
        &[(1, 1), (2, 1)],
    )])
    .unwrap();
    let results = servers::tcp_probes(
        lab.tb.client_ns(),
        SocketAddrV4::new(testbed::VIP, 80),
        40,
        8,
        T,
    )
    .unwrap();
    let t = tally(&results);
    assert_eq!(t.len(), 2);
    for (_, (_, peers)) in t {
        assert!(
            peers.iter().all(|p| *p == testbed::CLIENT_ADDR.to_string()),
            "{peers:?}"
        );
    }
    let snap = lab.snapshot().unwrap();
    assert_eq!(snap.services[0].counters.new_flows, 40);
    assert_eq!(
        snap.services[0].counters.reply_packets, 0,
        "DR replies bypass the director"
    );
}

#[test]
fn nat_backend_sees_the_client_and_replies_through_the_director() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&prefix("n"), 2).unwrap();
    lab.serve(8080).unwrap();
    lab.apply(vec![lab::service(
        "e2e/nat:http",
        abi::MODE_NAT,
        6,
        80,
        8080,
        &[(1, 1), (2, 1)],
    )])
    .unwrap();
    let results = servers::tcp_probes(
        lab.tb.client_ns(),
        SocketAddrV4::new(testbed::VIP, 80),
        30,
        6,
        T,
    )
    .unwrap();
    for (_, (_, peers)) in tally(&results) {
        assert!(
            peers.iter().all(|p| *p == testbed::CLIENT_ADDR.to_string()),
            "{peers:?}"
        );
    }
    let snap = lab.snapshot().unwrap();
    assert!(
        snap.services[0].counters.reply_packets >= 30,
        "replies reversed by the director"
    );
}

#[test]
fn weights_are_honoured() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&prefix("w"), 3).unwrap();
    lab.serve(8080).unwrap();
    lab.apply(vec![lab::service(
        "e2e/w:http",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 1), (2, 2), (3, 3)],
    )])
    .unwrap();
    let n = 600;
    let results = servers::tcp_probes(
        lab.tb.client_ns(),
        SocketAddrV4::new(testbed::VIP, 80),
        n,
        16,
        T,
    )
    .unwrap();
    let t = tally(&results);
    // Expected shares 1/6, 2/6, 3/6; tolerance: 6 points (over 3 sigma of
    // the binomial spread at n=600).
    for (name, want) in [("b1", 1.0 / 6.0), ("b2", 2.0 / 6.0), ("b3", 3.0 / 6.0)] {
        let got = t.get(name).map_or(0, |e| e.0) as f64 / n as f64;
        assert!(
            (got - want).abs() < 0.06,
            "{name}: share {got:.3}, want {want:.3}"
        );
    }
}

#[test]
fn drained_backend_finishes_its_flows_and_gets_no_new_ones() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&prefix("r"), 2).unwrap();
    lab.serve(8080).unwrap();
    lab.apply(vec![lab::service(
        "e2e/drain:http",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 1)],
    )])
    .unwrap();
    let ns = lab.tb.client_ns().to_string();
    let long = std::thread::spawn(move || {
        servers::tcp_transfer(
            &ns,
            SocketAddrV4::new(testbed::VIP, 80),
            200 * 1024,
            Duration::from_millis(5),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    lab.apply(vec![lab::service(
        "e2e/drain:http",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 0), (2, 1)],
    )])
    .unwrap();
    let results = servers::tcp_probes(
        lab.tb.client_ns(),
        SocketAddrV4::new(testbed::VIP, 80),
        30,
        6,
        T,
    )
    .unwrap();
    let t = tally(&results);
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        vec!["b2"],
        "no new flow to the drained backend"
    );
    let report = long
        .join()
        .unwrap()
        .expect("the drained backend's transfer completes");
    assert!(report.greeting.starts_with("b1"));
    assert_eq!(report.bytes_received, 200 * 1024);
}
