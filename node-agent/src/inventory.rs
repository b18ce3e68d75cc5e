//! What is programmed, with names: written by the agent after every change
//! to /run/ballast/net<cookie>-if<ifindex>/inventory.json (bpffs holds no
//! plain files; keyed as the pins are) so that `ballast-agent stats` and
//! metrics can name services and backends.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::abi;
use crate::dataplane::{DesiredService, Programmed};
use crate::lifecycle::identity::{self, InterfaceKey};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryService {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    pub id: u32,
    pub backends: Vec<InventoryBackend>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryBackend {
    pub id: u32,
    pub address: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

/// /run/<name of the pin root>/<interface key>/inventory.json: one per agent.
pub fn path_for(pin_root: &Path, key: &InterfaceKey) -> PathBuf {
    identity::run_dir(pin_root, key).join("inventory.json")
}

pub fn mode_name(mode: u8) -> &'static str {
    match mode {
        abi::MODE_FULLNAT => "FullNAT",
        abi::MODE_DR => "DR",
        abi::MODE_NAT => "NAT",
        _ => "?",
    }
}

pub fn proto_name(proto: u8) -> String {
    match proto {
        6 => "TCP".into(),
        17 => "UDP".into(),
        p => p.to_string(),
    }
}

/// Joins the desired services (names, weights) with the slots the maps use.
pub fn build(desired: &[DesiredService], programmed: &Programmed) -> Vec<InventoryService> {
    // (service id, address, port) -> backend slot, built once: a per-backend
    // scan would be quadratic at 100k services.
    let slots: std::collections::HashMap<(u32, u32, u16), u32> = programmed
        .backends
        .iter()
        .map(|(&id, b)| ((b.svc_id, b.addr, b.port), id))
        .collect();
    let mut out = Vec::new();
    for d in desired {
        let Some(v) = programmed.services.get(&d.key()) else {
            continue;
        };
        let backends = d
            .backends
            .iter()
            .filter_map(|b| {
                slots
                    .get(&(v.id, abi::be_addr(b.addr), abi::be_port(b.port)))
                    .map(|&id| InventoryBackend {
                        id,
                        address: b.addr,
                        port: b.port,
                        weight: b.weight,
                    })
            })
            .collect();
        out.push(InventoryService {
            name: d.name.clone(),
            vip: d.vip,
            port: d.port,
            protocol: proto_name(d.proto),
            mode: mode_name(d.mode).into(),
            id: v.id,
            backends,
        });
    }
    out
}

pub fn write(pin_root: &Path, key: &InterfaceKey, inv: &[InventoryService]) -> std::io::Result<()> {
    let path = path_for(pin_root, key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(inv).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

pub fn read(pin_root: &Path, key: &InterfaceKey) -> std::io::Result<Vec<InventoryService>> {
    let data = std::fs::read(path_for(pin_root, key))?;
    serde_json::from_slice(&data).map_err(std::io::Error::other)
}
