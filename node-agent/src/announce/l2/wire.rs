//! The hot-standby datagram: one per node pair and interval, never per VIP.
//!
//! Layout (big-endian), then an HMAC-SHA256 over everything before it:
//!
//! ```text
//!  0  magic "BLB1"          4  kind (1 heartbeat, 2 table)  5 flags (1 leaving)
//!  6  name length  7 zero   8  incarnation u64             16 sequence u64
//! 24  sent, unix ms u64    32  MAC [6], 2 zero             40 node name
//! heartbeat body: own table digest u64, digest of yours u64, heard you for (ms) u32,
//!                 pair flags u8 (1 I hold VIPs ranked mine over you, 2 I hold VIPs
//!                 ranked yours over me), 3 zero
//! table body:     digest u64, chunk u16, chunks u16, count u16, zero u16,
//!                 count x (family u8 = 4 | 6, priority u8, address 4 | 16)
//! ```
//!
//! `kind` leaves room for what the channel is meant to carry next (flow
//! state for connection sync); a receiver ignores kinds it does not know.
//! Authentication is a keyed MAC with a key every member of the group holds
//! (`--heartbeat-key-file`), as VRRP's authentication was; replays are
//! refused by the receiver (incarnation, sent time and sequence only grow).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ring::hmac;

pub const MAGIC: [u8; 4] = *b"BLB1";
const KIND_HEARTBEAT: u8 = 1;
const KIND_TABLE: u8 = 2;
const FLAG_LEAVING: u8 = 1;
pub const PAIR_HOLDS_ABOVE: u8 = 1;
pub const PAIR_HOLDS_BELOW: u8 = 2;
const HEADER: usize = 40;
const TAG: usize = 32;
/// Datagrams stay under a 1500-byte MTU with IP and UDP headers.
pub const MAX_DATAGRAM: usize = 1400;
/// Longest node name (a Kubernetes node name is at most 253).
pub const MAX_NAME: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub leaving: bool,
    pub node: String,
    /// Random per agent start: a new one is a restart.
    pub incarnation: u64,
    pub seq: u64,
    pub sent_ms: u64,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Digest of the sender's own (VIP, priority) table.
    pub own_digest: u64,
    /// Digest of the receiver's table as the sender holds it.
    pub your_digest: u64,
    /// How long the sender has heard the receiver without a gap.
    pub heard_you_ms: u32,
    /// `PAIR_HOLDS_*` bits about the sender's holdings.
    pub pair: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChunk {
    pub digest: u64,
    pub chunk: u16,
    pub chunks: u16,
    pub entries: Vec<(IpAddr, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Heartbeat(Heartbeat),
    Table(TableChunk),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("too short ({0} bytes)")]
    Short(usize),
    #[error("not a Ballast hot-standby datagram")]
    Magic,
    #[error("authentication failed (a different --heartbeat-key-file, or forged)")]
    Tag,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// The group's key.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    pub fn new(secret: &[u8]) -> Self {
        Key(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// FNV-1a 64 of a table in address order: the same table gives the same
/// digest on every node and every build.
pub fn digest<'a>(entries: impl IntoIterator<Item = (&'a IpAddr, &'a u8)>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for (addr, prio) in entries {
        match addr {
            IpAddr::V4(a) => a.octets().into_iter().for_each(&mut eat),
            IpAddr::V6(a) => a.octets().into_iter().for_each(&mut eat),
        }
        eat(*prio);
    }
    h
}

pub fn encode(msg: &Message, key: &Key) -> Vec<u8> {
    let h = &msg.header;
    let name = &h.node.as_bytes()[..h.node.len().min(MAX_NAME)];
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    out.extend_from_slice(&MAGIC);
    out.push(match msg.body {
        Body::Heartbeat(_) => KIND_HEARTBEAT,
        Body::Table(_) => KIND_TABLE,
    });
    out.push(if h.leaving { FLAG_LEAVING } else { 0 });
    out.push(name.len() as u8);
    out.push(0);
    out.extend_from_slice(&h.incarnation.to_be_bytes());
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.sent_ms.to_be_bytes());
    out.extend_from_slice(&h.mac);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(name);
    match &msg.body {
        Body::Heartbeat(b) => {
            out.extend_from_slice(&b.own_digest.to_be_bytes());
            out.extend_from_slice(&b.your_digest.to_be_bytes());
            out.extend_from_slice(&b.heard_you_ms.to_be_bytes());
            out.extend_from_slice(&[b.pair, 0, 0, 0]);
        }
        Body::Table(t) => {
            out.extend_from_slice(&t.digest.to_be_bytes());
            out.extend_from_slice(&t.chunk.to_be_bytes());
            out.extend_from_slice(&t.chunks.to_be_bytes());
            out.extend_from_slice(&(t.entries.len() as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            for (addr, prio) in &t.entries {
                match addr {
                    IpAddr::V4(a) => {
                        out.extend_from_slice(&[4, *prio]);
                        out.extend_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        out.extend_from_slice(&[6, *prio]);
                        out.extend_from_slice(&a.octets());
                    }
                }
            }
        }
    }
    let tag = hmac::sign(&key.0, &out);
    out.extend_from_slice(tag.as_ref());
    out
}

/// Bytes of a table chunk's fixed part beside the header and tag, and the
/// most IPv6 entries (the larger) one datagram holds for a node name.
pub fn table_entries_per_chunk(node: &str) -> usize {
    (MAX_DATAGRAM - HEADER - node.len().min(MAX_NAME) - 16 - TAG) / 18
}

pub fn decode(buf: &[u8], key: &Key) -> Result<Message, WireError> {
    if buf.len() < HEADER + TAG {
        return Err(WireError::Short(buf.len()));
    }
    if buf[..4] != MAGIC {
        return Err(WireError::Magic);
    }
    let (signed, tag) = buf.split_at(buf.len() - TAG);
    hmac::verify(&key.0, signed, tag).map_err(|_| WireError::Tag)?;
    let mut r = Reader { buf: signed, at: 4 };
    let kind = r.u8()?;
    let flags = r.u8()?;
    let name_len = usize::from(r.u8()?);
    r.u8()?;
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let sent_ms = r.u64()?;
    let mac: [u8; 6] = r.take(6)?.try_into().expect("6 bytes");
    r.take(2)?;
    let node = std::str::from_utf8(r.take(name_len)?)
        .map_err(|_| WireError::Malformed("node name is not UTF-8"))?
        .to_string();
    let header = Header {
        leaving: flags & FLAG_LEAVING != 0,
        node,
        incarnation,
        seq,
        sent_ms,
        mac,
    };
    let body = match kind {
        KIND_HEARTBEAT => Body::Heartbeat(Heartbeat {
            own_digest: r.u64()?,
            your_digest: r.u64()?,
            heard_you_ms: r.u32()?,
            pair: {
                let p = r.u8()?;
                r.take(3)?;
                p
            },
        }),
        KIND_TABLE => {
            let digest = r.u64()?;
            let chunk = r.u16()?;
            let chunks = r.u16()?;
            let count = r.u16()?;
            r.u16()?;
            if chunk >= chunks {
                return Err(WireError::Malformed("chunk index past the chunk count"));
            }
            let mut entries = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let family = r.u8()?;
                let prio = r.u8()?;
                let addr = match family {
                    4 => IpAddr::V4(Ipv4Addr::from(
                        <[u8; 4]>::try_from(r.take(4)?).expect("4 bytes"),
                    )),
                    6 => IpAddr::V6(Ipv6Addr::from(
                        <[u8; 16]>::try_from(r.take(16)?).expect("16 bytes"),
                    )),
                    _ => return Err(WireError::Malformed("address family")),
                };
                entries.push((addr, prio));
            }
            Body::Table(TableChunk {
                digest,
                chunk,
                chunks,
                entries,
            })
        }
        k => return Err(WireError::Kind(k)),
    };
    if r.at != signed.len() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(Message { header, body })
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let s = self
            .buf
            .get(self.at..self.at + n)
            .ok_or(WireError::Malformed("truncated"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            leaving: false,
            node: "dir-a".into(),
            incarnation: 0x0102_0304_0506_0708,
            seq: 9,
            sent_ms: 1_700_000_000_000,
            mac: [0x02, 0xb1, 0, 0, 0, 0x02],
        }
    }

    /// The layout the module doc gives, byte for byte (the tag is checked
    /// by decoding): a change here is a wire change every peer must share.
    #[test]
    fn heartbeat_golden() {
        let key = Key::new(b"0123456789abcdef");
        let msg = Message {
            header: header(),
            body: Body::Heartbeat(Heartbeat {
                own_digest: 0x1111_2222_3333_4444,
                your_digest: 0x5555_6666_7777_8888,
                heard_you_ms: 3000,
                pair: PAIR_HOLDS_ABOVE,
            }),
        };
        let bytes = encode(&msg, &key);
        let expected_head: &[u8] = &[
            b'B', b'L', b'B', b'1', 1, 0, 5, 0, // magic, kind, flags, name length
            1, 2, 3, 4, 5, 6, 7, 8, // incarnation
            0, 0, 0, 0, 0, 0, 0, 9, // sequence
            0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // 1.7e12 ms
            0x02, 0xb1, 0, 0, 0, 0x02, 0, 0, // MAC
            b'd', b'i', b'r', b'-', b'a', // name
            0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, // own digest
            0x55, 0x55, 0x66, 0x66, 0x77, 0x77, 0x88, 0x88, // your digest
            0, 0, 0x0b, 0xb8, 1, 0, 0, 0, // heard 3000 ms, pair flags
        ];
        assert_eq!(&bytes[..bytes.len() - TAG], expected_head);
        assert_eq!(bytes.len(), expected_head.len() + TAG);
        assert_eq!(decode(&bytes, &key), Ok(msg));
    }

    #[test]
    fn table_round_trips_and_fits_a_datagram() {
        let key = Key::new(b"k");
        let per = table_entries_per_chunk("dir-a");
        let entries: Vec<(IpAddr, u8)> = (0..per)
            .map(|i| (IpAddr::V6(Ipv6Addr::from(i as u128)), (i % 250) as u8 + 1))
            .collect();
        let msg = Message {
            header: Header {
                leaving: true,
                ..header()
            },
            body: Body::Table(TableChunk {
                digest: 7,
                chunk: 1,
                chunks: 3,
                entries,
            }),
        };
        let bytes = encode(&msg, &key);
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes, &key), Ok(msg));
        let v4 = Message {
            header: header(),
            body: Body::Table(TableChunk {
                digest: 1,
                chunk: 0,
                chunks: 1,
                entries: vec![(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 150)],
            }),
        };
        let bytes = encode(&v4, &key);
        assert_eq!(&bytes[45 + 16..45 + 22], &[4, 150, 203, 0, 113, 10]);
        assert_eq!(decode(&bytes, &key), Ok(v4));
    }

    #[test]
    fn refuses_other_keys_tampering_and_garbage() {
        let key = Key::new(b"right");
        let msg = Message {
            header: header(),
            body: Body::Heartbeat(Heartbeat {
                own_digest: 1,
                your_digest: 2,
                heard_you_ms: 0,
                pair: 0,
            }),
        };
        let mut bytes = encode(&msg, &key);
        assert_eq!(decode(&bytes, &Key::new(b"wrong")), Err(WireError::Tag));
        bytes[20] ^= 1;
        assert_eq!(decode(&bytes, &key), Err(WireError::Tag));
        assert_eq!(decode(&bytes[..10], &key), Err(WireError::Short(10)));
        let mut other = vec![0u8; 80];
        other[..4].copy_from_slice(b"VRRP");
        assert_eq!(decode(&other, &key), Err(WireError::Magic));
    }

    #[test]
    fn digest_is_stable() {
        let a = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        let b = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11));
        assert_eq!(digest([(&a, &100), (&b, &50)]), 0x1d4b_6ab1_917e_6e66);
        assert_ne!(digest([(&a, &100)]), digest([(&a, &101)]));
    }
}
