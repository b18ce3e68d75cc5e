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

use tracing::{info, warn};

use crate::core::{self, Agent, Settings};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::Signals;
use crate::lifecycle::startup::{DataplaneOptions, open_agent, open_watching_signals};
use source::FileSource;

#[derive(Clone, Debug)]
pub struct StandaloneOptions {
    pub dataplane: DataplaneOptions,
    pub snat_addrs: Vec<Ipv4Addr>,
    pub snat_ports: (u16, u16),
    pub config: PathBuf,
    pub poll: Duration,
    pub announce: bool,
}

/// The standalone agent: the files as the source of the agent core.
pub struct Standalone {
    /// The interface's identity (what the pins are keyed by), its lock
    /// (one agent per interface) and whether the pins outlive us.
    claim: Claim,
    agent: Agent,
    source: FileSource,
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
        let agent = open_agent(dp, &claim, (opts.snat_addrs.clone(), opts.snat_ports))?;
        let source = FileSource::new(
            opts.config,
            Settings {
                snat_addrs: opts.snat_addrs,
                snat_ports: opts.snat_ports,
            },
            opts.announce,
            opts.poll,
        );
        Ok(Self {
            claim,
            agent,
            source,
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
        } = self;
        let (handle, requests) = core::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let core = agent.run(requests, async {
            let _ = stopped.await;
        });
        let feed = async {
            source.serve(&handle, &mut signals).await;
            let _ = stop.send(());
        };
        let (served, ()) = tokio::join!(core, feed);
        info!("{}", claim.persistence.stop_note());
        served
    }
}
