//! The expiry rules the sweeper deletes by, pure. They are the data plane's
//! own, written again here because the sweeper judges millions of entries
//! in user space: conntrack.h (`ct_timeout`, `ct_expired`), flow.h
//! (`ct_reply_belongs_to`, `ct_reply_held`) and select.h (`persist_fresh`).
//! tests/expiry_rules.rs holds the two together: it runs the C predicates
//! under BPF_PROG_TEST_RUN over this module's test table (rules/cases.rs)
//! and compares them row by row with these functions.
//!
//! - conntrack: `ct_expired`, timeouts from the `config` map by protocol
//!   and state (CLOSING has its own), and an entry stamped at or after our
//!   clock reading is never expired;
//! - a reply entry expired by its own stamp is held while the forward entry
//!   of its flow is alive: the data plane reverses replies without an
//!   expiry check, and only refreshes a reply entry from the forward
//!   direction once a second, so deleting it would break a live flow;
//! - persist: the owning service's `persist_timeout_s`. An entry whose
//!   service id has no persistent service is never read by the data plane,
//!   and is deleted once it is older than the services snapshot.
use crate::abi::{self, CtValue, DpConfig, FlowKey};

#[cfg(test)]
pub(crate) mod cases;

const IPPROTO_TCP: u8 = 6;

/// `ct_timeout` of conntrack.h, in jiffies.
pub fn ct_timeout(cfg: &DpConfig, proto: u8, state: u8) -> u64 {
    let s = if proto != IPPROTO_TCP {
        cfg.udp_timeout_s
    } else if state == abi::CT_CLOSING {
        cfg.tcp_closing_timeout_s
    } else if state == abi::CT_ESTABLISHED {
        cfg.tcp_established_timeout_s
    } else {
        cfg.tcp_syn_timeout_s
    };
    u64::from(s) * u64::from(cfg.hz)
}

/// `ct_expired` of conntrack.h.
pub fn ct_expired(cfg: &DpConfig, proto: u8, state: u8, last_seen: u64, now: u64) -> bool {
    now > last_seen && now - last_seen > ct_timeout(cfg, proto, state)
}

/// Who reads a persist entry: the service with its id, if persistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistOwner {
    /// A service with this id remembers clients for `timeout_s` (> 0).
    Service { timeout_s: u32 },
    /// No persistent service has this id in the services snapshot taken
    /// at `snapshot` (jiffies): the data plane never reads the entry.
    Unused { snapshot: u64 },
}

impl PersistOwner {
    /// From the owning service's `persist_timeout_s`, if there is a service
    /// (select.h `svc_persistent`).
    pub fn of(timeout_s: Option<u32>, snapshot: u64) -> Self {
        match timeout_s {
            Some(t) if t > 0 => Self::Service { timeout_s: t },
            _ => Self::Unused { snapshot },
        }
    }
}

/// Whether a persist entry is dead. select.h (`persist_fresh`) reuses an
/// entry while `now - last_seen <= timeout`, and treats a stamp newer than
/// its own clock reading as fresh; so does the sweeper. An unused entry
/// stamped at or after the services snapshot may belong to a service
/// published since, so it stays until the next sweep.
pub fn persist_expired(owner: PersistOwner, hz: u32, last_seen: u64, now: u64) -> bool {
    match owner {
        PersistOwner::Service { timeout_s } => {
            now > last_seen && now - last_seen > u64::from(timeout_s) * u64::from(hz)
        }
        PersistOwner::Unused { snapshot } => last_seen < snapshot,
    }
}

/// Whether `fwd` (found at `reply.other_key`) is the forward entry of the
/// flow that owns the reply entry `reply` at `rk`: same service, backend
/// and mode, and its packets leave with the tuple the reply arrives on
/// mirrored (flow.h `ct_reply_belongs_to`).
pub fn reply_belongs_to(rk: &FlowKey, reply: &CtValue, fwd: &CtValue) -> bool {
    fwd.dir == abi::CT_FORWARD
        && fwd.mode == reply.mode
        && fwd.svc_id == reply.svc_id
        && fwd.backend_id == reply.backend_id
        && fwd.other_key(rk.proto) == *rk
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Live,
    /// Expired by its own stamp, but its flow is alive (reply entries only).
    Held,
    Expired,
}

/// What reading a reply entry's forward entry gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardEntry {
    Found(CtValue),
    Absent,
    /// The read failed: the reply entry is kept, the next sweep decides.
    Unreadable,
}

/// A conntrack entry's fate. `read_forward` is asked for the entry at a
/// reply entry's `other_key` only when that is needed: the reply entry
/// has expired by its own stamp. A reply entry is held as flow.h
/// `ct_reply_held` says.
pub fn ct_verdict(
    cfg: &DpConfig,
    k: &FlowKey,
    v: &CtValue,
    now: u64,
    read_forward: impl FnOnce(&FlowKey) -> ForwardEntry,
) -> Verdict {
    if !ct_expired(cfg, k.proto, v.state, v.last_seen, now) {
        return Verdict::Live;
    }
    if v.dir != abi::CT_REPLY {
        return Verdict::Expired;
    }
    match read_forward(&v.other_key(k.proto)) {
        ForwardEntry::Found(f)
            if reply_belongs_to(k, v, &f)
                && !ct_expired(cfg, k.proto, f.state, f.last_seen, now) =>
        {
            Verdict::Held
        }
        ForwardEntry::Unreadable => Verdict::Held,
        _ => Verdict::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::cases::*;
    use super::*;

    fn assert_expiry(rows: Vec<Expiry>) {
        for e in rows {
            assert_eq!(
                ct_expired(&e.cfg, e.proto, e.state, e.last_seen, e.now),
                e.expired,
                "{e:?}"
            );
        }
    }

    #[test]
    fn ct_expiry_follows_the_data_plane() {
        assert_expiry(expiry_rows());
    }

    #[test]
    fn ct_timeouts_come_from_the_config() {
        assert_expiry(extreme_rows());
        // The largest timeout does not overflow.
        assert_eq!(ct_timeout(&extreme_cfg(), UDP, 0), u64::from(u32::MAX) * S);
    }

    #[test]
    fn persist_expiry() {
        for &(timeout_s, last_seen, want) in PERSIST_ROWS {
            let owner = persist_owner(timeout_s);
            assert_eq!(
                persist_expired(owner, S as u32, last_seen, NOW),
                want,
                "{owner:?} last_seen {last_seen}"
            );
        }
        assert_eq!(
            PersistOwner::of(Some(0), 7),
            PersistOwner::Unused { snapshot: 7 }
        );
    }

    #[test]
    fn a_reply_entry_leads_to_its_forward_entry() {
        for (fk, fwd, rk, reply) in [fullnat(TCP), nat(UDP)] {
            assert_eq!(reply.other_key(rk.proto), fk);
            assert_eq!(fwd.other_key(fk.proto), rk);
        }
        assert_eq!(nat(TCP).2.daddr, CLIENT, "a NAT reply goes to the client");
        for b in belonging_rows() {
            assert_eq!(
                reply_belongs_to(&b.rk, &b.reply, &b.fwd),
                b.belongs,
                "{}",
                b.what
            );
        }
    }

    #[test]
    fn ct_verdicts() {
        let c = cfg();
        for case in verdict_rows() {
            let asked = case.entry.other_key(case.key.proto);
            let read = |fk: &FlowKey| {
                assert_eq!(*fk, asked, "{}: asked for the forward key", case.what);
                match case.other {
                    Other::NotRead => panic!("{}: no other entry is read", case.what),
                    Other::Absent => ForwardEntry::Absent,
                    Other::Found(f) => ForwardEntry::Found(f),
                }
            };
            assert_eq!(
                ct_verdict(&c, &case.key, &case.entry, NOW, read),
                case.verdict,
                "{}",
                case.what
            );
        }
        // An unreadable forward entry keeps the reply entry until next time.
        let (_, _, rk, mut reply) = fullnat(UDP);
        reply.last_seen = NOW - 1000 * S;
        assert_eq!(
            ct_verdict(&c, &rk, &reply, NOW, |_| ForwardEntry::Unreadable),
            Verdict::Held
        );
    }
}
