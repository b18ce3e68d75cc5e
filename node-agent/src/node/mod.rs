//! `ballast-agent node`: the Kubernetes mode. The controller stream is the
//! source of the agent core: the agent dials the controller, receives its
//! node's state, applies each version as one transaction and answers it
//! (see `crate::link`). When the controller is away the agent keeps
//! forwarding (and announcing) the last state it applied; a restarted agent
//! applies the state it kept under /run before it dials.
//!
//! FullNAT's source address defaults to the interface's own (first IPv4)
//! address, which in Kubernetes is the node's InternalIP when the interface
//! is the node's uplink; `--snat-address`, or the controller's node
//! settings, give dedicated addresses instead. The SNAT port range is
//! reserved from the kernel's ephemeral ports (see `reserved_ports`).
pub mod reserved_ports;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ballast_proto::v1::{ControllerMessage, controller_message::Kind};
use tracing::{info, warn};

use crate::core::{self, Agent, AgentHandle, AgentOptions, InventoryPlace};
use crate::dataplane::{Director, LoadOptions, NodeSettings, XdpAttachMode};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::{self, Signals};
use crate::link::client::{self, LinkOptions};
use crate::link::convert::Defaults;
use crate::link::persist;
use crate::link::session::{Session, Step};
use crate::link::tls::ClientTls;
use crate::standalone::{enable_ip_forward, interface_mac, snat_check};

/// The node's SNAT port range when `--snat-ports` is not given: below the
/// kernel's default ephemeral range (32768-60999) and the NodePort range
/// (30000-32767), so reserving it takes nothing from either.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (10_000, 29_999);

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub interface: String,
    pub pin_root: PathBuf,
    pub node_name: String,
    /// `https://host:port`, or `http://host:port` with `tls: None`; several
    /// are tried in turn.
    pub controllers: Vec<String>,
    pub tls: Option<ClientTls>,
    /// None: the interface's first IPv4 address.
    pub snat_addrs: Option<Vec<Ipv4Addr>>,
    pub snat_ports: (u16, u16),
    pub maglev_size: Option<u32>,
    pub ring_slots: u32,
    pub mode: XdpAttachMode,
    pub metrics: Option<SocketAddr>,
    pub toa_mss: u16,
    pub sweep_interval: Duration,
    pub heartbeat: Duration,
    /// Reconnect backoff: first and largest pause.
    pub backoff: (Duration, Duration),
}

/// The node agent, opened and ready to run.
pub struct Node {
    claim: Claim,
    agent: Agent,
    link: LinkOptions,
    defaults: Defaults,
}

/// The SNAT addresses to use: the flag's, else the interface's first IPv4
/// address.
fn snat_addresses(opts: &NodeOptions) -> anyhow::Result<Vec<Ipv4Addr>> {
    if let Some(addrs) = &opts.snat_addrs {
        for w in snat_check::at_start(addrs, &opts.interface)? {
            warn!("{w}");
        }
        return Ok(addrs.clone());
    }
    let subnets = snat_check::interface_subnets(&opts.interface)
        .with_context(|| format!("reading the addresses of {}", opts.interface))?;
    let first = subnets.first().with_context(|| {
        format!(
            "interface {} has no IPv4 address to be the FullNAT source: give --snat-address",
            opts.interface
        )
    })?;
    info!(interface = %opts.interface, snat_address = %first.addr, "FullNAT source: the interface's address (the node's InternalIP on its uplink)");
    Ok(vec![first.addr])
}

impl Node {
    /// As `Standalone::start`: opens the data plane on a thread that blocks
    /// the agent's signals; a stop signal during start-up stops the agent
    /// once it is open (None).
    pub async fn start(opts: NodeOptions, signals: &mut Signals) -> anyhow::Result<Option<Self>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("open-dataplane".into())
            .spawn(move || {
                let opened = signals::block_in_this_thread()
                    .context("blocking signals")
                    .and_then(|()| Node::open(opts));
                let _ = tx.send(opened);
            })
            .context("spawning the start-up thread")?;
        tokio::pin!(rx);
        let stop = tokio::select! {
            opened = &mut rx => return opened.context("start-up thread died")?.map(Some),
            name = signals.stop.recv() => name,
        };
        info!("{stop} during start-up: stopping as soon as the data plane is open");
        let node = rx.await.context("start-up thread died")??;
        info!("{}", node.claim.persistence.stop_note());
        Ok(None)
    }

    pub fn open(opts: NodeOptions) -> anyhow::Result<Self> {
        let snat_addrs = snat_addresses(&opts)?;
        // Before anything slow: a second agent on this interface exits at once.
        let claim = Claim::take(&opts.pin_root, &opts.interface)?;
        if let Some(line) = reserved_ports::reserve(opts.snat_ports)? {
            info!(reserved = %line, "SNAT ports reserved from the kernel's ephemeral ports (net.ipv4.ip_local_reserved_ports)");
        }
        let pin_dir = claim.iface.pin_dir(&opts.pin_root);
        info!(interface = %opts.interface, pins = %pin_dir.display(), node = %opts.node_name, "opening the data plane");
        enable_ip_forward()?;
        let settings = NodeSettings {
            mac: interface_mac(&opts.interface)?,
            snat_addrs: snat_addrs.clone(),
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
        let agent = Agent::new(
            director,
            settings,
            AgentOptions {
                toa_mss: opts.toa_mss,
                inventory: Some(InventoryPlace {
                    pin_root: opts.pin_root.clone(),
                    key: claim.iface.key,
                }),
                metrics: opts.metrics,
                sweep_interval: opts.sweep_interval,
            },
        );
        let link = LinkOptions {
            node_name: opts.node_name,
            controllers: opts.controllers,
            tls: opts.tls,
            heartbeat: opts.heartbeat,
            state_file: Some(claim.iface.run_dir(&opts.pin_root).join("node-state.pb")),
            backoff: opts.backoff,
        };
        Ok(Node {
            claim,
            agent,
            link,
            defaults: Defaults {
                snat_addrs,
                snat_ports: opts.snat_ports,
            },
        })
    }

    /// Serves until SIGTERM or SIGINT (registered at start). Stopping leaves
    /// forwarding running when the pins are on the host's bpffs.
    pub async fn run(self, mut signals: Signals) -> anyhow::Result<()> {
        let Node {
            claim,
            agent,
            link,
            defaults,
        } = self;
        let (handle, requests) = core::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let core = agent.run(requests, async {
            let _ = stopped.await;
        });
        let feed = async {
            let session = restore(&link, &handle, defaults).await;
            let signal = async {
                let name = signals.stop.recv().await;
                info!("{name}: stopping the controller link");
            };
            client::run(link, handle.clone(), session, signal).await;
            let _ = stop.send(());
        };
        let (served, ()) = tokio::join!(core, feed);
        info!("{}", claim.persistence.stop_note());
        served
    }
}

/// The session a previous run left: its kept state applied again (which
/// writes nothing to maps that already hold it, but gives this process its
/// health checks and inventory) before the agent dials. A kept state that
/// no longer applies is dropped: the controller then sends the whole state.
pub async fn restore(link: &LinkOptions, agent: &AgentHandle, defaults: Defaults) -> Session {
    let mut session = Session::new(defaults, None);
    let Some(path) = &link.state_file else {
        return session;
    };
    let kept = match persist::load(path) {
        Ok(Some(state)) => state,
        Ok(None) => return session,
        Err(e) => {
            warn!("ignoring the kept node state: {e}");
            return session;
        }
    };
    let version = kept.version;
    match session.receive(ControllerMessage {
        kind: Some(Kind::Snapshot(kept)),
    }) {
        Step::Apply(candidate) => match agent.apply(candidate.desired.clone()).await {
            Ok(report) => {
                session.applied(*candidate, &report);
                if session.applied_version() == version {
                    info!(
                        version,
                        services = report.programmed,
                        "re-applied the node state kept by the previous run"
                    );
                } else {
                    warn!(
                        version,
                        "the kept node state was refused; the controller will send it whole"
                    );
                }
            }
            Err(e) => warn!(version, "re-applying the kept node state: {e}"),
        },
        Step::Answer(_) => warn!(
            version,
            "the kept node state does not apply; the controller will send it whole"
        ),
    }
    session
}
