//! 100k random and mutated frames through the director program. Properties:
//! nothing addressed to a VIP leaves with a wrong translation, every drop is
//! counted under a reason, and frames not for us leave untouched.
use ballast_testbed::frames::*;
use ballast_testbed::packet::*;
use ballast_testbed::require_root;
use ballast_testbed::world::*;
use std::net::Ipv4Addr;

use ballast_agent::abi;

const ROUNDS: usize = 100_000;

fn templates(snat_port: u16) -> Vec<Vec<u8>> {
    let mut t = vec![
        tcp_frame(
            (CLIENT_ADDR, 40000),
            (VIP, 80),
            TCP_SYN,
            &[2, 4, 5, 0xb4],
            b"",
        ),
        tcp_frame((CLIENT_ADDR, 40001), (VIP, 80), TCP_ACK, &[], b"payload"),
        tcp_frame((CLIENT_ADDR, 40002), (VIP, 80), TCP_FIN | TCP_ACK, &[], b""),
        tcp_frame(
            (backend_addr(1), 8080),
            (SNAT_ADDR, snat_port),
            TCP_SYN | TCP_ACK,
            &[],
            b"",
        ),
        udp_frame((CLIENT_ADDR, 5000), (VIP, 53), b"q"),
        tcp_frame(
            (CLIENT_ADDR, 40003),
            (DIRECTOR_CLIENT_ADDR, 22),
            TCP_SYN,
            &[],
            b"",
        ),
    ];
    // ICMP frag-needed quoting a translated packet.
    let inner = tcp_frame(
        (SNAT_ADDR, snat_port),
        (backend_addr(1), 8080),
        TCP_ACK,
        &[],
        b"",
    );
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(backend_addr(1).octets(), SNAT_ADDR.octets(), 64)
        .icmpv4_raw(3, 4, [0, 0, 5, 0xdc]);
    let mut icmp = Vec::new();
    b.write(&mut icmp, &inner[14..]).unwrap();
    t.push(icmp);
    t
}

/// The destination as the director should see it, if the frame is a
/// well-formed unfragmented IPv4 TCP/UDP packet.
/// A service (protocol, port) the frame is addressed to, if the director
/// should judge it: unicast to another MAC is another host's (passed).
fn to_vip_service(frame: &[u8]) -> Option<(u8, u16)> {
    if frame[0] & 1 == 0 && frame[..6] != DIRECTOR_MAC {
        return None;
    }
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        return None;
    };
    let h = ip.header();
    if Ipv4Addr::from(h.destination()) != VIP || h.is_fragmenting_payload() || h.ihl() != 5 {
        return None;
    }
    match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => Some((6, t.destination_port())),
        Some(etherparse::TransportSlice::Udp(u)) => Some((17, u.destination_port())),
        _ => None,
    }
}

#[test]
fn fuzz_frames() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let mut l = PacketLab::small(ifindex);
        let mut tcp = svc(MODE_FULLNAT, 6, 80, 8080, &[(1, 1), (2, 1), (3, 1)]);
        tcp.flags = abi::SVC_TOA;
        tcp.mss_max = 1452;
        l.apply(&[tcp, svc(MODE_FULLNAT, 17, 53, 5353, &[(1, 1), (2, 1)])]);
        // Learn a live SNAT port so that replies hit the reverse path.
        let (_, out) = l.run(&tcp_frame(
            (CLIENT_ADDR, 40000),
            (VIP, 80),
            TCP_SYN,
            &[],
            b"",
        ));
        let snat_port = parse(&out).src.1;
        let templates = templates(snat_port);

        let mut rng = fastrand::Rng::with_seed(0xba11a57);
        let before = l.reasons();
        let (mut drops, mut checked_translations, mut untouched) = (0u64, 0u64, 0u64);
        for round in 0..ROUNDS {
            let mut f = templates[rng.usize(..templates.len())].clone();
            match rng.u8(..10) {
                // Pure noise of any length.
                0 => f = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect(),
                // Truncation.
                1 => f.truncate(rng.usize(0..=f.len())),
                // A few random bytes anywhere.
                2..=6 => {
                    for _ in 0..rng.usize(1..5) {
                        let i = rng.usize(..f.len());
                        f[i] = rng.u8(..);
                    }
                }
                // Header-targeted mutations: IP/TCP fields the parser checks.
                7 => {
                    let i = rng.usize(14..34.min(f.len()));
                    f[i] ^= 1 << rng.u8(..8);
                }
                // Source port changes: new flows.
                8 if f.len() > 36 => {
                    let p = rng.u16(1024..);
                    f[34..36].copy_from_slice(&p.to_be_bytes());
                }
                _ => {}
            }
            if f.len() < 14 {
                // The kernel hands XDP no frame shorter than Ethernet.
                continue;
            }
            let vip_service = to_vip_service(&f);
            let valid_in = try_parse(&f).is_ok();
            let (v, out) = l.run(&f);
            match v {
                XDP_DROP => drops += 1,
                XDP_TX => {
                    if let (Some((proto, port)), true) = (vip_service, valid_in) {
                        let o = try_parse(&out)
                            .unwrap_or_else(|e| panic!("round {round}: {e} out for {f:02x?}"));
                        let (want_port, backends) = if proto == 6 && port == 80 {
                            (8080, 3)
                        } else {
                            (5353, 2)
                        };
                        assert_eq!(o.src.0, SNAT_ADDR, "round {round}: source not SNATed");
                        assert!(
                            (1..=backends).any(|i| backend_addr(i) == o.dst.0),
                            "round {round}: {o:?}"
                        );
                        assert_eq!(
                            o.dst.1, want_port,
                            "round {round}: {:?} in {f:02x?} out {out:02x?}",
                            vip_service
                        );
                        checked_translations += 1;
                    }
                }
                XDP_PASS => {
                    if vip_service.is_none() && out == f {
                        untouched += 1;
                    }
                    if vip_service
                        .is_some_and(|(p, port)| (p == 6 && port == 80) || (p == 17 && port == 53))
                    {
                        panic!("round {round}: a packet for a service was passed: {f:02x?}");
                    }
                }
                other => panic!("round {round}: verdict {other}"),
            }
        }
        let after = l.reasons();
        let counted: u64 = (0..abi::REASONS.len())
            .filter(|&i| abi::REASONS[i].1)
            .map(|i| after[i] - before[i])
            .sum();
        assert_eq!(counted, drops, "every drop is counted under a reason");
        let by_reason: Vec<_> = (0..abi::REASONS.len())
            .filter(|&i| after[i] > before[i])
            .map(|i| (abi::REASONS[i].0, after[i] - before[i]))
            .collect();
        eprintln!("fuzz verdict reasons: {by_reason:?}");
        eprintln!(
            "fuzz: {ROUNDS} frames, {drops} drops (all counted), {checked_translations} translations verified, {untouched} passed untouched"
        );
        assert!(
            checked_translations > 5_000,
            "the fuzzer reached the translation path"
        );
    });
}
