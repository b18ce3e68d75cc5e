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

pub mod writer;

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
    /// As configured (a DOWN backend is programmed with 0, see `health`).
    pub weight: u32,
    /// Set when the service has a health check. Defaulted so that an
    /// inventory written by an older agent still parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<BackendHealth>,
}

/// A backend's health as `stats` and `/metrics` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendHealth {
    /// The check, e.g. `tcp` or `http GET /healthz -> 200`.
    #[serde(default)]
    pub check: String,
    pub up: bool,
    /// Why the latest failed probe failed, as of the last write (the agent
    /// writes the inventory on every UP/DOWN change).
    #[serde(default)]
    pub last_failure: Option<String>,
    /// UP/DOWN changes since the agent started probing the backend.
    #[serde(default)]
    pub transitions: u64,
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
pub fn build<'a>(
    desired: impl IntoIterator<Item = &'a DesiredService>,
    programmed: &Programmed,
) -> Vec<InventoryService> {
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
                        health: None,
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
    // Compact: at 10k services the pretty form is twice the bytes and the
    // time, and only `stats` and `/metrics` read it.
    std::fs::write(
        &tmp,
        serde_json::to_vec(inv).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

pub fn read(pin_root: &Path, key: &InterfaceKey) -> std::io::Result<Vec<InventoryService>> {
    let data = std::fs::read(path_for(pin_root, key))?;
    serde_json::from_slice(&data).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_without_health_still_parses() {
        let old = r#"[{"name":"default/web:80","vip":"203.0.113.10","port":80,
            "protocol":"TCP","mode":"FullNAT","id":0,
            "backends":[{"id":3,"address":"198.51.100.11","port":8080,"weight":1}]}]"#;
        let inv: Vec<InventoryService> = serde_json::from_str(old).unwrap();
        assert_eq!(inv[0].backends[0].health, None);
        let partial = r#"{"id":3,"address":"198.51.100.11","port":8080,"weight":1,
            "health":{"up":false}}"#;
        let b: InventoryBackend = serde_json::from_str(partial).unwrap();
        let h = b.health.unwrap();
        assert!(!h.up && h.transitions == 0 && h.last_failure.is_none());
    }
}
