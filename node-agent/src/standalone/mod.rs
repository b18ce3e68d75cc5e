//! `ballast-agent standalone`: the data plane driven by VirtualServer YAML
//! files, reloaded on change and on SIGHUP (the keepalived+ipvsadm
//! replacement). The files are one source of the agent core
//! (`crate::core`), which owns the data plane, health checks, sweeper and
//! metrics; `source` turns the files into its versions. Stopping the agent leaves forwarding running (when its pins
//! are on the host's bpffs: see `lifecycle::bpffs`).
pub mod change;
pub mod desired;
pub mod entries;
pub mod file_errors;
pub mod ownership;
pub mod snat_check;
pub mod source;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::announce::{
    self,
    l2::{StandbyCounters, StandbyOptions, Table},
};
use crate::core::{self, Agent, Settings};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::Signals;
use crate::lifecycle::startup::{
    DataplaneOptions, interface_mac, open_agent, open_watching_signals,
};
use source::FileSource;

#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    pub dataplane: DataplaneOptions,
    pub snat_addrs: Vec<Ipv4Addr>,
    pub snat_ports: (u16, u16),
    pub config: PathBuf,
    pub poll: Duration,
    pub announce: bool,
    /// A hot-standby group (`--peers`): the announcer decides which VIPs
    /// this node answers ARP for.
    pub standby: Option<StandbyOptions>,
}

/// The standalone agent: the files as the source of the agent core.
pub struct Standalone {
    /// The interface's identity (what the pins are keyed by), its lock
    /// (one agent per interface) and whether the pins outlive us.
    claim: Claim,
    agent: Agent,
    source: FileSource,
    standby: Option<Announcer>,
}

/// The hot-standby announcer, ready to run beside the core.
struct Announcer {
    opts: StandbyOptions,
    mac: [u8; 6],
    tables: watch::Receiver<Option<Table>>,
    counters: Arc<StandbyCounters>,
}

impl Standalone {
    /// Opens the agent (see `lifecycle::startup`); None when a stop signal
    /// came during start-up.
    pub async fn start(
        opts: StandaloneOptions,
        signals: &mut Signals,
    ) -> anyhow::Result<Option<Self>> {
        open_watching_signals(
            signals,
            move || Standalone::open(opts),
            |agent| info!("{}", agent.claim.persistence.stop_note()),
        )
        .await
    }

    pub fn open(opts: StandaloneOptions) -> anyhow::Result<Self> {
        let dp = &opts.dataplane;
        for w in snat_check::at_start(&opts.snat_addrs, &dp.interface)? {
            warn!("{w}");
        }
        // Before anything slow: a second agent on this interface exits at once.
        let claim = Claim::take(&dp.pin_root, &dp.interface)?;
        if let Some(s) = &opts.standby {
            let pins = claim.iface.pin_dir(&dp.pin_root);
            match announce::l2::owned::extend_fresh_stamp(&pins, s.stamp_lifetime) {
                Ok(true) => info!(
                    "hot standby: the data plane answers on for this node's VIPs while the agent starts"
                ),
                Ok(false) => {}
                Err(e) => warn!("hot standby: the previous liveness stamp: {e}"),
            }
        }
        let mut agent = open_agent(dp, &claim, (opts.snat_addrs.clone(), opts.snat_ports))?;
        let mut source = FileSource::new(
            opts.config,
            Settings {
                snat_addrs: opts.snat_addrs,
                snat_ports: opts.snat_ports,
            },
            opts.announce,
            opts.poll,
        );
        let standby = match opts.standby {
            Some(sopts) => {
                let (tx, tables) = watch::channel(None);
                source = source.in_standby_group(tx);
                let counters = Arc::new(StandbyCounters::default());
                agent = agent.with_standby_counters(counters.clone());
                Some(Announcer {
                    mac: interface_mac(&dp.interface)?,
                    opts: sopts,
                    tables,
                    counters,
                })
            }
            None => None,
        };
        Ok(Self {
            claim,
            agent,
            source,
            standby,
        })
    }

    /// Serves until SIGTERM or SIGINT; `signals` were registered at start.
    /// The core runs until the source stops (a stop signal), or fails to
    /// start its sweeper or metrics (then the source stops with it).
    pub async fn run(self, mut signals: Signals) -> anyhow::Result<()> {
        let Standalone {
            claim,
            agent,
            mut source,
            standby,
        } = self;
        let pin_dir = agent.director().pin_dir().to_path_buf();
        let (handle, requests) = core::channel();
        // The core stops once the feed and the announcer are done; the
        // announcer stops when the feed is (a stop signal), so that it
        // hands its VIPs over while the core still runs: a clean stop moves
        // them at once instead of after a failover time.
        let (stop_core, core_stopping) = watch::channel(false);
        let (stop_announcing, announcing_stopping) = watch::channel(false);
        let core = agent.run(requests, async move {
            let mut w = core_stopping;
            let _ = w.wait_for(|s| *s).await;
        });
        let announce = async {
            let Some(a) = standby else {
                return Ok(());
            };
            let stopped = async move {
                let mut w = announcing_stopping;
                let _ = w.wait_for(|s| *s).await;
            };
            let r = announce::l2::run(a.opts, &pin_dir, a.mac, a.tables, a.counters, stopped).await;
            if let Err(e) = &r {
                // Serving without announcing would leave the VIPs dark
                // with no sign of why: stop the agent instead.
                error!("hot standby: {e:#}; stopping");
                let _ = stop_core.send(true);
            }
            r
        };
        let feed = async {
            source.serve(&handle, &mut signals).await;
            let _ = stop_announcing.send(true);
        };
        let rest = async {
            let ((), announced) = tokio::join!(feed, announce);
            let _ = stop_core.send(true);
            announced
        };
        let (served, announced) = tokio::join!(core, rest);
        info!("{}", claim.persistence.stop_note());
        served.and(announced)
    }
}
