//! The announcer's I/O: the heartbeat socket, the segment (ARP), the owned
//! maps, the liveness stamp and the clock, around the pure [`Standby`].
//! Each event goes through `Standby::step`; each action it returns is
//! carried out here, in order.
use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{info, warn};

use super::arp;
use super::counters::StandbyCounters;
use super::garp::GarpSchedule;
use super::owned::OwnedMaps;
use super::segment::Segment;
use super::standby::{Action, Event, Standby, Table, Timing};
use super::wire::{self, Body, Key};

/// Ticks per heartbeat interval: liveness is judged this often, so a
/// missed deadline is seen within a quarter interval.
const TICKS_PER_INTERVAL: u32 = 4;

#[derive(Clone, Debug)]
pub struct StandbyOptions {
    pub node_name: String,
    /// Peers' heartbeat addresses (IP and port).
    pub peers: Vec<SocketAddr>,
    /// Where this node listens for heartbeats.
    pub listen: SocketAddr,
    pub key: Key,
    pub timing: Timing,
    /// How long the data plane goes on answering ARP for owned VIPs after
    /// the agent's last stamp: an agent restart shorter than this moves
    /// nothing; a crashed agent's VIPs move this long after it died.
    pub stamp_lifetime: Duration,
    pub interface: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Shell {
    opts: StandbyOptions,
    sm: Standby,
    maps: OwnedMaps,
    udp: UdpSocket,
    segment: Segment,
    mac: [u8; 6],
    counters: Arc<StandbyCounters>,
    garps: GarpSchedule,
    link_up: bool,
    /// When a refused datagram was last logged, and how many since: a
    /// member with the wrong key sends ten a second.
    refused_log: (Option<Instant>, u64),
}

/// At most one line per this long about refused datagrams.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// Runs the announcer until `stop` resolves, then hands every VIP over
/// (a leaving heartbeat, the owned VIPs released) and returns. `tables`
/// holds None until the source has read its configuration once: until
/// then nothing is decided or sent (a restarted agent's data plane answers
/// on for what it owned, under a fresh stamp), so that an empty first
/// table never releases what is served nor tells the peers it serves
/// nothing.
pub async fn run(
    opts: StandbyOptions,
    pin_dir: &Path,
    mac: [u8; 6],
    mut tables: watch::Receiver<Option<Table>>,
    counters: Arc<StandbyCounters>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    let mut maps = OwnedMaps::open_pinned(pin_dir).context("the announcer's maps")?;
    let held = maps
        .adopt()
        .context("reading what the data plane answers for")?;
    maps.stamp(opts.stamp_lifetime)?;
    let first = loop {
        if let Some(t) = tables.borrow_and_update().clone() {
            break t;
        }
        tokio::select! {
            () = tokio::time::sleep(opts.timing.interval) => maps.stamp(opts.stamp_lifetime)?,
            changed = tables.changed() => if changed.is_err() { return Ok(()) },
            () = &mut stop => return Ok(()),
        }
    };
    let udp = UdpSocket::bind(opts.listen)
        .await
        .with_context(|| format!("--heartbeat-port: cannot listen on {}", opts.listen))?;
    let segment = Segment::open(&opts.interface)?;
    let incarnation = fastrand::u64(..);
    let now = Instant::now();
    if !held.is_empty() {
        info!(
            vips = held.len(),
            "the data plane still answers for these VIPs (agent restart): keeping them while listening"
        );
    }
    let sm = Standby::new(
        (opts.node_name.clone(), incarnation, mac),
        opts.timing,
        &opts.peers,
        held,
        now,
    );
    info!(
        node = %opts.node_name,
        peers = ?opts.peers,
        interval = ?opts.timing.interval,
        misses = opts.timing.misses,
        hold = ?opts.timing.hold,
        "hot standby: listening for peers"
    );
    let mut shell = Shell {
        sm,
        maps,
        udp,
        segment,
        mac,
        counters,
        garps: GarpSchedule::default(),
        link_up: true,
        refused_log: (None, 0),
        opts,
    };
    shell.event(Event::Serving(first))?;
    let mut tick = tokio::time::interval(shell.opts.timing.interval / TICKS_PER_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => shell.tick()?,
            r = shell.udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => shell.datagram(&buf[..n], from)?,
                Err(e) => warn!("heartbeat socket: {e}"),
            },
            f = shell.segment.recv() => match f {
                Ok(frame) => shell.frame(&frame)?,
                Err(e) => warn!("ARP socket: {e}"),
            },
            changed = tables.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Some(table) = tables.borrow_and_update().clone() {
                    shell.event(Event::Serving(table))?;
                }
            }
            () = &mut stop => break,
        }
    }
    shell.leave().await
}

impl Shell {
    fn event(&mut self, ev: Event) -> anyhow::Result<()> {
        let actions = self.sm.step(Instant::now(), ev, unix_ms());
        self.carry_out(actions)
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        let up = self.segment.carrier().unwrap_or(true);
        if up != self.link_up {
            self.link_up = up;
            if up {
                info!(interface = %self.opts.interface, "link up: listening for peers before claiming");
            } else {
                warn!(interface = %self.opts.interface, "link down: releasing every VIP");
            }
            self.event(if up { Event::LinkUp } else { Event::LinkDown })?;
        }
        self.maps.stamp(self.opts.stamp_lifetime)?;
        self.event(Event::Tick)?;
        self.send_due_garps();
        Ok(())
    }

    fn datagram(&mut self, buf: &[u8], from: SocketAddr) -> anyhow::Result<()> {
        if !self.opts.peers.iter().any(|p| p.ip() == from.ip()) {
            self.counters.count(|c| &c.datagrams_refused);
            return Ok(());
        }
        match wire::decode(buf, &self.opts.key) {
            Ok(msg) => {
                if matches!(msg.body, Body::Heartbeat(_)) {
                    self.counters.count(|c| &c.heartbeats_received);
                }
                self.event(Event::Received { from, msg })
            }
            Err(e) => {
                self.counters.count(|c| &c.datagrams_refused);
                let (last, since) = &mut self.refused_log;
                *since += 1;
                if last.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                    warn!(%from, refused = *since, "hot-standby datagram refused: {e}");
                    *last = Some(Instant::now());
                    *since = 0;
                }
                Ok(())
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        match arp::reply_sender(frame) {
            Some((addr, mac)) if mac != self.mac => self.event(Event::ProbeAnswered {
                vip: IpAddr::V4(addr),
                mac,
            }),
            _ => Ok(()),
        }
    }

    fn carry_out(&mut self, actions: Vec<Action>) -> anyhow::Result<()> {
        let mut claimed = Vec::new();
        let mut released = 0usize;
        let mut lost = Vec::new();
        for a in actions {
            match a {
                Action::Claim(IpAddr::V4(v)) => {
                    self.maps.claim(v)?;
                    self.counters.count(|c| &c.takeovers);
                    self.garps.start(v, Instant::now());
                    claimed.push(v);
                }
                Action::Release(IpAddr::V4(v)) => {
                    self.maps.release(v)?;
                    self.counters.count(|c| &c.handovers);
                    self.garps.cancel(v);
                    released += 1;
                }
                // IPv6 VIPs are refused before they reach the table (the
                // data plane serves IPv4); unsolicited neighbour
                // advertisements take the gratuitous ARP's place with it.
                Action::Claim(IpAddr::V6(_)) | Action::Release(IpAddr::V6(_)) => {}
                Action::Send { to, msg } => {
                    let heartbeat = matches!(msg.body, Body::Heartbeat(_));
                    let bytes = wire::encode(&msg, &self.opts.key);
                    match self.udp.try_send_to(&bytes, to) {
                        Ok(_) if heartbeat => self.counters.count(|c| &c.heartbeats_sent),
                        Ok(_) => {}
                        // Unreachable peers (link down, no route) are what
                        // the heartbeats are there to notice.
                        Err(e) => tracing::debug!(%to, "heartbeat: {e}"),
                    }
                }
                Action::Probe(IpAddr::V4(v)) => {
                    self.counters.count(|c| &c.probes);
                    if let Err(e) = self.segment.send(&arp::probe(self.mac, v)) {
                        tracing::debug!("ARP probe: {e}");
                    }
                }
                Action::Probe(IpAddr::V6(_)) => {}
                Action::PeerUp { peer, via } => info!(%peer, "peer up (heard through {via})"),
                Action::PeerDown { peer, why } => {
                    self.counters.count(|c| &c.peers_lost);
                    warn!(%peer, "peer down: {why}");
                    lost.push(peer);
                }
            }
        }
        if !claimed.is_empty() {
            let missed = if lost.is_empty() {
                "no peer ranks above this node for them".to_string()
            } else {
                format!("peer {} was missed", lost.join(", "))
            };
            info!(
                vips = claimed.len(),
                first = %claimed[0],
                "taking over: now announcing (gratuitous ARPs follow); {missed}"
            );
        }
        if released > 0 {
            info!(
                vips = released,
                "handing over: no longer answering ARP for them"
            );
        }
        if !claimed.is_empty() || released > 0 || !lost.is_empty() {
            self.publish();
        }
        self.send_due_garps();
        Ok(())
    }

    fn publish(&self) {
        let now = Instant::now();
        let peers = self
            .sm
            .peers(now)
            .into_iter()
            .map(|p| (p.name.unwrap_or_else(|| p.addr.to_string()), p.live))
            .collect();
        self.counters
            .set_state(self.sm.serving().keys().copied(), self.sm.held(), peers);
    }

    fn send_due_garps(&mut self) {
        let sent = self.garps.send_due(&self.segment, self.mac, Instant::now());
        for _ in 0..sent {
            self.counters.count(|c| &c.gratuitous_arps);
        }
    }

    /// Clean stop: release everything, tell the peers (three times: one
    /// lost datagram must not cost a full failover time).
    async fn leave(mut self) -> anyhow::Result<()> {
        let actions = self.sm.step(Instant::now(), Event::Stop, unix_ms());
        let mut datagrams = Vec::new();
        let mut released = BTreeSet::new();
        for a in actions {
            match a {
                Action::Release(IpAddr::V4(v)) => {
                    self.maps.release(v)?;
                    released.insert(v);
                }
                Action::Send { to, msg } => {
                    datagrams.push((to, wire::encode(&msg, &self.opts.key)))
                }
                _ => {}
            }
        }
        for round in 0..3 {
            for (to, bytes) in &datagrams {
                let _ = self.udp.send_to(bytes, to).await;
            }
            if round < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        info!(
            vips = released.len(),
            "hot standby: handed every VIP over (leaving heartbeat sent)"
        );
        Ok(())
    }
}
