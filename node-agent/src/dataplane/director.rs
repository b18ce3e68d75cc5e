//! The data plane as the rest of the agent uses it: open (or adopt) it,
//! set the node's settings, and converge it on a set of desired services.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::Xdp;

use crate::abi::{self, DpConfig, SvcKey};
use crate::dataplane::clock::DataplaneClock;
use crate::dataplane::error::DataplaneError;
use crate::dataplane::loader::{Dataplane, LoadOptions};
use crate::dataplane::maps::Maps;
use crate::dataplane::neighbours::NeighbourKeeper;
use crate::dataplane::plan::{
    self, DesiredByKey, DesiredService, Keys, PlanError, PlanLimits, Programmed,
};
use crate::dataplane::ring_alloc::RingAllocator;
use crate::maglev;

/// Node-wide data plane settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// MAC of the attached interface (ARP replies).
    pub mac: [u8; 6],
    pub snat_addrs: Vec<Ipv4Addr>,
    pub snat_ports: (u16, u16),
    pub tcp_syn_timeout_s: u32,
    pub tcp_established_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
}

impl Default for NodeSettings {
    fn default() -> Self {
        // IPVS's defaults: 15 min established, 2 min FIN_WAIT, 5 min UDP.
        Self {
            mac: [0; 6],
            snat_addrs: Vec::new(),
            snat_ports: (10_000, 65_000),
            tcp_syn_timeout_s: 60,
            tcp_established_timeout_s: 900,
            tcp_closing_timeout_s: 10,
            udp_timeout_s: 300,
        }
    }
}

impl NodeSettings {
    pub fn to_config(&self) -> Result<DpConfig, String> {
        if self.snat_addrs.len() > abi::MAX_SNAT_ADDRS {
            return Err(format!(
                "at most {} SNAT addresses, got {}",
                abi::MAX_SNAT_ADDRS,
                self.snat_addrs.len()
            ));
        }
        if self.snat_ports.0 == 0 || self.snat_ports.1 < self.snat_ports.0 {
            return Err(format!(
                "SNAT port range {}-{} is empty or starts at 0",
                self.snat_ports.0, self.snat_ports.1
            ));
        }
        let mut c = DpConfig {
            mac: self.mac,
            snat_port_min: self.snat_ports.0,
            snat_port_max: self.snat_ports.1,
            n_snat_addrs: self.snat_addrs.len() as u16,
            tcp_syn_timeout_s: self.tcp_syn_timeout_s,
            tcp_established_timeout_s: self.tcp_established_timeout_s,
            tcp_closing_timeout_s: self.tcp_closing_timeout_s,
            udp_timeout_s: self.udp_timeout_s,
            ..Default::default()
        };
        for (i, a) in self.snat_addrs.iter().enumerate() {
            c.snat_addrs[i] = abi::be_addr(*a);
        }
        Ok(c)
    }
}

/// What the last [`Director::apply`] cost, over all its passes: where the
/// time went and how much it wrote (a no-op writes nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyCost {
    /// Planning (pure: diff, Maglev tables, slot allocation).
    pub plan: Duration,
    /// Resolving new backends' next hops (`neighbours`).
    pub neighbours: Duration,
    /// Counter resets and map writes.
    pub writes: Duration,
    /// Map entries written or deleted, a Maglev table counting as one.
    pub entries_written: usize,
    /// Maglev tables written.
    pub tables_written: usize,
    pub passes: u32,
}

pub struct Director {
    dp: Dataplane,
    programmed: Programmed,
    ring: RingAllocator,
    /// `--maglev-size`: one table size for every service; None: automatic.
    forced_maglev_size: Option<u32>,
    /// Backend ids the maps hold (`Maps::backend_slots`).
    backend_slots: u32,
    next_gen: u32,
    neighbours: Option<NeighbourKeeper>,
    /// Whether every desired backend's next hop was looked at once since
    /// open (adopted backends included); after that, only new slots are.
    neighbours_primed: bool,
    /// The interface's carrier as last seen by [`Self::watch_carrier`].
    carrier_up: bool,
    /// Keys the next plan looks at whatever it is asked to touch: every
    /// programmed key after open or a failed write (what the maps hold was
    /// read back and is planned in full once, VIPs included), the services
    /// refused for lack of room (retried on every apply).
    pending: BTreeSet<SvcKey>,
    every_vip: bool,
    last_apply: ApplyCost,
}

/// What the maps hold, and the ring allocator that matches it.
fn bookkeeping(maps: &Maps) -> Result<(Programmed, RingAllocator), DataplaneError> {
    let programmed = maps.read_programmed()?;
    let ring = RingAllocator::with_used(
        maps.ring_slots(),
        programmed
            .services
            .values()
            .map(|v| (v.ring_offset, v.ring_size)),
    );
    Ok((programmed, ring))
}

impl Director {
    /// Loads (or adopts) the data plane and rebuilds its bookkeeping from
    /// what the pinned maps hold, so that a restart does not disturb flows.
    /// `forced_maglev_size` gives every service that table size (a prime, at
    /// least 2); None (or nothing) sizes each from its backend count.
    pub fn open(
        opts: &LoadOptions,
        settings: &NodeSettings,
        forced_maglev_size: impl Into<Option<u32>>,
    ) -> Result<Self, DirectorError> {
        let forced_maglev_size = forced_maglev_size.into();
        if let Some(size) = forced_maglev_size
            && !maglev::is_prime(size)
        {
            return Err(DirectorError::Settings(format!(
                "Maglev table size {size} is not prime"
            )));
        }
        let mut dp = Dataplane::open(opts)?;
        let mut cfg = settings.to_config().map_err(DirectorError::Settings)?;
        // The tick rate cannot change while the kernel runs, and pinned
        // maps do not outlive it: a rate already configured is kept, which
        // spares a restarted agent the measurement (clock.rs).
        cfg.hz = match dp.maps.read_config() {
            Ok(old) if old.hz != 0 => old.hz,
            _ => dp.clock()?.hz()?,
        };
        dp.maps.write_config(&cfg)?;
        let (programmed, ring) = bookkeeping(&dp.maps)?;
        let backend_slots = dp.maps.backend_slots()?;
        // Generations only need to differ from those stale flows hold:
        // seeding from the clock makes a restarted agent's new ones differ.
        let next_gen = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u32)
            .unwrap_or(1);
        let neighbours = opts.interface.clone().map(NeighbourKeeper::new);
        Ok(Self {
            dp,
            pending: programmed.services.keys().copied().collect(),
            every_vip: true,
            programmed,
            ring,
            forced_maglev_size,
            backend_slots,
            next_gen,
            neighbours,
            neighbours_primed: false,
            carrier_up: true,
            last_apply: ApplyCost::default(),
        })
    }

    /// Looks at the interface's carrier (call it every second or so): when
    /// the link came back up, every programmed backend's next hop is made
    /// a managed neighbour again, since the kernel flushed them all when
    /// it went down (without this, DR drops every packet after a link flap
    /// until the backends change). Returns whether it re-resolved.
    pub fn watch_carrier(&mut self) -> bool {
        let Some(n) = &mut self.neighbours else {
            return false;
        };
        let Ok(up) = super::carrier::is_up(n.interface()) else {
            return false;
        };
        let came_up = up && !self.carrier_up;
        self.carrier_up = up;
        if came_up {
            n.forget();
            let backends: Vec<std::net::Ipv4Addr> = self
                .programmed
                .backends
                .values()
                .map(|b| abi::addr_of_be(b.addr))
                .collect();
            tracing::info!(
                interface = %n.interface(),
                backends = backends.len(),
                "link up: the backends' next hops are resolved again (the kernel flushed them)"
            );
            n.ensure(backends);
        }
        came_up
    }

    pub fn programmed(&self) -> &Programmed {
        &self.programmed
    }

    /// Whether every programmed service was planned since open (or since a
    /// failed write): until then the maps may hold services nothing wants.
    pub fn converged(&self) -> bool {
        !self.every_vip
    }

    /// What the last [`Self::apply`] cost and wrote.
    pub fn last_apply(&self) -> &ApplyCost {
        &self.last_apply
    }

    /// The data plane's maps (counters, flow tables, configuration).
    pub fn maps(&self) -> &Maps {
        &self.dp.maps
    }

    /// The maps for writing outside a plan (the sweeper deletes entries).
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.dp.maps
    }

    /// The loaded director program (tests run packets through it).
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.dp.program()
    }

    /// The data plane's clock (its pinned `ballast_clock` program).
    pub fn clock(&self) -> Result<DataplaneClock, DataplaneError> {
        self.dp.clock()
    }

    /// Where the maps, programs and XDP link are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.dp.pin_dir
    }

    /// Rewrites the node's settings (SNAT addresses and ports, timeouts)
    /// while it forwards, keeping the tick rate measured at open. Flows
    /// already translated to a SNAT address that is dropped lose their
    /// replies: removing one is a disruptive change, adding one is not.
    pub fn write_settings(&mut self, settings: &NodeSettings) -> Result<(), DirectorError> {
        let mut cfg = settings.to_config().map_err(DirectorError::Settings)?;
        cfg.hz = self.dp.maps.read_config()?.hz;
        self.dp.maps.write_config(&cfg)?;
        Ok(())
    }

    /// Converges the maps on `desired`. Services that cannot be programmed
    /// are returned as errors and keep what they had; the others go on.
    pub fn apply(&mut self, desired: &[DesiredService]) -> Result<Vec<PlanError>, DirectorError> {
        let wanted: BTreeMap<SvcKey, &DesiredService> =
            desired.iter().map(|d| (d.key(), d)).collect();
        let mut touched: BTreeSet<SvcKey> = wanted.keys().copied().collect();
        touched.extend(self.programmed.services.keys());
        self.apply_changes(&wanted, touched)
    }

    /// Converges the maps on `wanted`, looking at the keys in `touched`
    /// only (plus those [`Self::apply`]-wide work is pending for): every
    /// other key must be wanted as it was last applied. A change costs
    /// what it touches.
    pub fn apply_changes(
        &mut self,
        wanted: &impl DesiredByKey,
        mut touched: BTreeSet<SvcKey>,
    ) -> Result<Vec<PlanError>, DirectorError> {
        // Old ring regions are freed only after their service flipped, so a
        // service refused for lack of ring space may fit on a next pass; a
        // nearly full storage (e.g. tables of 65537 slots from an older
        // agent, each shrinking to its automatic size) frees room pass by
        // pass. Passes stop when one programs no new table.
        self.last_apply = ApplyCost::default();
        touched.append(&mut self.pending);
        let keys = Keys {
            touched,
            every_vip: self.every_vip,
        };
        loop {
            let (errors, rings_written) = match self.apply_once(wanted, &keys) {
                Ok(done) => done,
                Err(e) => {
                    // What the maps hold was read back: plan it all again.
                    self.pending = keys.touched;
                    self.pending.extend(self.programmed.services.keys());
                    self.every_vip = true;
                    return Err(e);
                }
            };
            let ring_full = errors
                .iter()
                .any(|e| matches!(e, PlanError::RingFull { .. }));
            if !ring_full || rings_written == 0 {
                self.every_vip = false;
                self.pending = errors.iter().map(PlanError::key).collect();
                return Ok(errors);
            }
        }
    }

    /// One planning pass: its errors and how many tables it wrote. Adds its
    /// cost to `last_apply`.
    fn apply_once(
        &mut self,
        wanted: &impl DesiredByKey,
        keys: &Keys,
    ) -> Result<(Vec<PlanError>, usize), DirectorError> {
        let started = Instant::now();
        let limits = PlanLimits {
            forced_maglev_size: self.forced_maglev_size,
            max_services: abi::MAX_SERVICES,
            max_backends: self.backend_slots,
            max_src_ranges: abi::MAX_SRC_RANGES,
        };
        let mut ring = self.ring.clone();
        let mut gen_counter = self.next_gen;
        let cur = std::mem::take(&mut self.programmed);
        let planned = plan::plan_keys(cur, wanted, keys, &mut ring, &limits, &mut || {
            gen_counter = gen_counter.wrapping_add(1).max(1);
            gen_counter
        });
        let planned_at = Instant::now();
        if let Some(n) = &mut self.neighbours {
            if self.neighbours_primed {
                n.ensure(
                    planned
                        .writes
                        .backends
                        .iter()
                        .map(|(_, b)| abi::addr_of_be(b.addr)),
                );
            } else {
                // Every wanted backend once (adopted ones included): the
                // first plan after open touches every key.
                n.ensure(
                    keys.touched
                        .iter()
                        .filter_map(|k| wanted.get(k))
                        .flat_map(|d| d.backends.iter().map(|b| b.addr)),
                );
                self.neighbours_primed = true;
            }
        }
        let resolved_at = Instant::now();
        if let Err(e) = self.dp.maps.apply(&planned.writes) {
            // Some writes may have landed: what the maps hold is the truth
            // (as after a restart; every table is rebuilt once).
            (self.programmed, self.ring) = bookkeeping(&self.dp.maps)?;
            return Err(e.into());
        }
        let cost = &mut self.last_apply;
        cost.plan += planned_at - started;
        cost.neighbours += resolved_at - planned_at;
        cost.writes += resolved_at.elapsed();
        cost.entries_written += planned.writes.entries();
        cost.tables_written += planned.writes.rings.len();
        cost.passes += 1;
        self.programmed = planned.next;
        self.ring = ring;
        self.next_gen = gen_counter;
        Ok((planned.errors, planned.writes.rings.len()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("invalid node settings: {0}")]
    Settings(String),
}
