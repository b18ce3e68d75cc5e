//! Packets in, packets out: the director program under BPF_PROG_TEST_RUN,
//! in a private network namespace so that its FIB lookups are deterministic
//! (ballast_testbed::packet). This file: translation in each forwarding
//! mode, what is not ours, ARP, malformed frames, IP options, VLAN tags,
//! unresolved neighbours. Flows and backends: packets_flows.rs; ICMP,
//! source ranges and refusals: packets_access.rs. Every output frame has its
//! checksums verified from scratch.
use ballast_testbed::frames::*;
use ballast_testbed::packet::*;
use ballast_testbed::require_root;
use ballast_testbed::world::*;
use std::net::Ipv4Addr;
use std::time::Duration;

use ballast_agent::announce::l2::owned::OwnedMaps;

use ballast_agent::abi;

#[test]
fn fullnat_syn_reply_and_toa() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        let mut s = svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1), (2, 1), (3, 1)]);
        s.flags = abi::SVC_TOA;
        s.mss_max = 1452;
        l.apply(&[s]);

        // SYN with MSS 1460: TOA inserted, MSS clamped, source SNATed.
        let mss = [2, 4, 0x05, 0xb4];
        let syn = tcp_frame((CLIENT_ADDR, 40000), (VIP, 80), TCP_SYN, &mss, b"");
        let (v, out) = l.run(&syn);
        assert_eq!(v, XDP_TX, "SYN to the VIP is forwarded back out");
        let o = parse(&out);
        assert_eq!(out.len(), syn.len() + 8, "TOA adds 8 bytes");
        assert_eq!(o.src.0, SNAT_ADDR);
        assert!(
            (10_000..=65_000).contains(&o.src.1),
            "SNAT port {} in range",
            o.src.1
        );
        assert_eq!(o.dst.1, 8080);
        let b = (1..=3)
            .find(|&i| backend_addr(i) == o.dst.0)
            .expect("a configured backend");
        assert_eq!(
            o.dst_mac,
            backend_mac(b),
            "next hop MAC from the neighbour table"
        );
        assert_eq!(o.src_mac, DIRECTOR_MAC);
        assert_eq!(o.ttl, 63);
        assert_eq!(
            o.toa(),
            Some((CLIENT_ADDR, 40000)),
            "TOA carries the client address and port"
        );
        assert_eq!(o.mss(), Some(1452), "MSS clamped");

        // Next packet of the flow: same backend and SNAT port, no TOA.
        let ack = tcp_frame((CLIENT_ADDR, 40000), (VIP, 80), TCP_ACK, &[], b"hello");
        let (v, out2) = l.run(&ack);
        assert_eq!(v, XDP_TX);
        let o2 = parse(&out2);
        assert_eq!((o2.src, o2.dst), (o.src, o.dst));
        assert_eq!(o2.toa(), None);
        assert_eq!(o2.payload, b"hello");

        // The backend's SYN-ACK to the SNAT address goes back to the client
        // from the VIP, MSS clamped too.
        let synack = tcp_frame(o.dst, o.src, TCP_SYN | TCP_ACK, &[2, 4, 0x05, 0xb4], b"");
        let (v, back) = l.run(&synack);
        assert_eq!(v, XDP_TX);
        let r = parse(&back);
        assert_eq!(r.src, (VIP, 80));
        assert_eq!(r.dst, (CLIENT_ADDR, 40000));
        assert_eq!(r.dst_mac, CLIENT_MAC);
        assert_eq!(r.mss(), Some(1452));

        let snap = l
            .director
            .maps()
            .service_counters([0u32].into_iter())
            .unwrap();
        assert_eq!(snap[&0].new_flows, 1);
        assert_eq!(snap[&0].packets, 2);
        assert_eq!(snap[&0].reply_packets, 1);
    });
}

#[test]
fn fullnat_udp_and_zero_checksum() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, UDP, 53, 5353, &[(1, 1)])]);
        let f = udp_frame((CLIENT_ADDR, 5000), (VIP, 53), b"query");
        let (v, out) = l.run(&f);
        assert_eq!(v, XDP_TX);
        let o = parse(&out);
        assert_eq!((o.src.0, o.dst), (SNAT_ADDR, (backend_addr(1), 5353)));

        // A UDP checksum of zero means none and stays zero.
        let mut z = udp_frame((CLIENT_ADDR, 5001), (VIP, 53), b"query");
        let csum_at = 14 + 20 + 6;
        z[csum_at] = 0;
        z[csum_at + 1] = 0;
        let (v, out) = l.run(&z);
        assert_eq!(v, XDP_TX);
        assert_eq!(&out[csum_at..csum_at + 2], &[0, 0]);
        parse(&out);

        // Reply reversed.
        let reply = udp_frame((backend_addr(1), 5353), o.src, b"answer");
        let (v, back) = l.run(&reply);
        assert_eq!(v, XDP_TX);
        let r = parse(&back);
        assert_eq!((r.src, r.dst), ((VIP, 53), (CLIENT_ADDR, 5000)));
        assert_eq!(r.payload, b"answer");
    });
}

#[test]
fn dr_rewrites_only_macs() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_DR, TCP, 80, 80, &[(2, 1)])]);
        let f = tcp_frame((CLIENT_ADDR, 40001), (VIP, 80), TCP_SYN, &[], b"");
        let (v, out) = l.run(&f);
        assert_eq!(v, XDP_TX);
        let o = parse(&out);
        assert_eq!(
            (o.src, o.dst),
            ((CLIENT_ADDR, 40001), (VIP, 80)),
            "IP header untouched"
        );
        assert_eq!(o.ttl, 64, "DR does not route: TTL unchanged");
        assert_eq!(o.dst_mac, backend_mac(2));
        assert_eq!(&out[14..], &f[14..], "only the Ethernet header changes");
    });
}

#[test]
fn nat_rewrites_destination_and_reverses_replies() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_NAT, TCP, 80, 8080, &[(3, 1)])]);
        let (v, out) = l.run(&tcp_frame(
            (CLIENT_ADDR, 40002),
            (VIP, 80),
            TCP_SYN,
            &[],
            b"",
        ));
        assert_eq!(v, XDP_TX);
        let o = parse(&out);
        assert_eq!(
            (o.src, o.dst),
            ((CLIENT_ADDR, 40002), (backend_addr(3), 8080))
        );
        let (v, back) = l.run(&tcp_frame(
            (backend_addr(3), 8080),
            (CLIENT_ADDR, 40002),
            TCP_SYN | TCP_ACK,
            &[],
            b"",
        ));
        assert_eq!(v, XDP_TX);
        let r = parse(&back);
        assert_eq!((r.src, r.dst), ((VIP, 80), (CLIENT_ADDR, 40002)));
    });
}

#[test]
fn not_for_us_is_passed_untouched() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        for f in [
            tcp_frame((CLIENT_ADDR, 40003), (VIP, 81), TCP_SYN, &[], b""),
            tcp_frame(
                (CLIENT_ADDR, 40003),
                (DIRECTOR_CLIENT_ADDR, 22),
                TCP_SYN,
                &[],
                b"",
            ),
            udp_frame((CLIENT_ADDR, 40003), (VIP, 80), b"x"),
        ] {
            let (v, out) = l.run(&f);
            assert_eq!(v, XDP_PASS);
            assert_eq!(out, f);
        }
    });
}

/// "Who has `target`? Tell `sender`", broadcast from the client's MAC.
fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn arp(target: Ipv4Addr) -> Vec<u8> {
    arp_request(CLIENT_ADDR, target)
}

#[test]
fn arp_for_announced_vip_and_snat_is_answered() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        for target in [VIP, SNAT_ADDR] {
            let (v, out) = l.run(&arp(target));
            assert_eq!(v, XDP_TX, "ARP for {target}");
            assert_eq!(&out[0..6], &CLIENT_MAC);
            assert_eq!(&out[6..12], &DIRECTOR_MAC);
            assert_eq!(&out[20..22], &[0, 2], "reply");
            assert_eq!(&out[22..28], &DIRECTOR_MAC, "sender MAC");
            assert_eq!(&out[28..32], &target.octets(), "sender IP");
            assert_eq!(&out[38..42], &CLIENT_ADDR.octets(), "target IP");
        }
        let (v, _) = l.run(&arp(Ipv4Addr::new(203, 0, 113, 99)));
        assert_eq!(v, XDP_PASS);
        // A gratuitous ARP (another node taking the VIP) is not answered.
        let (v, _) = l.run(&arp_request(VIP, VIP));
        assert_eq!(v, XDP_PASS, "gratuitous ARP");
    });
}

#[test]
fn standby_owned_vips_are_answered_only_while_the_announcer_is_alive() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        let mut s = svc(MODE_DR, TCP, 80, 80, &[(1, 1)]);
        s.announce = false;
        l.apply(&[s]);
        assert_eq!(l.run(&arp(VIP)).0, XDP_PASS, "the plan announces nothing");
        let mut owned = OwnedMaps::open_pinned(l.pin_dir()).unwrap();
        owned.claim(VIP).unwrap();
        let before = l.reasons();
        assert_eq!(l.run(&arp(VIP)).0, XDP_PASS, "owned, but no stamp yet");
        assert_eq!(
            reason_delta(&before, &l.reasons(), abi::REASON_ARP_STALE_OWNER),
            1
        );
        owned.stamp(Duration::from_secs(5)).unwrap();
        let (v, out) = l.run(&arp(VIP));
        assert_eq!(v, XDP_TX, "owned and alive");
        assert_eq!(&out[22..28], &DIRECTOR_MAC, "sender MAC");
        assert_eq!(&out[28..32], &VIP.octets(), "sender IP");
        // An RFC 5227 probe (sender 0.0.0.0), as a standby peer sends.
        let (v, out) = l.run(&arp_request(Ipv4Addr::UNSPECIFIED, VIP));
        assert_eq!(v, XDP_TX, "a probe is answered");
        assert_eq!(&out[0..6], &CLIENT_MAC);
        assert_eq!(l.run(&arp_request(VIP, VIP)).0, XDP_PASS, "gratuitous");
        // The stamp runs out (the agent died and stayed down).
        owned.stamp(Duration::ZERO).unwrap();
        assert_eq!(l.run(&arp(VIP)).0, XDP_PASS, "stamp passed");
        // A new agent adopts nothing from a passed stamp and clears it.
        assert!(owned.adopt().unwrap().is_empty());
        owned.stamp(Duration::from_secs(5)).unwrap();
        assert_eq!(l.run(&arp(VIP)).0, XDP_PASS, "released by the adoption");
        owned.claim(VIP).unwrap();
        assert_eq!(owned.adopt().unwrap().len(), 1, "a fresh stamp keeps it");
        owned.release(VIP).unwrap();
        assert_eq!(l.run(&arp(VIP)).0, XDP_PASS, "released");
    });
}

#[test]
fn frames_for_another_mac_are_passed_untouched_and_counted() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        let mut f = tcp_frame((CLIENT_ADDR, 40100), (VIP, 80), TCP_SYN, &[], b"");
        // Another director's MAC: flooded to us by a switch or a bridge.
        f[0..6].copy_from_slice(&[0x02, 0xb1, 0, 0, 0, 0x04]);
        let before = l.reasons();
        let (v, out) = l.run(&f);
        assert_eq!(v, XDP_PASS);
        assert_eq!(out, f, "untouched");
        assert_eq!(
            reason_delta(&before, &l.reasons(), abi::REASON_PASS_OTHER_HOST),
            1
        );
        assert_eq!(l.conntrack_entries(), 0, "no state for another host's flow");
        // Broadcast ARP stays ours.
        assert_eq!(l.run(&arp(VIP)).0, XDP_TX);
    });
}

#[test]
fn malformed_and_fragments_are_counted() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        let good = tcp_frame((CLIENT_ADDR, 40004), (VIP, 80), TCP_SYN, &[], b"");
        let before = l.reasons();

        // Truncated TCP header to a VIP: dropped as malformed.
        let (v, _) = l.run(&good[..14 + 20 + 10]);
        assert_eq!(v, XDP_DROP);
        // IHL below 5.
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(l.run(&bad_ihl).0, XDP_DROP);
        // Non-first fragment to a VIP.
        let mut frag = good.clone();
        frag[14 + 6] = 0x00;
        frag[14 + 7] = 0x10;
        assert_eq!(l.run(&frag).0, XDP_DROP);
        // (Frames shorter than Ethernet never reach XDP: the kernel
        // refuses them in BPF_PROG_TEST_RUN too.)
        // A fragment not to a VIP: the kernel's business.
        let mut other = tcp_frame(
            (CLIENT_ADDR, 40004),
            (DIRECTOR_CLIENT_ADDR, 22),
            TCP_SYN,
            &[],
            b"",
        );
        other[14 + 6] = 0x20;
        assert_eq!(l.run(&other).0, XDP_PASS);

        let after = l.reasons();
        assert_eq!(reason_delta(&before, &after, abi::REASON_MALFORMED), 2);
        assert_eq!(reason_delta(&before, &after, abi::REASON_FRAGMENT), 1);
        assert_eq!(reason_delta(&before, &after, abi::REASON_PASS_MALFORMED), 1);
    });
}

#[test]
fn ip_options_are_translated_without_toa() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        let mut s = svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)]);
        s.flags = abi::SVC_TOA;
        l.apply(&[s]);
        // Insert a 4-byte NOP/EOL option block into the IP header.
        let f = tcp_frame((CLIENT_ADDR, 40005), (VIP, 80), TCP_SYN, &[], b"");
        let mut g = f[..34].to_vec();
        g.extend_from_slice(&[1, 1, 1, 0]);
        g.extend_from_slice(&f[34..]);
        g[14] = 0x46;
        let tot = u16::from_be_bytes([g[16], g[17]]) + 4;
        g[16..18].copy_from_slice(&tot.to_be_bytes());
        g[24] = 0;
        g[25] = 0;
        let sum = etherparse::Ipv4HeaderSlice::from_slice(&g[14..38])
            .unwrap()
            .to_header()
            .calc_header_checksum();
        g[24..26].copy_from_slice(&sum.to_be_bytes());
        let before = l.reasons();
        let (v, out) = l.run(&g);
        assert_eq!(v, XDP_TX);
        let o = parse(&out);
        assert_eq!((o.src.0, o.dst), (SNAT_ADDR, (backend_addr(1), 8080)));
        assert_eq!(o.toa(), None);
        assert_eq!(
            reason_delta(&before, &l.reasons(), 10),
            1,
            "toa_skipped counted"
        );
    });
}

#[test]
fn unresolved_neighbour_is_passed_to_the_kernel() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(4, 1)])]);
        let (v, out) = l.run(&tcp_frame(
            (CLIENT_ADDR, 48000),
            (VIP, 80),
            TCP_SYN,
            &[],
            b"",
        ));
        assert_eq!(v, XDP_PASS);
        let o = parse(&out);
        assert_eq!(
            o.dst,
            (backend_addr(4), 8080),
            "translated before the kernel forwards it"
        );
        assert_eq!(l.reasons()[abi::REASON_PASS_NO_NEIGH as usize], 1);
    });
}

#[test]
fn vlan_tagged_frames_are_served() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        let f = tcp_frame((CLIENT_ADDR, 49000), (VIP, 80), TCP_SYN, &[], b"");
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        t.extend_from_slice(&f[12..]);
        let (v, out) = l.run(&t);
        assert_eq!(v, XDP_TX);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x64], "tag kept");
        let mut untagged = out[..12].to_vec();
        untagged.extend_from_slice(&out[16..]);
        let o = parse(&untagged);
        assert_eq!((o.src.0, o.dst), (SNAT_ADDR, (backend_addr(1), 8080)));
    });
}
