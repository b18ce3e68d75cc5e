//! Rust mirrors of the structs in `dataplane-ebpf/include/shared.h`, the
//! contract between the agent and the XDP program.
//! `tests::layout_and_constants_match_the_bpf_build` compiles the header for
//! the BPF target, as the program is built, and compares every size, offset
//! and constant, so a change on one side only fails the build's tests.
#![allow(missing_docs)]

use std::net::Ipv4Addr;

/// The compiled XDP object, built by build.rs.
pub static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast.bpf.o"));

pub const MAX_SERVICES: u32 = 131_072;
/// Default backend slots (`--backend-slots` resizes the per-backend arrays
/// at load; `Maps::backend_slots` says what the loaded maps hold).
pub const MAX_BACKENDS: u32 = 262_144;
pub const MAX_SNAT_ADDRS: usize = 16;
/// `--ring-slots` default: 32 MiB of ring (see shared.h for what it holds).
pub const RING_SLOTS_DEFAULT: u32 = 4_194_368;

pub const MODE_FULLNAT: u8 = 0;
pub const MODE_DR: u8 = 1;
pub const MODE_NAT: u8 = 2;
pub const SVC_TOA: u8 = 1;
pub const SVC_SOURCE_RANGES: u8 = 2;
pub const MAX_SRC_RANGES: u32 = 262_144;
pub const BACKEND_LIVE: u8 = 1;
pub const BACKEND_ACCEPTS: u8 = 2;
pub const VIP_ANNOUNCE: u32 = 1;
pub const L2_OWNER: u32 = 1;

pub const CT_OPEN: u8 = 0;
pub const CT_ESTABLISHED: u8 = 1;
pub const CT_CLOSING: u8 = 2;
pub const CT_FORWARD: u8 = 0;
pub const CT_REPLY: u8 = 1;

/// Indexes of the `reasons` counters; names as shown by `stats` and metrics.
pub const REASONS: [(&str, bool); 23] = [
    ("malformed", true),
    ("no_backend", true),
    ("conntrack_full", true),
    ("snat_exhausted", true),
    ("fragment", true),
    ("ttl_expired", true),
    ("unroutable", true),
    ("redirect_failed", true),
    ("pass_no_neighbour", false),
    ("pass_malformed", false),
    ("toa_skipped", false),
    ("tx", false),
    ("redirected", false),
    ("arp_replied", false),
    ("icmp_translated", false),
    ("toa_inserted", false),
    ("no_neighbour", true),
    ("source_denied", true),
    ("rejected", false),
    ("echo_replied", false),
    ("pass_other_host", false),
    ("arp_stale_owner", false),
    ("refusal_limited", true),
];
pub const REASON_MALFORMED: u32 = 0;
pub const REASON_NO_BACKEND: u32 = 1;
pub const REASON_SNAT_EXHAUSTED: u32 = 3;
pub const REASON_FRAGMENT: u32 = 4;
pub const REASON_PASS_NO_NEIGH: u32 = 8;
pub const REASON_PASS_MALFORMED: u32 = 9;
pub const REASON_TX: u32 = 11;
pub const REASON_ARP_REPLIED: u32 = 13;
pub const REASON_ICMP_TRANSLATED: u32 = 14;
pub const REASON_TOA_INSERTED: u32 = 15;
pub const REASON_SOURCE_DENIED: u32 = 17;
pub const REASON_REJECTED: u32 = 18;
pub const REASON_ECHO_REPLIED: u32 = 19;
pub const REASON_PASS_OTHER_HOST: u32 = 20;
pub const REASON_ARP_STALE_OWNER: u32 = 21;
pub const REASON_REFUSAL_LIMITED: u32 = 22;

/// Converts an address to the `__be32` the program compares against.
pub fn be_addr(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

pub fn addr_of_be(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

pub fn be_port(p: u16) -> u16 {
    p.to_be()
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcKey {
    pub vip: u32,
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcValue {
    pub id: u32,
    pub ring_offset: u32,
    pub ring_size: u32,
    pub persist_timeout_s: u32,
    pub mode: u8,
    pub flags: u8,
    pub mss_max: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendValue {
    pub addr: u32,
    pub port: u16,
    pub flags: u8,
    pub pad: u8,
    pub gen_: u32,
    pub svc_id: u32,
}

/// The data of a `src_ranges` LPM trie key (shared.h `struct
/// src_range_key` after its `prefixlen`, which aya's `lpm_trie::Key` holds):
/// the service id, then the client prefix as an IPv6 address, IPv4 mapped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrcRangeData {
    pub svc_id: u32,
    pub addr: [u8; 16],
}

/// Bits of the `src_ranges` key before the address: the service id, which
/// is always matched whole.
pub const SRC_RANGE_SVC_BITS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// One direction of a flow (shared.h `struct ct_value`): keyed by the
/// 5-tuple as that direction arrives; `to_*` is the tuple it leaves with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    /// Data-plane clock: jiffies.
    pub last_seen: u64,
    pub to_saddr: u32,
    pub to_daddr: u32,
    pub to_sport: u16,
    pub to_dport: u16,
    pub backend_id: u32,
    pub backend_gen: u32,
    pub svc_id: u32,
    pub dir: u8,
    pub state: u8,
    pub mode: u8,
    pub flags: u8,
    pub mss_max: u16,
    pub pad: u16,
    pub pad2: u32,
}

impl CtValue {
    /// The key of the flow's other direction (conntrack.h `ct_other_key`).
    pub fn other_key(&self, proto: u8) -> FlowKey {
        FlowKey {
            saddr: self.to_daddr,
            daddr: self.to_saddr,
            sport: self.to_dport,
            dport: self.to_sport,
            proto,
            pad: [0; 3],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistKey {
    pub svc_id: u32,
    pub client_addr: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistValue {
    /// Jiffies.
    pub last_seen: u64,
    pub backend_id: u32,
    pub backend_gen: u32,
}

/// shared.h `struct refusal_limit`: the per-CPU token bucket's settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalLimit {
    pub per_cpu_rate: u32,
    /// 0: no limit.
    pub burst: u32,
}

/// shared.h `struct refusal_bucket`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalBucket {
    pub credit: u64,
    pub last: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpConfig {
    pub mac: [u8; 6],
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub n_snat_addrs: u16,
    pub snat_addrs: [u32; MAX_SNAT_ADDRS],
    pub tcp_syn_timeout_s: u32,
    pub tcp_established_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
    /// Jiffies per second; 0 until the agent has measured it.
    pub hz: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

impl TrafficCounters {
    pub fn add(&mut self, o: &TrafficCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.new_flows += o.new_flows;
        self.reply_packets += o.reply_packets;
        self.reply_bytes += o.reply_bytes;
    }
}

// SAFETY: plain-old-data `#[repr(C)]` structs with no padding the kernel
// could read uninitialised (explicit pad fields), valid for any bit pattern.
unsafe impl aya::Pod for SvcKey {}
unsafe impl aya::Pod for SvcValue {}
unsafe impl aya::Pod for BackendValue {}
unsafe impl aya::Pod for RefusalLimit {}
unsafe impl aya::Pod for RefusalBucket {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for SrcRangeData {}
unsafe impl aya::Pod for CtValue {}
unsafe impl aya::Pod for PersistKey {}
unsafe impl aya::Pod for PersistValue {}
unsafe impl aya::Pod for DpConfig {}
unsafe impl aya::Pod for TrafficCounters {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    /// (C expression, Rust value) pairs; the C side prints the same list.
    fn rust_layout() -> Vec<(String, usize)> {
        macro_rules! s {
            ($c:literal, $t:ty, [$($f:ident),*]) => {{
                let mut v = vec![(format!("sizeof(struct {})", $c), size_of::<$t>())];
                $( v.push((format!("offsetof(struct {}, {})", $c, stringify!($f).trim_end_matches('_')), offset_of!($t, $f))); )*
                v
            }};
        }
        [
            s!("svc_key", SvcKey, [vip, port, proto]),
            s!("refusal_limit", RefusalLimit, [per_cpu_rate, burst]),
            s!("refusal_bucket", RefusalBucket, [credit, last]),
            s!(
                "svc_value",
                SvcValue,
                [
                    id,
                    ring_offset,
                    ring_size,
                    persist_timeout_s,
                    mode,
                    flags,
                    mss_max
                ]
            ),
            s!(
                "backend_value",
                BackendValue,
                [addr, port, flags, gen_, svc_id]
            ),
            s!("flow_key", FlowKey, [saddr, daddr, sport, dport, proto]),
            // The C key starts with prefixlen; aya's Key<SrcRangeData>
            // puts it in front of the data, so the data sits at offset 4.
            vec![
                (
                    "sizeof(struct src_range_key)".to_string(),
                    4 + size_of::<SrcRangeData>(),
                ),
                (
                    "offsetof(struct src_range_key, svc_id)".to_string(),
                    4 + offset_of!(SrcRangeData, svc_id),
                ),
                (
                    "offsetof(struct src_range_key, addr)".to_string(),
                    4 + offset_of!(SrcRangeData, addr),
                ),
            ],
            s!(
                "ct_value",
                CtValue,
                [
                    last_seen,
                    to_saddr,
                    to_daddr,
                    to_sport,
                    to_dport,
                    backend_id,
                    backend_gen,
                    svc_id,
                    dir,
                    state,
                    mode,
                    flags,
                    mss_max
                ]
            ),
            s!("persist_key", PersistKey, [svc_id, client_addr]),
            s!(
                "persist_value",
                PersistValue,
                [last_seen, backend_id, backend_gen]
            ),
            s!(
                "dp_config",
                DpConfig,
                [
                    mac,
                    snat_port_min,
                    snat_port_max,
                    n_snat_addrs,
                    snat_addrs,
                    tcp_syn_timeout_s,
                    tcp_established_timeout_s,
                    tcp_closing_timeout_s,
                    udp_timeout_s,
                    hz
                ]
            ),
            s!(
                "traffic_counters",
                TrafficCounters,
                [packets, bytes, new_flows, reply_packets, reply_bytes]
            ),
        ]
        .concat()
    }

    /// (C expression, Rust value): every `BALLAST_*` constant the agent
    /// mirrors, and each reason's enumerator at the index `REASONS` shows it.
    fn rust_constants() -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = [
            ("BALLAST_MAX_SERVICES", MAX_SERVICES as usize),
            ("BALLAST_MAX_BACKENDS", MAX_BACKENDS as usize),
            ("BALLAST_MAX_SNAT_ADDRS", MAX_SNAT_ADDRS),
            ("BALLAST_MAX_SRC_RANGES", MAX_SRC_RANGES as usize),
            ("BALLAST_RING_SLOTS_DEFAULT", RING_SLOTS_DEFAULT as usize),
            ("BALLAST_MODE_FULLNAT", MODE_FULLNAT.into()),
            ("BALLAST_MODE_DR", MODE_DR.into()),
            ("BALLAST_MODE_NAT", MODE_NAT.into()),
            ("BALLAST_SVC_TOA", SVC_TOA.into()),
            ("BALLAST_SVC_SOURCE_RANGES", SVC_SOURCE_RANGES.into()),
            ("BALLAST_BACKEND_LIVE", BACKEND_LIVE.into()),
            ("BALLAST_BACKEND_ACCEPTS", BACKEND_ACCEPTS.into()),
            ("BALLAST_VIP_ANNOUNCE", VIP_ANNOUNCE as usize),
            ("BALLAST_L2_OWNER", L2_OWNER as usize),
            ("BALLAST_CT_OPEN", CT_OPEN.into()),
            ("BALLAST_CT_ESTABLISHED", CT_ESTABLISHED.into()),
            ("BALLAST_CT_CLOSING", CT_CLOSING.into()),
            ("BALLAST_CT_FORWARD", CT_FORWARD.into()),
            ("BALLAST_CT_REPLY", CT_REPLY.into()),
            ("BALLAST_REASON_MAX", REASONS.len()),
            (
                "8 * sizeof(((struct src_range_key *)0)->svc_id)",
                SRC_RANGE_SVC_BITS as usize,
            ),
        ]
        .into_iter()
        .map(|(c, r)| (c.to_string(), r))
        .collect();
        // The enumerator behind each entry of REASONS, in index order; its
        // name also says whether it is a drop.
        const ENUMERATORS: [&str; 23] = [
            "BALLAST_DROP_MALFORMED",
            "BALLAST_DROP_NO_BACKEND",
            "BALLAST_DROP_CT_FULL",
            "BALLAST_DROP_SNAT_EXHAUSTED",
            "BALLAST_DROP_FRAGMENT",
            "BALLAST_DROP_TTL",
            "BALLAST_DROP_UNROUTABLE",
            "BALLAST_DROP_REDIRECT",
            "BALLAST_PASS_NO_NEIGH",
            "BALLAST_PASS_MALFORMED",
            "BALLAST_TOA_SKIPPED",
            "BALLAST_TX",
            "BALLAST_REDIRECTED",
            "BALLAST_ARP_REPLIED",
            "BALLAST_ICMP_TRANSLATED",
            "BALLAST_TOA_INSERTED",
            "BALLAST_DROP_NO_NEIGH",
            "BALLAST_DROP_SOURCE_DENIED",
            "BALLAST_REJECTED",
            "BALLAST_ECHO_REPLIED",
            "BALLAST_PASS_OTHER_HOST",
            "BALLAST_ARP_STALE_OWNER",
            "BALLAST_DROP_REFUSAL_LIMITED",
        ];
        for (i, (c, (name, drop))) in ENUMERATORS.iter().zip(REASONS).enumerate() {
            assert_eq!(
                drop,
                c.starts_with("BALLAST_DROP_"),
                "REASONS[{i}] ({name}) and {c} disagree on being a drop"
            );
            v.push((c.to_string(), i));
        }
        v
    }

    /// Compiles `exprs` into a BPF object exactly as build.rs compiles the
    /// program (clang -target bpf, the same includes) and reads back the
    /// values the compiler computed: the layout and constants the program
    /// itself is built with, not a host compiler's.
    fn bpf_values(exprs: &[String]) -> Vec<u64> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let dir = std::env::temp_dir().join(format!("ballast-abi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../dataplane-ebpf/include");
        let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
        let mut src =
            String::from("#include \"shared.h\"\nconst unsigned long long ballast_abi[] = {\n");
        for e in exprs {
            src.push_str(&format!("  (unsigned long long)({e}),\n"));
        }
        src.push_str("};\n");
        std::fs::write(dir.join("abi.c"), src).unwrap();
        let obj = dir.join("abi.o");
        let clang = std::env::var("BALLAST_CLANG").unwrap_or_else(|_| "clang".into());
        let out = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I"])
            .arg(include)
            .arg("-I")
            .arg(&multiarch)
            .arg("-c")
            .arg(dir.join("abi.c"))
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| panic!("{clang} (needed to build the program too): {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&obj).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let file = object::File::parse(&*bytes).expect("an ELF object");
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok("ballast_abi"))
            .expect("the ballast_abi symbol");
        let section = file
            .section_by_index(sym.section_index().expect("defined"))
            .unwrap();
        let data = section.data().unwrap();
        let at = (sym.address() - section.address()) as usize;
        data[at..at + 8 * exprs.len()]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn layout_and_constants_match_the_bpf_build() {
        let expected: Vec<(String, usize)> = rust_layout()
            .into_iter()
            .map(|(e, v)| (e.replace("offsetof(", "__builtin_offsetof("), v))
            .chain(rust_constants())
            .collect();
        let exprs: Vec<String> = expected.iter().map(|(e, _)| e.clone()).collect();
        let c_values = bpf_values(&exprs);
        assert_eq!(c_values.len(), expected.len());
        for ((expr, rust), c) in expected.iter().zip(c_values) {
            assert_eq!(*rust as u64, c, "{expr}: Rust {rust}, C {c}");
        }
    }
}
