//! Pure: a validated [`NodeDesired`] lowered to what the map-writing plan
//! (`dataplane::plan`) takes, ABI integers included, and the health checks
//! keyed as the health module keys services. The only place typed
//! protocols, forwarding modes and TOA become numbers and flag bits.
use ballast_api::{Forwarding, Protocol};

use super::desired::{NodeDesired, Service};
use crate::abi;
use crate::dataplane::{DesiredBackend, DesiredService};
use crate::health::ServiceChecks;

/// IP protocol number.
pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// The data plane's forwarding mode.
pub fn mode_number(f: Forwarding) -> u8 {
    match f {
        Forwarding::FullNat => abi::MODE_FULLNAT,
        Forwarding::Dr => abi::MODE_DR,
        Forwarding::Nat => abi::MODE_NAT,
    }
}

/// `object:port-name`, or `object:port` for an unnamed port: how stats and
/// plan errors name a service.
pub fn service_name(s: &Service) -> String {
    if s.port_name.is_empty() {
        format!("{}:{}", s.object, s.port)
    } else {
        format!("{}:{}", s.object, s.port_name)
    }
}

/// One data-plane service per service of `d`, in order. `toa_mss` is the
/// MSS clamp of TOA services (room for the 8-byte option).
pub fn lower(d: &NodeDesired, toa_mss: u16) -> Vec<DesiredService> {
    d.services
        .iter()
        .map(|s| lower_service(s, d.announce.l2.contains(&s.vip), toa_mss))
        .collect()
}

/// One service lowered; `announced`: whether its VIP is announced over L2.
pub fn lower_service(s: &Service, announced: bool, toa_mss: u16) -> DesiredService {
    DesiredService {
        name: service_name(s),
        vip: s.vip,
        port: s.port,
        proto: protocol_number(s.protocol),
        mode: mode_number(s.forwarding),
        flags: if s.toa { abi::SVC_TOA } else { 0 },
        mss_max: if s.toa { toa_mss } else { 0 },
        persist_timeout_s: s.persistence_timeout_s,
        announce: announced,
        source_ranges: s.source_ranges.clone(),
        maglev_size: None,
        backends: s
            .backends
            .iter()
            .map(|b| DesiredBackend {
                addr: b.address,
                port: b.port,
                weight: b.weight,
            })
            .collect(),
    }
}

/// The health check of every checked service, by data-plane key.
pub fn checks(d: &NodeDesired) -> ServiceChecks {
    d.services
        .iter()
        .filter_map(|s| {
            let key = (s.vip, s.port, protocol_number(s.protocol));
            s.health_check.clone().map(|c| (key, c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use ballast_api::{HealthCheckSpec, Probe};

    use super::*;
    use crate::core::desired::{Announcements, Backend, Settings};

    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const OTHER_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    const B1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

    fn service(vip: Ipv4Addr, port: u16, protocol: Protocol, forwarding: Forwarding) -> Service {
        let backend = Backend {
            address: B1,
            port: 8080,
            weight: 3,
        };
        Service::new("default/web", (vip, port, protocol), forwarding, [backend])
    }

    #[test]
    fn every_field_lowers_to_its_abi_value() {
        let mut toa = service(VIP, 443, Protocol::Tcp, Forwarding::FullNat);
        toa.port_name = "https".into();
        toa.toa = true;
        toa.persistence_timeout_s = 300;
        toa.source_ranges = vec!["192.0.2.0/24".parse().unwrap()];
        let d = NodeDesired {
            version: 7,
            settings: Settings::default(),
            services: vec![
                toa,
                service(VIP, 53, Protocol::Udp, Forwarding::Dr),
                service(OTHER_VIP, 80, Protocol::Tcp, Forwarding::Nat),
            ],
            announce: Announcements {
                l2: [VIP].into(),
                bgp: Default::default(),
            },
        };
        let backends = vec![DesiredBackend {
            addr: B1,
            port: 8080,
            weight: 3,
        }];
        assert_eq!(
            lower(&d, 1452),
            vec![
                DesiredService {
                    name: "default/web:https".into(),
                    vip: VIP,
                    port: 443,
                    proto: 6,
                    mode: abi::MODE_FULLNAT,
                    flags: abi::SVC_TOA,
                    mss_max: 1452,
                    persist_timeout_s: 300,
                    announce: true,
                    source_ranges: vec!["192.0.2.0/24".parse().unwrap()],
                    maglev_size: None,
                    backends: backends.clone(),
                },
                DesiredService {
                    name: "default/web:53".into(),
                    vip: VIP,
                    port: 53,
                    proto: 17,
                    mode: abi::MODE_DR,
                    flags: 0,
                    mss_max: 0,
                    persist_timeout_s: 0,
                    announce: true,
                    source_ranges: vec![],
                    maglev_size: None,
                    backends: backends.clone(),
                },
                DesiredService {
                    name: "default/web:80".into(),
                    vip: OTHER_VIP,
                    port: 80,
                    proto: 6,
                    mode: abi::MODE_NAT,
                    flags: 0,
                    mss_max: 0,
                    persist_timeout_s: 0,
                    announce: false,
                    source_ranges: vec![],
                    maglev_size: None,
                    backends,
                },
            ]
        );
    }

    #[test]
    fn checks_are_keyed_by_vip_port_and_protocol_number() {
        let check = HealthCheckSpec {
            probe: Probe::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        };
        let mut udp = service(VIP, 53, Protocol::Udp, Forwarding::Dr);
        udp.health_check = Some(check.clone());
        let d = NodeDesired {
            services: vec![service(VIP, 80, Protocol::Tcp, Forwarding::Dr), udp],
            ..Default::default()
        };
        assert_eq!(checks(&d), [((VIP, 53, 17), check)].into());
    }
}
