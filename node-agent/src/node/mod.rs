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

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use ballast_proto::v1::{ControllerMessage, controller_message::Kind};
use tracing::{info, warn};

use crate::core::{self, Agent, AgentHandle};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::Signals;
use crate::lifecycle::startup::{DataplaneOptions, open_agent, open_watching_signals};
use crate::link::client::{self, LinkOptions};
use crate::link::convert::Defaults;
use crate::link::persist;
use crate::link::session::{Session, Step};
use crate::link::tls::ClientTls;
use crate::standalone::snat_check;

/// The node's SNAT port range when `--snat-ports` is not given: below the
/// kernel's default ephemeral range (32768-60999) and the NodePort range
/// (30000-32767), so reserving it takes nothing from either.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (10_000, 29_999);

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub dataplane: DataplaneOptions,
    pub node_name: String,
    /// `https://host:port`, or `http://host:port` with `tls: None`; several
    /// are tried in turn.
    pub controllers: Vec<String>,
    pub tls: Option<ClientTls>,
    /// None: the interface's first IPv4 address.
    pub snat_addrs: Option<Vec<Ipv4Addr>>,
    pub snat_ports: (u16, u16),
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
    let interface = &opts.dataplane.interface;
    if let Some(addrs) = &opts.snat_addrs {
        for w in snat_check::at_start(addrs, interface)? {
            warn!("{w}");
        }
        return Ok(addrs.clone());
    }
    let subnets = snat_check::interface_subnets(interface)
        .with_context(|| format!("reading the addresses of {interface}"))?;
    let first = subnets.first().with_context(|| {
        format!(
            "interface {interface} has no IPv4 address to be the FullNAT source: give --snat-address"
        )
    })?;
    info!(%interface, snat_address = %first.addr, "FullNAT source: the interface's address (the node's InternalIP on its uplink)");
    Ok(vec![first.addr])
}

impl Node {
    /// Opens the agent (see `lifecycle::startup`); None when a stop signal
    /// came during start-up.
    pub async fn start(opts: NodeOptions, signals: &mut Signals) -> anyhow::Result<Option<Self>> {
        open_watching_signals(
            signals,
            move || Node::open(opts),
            |node| info!("{}", node.claim.persistence.stop_note()),
        )
        .await
    }

    pub fn open(opts: NodeOptions) -> anyhow::Result<Self> {
        let dp = &opts.dataplane;
        let snat_addrs = snat_addresses(&opts)?;
        // Before anything slow: a second agent on this interface exits at once.
        let claim = Claim::take(&dp.pin_root, &dp.interface)?;
        if let Some(line) = reserved_ports::reserve(opts.snat_ports)? {
            info!(reserved = %line, "SNAT ports reserved from the kernel's ephemeral ports (net.ipv4.ip_local_reserved_ports)");
        }
        info!(node = %opts.node_name, "node mode");
        let agent = open_agent(dp, &claim, (snat_addrs.clone(), opts.snat_ports))?;
        let link = LinkOptions {
            node_name: opts.node_name,
            controllers: opts.controllers,
            tls: opts.tls,
            heartbeat: opts.heartbeat,
            state_file: Some(claim.iface.run_dir(&dp.pin_root).join("node-state.pb")),
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
        Step::Apply(mut candidate) => match client::apply(agent, candidate.take_work()).await {
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
