//! The agent's side of validation: a `VirtualServer` checked by the shared
//! rules ([`ballast_api::check`], standalone context) and expanded into the
//! agent core's services ([`crate::core::Service`]: one per (VIP, port,
//! protocol), i.e. per address × port), fully defaulted. The data plane is IPv4-only for now; that limit is the agent's, so
//! it is stated here, and the shared rules report it at its fields together
//! with every other problem.

use std::net::IpAddr;

use ballast_api::{
    CheckedSpec, Families, Protocol, ValidationContext, ValidationError, VirtualServer, check,
};

use crate::core::{Backend, Service};

/// Why an IPv6 address is refused.
pub const IPV6_UNSUPPORTED: &str = "IPv6 is not supported by the data plane yet";

/// What the data plane can serve.
const DATA_PLANE_FAMILIES: Families = Families::Ipv4Only {
    ipv6_refused: IPV6_UNSUPPORTED,
};

/// Checks every rule (the shared ones and the data plane's IPv4-only
/// limit) and, if all pass, returns one [`Service`] per address ×
/// port, in `spec.addresses` then `spec.ports` order.
pub fn validate(vs: &VirtualServer) -> Result<Vec<Service>, ValidationError> {
    let checked = check(vs, ValidationContext::Standalone, DATA_PLANE_FAMILIES)?;
    Ok(expand(&checked))
}

fn expand(checked: &CheckedSpec) -> Vec<Service> {
    let v4 = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => *v4,
        IpAddr::V6(_) => unreachable!("Families::Ipv4Only refused IPv6"),
    };
    let mut out = Vec::with_capacity(checked.addresses.len() * checked.ports.len());
    for vip in &checked.addresses {
        for p in &checked.ports {
            out.push(Service {
                object: checked.object.clone(),
                port_name: p.name.clone(),
                vip: v4(vip),
                port: p.port,
                protocol: p.protocol,
                forwarding: checked.forwarding,
                toa: checked.toa && p.protocol == Protocol::Tcp,
                persistence_timeout_s: checked.persistence_timeout_s,
                source_ranges: checked.source_ranges.clone(),
                health_check: checked.health_check.clone(),
                // `spec.backends.static`, in order, on the port's target
                // port; empty refuses new clients.
                backends: checked
                    .static_backends
                    .iter()
                    .map(|b| Backend {
                        address: v4(&b.address),
                        port: p.target_port,
                        weight: b.weight,
                    })
                    .collect(),
                l2_priority: checked.l2_priority,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_files::{EXAMPLE, parse_virtual_server};
    use ballast_api::{
        ClientAddressMode, Forwarding, ForwardingMode, HealthCheckSpec, PortProtocol,
        VirtualServerPort,
    };
    use std::net::Ipv4Addr;

    fn example() -> VirtualServer {
        parse_virtual_server(EXAMPLE).expect("example parses")
    }

    #[test]
    fn example_yields_one_service() {
        let specs = validate(&example()).expect("example is valid");
        assert_eq!(
            specs,
            vec![Service {
                object: "default/web".into(),
                port_name: "http".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
                forwarding: Forwarding::FullNat,
                toa: true,
                persistence_timeout_s: 0,
                source_ranges: vec![],
                backends: vec![Backend {
                    address: Ipv4Addr::new(198, 51, 100, 11),
                    port: 8080,
                    weight: 1,
                }],
                health_check: None,
                l2_priority: None,
            }]
        );
    }

    #[test]
    fn defaults_apply() {
        let vs = parse_virtual_server(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nmetadata: {name: d}\n\
             spec:\n  addresses: [192.0.2.1]\n  ports: [{port: 53, protocol: UDP}, {port: 80}]\n  \
             backends: {static: [{address: 192.0.2.50}]}\n",
        )
        .unwrap();
        assert_eq!(vs.spec.forwarding, ForwardingMode::FullNat);
        assert_eq!(vs.spec.scheduler, "Maglev");
        assert_eq!(vs.spec.client_address, ClientAddressMode::None);
        assert_eq!(vs.spec.persistence, None);
        let specs = validate(&vs).unwrap();
        assert_eq!(specs.len(), 2);
        // Namespace-less standalone objects land in "default", like kubectl.
        assert_eq!(specs[0].object, "default/d");
        assert_eq!(
            (specs[0].port, specs[0].backends[0].port, specs[0].protocol),
            (53, 53, Protocol::Udp)
        );
        assert_eq!(
            (specs[1].port, specs[1].backends[0].port, specs[1].protocol),
            (80, 80, Protocol::Tcp)
        );
        assert_eq!(specs[1].port_name, "");
        assert!(!specs[1].toa);
        assert_eq!(specs[0].backends[0].weight, 1);
    }

    #[test]
    fn one_entry_per_address_and_port() {
        let mut vs = example();
        vs.spec.addresses = vec!["203.0.113.10".into(), "203.0.113.11".into()];
        vs.spec.ports.push(VirtualServerPort {
            name: Some("https".into()),
            port: 443,
            protocol: PortProtocol::Tcp,
            target_port: None,
        });
        let specs = validate(&vs).unwrap();
        let got: Vec<_> = specs.iter().map(|s| (s.vip.to_string(), s.port)).collect();
        assert_eq!(
            got,
            [
                ("203.0.113.10".to_string(), 80),
                ("203.0.113.10".to_string(), 443),
                ("203.0.113.11".to_string(), 80),
                ("203.0.113.11".to_string(), 443),
            ]
        );
    }

    #[test]
    fn toa_only_marks_tcp_ports() {
        let mut vs = example();
        vs.spec.client_address = ClientAddressMode::None;
        let specs = validate(&vs).unwrap();
        assert!(!specs[0].toa);
    }

    #[test]
    fn every_entry_carries_the_health_check() {
        let vs = parse_virtual_server(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nmetadata: {name: web}\n\
             spec:\n  addresses: [203.0.113.10, 203.0.113.11]\n  ports: [{port: 80}]\n  \
             backends: {static: [{address: 198.51.100.11}]}\n  healthCheck: {tcp: {}}\n",
        )
        .unwrap();
        let specs = validate(&vs).unwrap();
        assert_eq!(specs.len(), 2);
        for s in &specs {
            assert_eq!(s.health_check, Some(HealthCheckSpec::tcp_defaults()));
        }
    }

    #[test]
    fn ipv6_is_refused_by_the_data_plane() {
        let mut vs = example();
        vs.spec.addresses = vec!["2001:db8::10".into()];
        vs.spec.backends.static_backends.as_mut().unwrap()[0].address = "2001:db8:1::11".into();
        let err = validate(&vs).unwrap_err();
        let got: Vec<_> = err
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("spec.addresses[0]", IPV6_UNSUPPORTED),
                ("spec.backends.static[0].address", IPV6_UNSUPPORTED),
            ]
        );
    }
}
