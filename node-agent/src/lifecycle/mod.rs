//! The agent process's lifecycle around its data plane: which pin directory
//! is its own (`identity`: keyed by network namespace and ifindex, not by
//! interface name), one agent per interface (`lock`), whether its pins
//! outlive it (`bpffs`), signals handled from the first moment (`signals`),
//! interface facts worth a warning at start (`veth`), adopting an older
//! agent's pins (`legacy`), and removing a data plane (`cleanup`). [`Claim::take`] does the start-up part of it in one
//! call, before the data plane is opened.
pub mod bpffs;
pub mod cleanup;
pub mod identity;
pub mod legacy;
pub mod lock;
pub mod signals;
pub mod startup;
pub mod veth;

use std::path::Path;

use anyhow::Context;
use tracing::{info, warn};

use bpffs::{BpffsFacts, PinPersistence};
use identity::Interface;
use lock::AgentLock;

/// An agent's hold on an interface, taken before anything slow: its
/// identity, its lock (held as long as this lives), and whether its pins
/// outlive it.
#[derive(Debug)]
pub struct Claim {
    pub iface: Interface,
    pub persistence: PinPersistence,
    _lock: AgentLock,
}

impl Claim {
    /// Resolves `interface` in this network namespace, takes its lock (a
    /// second agent fails here, at once, naming the holder), records its
    /// name under /run, mounts bpffs if needed and says loudly when the pins
    /// would die with this process, and gives the veth advice.
    pub fn take(pin_root: &Path, interface: &str) -> anyhow::Result<Claim> {
        let iface = Interface::resolve(interface)?;
        let lock = AgentLock::acquire(&iface.run_dir(pin_root), &iface.name)?;
        identity::write_name_file(pin_root, &iface).with_context(|| {
            format!(
                "interface {interface}: writing {}",
                iface.run_dir(pin_root).display()
            )
        })?;
        let mounted_here = crate::dataplane::loader::ensure_bpffs()?;
        // An upgrade from the layout keyed by name adopts that data plane.
        if let Some(from) = legacy::adopt(pin_root, &iface)? {
            info!(
                interface,
                from = %from.display(),
                to = %iface.pin_dir(pin_root).display(),
                "moved the data plane an older agent pinned by interface name under this interface's key"
            );
        }
        let persistence = match BpffsFacts::gather(pin_root, mounted_here) {
            Ok(facts) => bpffs::assess(&facts),
            Err(e) => {
                warn!(pin_root = %pin_root.display(), "cannot tell whether the pins outlive this agent: {e}");
                PinPersistence::Undetermined
            }
        };
        if let Some(w) = persistence.start_warning(interface, &iface.pin_dir(pin_root)) {
            warn!("{w}");
        }
        match veth::check(interface) {
            Some(veth::Advice::Warn(m)) => warn!("{m}"),
            Some(veth::Advice::Info(m)) => info!("{m}"),
            None => {}
        }
        Ok(Claim {
            iface,
            persistence,
            _lock: lock,
        })
    }
}
