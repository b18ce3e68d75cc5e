//! Packets in, packets out (see packets.rs): ICMP and who gets in, under
//! BPF_PROG_TEST_RUN. ICMP errors following their flow, source ranges,
//! refusals (TCP RST, ICMP port unreachable) of a service without usable
//! backends, and echo requests to a VIP. Every output frame has its
//! checksums verified from scratch.
use ballast_testbed::frames::*;
use ballast_testbed::packet::*;
use ballast_testbed::require_root;
use ballast_testbed::world::*;
use std::net::Ipv4Addr;

use ballast_agent::abi;

/// An ICMP error quoting `inner` (an IPv4 packet), from `src` to `dst`.
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, typ: u8, code: u8, inner: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        // Next-hop MTU for "fragmentation needed", unused otherwise.
        .icmpv4_raw(
            typ,
            code,
            if code == 4 {
                [0, 0, 0x05, 0xdc]
            } else {
                [0; 4]
            },
        );
    let mut v = Vec::new();
    b.write(&mut v, inner).unwrap();
    v
}

#[test]
fn icmp_errors_follow_the_flow() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        let (_, out) = l.run(&tcp_frame(
            (CLIENT_ADDR, 50000),
            (VIP, 80),
            TCP_SYN,
            &[],
            b"",
        ));
        let fwd = parse(&out);

        // Fragmentation needed from the backend side, quoting the
        // translated packet: goes to the client, from the VIP, quoting the
        // client's own packet.
        let before = l.reasons();
        let quoted = &out[14..];
        let (v, e) = l.run(&icmp_error(backend_addr(1), SNAT_ADDR, 3, 4, quoted));
        assert_eq!(v, XDP_TX);
        let p = etherparse::SlicedPacket::from_ethernet(&e).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let outer = ip.header().to_header();
        assert_eq!(outer.header_checksum, outer.calc_header_checksum());
        assert_eq!(Ipv4Addr::from(outer.source), VIP);
        assert_eq!(Ipv4Addr::from(outer.destination), CLIENT_ADDR);
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("ICMP")
        };
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload()),
            "ICMP checksum"
        );
        let inner = etherparse::Ipv4HeaderSlice::from_slice(icmp.payload())
            .unwrap()
            .to_header();
        assert_eq!(
            inner.header_checksum,
            inner.calc_header_checksum(),
            "quoted IP checksum"
        );
        assert_eq!(
            (
                Ipv4Addr::from(inner.source),
                Ipv4Addr::from(inner.destination)
            ),
            (CLIENT_ADDR, VIP)
        );
        let ports = &icmp.payload()[20..24];
        assert_eq!(ports, &[0xc3, 0x50, 0, 80], "quoted ports are the client's");
        assert_eq!(
            reason_delta(&before, &l.reasons(), abi::REASON_ICMP_TRANSLATED),
            1
        );

        // Port unreachable from the client side about a reply: to the backend.
        let reply = tcp_frame(
            (backend_addr(1), 8080),
            fwd.src,
            TCP_SYN | TCP_ACK,
            &[],
            b"",
        );
        let (_, rout) = l.run(&reply);
        let (v, e) = l.run(&icmp_error(CLIENT_ADDR, VIP, 3, 3, &rout[14..]));
        assert_eq!(v, XDP_TX);
        let p = etherparse::SlicedPacket::from_ethernet(&e).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let outer = ip.header().to_header();
        assert_eq!(
            (
                Ipv4Addr::from(outer.source),
                Ipv4Addr::from(outer.destination)
            ),
            (SNAT_ADDR, backend_addr(1))
        );
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("ICMP")
        };
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
        let inner = etherparse::Ipv4HeaderSlice::from_slice(icmp.payload())
            .unwrap()
            .to_header();
        assert_eq!(
            (
                Ipv4Addr::from(inner.source),
                Ipv4Addr::from(inner.destination)
            ),
            (backend_addr(1), SNAT_ADDR)
        );
    });
}

/// (flags, seq, ack) of a TCP frame without IP options.
fn tcp_control(frame: &[u8]) -> (u8, u32, u32) {
    let t = &frame[34..];
    (
        t[13],
        u32::from_be_bytes(t[4..8].try_into().unwrap()),
        u32::from_be_bytes(t[8..12].try_into().unwrap()),
    )
}

fn icmp_echo_frame(dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT_ADDR.octets(), dst.octets(), 64)
        .icmpv4_echo_request(id, seq);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn ranged(ranges: &[&str]) -> ballast_agent::dataplane::DesiredService {
    let mut s = svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1), (2, 1)]);
    s.source_ranges = ranges.iter().map(|r| r.parse().unwrap()).collect();
    s
}

#[test]
fn source_ranges_deny_before_any_state_is_spent() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[ranged(&["192.0.2.128/25", "198.51.100.0/24"])]);
        let outside = Ipv4Addr::new(192, 0, 2, 9);
        let inside = Ipv4Addr::new(192, 0, 2, 200);

        let before = l.reasons();
        let (v, _) = l.run(&tcp_frame((outside, 40000), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_DROP, "a client outside every range is dropped");
        // A non-SYN is re-hashed as a new flow, so it is checked too.
        let (v, _) = l.run(&tcp_frame((outside, 40001), (VIP, 80), TCP_ACK, &[], b"x"));
        assert_eq!(v, XDP_DROP);
        let after = l.reasons();
        assert_eq!(reason_delta(&before, &after, abi::REASON_SOURCE_DENIED), 2);
        assert_eq!(l.conntrack_entries(), 0, "no flow state, no SNAT port");

        let (v, out) = l.run(&tcp_frame((inside, 40000), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX, "a client inside a range is forwarded");
        assert_eq!(parse(&out).src.0, SNAT_ADDR);
        assert_eq!(l.conntrack_entries(), 2, "forward and reply entries");

        // The same VIP on another port without ranges admits everyone.
        let mut open = svc(MODE_FULLNAT, TCP, 81, 8080, &[(1, 1)]);
        open.name = "test/open:81".into();
        l.apply(&[ranged(&["192.0.2.128/25", "198.51.100.0/24"]), open]);
        let (v, _) = l.run(&tcp_frame((outside, 40002), (VIP, 81), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX);

        // Only IPv6 ranges: every IPv4 client is outside them.
        l.apply(&[ranged(&["2001:db8::/32"])]);
        let (v, _) = l.run(&tcp_frame((inside, 40003), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_DROP);
    });
}

#[test]
fn a_range_edit_keeps_established_flows_and_refuses_new_ones() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        let client = Ipv4Addr::new(192, 0, 2, 200);
        l.apply(&[ranged(&["192.0.2.128/25"])]);
        let (v, first) = l.run(&tcp_frame((client, 40000), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX);

        // The edit excludes the client: its open flow goes on to the same
        // backend (as LVS and Cilium do), a new one is dropped.
        l.apply(&[ranged(&["192.0.2.0/30"])]);
        let (v, out) = l.run(&tcp_frame(
            (client, 40000),
            (VIP, 80),
            TCP_ACK,
            &[],
            b"more",
        ));
        assert_eq!(v, XDP_TX, "the established flow keeps going");
        assert_eq!(parse(&out).dst, parse(&first).dst);
        let (v, _) = l.run(&tcp_frame((client, 40001), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_DROP, "a new flow from the excluded client is denied");
    });
}

#[test]
fn a_service_without_usable_backends_answers_tcp_with_rst() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        // All drained on :80, none listed on :81: both refuse.
        let drained = svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 0), (2, 0)]);
        let mut empty = svc(MODE_DR, TCP, 81, 81, &[]);
        empty.name = "test/empty:81".into();
        l.apply(&[drained, empty]);

        for port in [80, 81] {
            let before = l.reasons();
            let syn = tcp_frame(
                (CLIENT_ADDR, 40000),
                (VIP, port),
                TCP_SYN,
                &[2, 4, 5, 0xb4],
                b"",
            );
            let (v, out) = l.run(&syn);
            assert_eq!(v, XDP_TX, ":{port}: the SYN is answered");
            let o = parse(&out); // checksums verified
            assert_eq!((o.src, o.dst), ((VIP, port), (CLIENT_ADDR, 40000)));
            assert_eq!((o.src_mac, o.dst_mac), (DIRECTOR_MAC, CLIENT_MAC));
            assert_eq!(out.len(), 14 + 20 + 20, "bare RST, options stripped");
            assert_eq!(
                tcp_control(&out),
                (TCP_RST | TCP_ACK, 0, 1001),
                "RST,ACK acknowledging the SYN (seq 1000)"
            );
            assert_eq!(reason_delta(&before, &l.reasons(), abi::REASON_REJECTED), 1);
        }

        // A segment with data and ACK: <SEQ=SEG.ACK><CTL=RST>.
        let (v, out) = l.run(&tcp_frame(
            (CLIENT_ADDR, 40001),
            (VIP, 80),
            TCP_ACK,
            &[],
            b"hello",
        ));
        assert_eq!(v, XDP_TX);
        parse(&out);
        assert_eq!(tcp_control(&out), (TCP_RST, 1, 0));

        // A RST is never answered.
        let before = l.reasons();
        let (v, _) = l.run(&tcp_frame(
            (CLIENT_ADDR, 40002),
            (VIP, 80),
            TCP_RST,
            &[],
            b"",
        ));
        assert_eq!(v, XDP_DROP);
        assert_eq!(
            reason_delta(&before, &l.reasons(), abi::REASON_NO_BACKEND),
            1
        );
        assert_eq!(l.conntrack_entries(), 0, "refusals keep no state");
    });
}

/// Keeps the calling thread on one CPU: the refusal buckets are per CPU.
fn stay_on_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn refusals_are_rate_limited_and_the_rest_counted() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        stay_on_cpu0();
        let mut l = PacketLab::small(ifindex);
        l.apply(&[
            svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 0)]),
            svc(MODE_FULLNAT, UDP, 53, 5353, &[(1, 0)]),
        ]);
        l.set_refusal_limit(abi::RefusalLimit {
            per_cpu_rate: 1,
            burst: 5,
        });
        let before = l.reasons();
        let mut answered = 0u64;
        let n = 200u16;
        for i in 0..n {
            let f = if i % 2 == 0 {
                tcp_frame((CLIENT_ADDR, 41000 + i), (VIP, 80), TCP_SYN, &[], b"")
            } else {
                udp_frame((CLIENT_ADDR, 41000 + i), (VIP, 53), b"query")
            };
            match l.run(&f).0 {
                XDP_TX => answered += 1,
                XDP_DROP => {}
                other => panic!("verdict {other}"),
            }
        }
        // 200 refusals in well under a second: the burst of 5, and at most
        // one more refilled meanwhile (1 a second).
        assert!((5..=6).contains(&answered), "{answered} answered");
        let after = l.reasons();
        assert_eq!(
            reason_delta(&before, &after, abi::REASON_REJECTED),
            answered
        );
        assert_eq!(
            reason_delta(&before, &after, abi::REASON_REFUSAL_LIMITED),
            u64::from(n) - answered
        );
        assert_eq!(
            l.conntrack_entries(),
            0,
            "suppressed refusals keep no state"
        );
    });
}

#[test]
fn a_service_without_usable_backends_answers_udp_with_port_unreachable() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, UDP, 53, 5353, &[(1, 0)])]);
        let query = udp_frame(
            (CLIENT_ADDR, 5000),
            (VIP, 53),
            b"a query longer than eight bytes",
        );
        let before = l.reasons();
        let (v, out) = l.run(&query);
        assert_eq!(v, XDP_TX);
        assert_eq!(reason_delta(&before, &l.reasons(), abi::REASON_REJECTED), 1);
        assert_eq!(
            out.len(),
            14 + 20 + 8 + 20 + 8,
            "headers and the 28-byte quote"
        );
        assert_eq!(&out[0..6], &CLIENT_MAC);
        assert_eq!(&out[6..12], &DIRECTOR_MAC);
        assert_eq!(&out[12..14], &[0x08, 0x00]);
        let ip = &out[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 56, "total length");
        assert_eq!(ip[9], 1, "ICMP");
        assert_eq!(&ip[12..16], &VIP.octets(), "from the VIP");
        assert_eq!(&ip[16..20], &CLIENT_ADDR.octets(), "to the client");
        assert_eq!(ones_complement_sum(ip), 0xffff, "IPv4 header checksum");
        let icmp = &out[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 3), "destination unreachable, port");
        assert_eq!(ones_complement_sum(icmp), 0xffff, "ICMP checksum");
        assert_eq!(
            &icmp[8..36],
            &query[14..42],
            "quotes the IP header and the UDP header"
        );

        // Tagged: the answer keeps the tag and the same layout after it.
        let mut tagged = query[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        tagged.extend_from_slice(&query[12..]);
        let (v, out) = l.run(&tagged);
        assert_eq!(v, XDP_TX);
        assert_eq!(out.len(), 18 + 56);
        assert_eq!(&out[0..6], &CLIENT_MAC);
        assert_eq!(
            &out[12..18],
            &[0x81, 0x00, 0x00, 0x64, 0x08, 0x00],
            "tag kept"
        );
        assert_eq!(ones_complement_sum(&out[18..38]), 0xffff);
        assert_eq!((out[38], out[39]), (3, 3));
        assert_eq!(ones_complement_sum(&out[38..]), 0xffff);
        assert_eq!(&out[46..74], &query[14..42]);
    });
}

#[test]
fn pings_to_a_vip_are_answered_and_others_pass() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_DR, TCP, 80, 80, &[(1, 1)])]);
        let req = icmp_echo_frame(VIP, 0x1234, 7, b"ping payload");
        let before = l.reasons();
        let (v, out) = l.run(&req);
        assert_eq!(v, XDP_TX);
        assert_eq!(
            reason_delta(&before, &l.reasons(), abi::REASON_ECHO_REPLIED),
            1
        );
        assert_eq!(out.len(), req.len());
        assert_eq!(
            (&out[0..6], &out[6..12]),
            (&CLIENT_MAC[..], &DIRECTOR_MAC[..])
        );
        let ip = &out[14..34];
        assert_eq!(&ip[12..16], &VIP.octets());
        assert_eq!(&ip[16..20], &CLIENT_ADDR.octets());
        assert_eq!(ones_complement_sum(ip), 0xffff, "IPv4 header checksum");
        let icmp = &out[34..];
        assert_eq!((icmp[0], icmp[1]), (0, 0), "echo reply");
        assert_eq!(
            &icmp[4..],
            &req[38..],
            "identifier, sequence and payload echoed"
        );
        assert_eq!(ones_complement_sum(icmp), 0xffff, "ICMP checksum");

        let other = icmp_echo_frame(Ipv4Addr::new(203, 0, 113, 99), 1, 1, b"x");
        let (v, _) = l.run(&other);
        assert_eq!(v, XDP_PASS, "not a VIP: the kernel answers, or not");
    });
}

/// What a restarted agent adopts: the source-range entries read back from
/// the pinned trie are the ones the plan wrote, so its next plan writes
/// nothing (and removes what it should).
#[test]
fn source_ranges_are_read_back_from_the_pinned_trie() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[ranged(&[
            "192.0.2.128/25",
            "198.51.100.0/24",
            "2001:db8::/32",
        ])]);
        let written = l.director.programmed().src_ranges.clone();
        assert_eq!(written.values().map(|r| r.len()).sum::<usize>(), 3);
        let adopted = ballast_agent::dataplane::maps::Maps::open_pinned(&l.pin_dir)
            .expect("pinned maps")
            .read_programmed()
            .expect("read back");
        assert_eq!(adopted.src_ranges, written);
    });
}
