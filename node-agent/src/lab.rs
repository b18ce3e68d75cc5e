//! A running director in a throwaway testbed: the demo and the end-to-end
//! tests share it. Everything it creates (namespaces, pinned maps, the
//! attached program) goes away on Drop.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::abi;
use crate::dataplane::{DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode};
use crate::inventory;
use crate::stats;
use crate::testbed::servers::BackendServer;
use crate::testbed::{self, Testbed, TestbedSpec};

pub struct Lab {
    pub director: Director,
    pub servers: Vec<BackendServer>,
    pub desired: Vec<DesiredService>,
    pin_dir: PathBuf,
    object: PathBuf,
    // Last: namespaces go after the program and servers are gone.
    pub tb: Testbed,
}

/// Where a lab pins its maps, apart from real agents' /sys/fs/bpf/ballast.
pub fn lab_pin_dir(prefix: &str) -> PathBuf {
    PathBuf::from(crate::dataplane::BPFFS_ROOT)
        .join("ballast-lab")
        .join(prefix)
}

impl Lab {
    pub fn start(prefix: &str, backends: usize) -> Result<Self> {
        Testbed::cleanup_prefix(prefix);
        let _ = std::fs::remove_dir_all(lab_pin_dir(prefix));
        let tb = Testbed::build(&TestbedSpec::new(prefix).backends(backends))
            .context("building the testbed")?;
        let object = std::env::temp_dir().join(format!("ballast-{prefix}.bpf.o"));
        std::fs::write(&object, abi::BPF_OBJECT).context("writing the XDP object")?;
        tb.attach_xdp_pass(&object, "xdp_pass")
            .context("XDP_PASS on the director's bridge port")?;

        let pin_dir = lab_pin_dir(prefix);
        let ifname = tb.director_if().to_string();
        let settings = NodeSettings {
            // The testbed gives the director's interface a fixed MAC.
            mac: testbed::DIRECTOR_MAC,
            snat_addrs: vec![testbed::SNAT_ADDR],
            ..Default::default()
        };
        let load = LoadOptions {
            interface: Some(ifname),
            pin_dir: pin_dir.clone(),
            ring_slots: 16 * 65537,
            conntrack_entries: Some(65536),
            mode: XdpAttachMode::Native,
            netns: Some(tb.director_ns().to_string()),
        };
        // Attaching resolves the interface name, so it happens in the
        // director's namespace.
        let director = testbed::in_netns(tb.director_ns(), move || {
            // Table sizes as an agent without --maglev-size chooses them.
            Director::open(&load, &settings, None)
        })??;
        Ok(Self {
            director,
            servers: Vec::new(),
            desired: Vec::new(),
            pin_dir,
            object,
            tb,
        })
    }

    /// Starts a TCP+UDP backend server on `port` in every backend namespace.
    pub fn serve(&mut self, port: u16) -> Result<()> {
        for i in 1..=self.tb.backend_count() {
            let s = BackendServer::start(
                self.tb.backend_ns(i),
                &format!("b{i}"),
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            )?;
            self.servers.push(s);
        }
        Ok(())
    }

    pub fn apply(&mut self, desired: Vec<DesiredService>) -> Result<()> {
        let errors = self.director.apply(&desired)?;
        anyhow::ensure!(errors.is_empty(), "services not programmed: {errors:?}");
        self.desired = desired;
        Ok(())
    }

    pub fn snapshot(&self) -> Result<stats::Snapshot> {
        let inv = inventory::build(&self.desired, self.director.programmed());
        Ok(stats::snapshot(&self.director.dp.maps, &inv)?)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        // Removing the pinned link detaches the program.
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        if let Some(parent) = self.pin_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        let _ = std::fs::remove_file(&self.object);
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
        (testbed::VIP, port, proto),
        mode,
        target_port,
        backends.iter().map(|&(i, w)| (testbed::backend_addr(i), w)),
    )
}
