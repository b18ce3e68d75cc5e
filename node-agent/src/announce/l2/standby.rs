//! Who answers ARP for each VIP of a hot-standby group: a pure state
//! machine. Events in ([`Event`], with the time), actions out ([`Action`]:
//! claims, releases, datagrams, probes), no sockets, no clock of its own.
//!
//! Every node of a group serves the same VIPs; for each VIP its candidates
//! are the nodes that serve it, ranked by priority (higher first; equal:
//! the node name that sorts first). The first *live* candidate announces.
//! Heartbeats are per node pair, never per VIP: a peer's VIPs and
//! priorities travel as a table only when they change (its digest rides on
//! every heartbeat), so 10k VIPs cost what one does.
//!
//! A peer is live while its heartbeats arrive, or, when they stop, while
//! its data plane still answers ARP for a VIP it owns (an ARP probe on the
//! client's segment every interval; the shell sends it): a cut heartbeat
//! path alone never makes a second announcer, and an agent restart (the
//! XDP program keeps answering while the agent's liveness stamp is fresh)
//! is not a node death. A peer that says it is leaving (clean stop) is
//! dead at once.
//!
//! Hand-overs between two live nodes, decided from what each heartbeat
//! says about the pair (`PAIR_HOLDS_ABOVE`: the sender announces VIPs it
//! ranks first for; `PAIR_HOLDS_BELOW`: it covers VIPs the receiver ranks
//! first for) and the pair's age (how long both have heard each other):
//! - A node that comes back (start, link up) while a lower-ranked peer
//!   covers its VIPs waits `hold` before taking them back; the peer lets
//!   go at `hold`, the returning node takes them one interval later, after
//!   the peer's heartbeat says it let go (never two answerers; in between
//!   clients keep the peer's MAC, whose XDP program still forwards).
//! - Two nodes that both announce a VIP (a healed split, each alone for a
//!   while) settle at once as VRRP does: the higher-ranked keeps it.
//! - At start, a node listens for `misses` intervals before claiming
//!   anything new, so that it hears its peers first; what its data plane
//!   was already answering (an agent restart) it keeps meanwhile.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::wire::{self, Body, Header, Heartbeat, Message, PAIR_HOLDS_ABOVE, PAIR_HOLDS_BELOW};

/// Heartbeat timing of the group (the same on every member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    /// Heartbeats missed before a peer is dead.
    pub misses: u32,
    /// How long a returning higher-ranked node waits before taking its
    /// VIPs back.
    pub hold: Duration,
}

impl Timing {
    fn dead_after(&self) -> Duration {
        self.interval * self.misses
    }
}

/// A VIP's table: this node's priority for each VIP it serves.
pub type Table = BTreeMap<IpAddr, u8>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Time passed (the shell ticks several times per interval).
    Tick,
    /// A datagram that passed authentication, from a configured peer.
    Received {
        from: SocketAddr,
        msg: Message,
    },
    /// An ARP reply for `vip` from `mac`, seen on the segment.
    ProbeAnswered {
        vip: IpAddr,
        mac: [u8; 6],
    },
    /// What this node serves now (the agent core programmed it).
    Serving(Table),
    /// The interface lost its carrier: nothing we announce reaches anyone.
    LinkDown,
    LinkUp,
    /// Clean stop: hand everything over.
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start answering ARP for the VIP and announce it (gratuitous ARPs).
    Claim(IpAddr),
    /// Stop answering at once.
    Release(IpAddr),
    Send {
        to: SocketAddr,
        msg: Message,
    },
    /// Ask the segment who has `vip` (an ARP request the shell sends).
    Probe(IpAddr),
    /// For the log and the metrics.
    PeerUp {
        peer: String,
        via: &'static str,
    },
    PeerDown {
        peer: String,
        why: &'static str,
    },
}

/// What the shell reports about a peer (metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub addr: SocketAddr,
    pub name: Option<String>,
    pub live: bool,
}

/// A peer's table as its chunks arrive: (digest, chunks so far, chunk count).
type Assembly = (u64, BTreeMap<u16, Vec<(IpAddr, u8)>>, u16);

#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    name: Option<String>,
    mac: Option<[u8; 6]>,
    /// (incarnation, sent_ms, seq) of the last accepted datagram.
    last: Option<(u64, u64, u64)>,
    last_heartbeat: Option<Instant>,
    /// Last ARP answer from its MAC for one of its VIPs.
    last_segment: Option<Instant>,
    /// Heard without a gap since.
    since: Option<Instant>,
    leaving: bool,
    pair: u8,
    heard_me: Option<(Duration, Instant)>,
    table: Table,
    table_digest: u64,
    /// Its table as the chunks of one digest arrive.
    assembling: Option<Assembly>,
    table_sent: Option<Instant>,
    probed: Option<Instant>,
    /// Liveness as last reported (PeerUp/PeerDown only on change).
    reported_live: bool,
}

impl Peer {
    fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            name: None,
            mac: None,
            last: None,
            last_heartbeat: None,
            last_segment: None,
            since: None,
            leaving: false,
            pair: 0,
            heard_me: None,
            table: Table::new(),
            table_digest: wire::digest([]),
            assembling: None,
            table_sent: None,
            probed: None,
            reported_live: false,
        }
    }

    fn last_heard(&self) -> Option<Instant> {
        self.last_heartbeat.max(self.last_segment)
    }

    fn live(&self, now: Instant, t: &Timing) -> bool {
        !self.leaving && self.last_heard().is_some_and(|h| now < h + t.dead_after())
    }

    /// How long both have heard each other: the shorter of the two views.
    fn pair_age(&self, now: Instant) -> Duration {
        let mine = self.since.map_or(Duration::ZERO, |s| now - s);
        let theirs = self
            .heard_me
            .map_or(Duration::ZERO, |(d, at)| d + (now - at));
        mine.min(theirs)
    }
}

/// Rank key: higher priority first, then the name that sorts first.
fn ranks_above(a: (u8, &str), b: (u8, &str)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// What the decision depends on, per peer: when none of it changes, no
/// VIP's owner can change, so ticks cost O(peers), not O(VIPs).
#[derive(Clone, Debug, PartialEq, Eq)]
struct PeerInputs {
    live: bool,
    settled: bool,
    settled_late: bool,
    pair: u8,
    digest: u64,
}

pub struct Standby {
    me: String,
    incarnation: u64,
    mac: [u8; 6],
    timing: Timing,
    peers: Vec<Peer>,
    own: Table,
    own_digest: u64,
    held: BTreeSet<IpAddr>,
    listening_until: Instant,
    link_up: bool,
    stopping: bool,
    seq: u64,
    next_heartbeat: Instant,
    inputs: Vec<PeerInputs>,
    was_listening: bool,
    dirty: bool,
    /// `pair_flags` per peer, until what they are computed from changes.
    pair_cache: Vec<Option<u8>>,
}

impl Standby {
    /// `held`: what the data plane already answers for (an agent restart
    /// within the liveness stamp's lifetime), kept while listening.
    pub fn new(
        (me, incarnation, mac): (String, u64, [u8; 6]),
        timing: Timing,
        peers: &[SocketAddr],
        held: BTreeSet<IpAddr>,
        now: Instant,
    ) -> Self {
        Standby {
            me,
            incarnation,
            mac,
            timing,
            peers: peers.iter().map(|a| Peer::new(*a)).collect(),
            own: Table::new(),
            own_digest: wire::digest([]),
            held,
            listening_until: now + timing.dead_after(),
            link_up: true,
            stopping: false,
            seq: 0,
            next_heartbeat: now,
            inputs: Vec::new(),
            was_listening: true,
            dirty: true,
            pair_cache: Vec::new(),
        }
    }

    /// What this node serves, with its priority for each VIP.
    pub fn serving(&self) -> &Table {
        &self.own
    }

    pub fn held(&self) -> &BTreeSet<IpAddr> {
        &self.held
    }

    pub fn peers(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| PeerStatus {
                addr: p.addr,
                name: p.name.clone(),
                live: p.live(now, &self.timing),
            })
            .collect()
    }

    pub fn step(&mut self, now: Instant, event: Event, sent_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Tick => {}
            Event::Received { from, msg } => self.received(now, from, msg, sent_ms, &mut out),
            Event::ProbeAnswered { vip, mac } => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.mac == Some(mac))
                    && p.table.contains_key(&vip)
                    && !p.leaving
                {
                    if !p.live(now, &self.timing) {
                        p.since = Some(now);
                    }
                    p.last_segment = Some(now);
                }
            }
            Event::Serving(table) => {
                self.own_digest = wire::digest(&table);
                self.own = table;
                self.pair_cache.clear();
                self.dirty = true;
            }
            Event::LinkDown => {
                self.link_up = false;
                for p in &mut self.peers {
                    p.since = None;
                }
                self.dirty = true;
            }
            Event::LinkUp => {
                self.link_up = true;
                self.listening_until = now + self.timing.dead_after();
                self.dirty = true;
            }
            Event::Stop => {
                self.stopping = true;
                self.pair_cache.clear();
                for vip in std::mem::take(&mut self.held) {
                    out.push(Action::Release(vip));
                }
                self.heartbeats(now, sent_ms, &mut out);
                return out;
            }
        }
        if self.stopping {
            return out;
        }
        self.liveness_changes(now, &mut out);
        self.probe(now, &mut out);
        if now >= self.next_heartbeat {
            // On the interval's own grid, not `now + interval`: ticks come
            // late by up to a tick, and the slip would stretch every
            // interval (a peer would see 100-125 ms instead of 100). A
            // schedule fallen behind by a whole interval starts again.
            self.next_heartbeat += self.timing.interval;
            if self.next_heartbeat <= now {
                self.next_heartbeat = now + self.timing.interval;
            }
            self.heartbeats(now, sent_ms, &mut out);
        }
        let inputs: Vec<PeerInputs> = self
            .peers
            .iter()
            .map(|p| {
                let age = p.pair_age(now);
                PeerInputs {
                    live: p.live(now, &self.timing),
                    settled: age >= self.timing.hold,
                    settled_late: age >= self.timing.hold + self.timing.interval,
                    pair: p.pair,
                    digest: p.table_digest,
                }
            })
            .collect();
        let listening = now < self.listening_until;
        if self.dirty || inputs != self.inputs || listening != self.was_listening {
            self.inputs = inputs;
            self.was_listening = listening;
            self.dirty = false;
            self.decide(now, &mut out);
        }
        out
    }

    fn received(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
        sent_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(i) = self.peers.iter().position(|p| p.addr.ip() == from.ip()) else {
            return;
        };
        let h = &msg.header;
        let stamp = (h.incarnation, h.sent_ms, h.seq);
        let p = &mut self.peers[i];
        let heartbeat = matches!(msg.body, Body::Heartbeat(_));
        match (p.last, heartbeat) {
            // A replay, or a heartbeat overtaken by a later one: within one
            // incarnation the sequence only grows; a new incarnation (a
            // restart) must have been sent later than the last one seen.
            // Heartbeats carry state, so only the newest counts.
            (Some((inc, ms, seq)), true) => {
                let newer = if inc == h.incarnation {
                    h.seq > seq
                } else {
                    h.sent_ms > ms
                };
                if !newer {
                    return;
                }
            }
            // A table chunk is taken in any order (a reordered chunk is not
            // lost: a table of 10k VIPs is some 140 of them), from the
            // incarnation whose heartbeats are heard, or before any is (the
            // answer to our first heartbeat may overtake theirs); one of an
            // older run is refused. Its digest is checked whole anyway.
            (Some((inc, ..)), false) if inc != h.incarnation => return,
            (_, false) | (None, true) => {}
        }
        if heartbeat {
            p.last = Some(stamp);
        }
        if p.name.as_deref() != Some(h.node.as_str()) {
            self.pair_cache.clear();
        }
        let p = &mut self.peers[i];
        p.name = Some(h.node.clone());
        p.mac = Some(h.mac);
        match msg.body {
            Body::Heartbeat(hb) => {
                let was_live = p.live(now, &self.timing);
                p.leaving = h.leaving;
                if h.leaving {
                    p.since = None;
                    p.last_heartbeat = None;
                    p.last_segment = None;
                    return;
                }
                if !was_live {
                    p.since = Some(now);
                }
                p.last_heartbeat = Some(now);
                p.pair = hb.pair;
                p.heard_me = Some((Duration::from_millis(hb.heard_you_ms.into()), now));
                if hb.your_digest != self.own_digest
                    && p.table_sent
                        .is_none_or(|t| now >= t + self.timing.interval * 2)
                {
                    p.table_sent = Some(now);
                    let to = p.addr;
                    self.send_table(to, sent_ms, out);
                }
            }
            Body::Table(chunk) => {
                if chunk.digest == p.table_digest {
                    return;
                }
                let fresh = match &p.assembling {
                    Some((d, _, n)) => *d != chunk.digest || *n != chunk.chunks,
                    None => true,
                };
                if fresh {
                    p.assembling = Some((chunk.digest, BTreeMap::new(), chunk.chunks));
                }
                let (digest, parts, n) = p.assembling.as_mut().expect("set above");
                parts.insert(chunk.chunk, chunk.entries);
                if parts.len() == usize::from(*n) {
                    let table: Table = parts.values().flatten().copied().collect();
                    if wire::digest(&table) == *digest {
                        p.table_digest = *digest;
                        p.table = table;
                        self.pair_cache.clear();
                        self.dirty = true;
                    }
                    p.assembling = None;
                }
            }
        }
    }

    fn header(&mut self, sent_ms: u64) -> Header {
        self.seq += 1;
        Header {
            leaving: self.stopping,
            node: self.me.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            sent_ms,
            mac: self.mac,
        }
    }

    fn send_table(&mut self, to: SocketAddr, sent_ms: u64, out: &mut Vec<Action>) {
        let per = wire::table_entries_per_chunk(&self.me).max(1);
        let entries: Vec<(IpAddr, u8)> = self.own.iter().map(|(a, p)| (*a, *p)).collect();
        let chunks: Vec<&[(IpAddr, u8)]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(per).collect()
        };
        let n = chunks.len() as u16;
        for (k, part) in chunks.into_iter().enumerate() {
            let header = self.header(sent_ms);
            out.push(Action::Send {
                to,
                msg: Message {
                    header,
                    body: Body::Table(wire::TableChunk {
                        digest: self.own_digest,
                        chunk: k as u16,
                        chunks: n,
                        entries: part.to_vec(),
                    }),
                },
            });
        }
    }

    fn heartbeats(&mut self, now: Instant, sent_ms: u64, out: &mut Vec<Action>) {
        for i in 0..self.peers.len() {
            // Cached: computing them walks every held VIP, and nothing they
            // read changes between two heartbeats in steady state.
            let pair = match self.pair_cache.get(i).copied().flatten() {
                Some(f) => f,
                None => {
                    let f = self.pair_flags(i);
                    if self.pair_cache.len() <= i {
                        self.pair_cache.resize(i + 1, None);
                    }
                    self.pair_cache[i] = Some(f);
                    f
                }
            };
            let p = &self.peers[i];
            let heard = p
                .since
                .filter(|_| p.live(now, &self.timing))
                .map_or(0, |s| (now - s).as_millis().min(u32::MAX as u128) as u32);
            let body = Body::Heartbeat(Heartbeat {
                own_digest: self.own_digest,
                your_digest: p.table_digest,
                heard_you_ms: heard,
                pair,
            });
            let to = p.addr;
            let header = self.header(sent_ms);
            out.push(Action::Send {
                to,
                msg: Message { header, body },
            });
        }
    }

    /// `PAIR_HOLDS_*` for peer `i`, from what this node holds.
    fn pair_flags(&self, i: usize) -> u8 {
        let p = &self.peers[i];
        let Some(name) = p.name.as_deref() else {
            return 0;
        };
        let mut flags = 0;
        for vip in &self.held {
            let (Some(mine), Some(theirs)) = (self.own.get(vip), p.table.get(vip)) else {
                continue;
            };
            flags |= if ranks_above((*mine, &self.me), (*theirs, name)) {
                PAIR_HOLDS_ABOVE
            } else {
                PAIR_HOLDS_BELOW
            };
            if flags == PAIR_HOLDS_ABOVE | PAIR_HOLDS_BELOW {
                break;
            }
        }
        flags
    }

    fn liveness_changes(&mut self, now: Instant, out: &mut Vec<Action>) {
        for p in &mut self.peers {
            let live = p.live(now, &self.timing);
            if live == p.reported_live {
                continue;
            }
            p.reported_live = live;
            let peer = p.name.clone().unwrap_or_else(|| p.addr.to_string());
            if live {
                let via = if p.last_heartbeat.is_some() {
                    "heartbeats"
                } else {
                    "its ARP answers"
                };
                out.push(Action::PeerUp { peer, via });
            } else {
                p.since = None;
                let why = if p.leaving {
                    "it said it is leaving (clean stop)"
                } else if p.last_segment.is_some_and(|s| Some(s) >= p.last_heartbeat) {
                    "its heartbeats stopped earlier and its data plane stopped answering ARP"
                } else {
                    "missed heartbeats, and no ARP answer for its VIPs on the segment"
                };
                out.push(Action::PeerDown { peer, why });
            }
        }
    }

    /// While a peer's heartbeats are late, ask the segment whether it still
    /// answers for a VIP it owns in our view (one per peer and interval).
    fn probe(&mut self, now: Instant, out: &mut Vec<Action>) {
        let late = self.timing.interval * 3 / 2;
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            let Some(name) = p.name.as_deref() else {
                continue;
            };
            let heartbeat_late = p.last_heartbeat.is_none_or(|h| now >= h + late);
            let due = p.probed.is_none_or(|t| now >= t + self.timing.interval);
            if !heartbeat_late || !due || p.leaving || p.last_heard().is_none() {
                continue;
            }
            let owned_by_it = p.table.iter().find(|(vip, prio)| {
                !self.held.contains(*vip)
                    && self
                        .own
                        .get(*vip)
                        .is_some_and(|mine| ranks_above((**prio, name), (*mine, &self.me)))
            });
            if let Some((vip, _)) = owned_by_it {
                out.push(Action::Probe(*vip));
                self.peers[i].probed = Some(now);
            }
        }
    }

    fn decide(&mut self, now: Instant, out: &mut Vec<Action>) {
        let listening = now < self.listening_until || !self.link_up;
        let mut want = BTreeSet::new();
        for (vip, mine) in &self.own {
            if self.link_up && self.claims(now, *vip, *mine, listening) {
                want.insert(*vip);
            }
        }
        for vip in self.held.difference(&want) {
            out.push(Action::Release(*vip));
        }
        for vip in want.difference(&self.held) {
            out.push(Action::Claim(*vip));
        }
        if self.held != want {
            self.pair_cache.clear();
        }
        self.held = want;
    }

    fn claims(&self, now: Instant, vip: IpAddr, mine: u8, listening: bool) -> bool {
        let held = self.held.contains(&vip);
        let me = (mine, self.me.as_str());
        // Live peers serving the VIP, in rank order.
        let mut live: Vec<(&Peer, (u8, &str))> = self
            .peers
            .iter()
            .filter(|p| p.live(now, &self.timing))
            .filter_map(|p| Some((p, (*p.table.get(&vip)?, p.name.as_deref()?))))
            .collect();
        live.sort_by(|a, b| {
            if ranks_above(a.1, b.1) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        for (p, rank) in &live {
            if !ranks_above(*rank, me) {
                break;
            }
            // A higher-ranked peer owns it, unless it is coming back while
            // we cover for it (it announces none of its own yet, and the
            // pair is younger than the hold time).
            let returning =
                held && p.pair & PAIR_HOLDS_ABOVE == 0 && p.pair_age(now) < self.timing.hold;
            if !returning {
                return false;
            }
        }
        if listening {
            return held;
        }
        // We rank first among the live: take it, unless we are the one
        // coming back and the next peer still covers for us.
        let next = live.iter().find(|(_, rank)| !ranks_above(*rank, me));
        match next {
            Some((p, _)) if !held => {
                p.pair & PAIR_HOLDS_BELOW == 0
                    || p.pair_age(now) >= self.timing.hold + self.timing.interval
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests;
