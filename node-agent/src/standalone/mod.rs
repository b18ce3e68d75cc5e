//! `ballast-agent standalone`: the data plane driven by VirtualServer YAML
//! files, reloaded on change and on SIGHUP (the keepalived+ipvsadm
//! replacement). The files are one source of the agent core
//! (`crate::core`), which owns the data plane, health checks, sweeper and
//! metrics; `source` turns the files into its versions. Stopping the agent leaves forwarding running (when its pins
//! are on the host's bpffs: see `lifecycle::bpffs`).
pub mod desired;
pub mod entries;
pub mod file_errors;
pub mod ownership;
pub mod snat_check;
pub mod source;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use crate::core::{self, Agent, AgentOptions, InventoryPlace, Settings};
use crate::dataplane::{Director, LoadOptions, NodeSettings, XdpAttachMode};
use crate::lifecycle::Claim;
use crate::lifecycle::signals::{self, Signals};
use source::FileSource;

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

/// The standalone agent: the files as the source of the agent core.
pub struct Standalone {
    /// The interface's identity (what the pins are keyed by), its lock
    /// (one agent per interface) and whether the pins outlive us.
    claim: Claim,
    agent: Agent,
    source: FileSource,
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
