//! The expiry rules' test table, one for both sides: rules.rs's unit tests
//! check the Rust rules against each row's expected outcome, and
//! tests/expiry_rules.rs runs the data plane's C predicates over the same
//! rows (BPF_PROG_TEST_RUN) and checks them against both. The test includes
//! this file with `#[path]`: the including module brings `abi`, `CtValue`,
//! `DpConfig`, `FlowKey`, `PersistOwner` and `Verdict` into scope.
use super::{CtValue, DpConfig, FlowKey, PersistOwner, Verdict, abi};

/// One second in jiffies, with the tick rate cfg() sets.
pub const S: u64 = 1000;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
/// The clock reading rows are judged at, unless they say otherwise.
pub const NOW: u64 = 10_000 * S;
/// When the services snapshot was taken, for the persist rows.
pub const SNAPSHOT: u64 = NOW - 2 * S;

pub fn cfg() -> DpConfig {
    DpConfig {
        tcp_syn_timeout_s: 60,
        tcp_established_timeout_s: 900,
        tcp_closing_timeout_s: 10,
        udp_timeout_s: 300,
        hz: S as u32,
        ..Default::default()
    }
}

/// A zero timeout and the largest one.
pub fn extreme_cfg() -> DpConfig {
    DpConfig {
        tcp_closing_timeout_s: 0,
        udp_timeout_s: u32::MAX,
        ..cfg()
    }
}

/// A conntrack entry of `proto` in `state` stamped `last_seen`, judged by
/// its own stamp at `now`.
#[derive(Clone, Copy, Debug)]
pub struct Expiry {
    pub cfg: DpConfig,
    pub proto: u8,
    pub state: u8,
    pub last_seen: u64,
    pub now: u64,
    pub expired: bool,
}

/// Under cfg(), at NOW: every timeout by protocol and state.
pub fn expiry_rows() -> Vec<Expiry> {
    // (proto, state, age in jiffies (negative: stamped after `now`), expired)
    let cases: &[(u8, u8, i64, bool)] = &[
        // TCP by state, just within and just past each timeout.
        (TCP, abi::CT_OPEN, 60 * S as i64, false),
        (TCP, abi::CT_OPEN, 60 * S as i64 + 1, true),
        (TCP, abi::CT_ESTABLISHED, 900 * S as i64, false),
        (TCP, abi::CT_ESTABLISHED, 900 * S as i64 + 1, true),
        (TCP, abi::CT_ESTABLISHED, 61 * S as i64, false),
        (TCP, abi::CT_CLOSING, 10 * S as i64, false),
        (TCP, abi::CT_CLOSING, 10 * S as i64 + 1, true),
        (TCP, abi::CT_CLOSING, 11 * S as i64, true),
        // An unknown state counts as OPEN (the C `else`).
        (TCP, 7, 61 * S as i64, true),
        (TCP, 7, 59 * S as i64, false),
        // Anything but TCP has the UDP timeout whatever its state, even
        // CLOSING (which only TCP reaches).
        (UDP, abi::CT_ESTABLISHED, 300 * S as i64, false),
        (UDP, abi::CT_ESTABLISHED, 300 * S as i64 + 1, true),
        (UDP, abi::CT_CLOSING, 11 * S as i64, false),
        (UDP, abi::CT_OPEN, 61 * S as i64, false),
        (ICMP, abi::CT_OPEN, 301 * S as i64, true),
        // The `now > last_seen` guard: a stamp from our own instant or
        // later (a refresh racing the clock read) is never expired.
        (TCP, abi::CT_CLOSING, 0, false),
        (UDP, abi::CT_ESTABLISHED, -1, false),
        (TCP, abi::CT_OPEN, -(1000 * S as i64), false),
    ];
    cases
        .iter()
        .map(|&(proto, state, age, expired)| Expiry {
            cfg: cfg(),
            proto,
            state,
            last_seen: (NOW as i64 - age) as u64,
            now: NOW,
            expired,
        })
        .collect()
}

/// Under extreme_cfg(): timeouts come from the config, whatever they are.
pub fn extreme_rows() -> Vec<Expiry> {
    let row = |proto, state, last_seen, now, expired| Expiry {
        cfg: extreme_cfg(),
        proto,
        state,
        last_seen,
        now,
        expired,
    };
    vec![
        // A zero timeout: expired one tick later.
        row(TCP, abi::CT_CLOSING, 5, 5, false),
        row(TCP, abi::CT_CLOSING, 5, 6, true),
        // The largest timeout does not overflow.
        row(UDP, 0, 0, u64::from(u32::MAX) * S, false),
        row(UDP, 0, 0, u64::from(u32::MAX) * S + 1, true),
        // Near the clock's end, no wrap-around either.
        row(TCP, abi::CT_OPEN, u64::MAX - 1, u64::MAX, false),
    ]
}

/// Persist entries at NOW, under cfg()'s tick rate: (the owning service's
/// persist_timeout_s if there is such a service, last_seen, expired).
pub const PERSIST_ROWS: &[(Option<u32>, u64, bool)] = &[
    // select.h reuses an entry while now - last_seen <= timeout.
    (Some(300), NOW - 300 * S, false),
    (Some(300), NOW - 300 * S - 1, true),
    (Some(1), NOW - 2 * S, true),
    (Some(1), NOW, false),
    // Stamped after our clock reading (by a CPU a tick ahead): kept, as
    // select.h keeps it.
    (Some(1), NOW + 5 * S, false),
    // Timeout 0 or no service: the data plane never reads it; deleted once
    // older than the services snapshot.
    (Some(0), SNAPSHOT - 1, true),
    (None, SNAPSHOT - 1, true),
    (None, 0, true),
    (None, SNAPSHOT, false),
    (None, NOW, false),
];

/// The owner of a PERSIST_ROWS row's entry.
pub fn persist_owner(timeout_s: Option<u32>) -> PersistOwner {
    PersistOwner::of(timeout_s, SNAPSHOT)
}

pub const CLIENT: u32 = 0x0100_00c0; // 192.0.2.1 as __be32 on little endian
const VIP: u32 = 0x0a71_00cb; // 203.0.113.10
const BACKEND: u32 = 0x0b64_33c6; // 198.51.100.11
const SNAT: u32 = 0x0364_33c6; // 198.51.100.3

/// A FullNAT flow, client:40000 -> VIP:80 via SNAT:20000 to
/// backend:8080: (forward key, forward entry, reply key, reply entry).
pub fn fullnat(proto: u8) -> (FlowKey, CtValue, FlowKey, CtValue) {
    let fk = FlowKey {
        saddr: CLIENT,
        daddr: VIP,
        sport: 40000u16.to_be(),
        dport: 80u16.to_be(),
        proto,
        pad: [0; 3],
    };
    let fwd = CtValue {
        last_seen: 0,
        to_saddr: SNAT,
        to_daddr: BACKEND,
        to_sport: 20000u16.to_be(),
        to_dport: 8080u16.to_be(),
        backend_id: 3,
        backend_gen: 9,
        svc_id: 1,
        dir: abi::CT_FORWARD,
        state: abi::CT_ESTABLISHED,
        mode: abi::MODE_FULLNAT,
        ..Default::default()
    };
    let rk = fwd.other_key(proto);
    let reply = CtValue {
        to_saddr: VIP,
        to_daddr: CLIENT,
        to_sport: fk.dport,
        to_dport: fk.sport,
        dir: abi::CT_REPLY,
        ..fwd
    };
    (fk, fwd, rk, reply)
}

/// The same flow in NAT mode: the reply comes from the backend straight
/// to the client's address and port.
pub fn nat(proto: u8) -> (FlowKey, CtValue, FlowKey, CtValue) {
    let (fk, mut fwd, _, mut reply) = fullnat(proto);
    fwd.mode = abi::MODE_NAT;
    fwd.to_saddr = CLIENT;
    fwd.to_sport = fk.sport;
    reply.mode = abi::MODE_NAT;
    (fk, fwd, fwd.other_key(proto), reply)
}

/// Whether `fwd` is the forward entry of the flow owning the reply entry
/// `reply` at `rk`.
#[derive(Clone, Copy, Debug)]
pub struct Belonging {
    pub what: &'static str,
    pub rk: FlowKey,
    pub reply: CtValue,
    pub fwd: CtValue,
    pub belongs: bool,
}

pub fn belonging_rows() -> Vec<Belonging> {
    let mut rows = Vec::new();
    for (what, (_, fwd, rk, reply)) in [("FullNAT", fullnat(TCP)), ("NAT", nat(UDP))] {
        rows.push(Belonging {
            what,
            rk,
            reply,
            fwd,
            belongs: true,
        });
    }
    let (_, fwd, rk, reply) = fullnat(TCP);
    // Another flow now holds that forward key, or this one moved.
    type Change = (&'static str, fn(&mut CtValue));
    let other: &[Change] = &[
        ("another SNAT port", |c| c.to_sport = 20001u16.to_be()),
        ("another SNAT address", |c| c.to_saddr = 0x0464_33c6),
        ("another backend", |c| c.backend_id = 4),
        ("another service", |c| c.svc_id = 2),
        ("another mode", |c| c.mode = abi::MODE_NAT),
        ("DR", |c| c.mode = abi::MODE_DR),
        ("a reply entry", |c| c.dir = abi::CT_REPLY),
    ];
    for &(what, f) in other {
        let mut c = fwd;
        f(&mut c);
        rows.push(Belonging {
            what,
            rk,
            reply,
            fwd: c,
            belongs: false,
        });
    }
    let (_, fwd, mut rk, reply) = nat(TCP);
    rk.dport = 1u16.to_be();
    rows.push(Belonging {
        what: "NAT reply to another port",
        rk,
        reply,
        fwd,
        belongs: false,
    });
    rows
}

/// What the sweeper finds at an entry's other key, if it looks.
#[derive(Clone, Copy, Debug)]
pub enum Other {
    /// Never read: the entry is judged by its own stamp alone.
    NotRead,
    Absent,
    Found(CtValue),
}

/// A conntrack entry at `key` and its verdict under cfg() at NOW.
#[derive(Clone, Debug)]
pub struct VerdictCase {
    pub what: String,
    pub key: FlowKey,
    pub entry: CtValue,
    pub other: Other,
    pub verdict: Verdict,
}

pub fn verdict_rows() -> Vec<VerdictCase> {
    let fresh = NOW - S;
    let old = NOW - 1000 * S; // past every timeout in cfg()
    let closing_old = NOW - 11 * S; // past the closing timeout only
    // (mode, reply stamp, reply state, forward: None or (stamp, state), verdict)
    type Case = (u8, u64, u8, Option<(u64, u8)>, Verdict);
    let cases: &[Case] = &[
        (
            abi::MODE_FULLNAT,
            fresh,
            abi::CT_ESTABLISHED,
            None,
            Verdict::Live,
        ),
        (
            abi::MODE_FULLNAT,
            old,
            abi::CT_ESTABLISHED,
            None,
            Verdict::Expired,
        ),
        // Flow alive: the reply entry stays whatever its own stamp.
        (
            abi::MODE_NAT,
            old,
            abi::CT_ESTABLISHED,
            Some((fresh, abi::CT_ESTABLISHED)),
            Verdict::Held,
        ),
        (
            abi::MODE_FULLNAT,
            old,
            abi::CT_ESTABLISHED,
            Some((fresh, abi::CT_OPEN)),
            Verdict::Held,
        ),
        // Flow expired too: both go.
        (
            abi::MODE_NAT,
            old,
            abi::CT_ESTABLISHED,
            Some((old, abi::CT_ESTABLISHED)),
            Verdict::Expired,
        ),
        // The flow's own state decides its timeout: closing for 11 s
        // is expired, established for 11 s is not.
        (
            abi::MODE_FULLNAT,
            old,
            abi::CT_ESTABLISHED,
            Some((closing_old, abi::CT_CLOSING)),
            Verdict::Expired,
        ),
        (
            abi::MODE_FULLNAT,
            old,
            abi::CT_ESTABLISHED,
            Some((closing_old, abi::CT_ESTABLISHED)),
            Verdict::Held,
        ),
        // The reply entry's own state too.
        (
            abi::MODE_NAT,
            closing_old,
            abi::CT_CLOSING,
            None,
            Verdict::Expired,
        ),
        (
            abi::MODE_NAT,
            closing_old,
            abi::CT_ESTABLISHED,
            None,
            Verdict::Live,
        ),
        // Stamped after our clock reading.
        (
            abi::MODE_FULLNAT,
            NOW + S,
            abi::CT_CLOSING,
            None,
            Verdict::Live,
        ),
    ];
    let mut rows: Vec<VerdictCase> = cases
        .iter()
        .map(|&(mode, stamp, state, forward, verdict)| {
            let (_, mut fwd, rk, mut reply) = if mode == abi::MODE_NAT {
                nat(TCP)
            } else {
                fullnat(TCP)
            };
            reply.last_seen = stamp;
            reply.state = state;
            let other = match forward {
                Some((s, st)) => {
                    fwd.last_seen = s;
                    fwd.state = st;
                    Other::Found(fwd)
                }
                None => Other::Absent,
            };
            VerdictCase {
                what: format!("mode {mode} reply ({stamp}, {state}) forward {forward:?}"),
                key: rk,
                entry: reply,
                other,
                verdict,
            }
        })
        .collect();
    // A live forward entry of another flow on that key does not hold it.
    let (_, mut fwd, rk, mut reply) = fullnat(UDP);
    reply.last_seen = old;
    fwd.last_seen = fresh;
    fwd.to_sport = 20001u16.to_be();
    rows.push(VerdictCase {
        what: "another flow's live forward entry".into(),
        key: rk,
        entry: reply,
        other: Other::Found(fwd),
        verdict: Verdict::Expired,
    });
    // A forward entry goes by its own stamp alone; nothing else is read.
    let (fk, mut fwd, _, _) = fullnat(TCP);
    for (stamp, verdict) in [(old, Verdict::Expired), (fresh, Verdict::Live)] {
        fwd.last_seen = stamp;
        rows.push(VerdictCase {
            what: format!("forward entry stamped {stamp}"),
            key: fk,
            entry: fwd,
            other: Other::NotRead,
            verdict,
        });
    }
    // Nor for a live reply entry.
    let (_, _, rk, mut reply) = fullnat(TCP);
    reply.last_seen = fresh;
    rows.push(VerdictCase {
        what: "live reply entry".into(),
        key: rk,
        entry: reply,
        other: Other::NotRead,
        verdict: Verdict::Live,
    });
    rows
}
