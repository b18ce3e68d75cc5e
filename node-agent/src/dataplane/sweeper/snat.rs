//! SNAT ports in use per SNAT address, counted from the entries the sweep
//! reads anyway (no walk of its own).
//!
//! A FullNAT flow holds its SNAT port through its reply entry, keyed as the
//! backend's replies arrive: (backend addr, SNAT addr, backend port, SNAT
//! port, proto) (nat.h `snat_claim`). The claim is made with `BPF_NOEXIST`
//! on that whole key, so one SNAT port is taken once per destination
//! (backend address, port, protocol), not once per address: an address
//! serving ten backends may carry ten times its port range in flows. What
//! runs out is one destination's share, and new flows towards that backend
//! are then dropped as `snat_exhausted`. So an address's "ports in use" is
//! the count of its busiest destination: at most the port range, and near
//! it exactly when that address is about to refuse flows.
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::rules::Verdict;
use crate::abi::{self, CtValue, FlowKey};

/// A reply entry's claim: (SNAT address, backend address, backend port,
/// protocol), addresses and port as the data plane stores them.
type Destination = (u32, u32, u16, u8);

/// Counts SNAT ports held by live flows, one conntrack entry at a time.
#[derive(Debug, Default)]
pub struct SnatCount {
    claims: HashMap<Destination, u32>,
}

impl SnatCount {
    /// Counts the entry at `key` if it holds a SNAT port: a FullNAT reply
    /// entry the sweep keeps. An expired one is being deleted, or would be
    /// taken over by the next claim that probes its port; a held one (its
    /// flow alive) still holds its port.
    pub fn observe(&mut self, key: &FlowKey, value: &CtValue, verdict: Verdict) {
        if value.dir != abi::CT_REPLY
            || value.mode != abi::MODE_FULLNAT
            || verdict == Verdict::Expired
        {
            return;
        }
        *self
            .claims
            .entry((key.daddr, key.saddr, key.sport, key.proto))
            .or_default() += 1;
    }

    /// Per SNAT address, the ports its busiest destination holds.
    pub fn in_use(&self) -> BTreeMap<Ipv4Addr, u32> {
        let mut out = BTreeMap::new();
        for (&(snat, ..), &n) in &self.claims {
            let busiest = out.entry(abi::addr_of_be(snat)).or_insert(0);
            *busiest = n.max(*busiest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::cases::{fullnat, nat};
    use super::*;

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    fn be(a: [u8; 4]) -> u32 {
        abi::be_addr(Ipv4Addr::from(a))
    }

    /// The reply entry of a FullNAT flow from `snat`:`port` to
    /// `backend`:`bport`.
    fn reply(
        snat: [u8; 4],
        port: u16,
        backend: [u8; 4],
        bport: u16,
        proto: u8,
    ) -> (FlowKey, CtValue) {
        let (_, _, mut rk, value) = fullnat(proto);
        rk.daddr = be(snat);
        rk.dport = port.to_be();
        rk.saddr = be(backend);
        rk.sport = bport.to_be();
        (rk, value)
    }

    #[test]
    fn an_address_counts_the_ports_of_its_busiest_destination() {
        const A: [u8; 4] = [198, 51, 100, 3];
        const B: [u8; 4] = [198, 51, 100, 4];
        const BACKEND1: [u8; 4] = [10, 0, 0, 1];
        const BACKEND2: [u8; 4] = [10, 0, 0, 2];
        let mut count = SnatCount::default();
        let mut see = |(k, v): (FlowKey, CtValue), verdict| count.observe(&k, &v, verdict);
        // A: three ports towards backend1:8080/TCP (one held by a live
        // flow), the same port again towards backend2 and over UDP, and
        // towards another backend port: each destination its own space.
        for port in [20000, 20001, 20002] {
            see(reply(A, port, BACKEND1, 8080, TCP), Verdict::Live);
        }
        see(reply(A, 20003, BACKEND1, 8080, TCP), Verdict::Held);
        see(reply(A, 20000, BACKEND2, 8080, TCP), Verdict::Live);
        see(reply(A, 20000, BACKEND1, 8080, UDP), Verdict::Live);
        see(reply(A, 20000, BACKEND1, 9090, TCP), Verdict::Live);
        // Expired: its port is free.
        see(reply(A, 20004, BACKEND1, 8080, TCP), Verdict::Expired);
        // B: one port.
        see(reply(B, 30000, BACKEND2, 53, UDP), Verdict::Live);
        // Forward entries and NAT reply entries hold no SNAT port.
        let (fk, fwd, _, _) = fullnat(TCP);
        see((fk, fwd), Verdict::Live);
        let (_, _, nk, nat_reply) = nat(TCP);
        see((nk, nat_reply), Verdict::Live);

        assert_eq!(
            count.in_use(),
            BTreeMap::from([(Ipv4Addr::from(A), 4), (Ipv4Addr::from(B), 1)])
        );
    }

    #[test]
    fn nothing_seen_counts_no_address() {
        assert!(SnatCount::default().in_use().is_empty());
    }
}
