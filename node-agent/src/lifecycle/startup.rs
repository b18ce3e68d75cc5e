//! Opening an agent on an interface, whichever source then feeds it
//! (standalone files or the controller stream): the host setup the data
//! plane needs, the data plane itself and the agent core over it, opened on
//! a thread that blocks the agent's signals so the verifier is not
//! interrupted.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tracing::info;

use super::Claim;
use super::signals::{self, Signals};
use crate::abi;
use crate::core::{Agent, AgentOptions, InventoryPlace};
use crate::dataplane::{Director, LoadOptions, NodeSettings, XdpAttachMode};

/// How the data plane and the agent core are opened; the same flags in
/// both modes.
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    pub interface: String,
    pub pin_root: PathBuf,
    /// One Maglev table size for every service; None: each service's own,
    /// from its backend count (`maglev::table_size_for`).
    pub maglev_size: Option<u32>,
    pub ring_slots: u32,
    /// Backend slots of the data plane; None: `abi::MAX_BACKENDS`.
    pub backend_slots: Option<u32>,
    pub mode: XdpAttachMode,
    pub metrics: Option<SocketAddr>,
    pub toa_mss: u16,
    /// Pause between two sweeps of expired flows; zero disables sweeping.
    pub sweep_interval: Duration,
    /// Refusals (TCP RST, ICMP port unreachable) the node sends itself:
    /// (per second, burst).
    pub refusals: (u32, u32),
}

/// The node's refusal rate and burst shared out over `cpus` per-CPU
/// buckets, rounded up: the node sends at most `rate + cpus` a second
/// (each CPU refills on its own, so one busy CPU cannot spend another's).
pub fn refusal_limit((rate, burst): (u32, u32), cpus: u32) -> abi::RefusalLimit {
    let cpus = cpus.max(1);
    abi::RefusalLimit {
        per_cpu_rate: rate.div_ceil(cpus).max(1),
        burst: burst.div_ceil(cpus).max(1),
    }
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

/// Opens the data plane on the interface `claim` holds, its configuration
/// written from the SNAT addresses and ports, and the agent core over it.
pub fn open_agent(
    opts: &DataplaneOptions,
    claim: &Claim,
    (snat_addrs, snat_ports): (Vec<Ipv4Addr>, (u16, u16)),
) -> anyhow::Result<Agent> {
    let pin_dir = claim.iface.pin_dir(&opts.pin_root);
    info!(interface = %opts.interface, pins = %pin_dir.display(), "opening the data plane");
    enable_ip_forward()?;
    let settings = NodeSettings {
        mac: interface_mac(&opts.interface)?,
        snat_addrs,
        snat_ports,
        ..Default::default()
    };
    let load = LoadOptions {
        interface: Some(opts.interface.clone()),
        pin_dir,
        ring_slots: opts.ring_slots,
        backend_slots: opts.backend_slots,
        conntrack_entries: None,
        mode: opts.mode,
    };
    let mut director =
        Director::open(&load, &settings, opts.maglev_size).context("opening the data plane")?;
    let cpus = aya::util::nr_cpus().map_or(1, |n| n as u32);
    director
        .maps_mut()
        .write_refusal_limit(refusal_limit(opts.refusals, cpus))
        .context("writing the refusal rate limit")?;
    let mac = settings.mac;
    Ok(Agent::new(
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
            standby: None,
            garp_from: Some((opts.interface.clone(), mac)),
        },
    ))
}

/// Runs `open` on a thread that blocks the agent's signals (the verifier
/// is not interrupted), while `signals`, registered before, are watched: a
/// stop signal during start-up stops the agent once `open` is done (None),
/// after `stopped` says what it leaves behind. SIGHUPs wait for the caller.
pub async fn open_watching_signals<T: Send + 'static>(
    signals: &mut Signals,
    open: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    stopped: impl FnOnce(T),
) -> anyhow::Result<Option<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("open-dataplane".into())
        .spawn(move || {
            let opened = signals::block_in_this_thread()
                .context("blocking signals")
                .and_then(|()| open());
            let _ = tx.send(opened);
        })
        .context("spawning the start-up thread")?;
    tokio::pin!(rx);
    let stop = tokio::select! {
        opened = &mut rx => return opened.context("start-up thread died")?.map(Some),
        name = signals.stop.recv() => name,
    };
    info!("{stop} during start-up: stopping as soon as the data plane is open");
    stopped(rx.await.context("start-up thread died")??);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_rate_is_shared_out_over_the_cpus_rounded_up() {
        let l = refusal_limit((1000, 50), 2);
        assert_eq!((l.per_cpu_rate, l.burst), (500, 25));
        let l = refusal_limit((1000, 50), 3);
        assert_eq!((l.per_cpu_rate, l.burst), (334, 17));
        let l = refusal_limit((1, 1), 64);
        assert_eq!(
            (l.per_cpu_rate, l.burst),
            (1, 1),
            "never zero: zero burst means no limit"
        );
    }
}
