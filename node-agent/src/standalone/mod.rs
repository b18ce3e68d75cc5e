//! `ballast-agent standalone`: the data plane driven by VirtualServer YAML
//! files, reloaded on change and on SIGHUP (the keepalived+ipvsadm
//! replacement). Stopping the agent leaves forwarding running (when its pins
//! are on the host's bpffs: see `lifecycle::bpffs`).
pub mod desired;
pub mod entries;
pub mod ownership;
pub mod snat_check;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info, warn};

use crate::config_files;
use crate::dataplane::sweeper::{PeriodicSweeper, SweepOptions};
use crate::dataplane::{self, DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode};
use crate::health::{self, HealthChecker, ServiceChecks};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::{self, Signals};
use crate::{inventory, metrics, stats};

#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    pub interface: String,
    pub pin_root: PathBuf,
    pub snat_addrs: Vec<Ipv4Addr>,
    pub snat_ports: (u16, u16),
    pub config: PathBuf,
    /// One Maglev table size for every service; None: each service's own,
    /// from its backend count (`maglev::table_size_for`).
    pub maglev_size: Option<u32>,
    pub ring_slots: u32,
    pub mode: XdpAttachMode,
    pub metrics: Option<SocketAddr>,
    pub poll: Duration,
    pub announce: bool,
    pub toa_mss: u16,
    /// Pause between two sweeps of expired flows; zero disables sweeping.
    pub sweep_interval: Duration,
}

/// The MAC address of an interface, for ARP replies. Asked of the kernel
/// (SIOCGIFHWADDR) rather than read from /sys/class/net, which shows the
/// network namespace sysfs was mounted in, not necessarily ours.
pub fn interface_mac(ifname: &str) -> anyhow::Result<[u8; 6]> {
    anyhow::ensure!(
        ifname.len() < libc::IFNAMSIZ,
        "interface name {ifname} is too long"
    );
    // SAFETY: plain socket(2)/ioctl(2) on a zeroed ifreq with a
    // NUL-terminated name; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in ifname.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        anyhow::ensure!(rc == 0, "interface {ifname}: {err}");
        let data = req.ifr_ifru.ifru_hwaddr.sa_data;
        Ok(std::array::from_fn(|i| data[i] as u8))
    }
}

/// Packets the XDP program hands to the kernel (unresolved neighbour) must
/// be forwarded by it.
pub fn enable_ip_forward() -> anyhow::Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(p, "1").with_context(|| format!("enabling {p}"))?;
    info!(
        "enabled net.ipv4.ip_forward: packets waiting for neighbour resolution are forwarded by the kernel"
    );
    Ok(())
}

pub struct Standalone {
    opts: StandaloneOptions,
    director: Director,
    last_good: desired::LastGood,
    fingerprint: Option<u64>,
    /// The interface's identity (what the pins are keyed by), its lock
    /// (one agent per interface) and whether the pins outlive us.
    claim: Claim,
    /// Probes the backends of services with a health check.
    health: HealthChecker,
    /// The services last read and their checks: re-applied with fresh
    /// verdicts when a backend's health changes, without re-reading files.
    wanted: Vec<DesiredService>,
    checks: ServiceChecks,
}

impl Standalone {
    /// Opens the data plane on a thread that blocks the agent's signals (the
    /// verifier is not interrupted), while `signals`, registered before, are
    /// watched: a stop signal during start-up stops the agent once the data
    /// plane is open (None). SIGHUPs wait for `run`.
    pub async fn start(
        opts: StandaloneOptions,
        signals: &mut Signals,
    ) -> anyhow::Result<Option<Self>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("open-dataplane".into())
            .spawn(move || {
                let opened = signals::block_in_this_thread()
                    .context("blocking signals")
                    .and_then(|()| Standalone::open(opts));
                let _ = tx.send(opened);
            })
            .context("spawning the start-up thread")?;
        tokio::pin!(rx);
        let stop = tokio::select! {
            opened = &mut rx => return opened.context("start-up thread died")?.map(Some),
            name = signals.stop.recv() => name,
        };
        info!("{stop} during start-up: stopping as soon as the data plane is open");
        let agent = rx.await.context("start-up thread died")??;
        info!("{}", agent.claim.persistence.stop_note());
        Ok(None)
    }

    pub fn open(opts: StandaloneOptions) -> anyhow::Result<Self> {
        for w in snat_check::at_start(&opts.snat_addrs, &opts.interface)? {
            warn!("{w}");
        }
        // Before anything slow: a second agent on this interface exits at once.
        let claim = Claim::take(&opts.pin_root, &opts.interface)?;
        let pin_dir = claim.iface.pin_dir(&opts.pin_root);
        info!(interface = %opts.interface, pins = %pin_dir.display(), "opening the data plane");
        enable_ip_forward()?;
        let settings = NodeSettings {
            mac: interface_mac(&opts.interface)?,
            snat_addrs: opts.snat_addrs.clone(),
            snat_ports: opts.snat_ports,
            ..Default::default()
        };
        let load = LoadOptions {
            interface: Some(opts.interface.clone()),
            pin_dir,
            ring_slots: opts.ring_slots,
            conntrack_entries: None,
            mode: opts.mode,
        };
        let director =
            Director::open(&load, &settings, opts.maglev_size).context("opening the data plane")?;
        Ok(Self {
            opts,
            director,
            last_good: Default::default(),
            fingerprint: None,
            claim,
            health: HealthChecker::new(),
            wanted: Vec::new(),
            checks: ServiceChecks::new(),
        })
    }

    /// Reads, validates and programs the configuration. Returns the errors
    /// (already logged); valid documents are programmed regardless.
    pub fn reload(&mut self) -> anyhow::Result<Vec<String>> {
        self.fingerprint = config_files::fingerprint(&self.opts.config).ok();
        let docs = config_files::read_documents(&self.opts.config)
            .with_context(|| format!("reading {}", self.opts.config.display()))?;
        let resolved = desired::resolve(&docs, &mut self.last_good, &self.opts.snat_addrs);
        for w in &resolved.warnings {
            warn!("{w}");
        }
        let wanted = desired::to_desired(&resolved.services, self.opts.announce, self.opts.toa_mss);
        self.checks = health::checks_of(&resolved.services);
        self.health
            .set_targets(health::targets(&wanted, &self.checks));
        self.wanted = wanted;
        let mut errors = resolved.errors;
        let (plan_errors, services) = self.program()?;
        errors.extend(plan_errors);
        for e in &errors {
            error!("{e}");
        }
        info!(
            services,
            errors = errors.len(),
            health_checked = self.health.len(),
            "configuration applied"
        );
        Ok(errors)
    }

    /// Programs the services last read, DOWN backends at weight 0, and
    /// writes the inventory. Returns the services' errors and how many are
    /// programmed.
    fn program(&mut self) -> anyhow::Result<(Vec<String>, usize)> {
        let verdicts = self.health.verdicts();
        let effective = health::apply_health(&self.wanted, &self.checks, &verdicts);
        for name in health::without_backends(&self.wanted, &effective) {
            warn!(
                service = name,
                "every backend is DOWN: new connections to the service are refused until one passes its health check"
            );
        }
        let errors = self.director.apply(&effective)?;
        let mut inv = inventory::build(&self.wanted, self.director.programmed());
        health::annotate(&mut inv, &self.checks, &verdicts);
        inventory::write(&self.opts.pin_root, &self.claim.iface.key, &inv)
            .context("writing the inventory")?;
        Ok((errors.iter().map(|e| e.to_string()).collect(), inv.len()))
    }

    fn changed(&self) -> bool {
        config_files::fingerprint(&self.opts.config).ok() != self.fingerprint
    }

    /// Serves until SIGTERM or SIGINT; `signals` were registered at start.
    pub async fn run(mut self, mut signals: Signals) -> anyhow::Result<()> {
        if let Err(e) = self.reload() {
            // A missing config is not fatal: the agent waits for it.
            warn!("{e:#}");
        }
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
            let key = self.claim.iface.key;
            let root = self.opts.pin_root.clone();
            let sweep_totals = sweeper.as_ref().map(|s| s.totals_handle());
            let source: Arc<dyn Fn() -> anyhow::Result<stats::Snapshot> + Send + Sync> =
                Arc::new(move || {
                    let maps =
                        dataplane::maps::Maps::open_pinned(&dataplane::pin_dir_for(&root, &key))?;
                    let inv = inventory::read(&root, &key).unwrap_or_default();
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
        }
        let mut tick = tokio::time::interval(self.opts.poll);
        let mut health_changes = self.health.subscribe();
        loop {
            tokio::select! {
                Ok(()) = health_changes.changed() => {
                    match self.program() {
                        Ok((errors, _)) => errors.iter().for_each(|e| error!("{e}")),
                        Err(e) => error!("applying a health change: {e:#}"),
                    }
                }
                _ = signals.hup.recv() => {
                    info!("SIGHUP: reloading");
                    if let Err(e) = self.reload() { error!("{e:#}"); }
                }
                _ = tick.tick() => {
                    if self.changed() {
                        info!("configuration changed: reloading");
                        if let Err(e) = self.reload() { error!("{e:#}"); }
                    }
                }
                _ = signals.stop.recv() => break,
            }
        }
        info!("{}", self.claim.persistence.stop_note());
        drop(sweeper);
        Ok(())
    }
}
