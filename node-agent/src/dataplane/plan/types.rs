//! What the planner reads and writes: the desired services, what the maps
//! hold, and the writes that take them from one to the other.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::abi::{self, BackendValue, SrcRangeData, SvcKey, SvcValue};

/// One (VIP, port, protocol) as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// Human name for stats and errors, e.g. `default/web:http`.
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    pub mode: u8,
    pub flags: u8,
    pub mss_max: u16,
    pub persist_timeout_s: u32,
    pub announce: bool,
    /// Clients allowed to start a flow; empty admits everyone.
    pub source_ranges: Vec<IpNet>,
    pub backends: Vec<DesiredBackend>,
    /// This service's Maglev table size, over the agent-wide one and the
    /// automatic one (`maglev::table_size_for`). Standalone files cannot set
    /// it (VirtualServer has no such field); a bad size (not prime, fewer
    /// slots than weighted backends) is this service's error.
    pub maglev_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

impl DesiredService {
    /// A service with no TOA, no persistence, announced, `backends` as
    /// (address, weight) on `target_port`.
    pub fn new(
        name: impl Into<String>,
        (vip, port, proto): (Ipv4Addr, u16, u8),
        mode: u8,
        target_port: u16,
        backends: impl IntoIterator<Item = (Ipv4Addr, u32)>,
    ) -> Self {
        Self {
            name: name.into(),
            vip,
            port,
            proto,
            mode,
            flags: 0,
            mss_max: 0,
            persist_timeout_s: 0,
            announce: true,
            source_ranges: Vec::new(),
            maglev_size: None,
            backends: backends
                .into_iter()
                .map(|(addr, weight)| DesiredBackend {
                    addr,
                    port: target_port,
                    weight,
                })
                .collect(),
        }
    }

    pub fn key(&self) -> SvcKey {
        SvcKey {
            vip: abi::be_addr(self.vip),
            port: abi::be_port(self.port),
            proto: self.proto,
            pad: 0,
        }
    }
}

/// What the maps hold (rebuilt from them after a restart).
#[derive(Debug, Clone, Default)]
pub struct Programmed {
    pub services: BTreeMap<SvcKey, SvcValue>,
    /// Live backend slots.
    pub backends: BTreeMap<u32, BackendValue>,
    pub vips: BTreeMap<u32, u32>,
    /// The Maglev input each service's current ring was built from; absent
    /// after a restart, which forces one rebuild.
    pub ring_inputs: BTreeMap<SvcKey, Vec<(u32, u32)>>,
    /// The desired service each programmed service was last planned from,
    /// and the table size it was planned with: one asked for again
    /// unchanged, at the same size, has nothing to write and is skipped
    /// whole, so a reload costs what changed. Absent after a restart (and
    /// for a service refused since), which plans the service in full.
    pub planned: BTreeMap<SvcKey, (DesiredService, u32)>,
    /// `src_ranges` trie entries by service id.
    pub src_ranges: BTreeMap<u32, BTreeSet<SrcRange>>,
    /// Every backend slot below this one is in use (0: not known): where
    /// the search for a free slot starts, so that a new backend costs no
    /// pass over the 40k slots of 10k services.
    pub backends_used_below: u32,
}

/// One `src_ranges` trie entry without its service id: the prefix length
/// counted from the start of the address (IPv4 as IPv4-mapped IPv6, see
/// shared.h `struct src_range_key`) and the address bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SrcRange {
    // Address first: entries sort by address, then length.
    pub addr: [u8; 16],
    pub addr_bits: u32,
}

impl SrcRange {
    /// The trie entry of a client prefix (host bits cleared: the trie
    /// compares whole keys inside a prefix).
    pub fn of(net: &IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(n) => SrcRange {
                addr_bits: 96 + u32::from(n.prefix_len()),
                addr: n.addr().to_ipv6_mapped().octets(),
            },
            IpNet::V6(n) => SrcRange {
                addr_bits: u32::from(n.prefix_len()),
                addr: n.addr().octets(),
            },
        }
    }

    /// The LPM key of this entry for service `svc_id`.
    pub fn key(&self, svc_id: u32) -> (u32, SrcRangeData) {
        (
            abi::SRC_RANGE_SVC_BITS + self.addr_bits,
            SrcRangeData {
                svc_id,
                addr: self.addr,
            },
        )
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapWrites {
    /// Step 0: the counters of the slots new services and backends take
    /// start from zero (a slot may be reused).
    pub svc_counter_resets: Vec<u32>,
    pub backend_counter_resets: Vec<u32>,
    /// Step 1: backend slots, new or with changed flags.
    pub backends: Vec<(u32, BackendValue)>,
    /// Step 2: ring regions (offset, backend ids).
    pub rings: Vec<(u32, Vec<u32>)>,
    /// Step 2: source-range entries (service id, range) a service gains:
    /// written before the flip, so a service that turns ranges on never
    /// denies an admitted client.
    pub src_ranges_add: Vec<(u32, SrcRange)>,
    /// Step 3: service entries (the flip).
    pub services: Vec<(SvcKey, SvcValue)>,
    pub vips_set: Vec<(u32, u32)>,
    /// Step 4: removals once nothing new can reach them.
    pub service_deletes: Vec<SvcKey>,
    pub vips_delete: Vec<u32>,
    pub backend_retires: Vec<(u32, BackendValue)>,
    /// Source-range entries a service lost, or those of a deleted service:
    /// removed after the flip, so a narrowing edit is widest in between.
    pub src_ranges_delete: Vec<(u32, SrcRange)>,
}

impl MapWrites {
    /// Entries written or deleted, a Maglev table counting as one: zero for
    /// a plan that changes nothing.
    pub fn entries(&self) -> usize {
        let MapWrites {
            svc_counter_resets,
            backend_counter_resets,
            backends,
            rings,
            src_ranges_add,
            services,
            vips_set,
            service_deletes,
            vips_delete,
            backend_retires,
            src_ranges_delete,
        } = self;
        svc_counter_resets.len()
            + backend_counter_resets.len()
            + backends.len()
            + rings.len()
            + src_ranges_add.len()
            + services.len()
            + vips_set.len()
            + service_deletes.len()
            + vips_delete.len()
            + backend_retires.len()
            + src_ranges_delete.len()
    }
}
