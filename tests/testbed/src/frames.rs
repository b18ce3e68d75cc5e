//! Frames for the packet tests, the fuzzer and the benchmarks: built with
//! correct checksums from the client towards the director (the test world's
//! MACs), and parsed back with every checksum verified from scratch.
use std::net::Ipv4Addr;

use crate::world::{CLIENT_MAC, DIRECTOR_MAC};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// An Ethernet/IPv4/TCP frame with correct checksums. `options` are raw TCP
/// option bytes (padded to 4 by the caller).
pub fn tcp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader};
    let mut tcp = TcpHeader::new(src.1, dst.1, 1000, 64240);
    tcp.fin = flags & TCP_FIN != 0;
    tcp.syn = flags & TCP_SYN != 0;
    tcp.rst = flags & TCP_RST != 0;
    tcp.ack = flags & TCP_ACK != 0;
    if tcp.ack {
        tcp.acknowledgment_number = 1;
    }
    tcp.set_options_raw(options).expect("options");
    let mut ip = Ipv4Header::new(
        (tcp.header_len() + payload.len()) as u16,
        64,
        IpNumber::TCP,
        src.0.octets(),
        dst.0.octets(),
    )
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
    let eth = Ethernet2Header {
        source: CLIENT_MAC,
        destination: DIRECTOR_MAC,
        ether_type: EtherType::IPV4,
    };
    let mut v = Vec::new();
    eth.write(&mut v).unwrap();
    ip.write(&mut v).unwrap();
    tcp.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

pub fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A parsed frame whose checksums were verified from scratch.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub ttl: u8,
    pub tcp_options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Seen {
    /// The TOA option (kind 254, len 8): client port and address.
    pub fn toa(&self) -> Option<(Ipv4Addr, u16)> {
        let o = &self.tcp_options;
        let mut i = 0;
        while i + 1 < o.len() {
            match o[i] {
                0 => break,
                1 => i += 1,
                254 if o[i + 1] == 8 && i + 8 <= o.len() => {
                    return Some((
                        Ipv4Addr::new(o[i + 4], o[i + 5], o[i + 6], o[i + 7]),
                        u16::from_be_bytes([o[i + 2], o[i + 3]]),
                    ));
                }
                _ => i += o[i + 1].max(2) as usize,
            }
        }
        None
    }

    pub fn mss(&self) -> Option<u16> {
        let o = &self.tcp_options;
        let mut i = 0;
        while i + 1 < o.len() {
            match o[i] {
                0 => break,
                1 => i += 1,
                2 if i + 4 <= o.len() => return Some(u16::from_be_bytes([o[i + 2], o[i + 3]])),
                _ => i += o[i + 1].max(2) as usize,
            }
        }
        None
    }
}

/// Parses an output frame and checks the IPv4 and TCP/UDP checksums.
pub fn parse(frame: &[u8]) -> Seen {
    try_parse(frame).unwrap_or_else(|e| panic!("{e}: {frame:02x?}"))
}

/// Like [`parse`], as a Result: Err when unparseable or a checksum is wrong.
pub fn try_parse(frame: &[u8]) -> Result<Seen, String> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        return Err("not ethernet".into());
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Err("not IPv4".into());
    };
    let iph = ip.header().to_header();
    if iph.header_checksum != iph.calc_header_checksum() {
        return Err("IPv4 header checksum".into());
    }
    let (src_port, dst_port, opts, payload) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let h = t.to_header();
            if h.checksum
                != h.calc_checksum_ipv4(&iph, t.payload())
                    .map_err(|e| e.to_string())?
            {
                return Err("TCP checksum".into());
            }
            (
                t.source_port(),
                t.destination_port(),
                t.options().to_vec(),
                t.payload().to_vec(),
            )
        }
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            if h.checksum != 0
                && h.checksum
                    != h.calc_checksum_ipv4(&iph, u.payload())
                        .map_err(|e| e.to_string())?
            {
                return Err("UDP checksum".into());
            }
            (
                u.source_port(),
                u.destination_port(),
                Vec::new(),
                u.payload().to_vec(),
            )
        }
        _ => (0, 0, Vec::new(), Vec::new()),
    };
    Ok(Seen {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src: (Ipv4Addr::from(iph.source), src_port),
        dst: (Ipv4Addr::from(iph.destination), dst_port),
        ttl: iph.time_to_live,
        tcp_options: opts,
        payload,
    })
}

/// The one's-complement sum of `bytes` (16-bit big-endian words, an odd
/// last byte padded), folded: 0xffff when a checksum over them (its own
/// field included) is right; its complement is the checksum to write.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
