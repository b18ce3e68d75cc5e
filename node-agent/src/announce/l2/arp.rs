//! The ARP frames the announcer sends and reads: gratuitous ARPs on
//! takeover, probes asking the segment who answers for a VIP, and the
//! replies to them. Ethernet II, no VLAN tag (the agent's socket is bound
//! to the interface the XDP program runs on).
use std::net::Ipv4Addr;

pub const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet header (14) + ARP for IPv4 over Ethernet (28).
pub const FRAME_LEN: usize = 42;

fn frame(
    dst: [u8; 6],
    src: [u8; 6],
    op: u16,
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&src);
    f[28..32].copy_from_slice(&spa.octets());
    f[32..38].copy_from_slice(&tha);
    f[38..42].copy_from_slice(&tpa.octets());
    f
}

/// A gratuitous ARP request (sender = target = the VIP, broadcast): every
/// host that has the VIP in its neighbour table replaces the MAC at once,
/// bypassing Linux's locktime as a gratuitous ARP does. A request rather
/// than a reply because some hosts only learn from requests.
pub fn gratuitous(mac: [u8; 6], vip: Ipv4Addr) -> [u8; FRAME_LEN] {
    frame(BROADCAST, mac, 1, vip, [0; 6], vip)
}

/// An ARP probe for `vip` (sender address 0.0.0.0, as RFC 5227's probe):
/// the data plane that owns the VIP answers it, and no host's neighbour
/// table learns anything from it.
pub fn probe(mac: [u8; 6], vip: Ipv4Addr) -> [u8; FRAME_LEN] {
    frame(BROADCAST, mac, 1, Ipv4Addr::UNSPECIFIED, [0; 6], vip)
}

/// (sender address, sender MAC) of an ARP reply, if `f` is one.
pub fn reply_sender(f: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    if f.len() < FRAME_LEN
        || f[12..14] != ETH_P_ARP.to_be_bytes()
        || f[14..16] != [0, 1]
        || f[16..18] != [8, 0]
        || f[18] != 6
        || f[19] != 4
        || f[20..22] != [0, 2]
    {
        return None;
    }
    let mac: [u8; 6] = f[22..28].try_into().ok()?;
    let spa: [u8; 4] = f[28..32].try_into().ok()?;
    Some((Ipv4Addr::from(spa), mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0xb1, 0, 0, 0, 0x02];

    #[test]
    fn gratuitous_golden() {
        let f = gratuitous(MAC, Ipv4Addr::new(203, 0, 113, 10));
        #[rustfmt::skip]
        let expected = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xb1, 0, 0, 0, 0x02, 0x08, 0x06,
            0, 1, 0x08, 0, 6, 4, 0, 1,
            0x02, 0xb1, 0, 0, 0, 0x02, 203, 0, 113, 10,
            0, 0, 0, 0, 0, 0, 203, 0, 113, 10,
        ];
        assert_eq!(f, expected);
    }

    #[test]
    fn probe_asks_from_the_unspecified_address() {
        let f = probe(MAC, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(&f[28..32], &[0, 0, 0, 0]);
        assert_eq!(&f[38..42], &[203, 0, 113, 10]);
        assert_eq!(reply_sender(&f), None, "a request is not a reply");
    }

    #[test]
    fn reads_the_sender_of_a_reply() {
        let owner = [0x02, 0xb1, 0, 0, 0, 0x03];
        let mut f = frame(
            MAC,
            owner,
            2,
            Ipv4Addr::new(203, 0, 113, 10),
            MAC,
            Ipv4Addr::UNSPECIFIED,
        );
        assert_eq!(
            reply_sender(&f),
            Some((Ipv4Addr::new(203, 0, 113, 10), owner))
        );
        f[13] = 0;
        assert_eq!(reply_sender(&f), None);
        assert_eq!(reply_sender(&f[..20]), None);
    }
}
