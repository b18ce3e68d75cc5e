//! `spec.ports`: numbers, protocols, names, and what the forwarding mode
//! allows a port to do.

use std::collections::HashMap;

use super::error::Errors;
use super::types::{CheckedPort, Protocol};
use crate::virtual_server::{ClientAddressMode, ForwardingMode, PortProtocol, VirtualServerSpec};

pub(crate) fn check_ports(spec: &VirtualServerSpec, errs: &mut Errors) -> Vec<CheckedPort> {
    if spec.ports.is_empty() {
        errs.push("spec.ports", "at least one port is required");
    }
    let toa =
        spec.client_address == ClientAddressMode::Toa && spec.forwarding == ForwardingMode::FullNat;
    let mut by_number: HashMap<(i32, PortProtocol), usize> = HashMap::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        let before = errs.0.len();

        let port = u16::try_from(p.port).ok().filter(|v| *v != 0);
        if port.is_none() {
            errs.push(
                format!("{base}.port"),
                format!("port {} is out of range 1..=65535", p.port),
            );
        }
        let target = match p.target_port {
            None => port,
            Some(t) => {
                let v = u16::try_from(t).ok().filter(|v| *v != 0);
                if v.is_none() {
                    errs.push(
                        format!("{base}.targetPort"),
                        format!("targetPort {t} is out of range 1..=65535"),
                    );
                }
                v
            }
        };
        let protocol = match p.protocol {
            PortProtocol::Tcp => Some(Protocol::Tcp),
            PortProtocol::Udp => Some(Protocol::Udp),
            PortProtocol::Sctp => {
                errs.push(
                    format!("{base}.protocol"),
                    "SCTP is not supported (only TCP and UDP)",
                );
                None
            }
        };
        if let Some(name) = p.name.as_deref() {
            if name.is_empty() {
                errs.push(format!("{base}.name"), "must not be empty when given");
            } else if let Some(j) = by_name.get(name) {
                errs.push(
                    format!("{base}.name"),
                    format!("duplicate port name {name:?} (also spec.ports[{j}])"),
                );
            } else {
                by_name.insert(name, i);
            }
        }
        if port.is_some() {
            if let Some(j) = by_number.get(&(p.port, p.protocol)) {
                errs.push(
                    format!("{base}.port"),
                    format!(
                        "port {}/{} is already defined by spec.ports[{j}]",
                        p.port,
                        protocol_name(p.protocol)
                    ),
                );
            } else {
                by_number.insert((p.port, p.protocol), i);
            }
        }
        if let (ForwardingMode::Dr, Some(port), Some(target)) = (spec.forwarding, port, target)
            && port != target
        {
            // In DR the balancer only rewrites the MAC address; the packet
            // reaches the backend with its original destination port.
            errs.push(
                format!("{base}.targetPort"),
                format!(
                    "DR forwarding cannot change the port (targetPort {target} != port {port})"
                ),
            );
        }
        if toa && protocol == Some(Protocol::Udp) {
            errs.push(
                format!("{base}.protocol"),
                "clientAddress TOA carries the client address in a TCP option and cannot be used with UDP",
            );
        }

        if errs.0.len() == before
            && let (Some(port), Some(target_port), Some(protocol)) = (port, target, protocol)
        {
            out.push(CheckedPort {
                name: p.name.clone().unwrap_or_default(),
                port,
                protocol,
                target_port,
            });
        }
    }
    out
}

fn protocol_name(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "TCP",
        PortProtocol::Udp => "UDP",
        PortProtocol::Sctp => "SCTP",
    }
}
