//! Tests that build real namespaces need root: without it they fail with
//! the reason.

use super::*;
use crate::sniff::{build::syn_frame, parse_frame};
use crate::*;

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 8080;
const T: Duration = Duration::from_secs(3);

/// Fails unless the test can build namespaces (root, iproute2), and once
/// per process removes what killed runs left.
fn require_namespaces() {
    require_root("network namespaces");
    assert!(
        std::process::Command::new("ip").arg("-V").output().is_ok(),
        "needs iproute2's `ip`"
    );
    static STALE: Once = Once::new();
    STALE.call_once(remove_namespaces_of_dead_test_runs);
}

/// `bt` + zero-padded pid + counter: fixed-width pid keeps prefixes of
/// different processes from colliding (pid 12 #34 vs pid 123 #4), and the
/// longest (11 chars) still leaves room for `-dir` in 15.
fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bt{:07}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Test runs killed with SIGKILL can't run Drop; their namespaces carry
/// the dead pid, so they can be told apart from parallel live runs.
fn remove_namespaces_of_dead_test_runs() {
    for ns in list_netns() {
        let Some(rest) = ns.strip_prefix("bt") else {
            continue;
        };
        let Some(pid) = rest.get(..7).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &ns])
                .status();
        }
    }
}

fn ours(prefix: &str) -> Vec<String> {
    list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

fn target(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(backend_addr(i), PORT)
}

fn any_port() -> SocketAddrV4 {
    SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, PORT)
}

/// Two programs in section `xdp`, the pass program second, like a real
/// data-plane object: attaching by section would pick the dropping one.
const XDP_PASS_SRC: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int xdp_drop_all(struct xdp_md *ctx) { return XDP_DROP; }
SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] SEC("license") = "GPL";
"#;

/// Director program: TCP to backend 1 port 8080 goes back out of the same
/// interface with rewritten MACs (XDP_TX), bypassing kernel forwarding.
const XDP_TX_SRC: &str = r#"
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
SEC("xdp") int xdp_to_b1(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_TCP) return XDP_PASS;
    if (ip->daddr != bpf_htonl(0xc633640b)) return XDP_PASS; /* 198.51.100.11 */
    struct tcphdr *tcp = (void *)(ip + 1);
    if ((void *)(tcp + 1) > end || tcp->dest != bpf_htons(8080)) return XDP_PASS;
    unsigned char dst[6] = {0x02, 0xb1, 0, 0, 0, 11}, src[6] = {0x02, 0xb1, 0, 0, 0, 2};
    __builtin_memcpy(eth->h_dest, dst, 6);
    __builtin_memcpy(eth->h_source, src, 6);
    return XDP_TX;
}
char _license[] SEC("license") = "GPL";
"#;

/// Compiles a BPF C program; fails the test with clang's complaint.
fn compile_bpf(dir: &std::path::Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let obj = dir.join(format!("{name}.o"));
    std::fs::write(&src, source).unwrap();
    // Debian keeps asm/ under the multiarch directory, which clang doesn't
    // search for the bpf target.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let out = std::process::Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", &multiarch, "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output();
    match out {
        Ok(o) if o.status.success() => obj,
        Ok(o) => panic!("clang failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("clang not runnable: {e}"),
    }
}

#[test]
fn parses_syn_with_toa_and_checksums() {
    let src = SocketAddrV4::new(SNAT_ADDR, 40000);
    let dst = SocketAddrV4::new(backend_addr(1), PORT);
    // MSS 1460, NOP, NOP, TOA(port 51234, 192.0.2.1), EOL, EOL.
    let mut opts = vec![2, 4, 0x05, 0xb4, 1, 1, 254, 8];
    opts.extend_from_slice(&51234u16.to_be_bytes());
    opts.extend_from_slice(&CLIENT_ADDR.octets());
    opts.extend_from_slice(&[0, 0]);
    let mut frame = syn_frame(src, dst, &opts);
    frame.extend_from_slice(&[0; 6]); // Ethernet padding must be ignored.
    let p = parse_frame(&frame).expect("parsed");
    assert_eq!(p.src, src);
    assert_eq!(p.dst, dst);
    assert!(p.is_syn());
    assert!(p.ip_checksum_ok && p.tcp_checksum_ok);
    assert_eq!(p.mss(), Some(1460));
    assert_eq!(p.toa(), Some(SocketAddrV4::new(CLIENT_ADDR, 51234)));
    assert_eq!(
        p.options.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![2, 254]
    );

    // Flip a port byte: the TCP checksum must notice.
    let mut bad = frame.clone();
    bad[14 + 20] ^= 0x01;
    let p = parse_frame(&bad).expect("parsed");
    assert!(p.ip_checksum_ok && !p.tcp_checksum_ok);

    let no_toa = parse_frame(&syn_frame(src, dst, &[2, 4, 0x05, 0xb4])).unwrap();
    assert_eq!(no_toa.toa(), None);
}

#[test]
fn rejects_bad_prefixes() {
    for bad in ["", "Blt", "b-t", "abcdefghijkl"] {
        let spec = TestbedSpec::new(bad).backends(2);
        assert!(validate_spec(&spec).is_err(), "{bad:?} accepted");
    }
    assert!(validate_spec(&TestbedSpec::new("abcdefghijk").backends(9)).is_ok());
    assert!(validate_spec(&TestbedSpec::new("abcdefghijk").backends(10)).is_ok());
    assert!(validate_spec(&TestbedSpec::new("abcdefghijk").backends(100)).is_err());
    assert!(validate_spec(&TestbedSpec::new("blt").backends(0)).is_err());
    // Directors 2.. are `<p>-dir<i>`: one more character.
    assert!(validate_spec(&TestbedSpec::new("abcdefghijk").directors(2)).is_err());
    assert!(validate_spec(&TestbedSpec::new("abcdefghij").directors(2)).is_ok());
    assert!(validate_spec(&TestbedSpec::new("blt").directors(0)).is_err());
}

#[test]
fn builds_routes_sniffs_and_cleans_up() {
    require_namespaces();
    let prefix = unique_prefix();
    let started = Instant::now();
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2)).unwrap();
    eprintln!("testbed built in {:?}", started.elapsed());
    let mut expected: Vec<String> = tb.namespaces().iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ours(&prefix), expected);
    assert_eq!(expected.len(), 5);

    let s1 = BackendServer::start(tb.backend_ns(1), "b1", any_port()).unwrap();
    let s2 = BackendServer::start(tb.backend_ns(2), "b2", any_port()).unwrap();
    let sniffer = Sniffer::start(tb.backend_ns(1), HOST_IF, Some(PORT)).unwrap();

    // The client has no route to the backend subnet of its own; this goes
    // through the director's kernel forwarding.
    let line = tcp_probe(tb.client_ns(), target(1), T).unwrap();
    assert!(line.starts_with("b1 192.0.2.1:"), "{line}");
    let line = tcp_probe(tb.client_ns(), target(2), T).unwrap();
    assert!(line.starts_with("b2 192.0.2.1:"), "{line}");
    let line = udp_probe(tb.client_ns(), target(2), T).unwrap();
    assert!(line.starts_with("b2 192.0.2.1:"), "{line}");
    assert_eq!(s1.connections(), 1);
    assert_eq!(s2.connections(), 1);
    assert_eq!(s2.udp_datagrams(), 1);

    let syns = sniffer.wait_for_syns(1, T);
    assert_eq!(syns.len(), 1, "{syns:?}");
    let syn = &syns[0];
    assert_eq!(*syn.src.ip(), CLIENT_ADDR);
    assert_eq!(syn.dst, target(1));
    assert_eq!(syn.src_mac, DIRECTOR_MAC, "forwarded by the director");
    assert_eq!(syn.dst_mac, backend_mac(1));
    // tx checksum offload is off, so the capture sees real checksums.
    assert!(syn.ip_checksum_ok && syn.tcp_checksum_ok, "{syn:?}");
    assert!(syn.mss().is_some());
    assert_eq!(syn.toa(), None);
    assert_eq!(syn.ttl, 63, "one routed hop");
    // Nothing from the client to b2 was seen on b1's interface.
    assert!(
        sniffer
            .packets()
            .iter()
            .all(|p| *p.dst.ip() == backend_addr(1))
    );

    assert_eq!(
        sysctl_get(tb.director_ns(), "net.ipv4.ip_forward").unwrap(),
        "1"
    );
    assert_eq!(
        sysctl_get(tb.director_ns(), "net.ipv4.conf.eth0.rp_filter").unwrap(),
        "0"
    );
    assert_eq!(
        sysctl_get(tb.client_ns(), "net.ipv6.conf.eth0.disable_ipv6").unwrap(),
        "1"
    );
    let k = tb
        .exec(tb.director_ns(), &["ethtool", "-k", "eth0"])
        .unwrap();
    let k = String::from_utf8_lossy(&k.stdout);
    assert!(k.contains("tx-checksumming: off"), "{k}");
    let k = tb
        .exec(tb.switch_ns(), &["ethtool", "-k", tb.director_peer_if()])
        .unwrap();
    assert!(String::from_utf8_lossy(&k.stdout).contains("tx-checksumming: off"));

    let err = tb
        .exec(tb.client_ns(), &["ip", "link", "show", "nosuchdev"])
        .unwrap_err();
    assert!(format!("{err:#}").contains("nosuchdev"), "{err:#}");

    let idx = in_netns(tb.client_ns(), || {
        let name = std::ffi::CString::new("eth0").unwrap();
        // SAFETY: valid C string.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    })
    .unwrap();
    assert_ne!(idx, 0, "eth0 visible inside the client namespace");

    drop(sniffer);
    drop(s1);
    drop(s2);
    drop(tb);
    assert_eq!(ours(&prefix), Vec::<String>::new());
}

#[test]
fn many_probes_and_long_transfer() {
    require_namespaces();
    let prefix = unique_prefix();
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(1)).unwrap();
    let server = BackendServer::start(tb.backend_ns(1), "b1", any_port()).unwrap();

    let started = Instant::now();
    let results = tcp_probes(tb.client_ns(), target(1), 300, 24, T).unwrap();
    eprintln!("300 probes in {:?}", started.elapsed());
    let mut ports = std::collections::HashSet::new();
    for r in &results {
        let line = r.as_ref().unwrap();
        let port = line.rsplit(':').next().unwrap();
        ports.insert(port.to_string());
    }
    assert_eq!(ports.len(), 300, "every probe from a fresh source port");
    assert_eq!(server.connections(), 300);

    // Runs in the background while the foreground keeps probing, as a
    // failover test would.
    let ns = tb.client_ns().to_string();
    let bg = std::thread::spawn(move || {
        tcp_transfer(&ns, target(1), 256 * 1024, Duration::from_millis(2))
    });
    let fg = tcp_probes(tb.client_ns(), target(1), 20, 4, T).unwrap();
    assert!(fg.iter().all(|r| r.is_ok()));
    let report = bg.join().unwrap().unwrap();
    eprintln!("{report:?}");
    assert_eq!(report.bytes_received, 256 * 1024);
    assert!(report.greeting.starts_with("b1 192.0.2.1:"));
    assert!(
        report.elapsed >= Duration::from_millis(400),
        "chunk delay honoured"
    );

    let big = tcp_transfer(tb.client_ns(), target(1), 8 << 20, Duration::ZERO).unwrap();
    assert_eq!(big.bytes_received, 8 << 20);

    // A reset mid-transfer must surface as an error, not a short success.
    let ns = tb.client_ns().to_string();
    let bg =
        std::thread::spawn(move || tcp_transfer(&ns, target(1), 1 << 20, Duration::from_millis(5)));
    std::thread::sleep(Duration::from_millis(300));
    drop(server);
    let err = bg.join().unwrap().unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("reset") || msg.contains("Broken pipe"),
        "{msg}"
    );
}

#[test]
fn xdp_tx_from_director_reaches_backend() {
    require_namespaces();
    let dir = std::env::temp_dir().join(format!("ballast-testbed-{}", unique_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pass_obj = compile_bpf(&dir, "pass", XDP_PASS_SRC);
    let tx_obj = compile_bpf(&dir, "to_b1", XDP_TX_SRC);
    let tb = Testbed::build(&TestbedSpec::new(unique_prefix()).backends(1)).unwrap();
    let attached = tb.attach_xdp_pass(&pass_obj, "xdp_pass").and_then(|()| {
        let obj = tx_obj.to_str().unwrap();
        tb.ip(
            tb.director_ns(),
            &[
                "link", "set", "dev", "eth0", "xdpdrv", "obj", obj, "sec", "xdp",
            ],
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    attached.unwrap();
    let show = tb
        .ip(
            tb.switch_ns(),
            &["link", "show", "dev", tb.director_peer_if()],
        )
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("prog/xdp") && show.contains("name xdp_pass "),
        "{show}"
    );
    // Native mode: a generic-mode program on the peer does not make the
    // director's XDP_TX frames deliverable.
    assert!(!show.contains("xdpgeneric"), "{show}");

    let _s = BackendServer::start(tb.backend_ns(1), "b1", any_port()).unwrap();
    let sniffer = Sniffer::start(tb.backend_ns(1), HOST_IF, Some(PORT)).unwrap();
    let line = tcp_probe(tb.client_ns(), target(1), T).unwrap();
    assert!(line.starts_with("b1 192.0.2.1:"), "{line}");
    let syns = sniffer.wait_for_syns(1, T);
    // TTL untouched: the SYN went through XDP_TX, not the kernel router.
    assert_eq!(syns[0].ttl, 64, "{syns:?}");
    assert!(syns[0].tcp_checksum_ok);

    tb.detach_xdp_pass().unwrap();
    let show = tb
        .ip(
            tb.switch_ns(),
            &["link", "show", "dev", tb.director_peer_if()],
        )
        .unwrap();
    assert!(!String::from_utf8_lossy(&show.stdout).contains("prog/xdp"));
}

#[test]
fn direct_return_routing_and_vip() {
    require_namespaces();
    let tb = Testbed::build(&TestbedSpec::new(unique_prefix()).backends(2)).unwrap();
    let _s = BackendServer::start(tb.backend_ns(1), "b1", any_port()).unwrap();
    let sniffer = Sniffer::start(tb.client_ns(), HOST_IF, None).unwrap();

    tb.set_backend_mode(BackendRouting::DirectToClient).unwrap();
    tb.set_backend_mode(BackendRouting::DirectToClient).unwrap();
    tb.add_vip_to_backends(VIP).unwrap();
    for i in 1..=2 {
        let r = tb
            .ip(tb.backend_ns(i), &["route", "show", CLIENT_NET])
            .unwrap();
        assert!(String::from_utf8_lossy(&r.stdout).contains("dev eth0"));
        let a = tb
            .ip(tb.backend_ns(i), &["addr", "show", "dev", "lo"])
            .unwrap();
        assert!(String::from_utf8_lossy(&a.stdout).contains("203.0.113.10/32"));
        assert_eq!(
            sysctl_get(tb.backend_ns(i), "net.ipv4.conf.eth0.arp_ignore").unwrap(),
            "1"
        );
        assert_eq!(
            sysctl_get(tb.backend_ns(i), "net.ipv4.conf.all.arp_announce").unwrap(),
            "2"
        );
        // Cross-check the /proc-from-a-setns-thread writes with sysctl(8)
        // run the iproute2 way.
        let out = tb
            .exec(
                tb.backend_ns(i),
                &["sysctl", "-n", "net.ipv4.conf.eth0.arp_announce"],
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    }
    // Asymmetric path: SYN via the director, SYN-ACK straight from b1.
    let line = tcp_probe(tb.client_ns(), target(1), T).unwrap();
    assert!(line.starts_with("b1 192.0.2.1:"), "{line}");
    let synacks = sniffer.wait_for(1, T, |p| {
        !p.outgoing && p.flags & sniff::TCP_SYN != 0 && p.flags & sniff::TCP_ACK != 0
    });
    assert_eq!(
        synacks[0].src_mac,
        backend_mac(1),
        "reply bypassed the director"
    );

    // The client's namespace was never touched.
    let out = tb
        .exec(
            tb.client_ns(),
            &["sysctl", "-n", "net.ipv4.conf.eth0.arp_announce"],
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    tb.set_backend_mode(BackendRouting::ViaDirector).unwrap();
    tb.set_backend_mode(BackendRouting::ViaDirector).unwrap();
    let r = tb
        .ip(tb.backend_ns(1), &["route", "show", CLIENT_NET])
        .unwrap();
    assert!(
        r.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    sniffer.clear();
    let line = tcp_probe(tb.client_ns(), target(1), T).unwrap();
    assert!(line.starts_with("b1 "), "{line}");
    let synacks = sniffer.wait_for(1, T, |p| {
        !p.outgoing && p.flags & sniff::TCP_SYN != 0 && p.flags & sniff::TCP_ACK != 0
    });
    assert_eq!(synacks[0].src_mac, DIRECTOR_MAC);

    tb.remove_vip_from_backends(VIP).unwrap();
    tb.add_snat_addr_to_director().unwrap();
    let a = tb
        .ip(tb.director_ns(), &["addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(String::from_utf8_lossy(&a.stdout).contains("198.51.100.3/32"));
}

#[test]
fn panic_still_removes_namespaces() {
    require_namespaces();
    let prefix = unique_prefix();
    let p = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let _tb = Testbed::build(&TestbedSpec::new(&p).backends(1)).unwrap();
        assert_eq!(ours(&p).len(), 4);
        panic!("simulated test failure");
    });
    assert!(result.is_err());
    assert_eq!(ours(&prefix), Vec::<String>::new());
}

#[test]
fn leftovers_are_removed() {
    require_namespaces();
    let prefix = unique_prefix();
    for suffix in ["sw", "stale"] {
        std::process::Command::new("ip")
            .args(["netns", "add", &format!("{prefix}-{suffix}")])
            .status()
            .unwrap();
    }
    // A name that merely shares the prefix without the dash is not ours.
    let other = format!("{prefix}x-sw");
    std::process::Command::new("ip")
        .args(["netns", "add", &other])
        .status()
        .unwrap();
    assert_eq!(ours(&prefix).len(), 2);
    assert_eq!(Testbed::cleanup_prefix(&prefix), 2);
    assert!(ours(&prefix).is_empty());
    assert!(list_netns().contains(&other));

    // build() clears leftovers itself.
    std::process::Command::new("ip")
        .args(["netns", "add", &format!("{prefix}-sw")])
        .status()
        .unwrap();
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(1)).unwrap();
    drop(tb);
    assert!(ours(&prefix).is_empty());
    Testbed::cleanup_prefix(&format!("{prefix}x"));
    assert!(!list_netns().contains(&other));
}

#[test]
fn bad_xdp_object_is_an_error() {
    require_namespaces();
    let prefix = unique_prefix();
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(1)).unwrap();
    // Attaching a missing object fails cleanly and leaves the testbed usable.
    assert!(
        tb.attach_xdp_pass(std::path::Path::new("/nonexistent.o"), "xdp_pass")
            .is_err()
    );
    drop(tb);
    assert!(ours(&prefix).is_empty());
}
