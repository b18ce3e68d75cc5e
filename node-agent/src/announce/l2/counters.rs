//! What the announcer counts, for `/metrics`: shared between its task
//! (which writes) and the metrics server (which reads a snapshot).
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Debug, Default)]
pub struct StandbyCounters {
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_received: AtomicU64,
    /// Datagrams refused: bad tag, not ours, not from a configured peer, replays.
    pub datagrams_refused: AtomicU64,
    /// Times a live peer was declared dead (its heartbeats missed).
    pub peers_lost: AtomicU64,
    pub takeovers: AtomicU64,
    pub handovers: AtomicU64,
    pub gratuitous_arps: AtomicU64,
    pub probes: AtomicU64,
    state: Mutex<StandbyState>,
}

#[derive(Clone, Debug, Default)]
struct StandbyState {
    served: BTreeSet<IpAddr>,
    owned: BTreeSet<IpAddr>,
    peers: Vec<(String, bool)>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StandbySnapshot {
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    pub datagrams_refused: u64,
    pub peers_lost: u64,
    pub takeovers: u64,
    pub handovers: u64,
    pub gratuitous_arps: u64,
    pub probes: u64,
    /// (VIP, owned here): every VIP this node serves in the group.
    pub vips: Vec<(IpAddr, bool)>,
    /// (peer, live)
    pub peers: Vec<(String, bool)>,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl StandbyCounters {
    pub fn count(&self, c: fn(&Self) -> &AtomicU64) {
        add(c(self));
    }

    pub fn set_state(
        &self,
        served: impl IntoIterator<Item = IpAddr>,
        owned: &BTreeSet<IpAddr>,
        peers: Vec<(String, bool)>,
    ) {
        let mut s = self.state.lock().expect("not poisoned");
        s.served = served.into_iter().collect();
        s.owned = owned.clone();
        s.peers = peers;
    }

    pub fn snapshot(&self) -> StandbySnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = self.state.lock().expect("not poisoned").clone();
        StandbySnapshot {
            heartbeats_sent: get(&self.heartbeats_sent),
            heartbeats_received: get(&self.heartbeats_received),
            datagrams_refused: get(&self.datagrams_refused),
            peers_lost: get(&self.peers_lost),
            takeovers: get(&self.takeovers),
            handovers: get(&self.handovers),
            gratuitous_arps: get(&self.gratuitous_arps),
            probes: get(&self.probes),
            vips: s
                .served
                .union(&s.owned)
                .map(|v| (*v, s.owned.contains(v)))
                .collect(),
            peers: s.peers,
        }
    }
}

/// Registers the snapshot's series in `reg`.
pub fn render(reg: &Registry, s: &StandbySnapshot) -> prometheus::Result<()> {
    let counter = |name: &str, help: &str, v: u64| -> prometheus::Result<()> {
        let c = IntCounter::new(name, help)?;
        c.inc_by(v);
        reg.register(Box::new(c))
    };
    counter(
        "ballast_l2_heartbeats_sent_total",
        "Hot-standby heartbeats sent to peers",
        s.heartbeats_sent,
    )?;
    counter(
        "ballast_l2_heartbeats_received_total",
        "Hot-standby heartbeats accepted from peers",
        s.heartbeats_received,
    )?;
    counter(
        "ballast_l2_datagrams_refused_total",
        "Hot-standby datagrams refused (authentication, unknown sender, replay)",
        s.datagrams_refused,
    )?;
    counter(
        "ballast_l2_peers_lost_total",
        "Peers declared dead: heartbeats missed and no ARP answer on the segment",
        s.peers_lost,
    )?;
    counter(
        "ballast_l2_takeovers_total",
        "VIPs this node started announcing",
        s.takeovers,
    )?;
    counter(
        "ballast_l2_handovers_total",
        "VIPs this node stopped announcing",
        s.handovers,
    )?;
    counter(
        "ballast_l2_gratuitous_arps_total",
        "Gratuitous ARPs sent on takeover",
        s.gratuitous_arps,
    )?;
    counter(
        "ballast_l2_probes_total",
        "ARP probes sent while a peer's heartbeats were late",
        s.probes,
    )?;
    let owned = IntGauge::new(
        "ballast_l2_owned_vips",
        "VIPs this node announces as their owner",
    )?;
    owned.set(s.vips.iter().filter(|(_, o)| *o).count() as i64);
    reg.register(Box::new(owned))?;
    let role = IntGaugeVec::new(
        Opts::new(
            "ballast_l2_vip_owner",
            "1 when this node announces the VIP (owner), 0 when it stands by",
        ),
        &["vip"],
    )?;
    for (vip, o) in &s.vips {
        role.with_label_values(&[&vip.to_string()])
            .set(i64::from(*o));
    }
    reg.register(Box::new(role))?;
    let peers = IntGaugeVec::new(
        Opts::new("ballast_l2_peer_up", "1 while the peer is live"),
        &["peer"],
    )?;
    for (p, up) in &s.peers {
        peers.with_label_values(&[p]).set(i64::from(*up));
    }
    reg.register(Box::new(peers))?;
    Ok(())
}
