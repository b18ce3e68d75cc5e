//! One wire `Service` checked and expanded into one core service per
//! VIP × port, in wire order (VIP-major), all sharing the service's options.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ballast_api::{HealthCheckSpec, Probe, Protocol};
use ballast_proto::v1;
use ipnet::IpNet;

use super::fields::{self, Problems, Site};
use crate::core::{Backend, Service};

pub(super) struct Expanded {
    /// Empty when the forwarding mode is unreadable or every VIP or port is
    /// skipped; not to be applied when any INVALID problem was found.
    pub services: Vec<Service>,
    /// Every well-formed VIP the wire lists for it, served or skipped.
    pub vips: Vec<IpAddr>,
}

/// A frontend port every backend of which this data plane can reach.
struct ServedPort {
    port: u16,
    protocol: Protocol,
    backends: Vec<Backend>,
}

/// `services[i]` of the state; `object` is its name in the core state.
pub(super) fn expand(i: usize, s: &v1::Service, object: &str, p: &mut Problems) -> Expanded {
    let at = format!("services[{i}]");
    let site = Site::object(s.object.as_ref());
    let (served_vips, vips) = check_vips(&at, &s.vips, &site, p);
    let forwarding = p.read(
        &site,
        format!("{at}.forwarding"),
        fields::forwarding(s.forwarding),
    );
    let ports = check_ports(&at, &s.ports, &site, p);
    let source_ranges = check_source_ranges(&at, &s.source_ranges, &site, p);
    let health_check = s
        .health_check
        .as_ref()
        .and_then(|hc| check_health(&format!("{at}.health_check"), hc, &site, p));
    let Some(forwarding) = forwarding else {
        return Expanded {
            services: Vec::new(),
            vips,
        };
    };
    let mut services = Vec::with_capacity(served_vips.len() * ports.len());
    for &vip in &served_vips {
        for port in &ports {
            services.push(Service {
                object: object.to_string(),
                port_name: String::new(),
                vip,
                port: port.port,
                protocol: port.protocol,
                forwarding,
                toa: s.toa,
                persistence_timeout_s: s.persistence_timeout_s,
                source_ranges: source_ranges.clone(),
                health_check: health_check.clone(),
                backends: port.backends.clone(),
                // The controller orders the announcers itself.
                l2_priority: None,
            });
        }
    }
    Expanded { services, vips }
}

/// (IPv4 VIPs served, every well-formed VIP listed).
fn check_vips(
    at: &str,
    raw: &[Vec<u8>],
    site: &Site,
    p: &mut Problems,
) -> (Vec<Ipv4Addr>, Vec<IpAddr>) {
    if raw.is_empty() {
        p.invalid(
            site,
            format!("{at}.vips"),
            "none: a service has at least one VIP",
        );
    }
    let mut served = Vec::new();
    let mut listed = Vec::new();
    for (k, bytes) in raw.iter().enumerate() {
        let field = format!("{at}.vips[{k}]");
        let Some(ip) = p.read(site, field.clone(), fields::address(bytes)) else {
            continue;
        };
        if listed.contains(&ip) {
            p.invalid(&site.at_vip(ip), field, "listed twice");
            continue;
        }
        listed.push(ip);
        match ip {
            IpAddr::V4(v4) => served.push(v4),
            IpAddr::V6(_) => p.unsupported(
                &site.at_vip(ip),
                field,
                "IPv6 VIP: this data plane forwards IPv4 only; none of the service's ports is \
                 served on it",
            ),
        }
    }
    (served, listed)
}

fn check_ports(at: &str, raw: &[v1::Port], site: &Site, p: &mut Problems) -> Vec<ServedPort> {
    if raw.is_empty() {
        p.invalid(
            site,
            format!("{at}.ports"),
            "none: a service has at least one port",
        );
    }
    let mut first_at = BTreeMap::new();
    let mut served = Vec::new();
    for (k, wire) in raw.iter().enumerate() {
        let field = format!("{at}.ports[{k}]");
        let port = p.read(site, format!("{field}.port"), fields::port(wire.port));
        let protocol = p.read(
            site,
            format!("{field}.protocol"),
            fields::protocol(wire.protocol),
        );
        // The wire names a port by number and protocol, both or neither.
        let mut port_site = site.clone();
        if let (Some(number), Some(proto)) = (port, protocol) {
            port_site = site.at_port(number, proto);
            if let Some(&j) = first_at.get(&(number, proto)) {
                let reason = format!("the same port and protocol as ports[{j}]");
                p.invalid(&port_site, field.clone(), reason);
            } else {
                first_at.insert((number, proto), k);
            }
        }
        let backends = check_backends(&field, &wire.backends, &port_site, p);
        if let (Some(port), Some(protocol), Some(backends)) = (port, protocol, backends) {
            served.push(ServedPort {
                port,
                protocol,
                backends,
            });
        }
    }
    served
}

/// The port's backends; `None` when the port cannot be served here (a
/// backend refused, or an IPv6 one: then the port is skipped on every VIP,
/// reported once).
fn check_backends(
    at: &str,
    raw: &[v1::Backend],
    site: &Site,
    p: &mut Problems,
) -> Option<Vec<Backend>> {
    let mut backends = Vec::new();
    let mut refused = false;
    let mut ipv6 = Vec::new();
    for (k, b) in raw.iter().enumerate() {
        let field = format!("{at}.backends[{k}]");
        let address = p.read(
            site,
            format!("{field}.address"),
            fields::address(&b.address),
        );
        let port = p.read(site, format!("{field}.port"), fields::port(b.port));
        match (address, port) {
            (Some(IpAddr::V4(address)), Some(port)) => backends.push(Backend {
                address,
                port,
                weight: b.weight,
            }),
            (Some(IpAddr::V6(a)), _) => ipv6.push((k, a)),
            _ => refused = true,
        }
    }
    if let Some(&(k, a)) = ipv6.first() {
        let reason = format!(
            "IPv6 backend {a} ({} of {}): this data plane forwards IPv4 only; the port is not \
             served on any VIP, since serving it with its IPv4 backends alone would change how \
             its flows spread",
            ipv6.len(),
            raw.len()
        );
        p.unsupported(site, format!("{at}.backends[{k}].address"), reason);
        return None;
    }
    (!refused).then_some(backends)
}

/// Ranges of either family: an IPv6 range on an IPv4 service is harmless
/// (the data plane's trie is family-tagged) and kept.
fn check_source_ranges(
    at: &str,
    raw: &[v1::IpPrefix],
    site: &Site,
    p: &mut Problems,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (k, r) in raw.iter().enumerate() {
        let field = format!("{at}.source_ranges[{k}]");
        let Some(address) = p.read(
            site,
            format!("{field}.address"),
            fields::address(&r.address),
        ) else {
            continue;
        };
        let (max, family) = if address.is_ipv4() {
            (32, "IPv4")
        } else {
            (128, "IPv6")
        };
        let net = u8::try_from(r.prefix_len)
            .ok()
            .and_then(|len| IpNet::new(address, len).ok());
        let Some(net) = net.filter(|_| r.prefix_len <= max) else {
            let reason = format!("{}: at most {max} for {family}", r.prefix_len);
            p.invalid(site, format!("{field}.prefix_len"), reason);
            continue;
        };
        if net.trunc() != net {
            let reason = format!("{net} has host bits set (the network is {})", net.trunc());
            p.invalid(site, field, reason);
            continue;
        }
        out.push(net);
    }
    out
}

fn check_health(
    at: &str,
    hc: &v1::HealthCheck,
    site: &Site,
    p: &mut Problems,
) -> Option<HealthCheckSpec> {
    let before = p.invalid.len();
    let probe = match &hc.probe {
        None => {
            p.invalid(site, format!("{at}.probe"), "absent: tcp, http or udp");
            None
        }
        Some(v1::health_check::Probe::Tcp(_)) => Some(Probe::Tcp),
        Some(v1::health_check::Probe::Http(h)) => {
            if !h.path.starts_with('/') {
                let reason = format!("{:?} does not start with \"/\"", h.path);
                p.invalid(site, format!("{at}.http.path"), reason);
            }
            let status = u16::try_from(h.expect_status)
                .ok()
                .filter(|s| (100..=599).contains(s));
            if status.is_none() {
                let reason = format!("{}: an HTTP status is 100-599", h.expect_status);
                p.invalid(site, format!("{at}.http.expect_status"), reason);
            }
            status.map(|expect_status| Probe::Http {
                path: h.path.clone(),
                expect_status,
            })
        }
        Some(v1::health_check::Probe::Udp(u)) => {
            for (value, name) in [(&u.payload, "payload"), (&u.expect, "expect")] {
                if value.len() > 512 {
                    let reason = format!("{} bytes; at most 512", value.len());
                    p.invalid(site, format!("{at}.udp.{name}"), reason);
                }
            }
            Some(Probe::Udp {
                payload: u.payload.clone(),
                expect: (!u.expect.is_empty()).then(|| u.expect.clone()),
            })
        }
    };
    for (value, name) in [
        (hc.interval_ms, "interval_ms"),
        (hc.timeout_ms, "timeout_ms"),
        (hc.healthy_threshold, "healthy_threshold"),
        (hc.unhealthy_threshold, "unhealthy_threshold"),
    ] {
        if value == 0 {
            p.invalid(site, format!("{at}.{name}"), "0: at least 1");
        } else if name == "timeout_ms" && hc.interval_ms != 0 && value > hc.interval_ms {
            let reason = format!("{value} is longer than interval_ms {}", hc.interval_ms);
            p.invalid(site, format!("{at}.timeout_ms"), reason);
        }
    }
    let probe = probe.filter(|_| p.invalid.len() == before)?;
    Some(HealthCheckSpec {
        probe,
        interval: Duration::from_millis(hc.interval_ms.into()),
        timeout: Duration::from_millis(hc.timeout_ms.into()),
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
    })
}
