//! The agent core: owns the data plane ([`Director`]), the health checker,
//! the inventory, the sweeper and `/metrics`, and applies each
//! [`NodeDesired`] a source hands it as one transaction.
//!
//! What "all or nothing" means here:
//! - A version that fails [`validate`] (anything wrong with its settings,
//!   any service, any announcement, or a version not above the applied one)
//!   changes nothing: the report names every problem and keeps the previous
//!   `applied_version`. One bad service cannot half-apply a version.
//! - A valid version is applied. A service the data plane has no room for
//!   at that moment (ring storage, service or backend slots, source-range
//!   entries) is reported as [`ApplyError::Capacity`] with the version, and
//!   keeps what it had, if anything; the other services are applied. Room
//!   depends on what is programmed, not on the version itself, so refusing
//!   the whole version would not make it fit later, and holding back every
//!   other change for one table that does not fit would be worse. The plan
//!   never leaves a VIP forwarding to nothing in between (see
//!   `dataplane::plan`).
//! - A syscall failing while maps are written is an [`AgentError`]: the
//!   version is not reported applied.
//!
//! What a version costs follows what it changes: the agent holds the
//! applied version per object ([`HeldDesired`]) and per data-plane key
//! ([`Wanted`]); a version is taken as a [`NodeChange`] to it (the link
//! hands one over as it is, [`Agent::apply`] finds one by comparing), and
//! only what it touches is validated, lowered, health-mapped and planned.
//! The inventory is written off the apply path, coalesced (see
//! `inventory::writer`): `stats` and `/metrics` names lag an applied
//! change by at most [`inventory::writer::INTERVAL`].
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::cost::ApplyPhases;
use super::desired::{NodeDesired, validate};
use super::held::{HeldDesired, NodeChange};
use super::report::{ApplyError, ApplyReport};
use super::retire;
use super::usage::{self, Usage, VerdictAges};
use super::wanted::{Wanted, WantedChange};
use crate::announce::l2::garp::GarpSchedule;
use crate::dataplane::sweeper::{PeriodicSweeper, SweepOptions, SweepReport};
use crate::dataplane::{self, Director, DirectorError, NodeSettings, PlanError};
use crate::health::{self, HealthChecker};
use crate::inventory::writer::{self as inventory_writer, Coalescer, Sink, Writer};
use crate::lifecycle::identity::InterfaceKey;
use crate::{inventory, metrics, stats};

/// Where the inventory goes (`stats` and `/metrics` name services from it):
/// keyed as the pins are.
#[derive(Clone, Debug)]
pub struct InventoryPlace {
    pub pin_root: PathBuf,
    pub key: InterfaceKey,
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// MSS clamp on SYN/SYN-ACK of TOA services.
    pub toa_mss: u16,
    /// None: no inventory is written (in-process tests).
    pub inventory: Option<InventoryPlace>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Pause between two sweeps of expired flows; zero disables sweeping.
    pub sweep_interval: Duration,
    /// The hot-standby announcer's counters, served on `/metrics` beside
    /// the data plane's (the announcer runs beside the core).
    pub standby: Option<Arc<crate::announce::l2::StandbyCounters>>,
    /// (interface, its MAC): where gratuitous ARPs go when a version makes
    /// this node announce a VIP it did not; None: none are sent (in-process
    /// tests without an interface).
    pub garp_from: Option<(String, [u8; 6])>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Director(#[from] DirectorError),
    #[error("writing the inventory: {0}")]
    Inventory(#[source] std::io::Error),
    #[error("the agent has stopped")]
    Stopped,
}

pub struct Agent {
    opts: AgentOptions,
    director: Director,
    /// What the data plane's configuration was last written from.
    settings: NodeSettings,
    health: HealthChecker,
    applied_version: u64,
    /// The last applied version, per object.
    held: HeldDesired,
    /// The same, per data-plane key: lowered, with checks and names, and
    /// re-applied with fresh verdicts when a backend's health changes.
    wanted: Wanted,
    ages: VerdictAges,
    /// The verdicts the inventory was last marked stale with.
    inventory_verdicts: health::Verdicts,
    /// When the inventory (a function of `wanted`, the maps and the
    /// verdicts) is to be written again: stale once one of them changed.
    inventory: Coalescer,
    last_apply: ApplyPhases,
}

/// The verdicts in the inventory a previous agent on this interface wrote
/// (under /run: they outlive the agent, not the node), by backend and check;
/// none when there is no inventory or it cannot be read.
fn known_health(
    place: &InventoryPlace,
) -> std::collections::HashMap<(SocketAddr, String), health::Health> {
    let services = inventory::read(&place.pin_root, &place.key).unwrap_or_default();
    services
        .into_iter()
        .flat_map(|s| s.backends)
        .filter_map(|b| {
            let h = b.health?;
            let addr = SocketAddr::from((b.address, b.port));
            Some((
                (addr, h.check),
                health::Health {
                    up: h.up,
                    consecutive_successes: 0,
                    consecutive_failures: 0,
                    last_failure: h.last_failure,
                    transitions: h.transitions,
                },
            ))
        })
        .collect()
}

/// How often the core looks at the interface's carrier (a link flap
/// flushes the backends' neighbour entries; see `Director::watch_carrier`).
const CARRIER_POLL: Duration = Duration::from_secs(1);

/// The inventory file as a [`Sink`] for the background writer.
struct InventoryFile(InventoryPlace);

impl Sink for InventoryFile {
    fn write(&mut self, inv: &[inventory::InventoryService]) -> std::io::Result<()> {
        inventory::write(&self.0.pin_root, &self.0.key, inv)
    }
}

impl Agent {
    /// Takes over an open data plane whose configuration was written from
    /// `settings` (its MAC and timeouts stay; SNAT addresses and ports follow
    /// each applied version).
    pub fn new(director: Director, settings: NodeSettings, opts: AgentOptions) -> Self {
        let mut health = HealthChecker::new();
        if let Some(place) = &opts.inventory {
            let known = known_health(place);
            if !known.is_empty() {
                let down = known.values().filter(|h| !h.up).count();
                info!(
                    backends = known.len(),
                    down, "health checks start from the verdicts the previous agent left"
                );
            }
            health.seed(known);
        }
        Agent {
            opts,
            director,
            settings,
            health,
            applied_version: 0,
            held: HeldDesired::default(),
            wanted: Wanted::default(),
            ages: VerdictAges::default(),
            inventory_verdicts: Default::default(),
            inventory: {
                let mut c = Coalescer::new(inventory_writer::INTERVAL);
                c.changed();
                c
            },
            last_apply: ApplyPhases::default(),
        }
    }

    /// Serves the announcer's counters on `/metrics` too.
    pub fn with_standby_counters(mut self, c: Arc<crate::announce::l2::StandbyCounters>) -> Self {
        self.opts.standby = Some(c);
        self
    }

    /// What the last apply (or health re-apply) cost and wrote.
    pub fn last_apply(&self) -> &ApplyPhases {
        &self.last_apply
    }

    pub fn director(&self) -> &Director {
        &self.director
    }

    pub fn director_mut(&mut self) -> &mut Director {
        &mut self.director
    }

    pub fn applied_version(&self) -> u64 {
        self.applied_version
    }

    /// Probe targets the health checker holds.
    pub fn health_checked(&self) -> usize {
        self.health.len()
    }

    /// Applies `d` as one transaction (see the module's doc). Needs a tokio
    /// runtime when services have health checks. Costs a comparison per
    /// service, and what the change from the applied version costs.
    pub fn apply(&mut self, d: NodeDesired) -> Result<ApplyReport, AgentError> {
        let started = Instant::now();
        let change = self.held.diff(&d);
        let mut errors = self.held.problems(&change);
        if !errors.is_empty() {
            // The same verdict, reported as the whole version names it.
            errors = validate(&d);
        }
        // What is kept of `d` was copied into `change`.
        retire::drop_later(d);
        self.apply_checked(change, errors, started)
    }

    /// Applies one version given as a change to the applied one (the
    /// link's deltas), as one transaction: what [`Self::apply`] of the
    /// whole version would do, at the cost of what it touches. Its problems
    /// name the held object as the first of a duplicate.
    pub fn apply_change(&mut self, change: NodeChange) -> Result<ApplyReport, AgentError> {
        let started = Instant::now();
        let errors = self.held.problems(&change);
        self.apply_checked(change, errors, started)
    }

    /// The state the applied version is held in, per object.
    pub fn held(&self) -> &HeldDesired {
        &self.held
    }

    fn apply_checked(
        &mut self,
        change: NodeChange,
        mut errors: Vec<ApplyError>,
        started: Instant,
    ) -> Result<ApplyReport, AgentError> {
        self.last_apply = ApplyPhases::default();
        if change.version <= self.applied_version {
            errors.insert(
                0,
                ApplyError::StaleVersion {
                    version: change.version,
                    applied: self.applied_version,
                },
            );
        }
        let validated = Instant::now();
        self.last_apply.validate = validated - started;
        if !errors.is_empty() {
            return Ok(ApplyReport {
                applied_version: self.applied_version,
                errors,
                programmed: self.programmed(),
            });
        }
        if let Some(s) = &change.settings
            && (&self.settings.snat_addrs, self.settings.snat_ports)
                != (&s.snat_addrs, s.snat_ports)
        {
            let next = NodeSettings {
                snat_addrs: s.snat_addrs.clone(),
                snat_ports: s.snat_ports,
                ..self.settings.clone()
            };
            self.director.write_settings(&next)?;
            info!(snat_addresses = ?next.snat_addrs, snat_ports = ?next.snat_ports, "node settings applied");
            self.settings = next;
        }
        if self.health.has_known() {
            // The first apply after a restart: backends the previous agent
            // knew DOWN are programmed out from the start.
            let targets: Vec<health::Target> = change
                .objects
                .values()
                .flatten()
                .filter_map(|s| Some((s, s.health_check.as_ref()?)))
                .flat_map(|(s, check)| {
                    s.backends
                        .iter()
                        .map(move |b| health::target_of(b.address, b.port, check))
                })
                .collect();
            self.health.adopt_known(&targets);
        }
        let verdicts = self.health.verdicts();
        let wanted = self
            .wanted
            .change(&self.held, &change, self.opts.toa_mss, &verdicts);
        let checks_changed = self.wanted.checks_change(&wanted);
        self.last_apply.lower = validated.elapsed();
        let version = change.version;
        let plan_errors = self.program(wanted, verdicts)?;
        self.held.commit(change);
        if checks_changed {
            self.health.set_targets(self.wanted.targets());
        }
        self.applied_version = version;
        Ok(ApplyReport {
            applied_version: version,
            errors: self.capacity_errors(plan_errors),
            programmed: self.programmed(),
        })
    }

    /// Services of the applied version that are programmed.
    fn programmed(&self) -> usize {
        let p = &self.director.programmed().services;
        if self.director.converged() {
            // Every programmed service is wanted: a plan deletes the ones
            // no longer wanted.
            p.len()
        } else {
            self.wanted
                .lowered()
                .filter(|w| p.contains_key(&w.key()))
                .count()
        }
    }

    fn capacity_errors(&self, plan_errors: Vec<PlanError>) -> Vec<ApplyError> {
        plan_errors
            .into_iter()
            .map(|source| ApplyError::Capacity {
                service: self
                    .wanted
                    .names()
                    .get(&source.key())
                    .cloned()
                    .expect("plan errors name services of the applied version"),
                source,
            })
            .collect()
    }

    /// Programs `change` (DOWN backends at weight 0) and commits it once
    /// the maps hold it; marks the inventory stale if it shows a change.
    /// Returns the services the data plane refused.
    fn program(
        &mut self,
        change: WantedChange,
        verdicts: health::Verdicts,
    ) -> Result<Vec<PlanError>, AgentError> {
        let started = Instant::now();
        for name in change.without_backends() {
            warn!(
                service = name,
                "every backend is DOWN: new connections to the service are refused until one passes its health check"
            );
        }
        self.last_apply.health = started.elapsed();
        let errors = self
            .director
            .apply_changes(&self.wanted.view(&change), change.keys())?;
        self.last_apply.dataplane = self.director.last_apply().clone();
        if !change.is_empty()
            || self.last_apply.dataplane.entries_written > 0
            || verdicts != self.inventory_verdicts
        {
            self.inventory.changed();
            self.inventory_verdicts = verdicts;
        }
        self.wanted.commit(change);
        Ok(errors)
    }

    /// The inventory as of now: what `stats` and `/metrics` name.
    fn build_inventory(&self) -> Vec<inventory::InventoryService> {
        let mut inv = inventory::build(self.wanted.lowered(), self.director.programmed());
        health::annotate(&mut inv, self.wanted.checks(), &self.inventory_verdicts);
        inv
    }

    /// Writes the inventory now if something it shows changed since it was
    /// last written (the run loop writes it in the background, coalesced;
    /// this is for callers driving [`Self::apply`] themselves, and for
    /// shutdown). Whether it wrote.
    pub fn write_inventory(&mut self) -> Result<bool, AgentError> {
        let started = Instant::now();
        let Some(place) = &self.opts.inventory else {
            return Ok(false);
        };
        if !self.inventory.is_stale() {
            return Ok(false);
        }
        inventory::write(&place.pin_root, &place.key, &self.build_inventory())
            .map_err(AgentError::Inventory)?;
        self.inventory.written(Instant::now());
        self.last_apply.inventory = started.elapsed();
        self.last_apply.inventory_written = true;
        Ok(true)
    }

    /// Hands the inventory to `writer` if it is stale and due; when it is
    /// stale but not due, when it will be. Nothing before a first version
    /// is applied (an empty inventory written then would only spend the
    /// first write's place in the interval).
    fn inventory_due(&mut self, writer: Option<&Writer>) -> Option<tokio::time::Instant> {
        let writer = writer.filter(|_| self.applied_version > 0)?;
        let now = Instant::now();
        if self.inventory.take(now) {
            writer.write(self.build_inventory());
        }
        self.inventory.due(now).map(tokio::time::Instant::from_std)
    }

    /// Re-applies the applied version with fresh health verdicts: the
    /// checked services whose effective weights changed.
    fn health_changed(&mut self) {
        let verdicts = self.health.verdicts();
        let change = self.wanted.health_change(&verdicts);
        match self.program(change, verdicts) {
            Ok(errors) => self
                .capacity_errors(errors)
                .iter()
                .for_each(|e| error!("{e}")),
            Err(e) => error!("applying a health change: {e:#}"),
        }
    }

    /// Serves until `shutdown` completes: applies what `requests` bring,
    /// re-applies on health verdict changes, sweeps expired flows and
    /// serves `/metrics`. Returns early only if those cannot start.
    pub async fn run(
        mut self,
        mut requests: Requests,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        // Dropped (stopped and joined) when run() returns.
        let sweeper = if self.opts.sweep_interval.is_zero() {
            info!("conntrack sweeping disabled: expired flows wait for the LRU");
            None
        } else {
            let s = PeriodicSweeper::start(
                self.director.pin_dir().to_path_buf(),
                self.opts.sweep_interval,
                SweepOptions::default(),
            )
            .context("starting the conntrack sweeper")?;
            info!(interval = ?self.opts.sweep_interval, "sweeping expired flows");
            Some(s)
        };
        if let Some(addr) = self.opts.metrics {
            self.serve_metrics(addr, sweeper.as_ref()).await?;
        }
        let tables = sweeper.as_ref().map(|s| s.totals_handle());
        let mut health_changes = self.health.subscribe();
        let writer = self
            .opts
            .inventory
            .clone()
            .map(|place| Writer::start(InventoryFile(place)));
        tokio::pin!(shutdown);
        let mut garps = self.opts.garp_from.clone().and_then(|(ifname, mac)| {
            match crate::announce::l2::segment::Segment::open(&ifname) {
                Ok(s) => Some((s, mac, GarpSchedule::default())),
                Err(e) => {
                    warn!("no gratuitous ARPs on takeover: {e}");
                    None
                }
            }
        });
        let mut carrier = tokio::time::interval(CARRIER_POLL);
        carrier.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let due = self.inventory_due(writer.as_ref());
            let garp_due = garps.as_ref().and_then(|(_, _, g)| g.next());
            tokio::select! {
                () = tokio::time::sleep_until(garp_due.map_or_else(tokio::time::Instant::now, Into::into)), if garp_due.is_some() => {
                    if let Some((segment, mac, g)) = &mut garps {
                        g.send_due(segment, *mac, std::time::Instant::now());
                    }
                }
                Ok(()) = health_changes.changed() => self.health_changed(),
                _ = carrier.tick() => {
                    self.director.watch_carrier();
                }
                Some(request) = requests.0.recv() => match request {
                    Request::Apply { desired, reply } => {
                        let before = garps.is_some().then(|| self.held.announce().l2.clone());
                        let report = self.apply(desired);
                        self.schedule_garps(before, garps.as_mut().map(|(_, _, g)| g));
                        let _ = reply.send(report);
                    }
                    Request::Change { change, reply } => {
                        // Only a change that names announcements can move them.
                        let before = (garps.is_some() && change.announce.is_some())
                            .then(|| self.held.announce().l2.clone());
                        let report = self.apply_change(change);
                        self.schedule_garps(before, garps.as_mut().map(|(_, _, g)| g));
                        let _ = reply.send(report);
                    }
                    Request::Usage { reply } => {
                        let last = tables
                            .as_ref()
                            .and_then(|t| t.lock().expect("not poisoned").last.clone());
                        let _ = reply.send(self.usage(last.as_ref()));
                    }
                },
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
                () = &mut shutdown => break,
            }
        }
        // What was handed over is written when the writer stops; a stale
        // inventory is written now.
        drop(writer);
        if let Err(e) = self.write_inventory() {
            error!("{e}");
        }
        drop(sweeper);
        Ok(())
    }

    /// A VIP this node announces now and did not `before` an apply gets
    /// gratuitous ARPs (a new owner after the controller moved it, or a
    /// fresh start), rather than every client waiting for its ARP entry to
    /// expire; one it let go gets no more.
    fn schedule_garps(
        &self,
        before: Option<std::collections::BTreeSet<std::net::Ipv4Addr>>,
        garps: Option<&mut GarpSchedule>,
    ) {
        let (Some(before), Some(g)) = (before, garps) else {
            return;
        };
        let now = std::time::Instant::now();
        let after = &self.held.announce().l2;
        for vip in after.difference(&before) {
            g.start(*vip, now);
        }
        for vip in before.difference(after) {
            g.cancel(*vip);
        }
    }

    /// What the link's heartbeat reports; `swept`: the sweeper's last
    /// pass, whose counts it reports (None before its first pass).
    fn usage(&mut self, swept: Option<&SweepReport>) -> Result<Usage, AgentError> {
        let counters = self
            .director
            .maps()
            .reason_counters()
            .map_err(DirectorError::from)?;
        let verdicts = self.health.verdicts();
        Ok(Usage {
            applied_version: self.applied_version,
            conntrack: swept.and_then(|r| {
                r.occupancy()
                    .into_iter()
                    .find(|t| t.table == "conntrack")
                    .map(|t| (t.entries, u64::from(t.capacity)))
            }),
            snat: swept.map(|r| usage::snat(&self.settings, &r.snat_in_use)),
            health: self.ages.report(
                self.wanted.lowered(),
                self.wanted.checks(),
                self.wanted.names(),
                &verdicts,
                std::time::Instant::now(),
            ),
            drops: usage::drops(&counters),
        })
    }

    async fn serve_metrics(
        &self,
        addr: SocketAddr,
        sweeper: Option<&PeriodicSweeper>,
    ) -> anyhow::Result<()> {
        let pin_dir = self.director.pin_dir().to_path_buf();
        let place = self.opts.inventory.clone();
        let sweep_totals = sweeper.map(|s| s.totals_handle());
        let standby = self.opts.standby.clone();
        let source: Arc<dyn Fn() -> anyhow::Result<stats::Snapshot> + Send + Sync> =
            Arc::new(move || {
                let maps = dataplane::maps::Maps::open_pinned(&pin_dir)?;
                let inv = place
                    .as_ref()
                    .and_then(|p| inventory::read(&p.pin_root, &p.key).ok())
                    .unwrap_or_default();
                let mut snap = stats::counters(&maps, &inv)?;
                let totals = sweep_totals
                    .as_ref()
                    .map(|t| t.lock().expect("not poisoned").clone());
                // The sweeper counted the tables: no second walk per
                // scrape. Before its first pass, or without it, count.
                snap.tables = match totals.as_ref().and_then(|t| t.last.as_ref()) {
                    Some(last) => last.occupancy(),
                    None => maps.flow_tables()?,
                };
                snap.sweeper = totals;
                snap.standby = standby.as_ref().map(|c| c.snapshot());
                Ok(snap)
            });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics {addr}: cannot listen"))?;
        tokio::spawn(async move {
            if let Err(e) =
                metrics::serve(listener, source, metrics::DEFAULT_MAX_BACKEND_SERIES).await
            {
                error!("metrics server: {e:#}");
            }
        });
        info!(%addr, "serving /metrics");
        Ok(())
    }
}

/// What a source asks of the running agent.
pub enum Request {
    /// Apply one version; the report goes back.
    Apply {
        desired: NodeDesired,
        reply: oneshot::Sender<Result<ApplyReport, AgentError>>,
    },
    /// Apply one version given as a change to the applied one.
    Change {
        change: NodeChange,
        reply: oneshot::Sender<Result<ApplyReport, AgentError>>,
    },
    /// Report usage (the link's heartbeat).
    Usage {
        reply: oneshot::Sender<Result<Usage, AgentError>>,
    },
}

/// What [`Agent::run`] reads versions from.
pub struct Requests(mpsc::Receiver<Request>);

impl Requests {
    /// The next request; None once every handle is gone. For whatever
    /// serves requests in place of a running agent (a source's tests).
    pub async fn recv(&mut self) -> Option<Request> {
        self.0.recv().await
    }
}

/// How a source hands versions to a running agent.
#[derive(Clone)]
pub struct AgentHandle(mpsc::Sender<Request>);

/// A handle for sources and the requests for [`Agent::run`].
pub fn channel() -> (AgentHandle, Requests) {
    // One version in flight per source is the norm; a few is plenty.
    let (tx, rx) = mpsc::channel(4);
    (AgentHandle(tx), Requests(rx))
}

impl AgentHandle {
    /// Applies `desired` on the running agent and waits for its report.
    pub async fn apply(&self, desired: NodeDesired) -> Result<ApplyReport, AgentError> {
        let (reply, report) = oneshot::channel();
        self.0
            .send(Request::Apply { desired, reply })
            .await
            .map_err(|_| AgentError::Stopped)?;
        report.await.map_err(|_| AgentError::Stopped)?
    }

    /// Applies `change` (a version as a change to the applied one, see
    /// [`Agent::apply_change`]) on the running agent and waits for its
    /// report.
    pub async fn apply_change(&self, change: NodeChange) -> Result<ApplyReport, AgentError> {
        let (reply, report) = oneshot::channel();
        self.0
            .send(Request::Change { change, reply })
            .await
            .map_err(|_| AgentError::Stopped)?;
        report.await.map_err(|_| AgentError::Stopped)?
    }

    /// The running agent's usage report.
    pub async fn usage(&self) -> Result<Usage, AgentError> {
        let (reply, report) = oneshot::channel();
        self.0
            .send(Request::Usage { reply })
            .await
            .map_err(|_| AgentError::Stopped)?;
        report.await.map_err(|_| AgentError::Stopped)?
    }

    /// Completes when the agent has stopped (its `run` returned).
    pub async fn closed(&self) {
        self.0.closed().await
    }
}
