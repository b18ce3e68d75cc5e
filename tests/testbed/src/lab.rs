//! A running director in a throwaway testbed: the demo and the end-to-end
//! tests share it. The director is opened and programmed from inside the
//! testbed's director namespace, as an agent started there would be. Everything it creates (namespaces, pinned maps, the
//! attached program) goes away on Drop.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use ballast_agent::dataplane::{
    BPFFS_ROOT, DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode,
};
use ballast_agent::{inventory, stats};

use crate::netns::in_netns;
use crate::servers::BackendServer;
use crate::topology::{Testbed, TestbedSpec};
use crate::world;

pub struct Lab {
    pub director: Director,
    pub servers: Vec<BackendServer>,
    pub desired: Vec<DesiredService>,
    pin_dir: PathBuf,
    // Last: namespaces go after the program and servers are gone.
    pub tb: Testbed,
}

/// Where a lab pins its maps, apart from real agents' /sys/fs/bpf/ballast.
pub fn lab_pin_dir(prefix: &str) -> PathBuf {
    PathBuf::from(BPFFS_ROOT).join("ballast-lab").join(prefix)
}

impl Lab {
    pub fn start(prefix: &str, backends: usize) -> Result<Self> {
        Testbed::cleanup_prefix(prefix);
        let _ = std::fs::remove_dir_all(lab_pin_dir(prefix));
        let tb = Testbed::build(&TestbedSpec::new(prefix).backends(backends))
            .context("building the testbed")?;
        tb.attach_test_xdp_pass()
            .context("XDP_PASS on the director's bridge port")?;

        let pin_dir = lab_pin_dir(prefix);
        let director = open_director(&tb, &pin_dir, 16 * 65537)?;
        Ok(Self {
            director,
            servers: Vec::new(),
            desired: Vec::new(),
            pin_dir,
            tb,
        })
    }

    /// Starts a TCP+UDP backend server on `port` in every backend namespace.
    pub fn serve(&mut self, port: u16) -> Result<()> {
        self.servers.extend(self.tb.serve(port)?);
        Ok(())
    }

    /// Programs `desired`, from the director's namespace (the director
    /// keeps backends' next hops resolved with `ip`, which must see the
    /// director's routes).
    pub fn apply(&mut self, desired: Vec<DesiredService>) -> Result<()> {
        let director = &mut self.director;
        let errors = in_netns(self.tb.director_ns(), || director.apply(&desired))??;
        anyhow::ensure!(errors.is_empty(), "services not programmed: {errors:?}");
        self.desired = desired;
        Ok(())
    }

    pub fn snapshot(&self) -> Result<stats::Snapshot> {
        let inv = inventory::build(&self.desired, self.director.programmed());
        Ok(stats::snapshot(self.director.maps(), &inv)?)
    }
}

/// The director's settings in the testbed: its fixed MAC, the SNAT address.
pub fn director_settings() -> NodeSettings {
    NodeSettings {
        mac: world::DIRECTOR_MAC,
        snat_addrs: vec![world::SNAT_ADDR],
        ..Default::default()
    }
}

/// Opens the director on the testbed's director interface (native XDP),
/// its maps pinned in `pin_dir`, with table sizes as an agent without
/// --maglev-size chooses them.
pub fn open_director(tb: &Testbed, pin_dir: &Path, ring_slots: u32) -> Result<Director> {
    let load = LoadOptions {
        interface: Some(tb.director_if().to_string()),
        pin_dir: pin_dir.to_path_buf(),
        ring_slots,
        backend_slots: None,
        conntrack_entries: Some(65536),
        mode: XdpAttachMode::Native,
    };
    // Attaching resolves the interface name, so it happens in the
    // director's namespace.
    Ok(in_netns(tb.director_ns(), move || {
        Director::open(&load, &director_settings(), None)
    })??)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        // Removing the pinned link detaches the program.
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        if let Some(parent) = self.pin_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A service on the testbed's VIP with backends (index, weight).
pub fn service(
    name: &str,
    mode: u8,
    proto: u8,
    port: u16,
    target_port: u16,
    backends: &[(usize, u32)],
) -> DesiredService {
    DesiredService::new(
        name,
        (world::VIP, port, proto),
        mode,
        target_port,
        backends.iter().map(|&(i, w)| (world::backend_addr(i), w)),
    )
}
