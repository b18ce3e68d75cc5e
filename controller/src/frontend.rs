//! VirtualServers and Services of type LoadBalancer, normalised into one
//! shape the planner works on: a *frontend* (addresses + ports + where the
//! backends come from).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ballast_api::{
    CheckedBackend, CheckedPort, Families, Forwarding, HealthCheckSpec, Protocol,
    ValidationContext, VirtualServer, check,
};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::object_key::{Kind, ObjectKey};

/// `spec.loadBalancerClass` this controller serves.
pub const LOAD_BALANCER_CLASS: &str = "ballast.dev/xdp";
pub const ANNOTATION_POOL: &str = "ballast.dev/address-pool";
pub const ANNOTATION_ADDRESSES: &str = "ballast.dev/addresses";
pub const ANNOTATION_SHARING_KEY: &str = "ballast.dev/sharing-key";
/// Session affinity timeout Kubernetes applies when a Service asks for
/// `ClientIP` affinity without saying how long (3 hours).
const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;

/// Address family of a pool request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// What addresses the object asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressRequest {
    /// Exactly these (`spec.addresses`, annotation, `spec.loadBalancerIP`).
    Specific(Vec<IpAddr>),
    /// One address per family from the named pool, or from any auto-assign
    /// pool admitting the namespace. `families` empty = one address of
    /// whichever family the pool has (IPv4 first).
    Pool {
        pool: Option<String>,
        families: Vec<Family>,
    },
}

/// Where a port's backends listen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendPort {
    Fixed(u16),
    /// The EndpointSlice port with this name ("" for an unnamed port).
    Endpoint(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub backend_port: BackendPort,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSource {
    Static(Vec<CheckedBackend>),
    /// The endpoints of a Service in the frontend's namespace.
    Service {
        name: String,
        /// For a VirtualServer's `serviceRef.port`: which Service port; the
        /// planner resolves it to an EndpointSlice port name. `None` for a
        /// Service frontend, whose ports already name their endpoint ports.
        port: Option<IntOrString>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnounceModes {
    pub l2: bool,
    pub bgp: bool,
}

/// A valid object, ready for address allocation and planning.
#[derive(Clone, Debug, PartialEq)]
pub struct Frontend {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// RFC 3339 creation time; older objects win address and port clashes.
    pub created: String,
    pub request: AddressRequest,
    /// Addresses this object held according to its status: kept if still
    /// valid, which makes allocation survive restarts and leader changes.
    pub previous: Vec<IpAddr>,
    pub sharing_key: Option<String>,
    pub ports: Vec<FrontendPort>,
    pub forwarding: Forwarding,
    pub toa: bool,
    pub persistence_timeout_s: u32,
    pub source_ranges: Vec<IpNet>,
    /// `spec.healthCheck` typed; `None` for Services (Kubernetes readiness
    /// already decides their endpoints) and VirtualServers without one.
    pub health_check: Option<HealthCheckSpec>,
    pub backends: BackendSource,
    pub node_selector: BTreeMap<String, String>,
    pub announce: AnnounceModes,
    /// `externalTrafficPolicy: Local`: only nodes with ready local endpoints
    /// direct, to those endpoints only, keeping the client address.
    pub local_only: bool,
}

/// The result of reading one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Frontend(Box<Frontend>),
    /// Ours, but its spec is unusable: status says why, nothing is served.
    Invalid {
        key: ObjectKey,
        generation: Option<i64>,
        errors: Vec<String>,
        /// Addresses its status records; reserved until it is fixed.
        previous: Vec<IpAddr>,
    },
    /// Not ours (another load-balancer class, not type LoadBalancer).
    NotOurs,
}

fn meta_key(
    kind: Kind,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey::new(
        kind,
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default()
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

fn parse_previous(addresses: impl Iterator<Item = impl AsRef<str>>) -> Vec<IpAddr> {
    // Status is ours, but may have been edited by hand: skip what doesn't parse.
    addresses.filter_map(|a| a.as_ref().parse().ok()).collect()
}

pub fn from_virtual_server(vs: &VirtualServer) -> Source {
    let key = meta_key(Kind::VirtualServer, &vs.metadata);
    let generation = vs.metadata.generation;
    let checked = match check(vs, ValidationContext::Controller, Families::Both) {
        Ok(c) => c,
        Err(e) => {
            return Source::Invalid {
                key,
                generation,
                previous: parse_previous(vs.status.iter().flat_map(|st| st.addresses.iter())),
                errors: e
                    .errors
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.reason))
                    .collect(),
            };
        }
    };
    let request = if checked.addresses.is_empty() {
        AddressRequest::Pool {
            pool: vs.spec.address_pool.clone(),
            families: Vec::new(),
        }
    } else {
        AddressRequest::Specific(checked.addresses.clone())
    };
    let (backends, service_backed) = match &vs.spec.backends.service_ref {
        Some(r) => (
            BackendSource::Service {
                name: r.name.clone(),
                port: Some(r.port.clone()),
            },
            true,
        ),
        None => (
            BackendSource::Static(checked.static_backends.clone()),
            false,
        ),
    };
    let ports = checked
        .ports
        .iter()
        .zip(&vs.spec.ports)
        .map(|(p, raw): (&CheckedPort, _)| FrontendPort {
            name: p.name.clone(),
            port: p.port,
            protocol: p.protocol,
            // With serviceRef an unset targetPort means "the Service's
            // target port", which only the EndpointSlices know; the
            // planner fills the name in.
            backend_port: if service_backed && raw.target_port.is_none() {
                BackendPort::Endpoint(String::new())
            } else {
                BackendPort::Fixed(p.target_port)
            },
        })
        .collect();
    let announce = match &vs.spec.announce {
        None => AnnounceModes {
            l2: true,
            bgp: false,
        },
        Some(a) if a.l2.is_none() && a.bgp.is_none() => AnnounceModes {
            l2: true,
            bgp: false,
        },
        Some(a) => AnnounceModes {
            l2: a.l2.is_some(),
            bgp: a.bgp.is_some(),
        },
    };
    Source::Frontend(Box::new(Frontend {
        key,
        generation,
        created: created(&vs.metadata),
        request,
        previous: parse_previous(vs.status.iter().flat_map(|s| s.addresses.iter())),
        sharing_key: annotation(&vs.metadata, ANNOTATION_SHARING_KEY).map(str::to_string),
        ports,
        forwarding: checked.forwarding,
        toa: checked.toa,
        persistence_timeout_s: checked.persistence_timeout_s,
        source_ranges: checked.source_ranges,
        health_check: checked.health_check,
        backends,
        node_selector: vs.spec.node_selector.clone(),
        announce,
        local_only: false,
    }))
}

/// Whether this Service is ours to load-balance.
pub fn is_our_service(svc: &Service, default_class: bool) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(c) => c == LOAD_BALANCER_CLASS,
        None => default_class,
    }
}

pub fn from_service(svc: &Service, default_class: bool) -> Source {
    if !is_our_service(svc, default_class) {
        return Source::NotOurs;
    }
    let key = meta_key(Kind::Service, &svc.metadata);
    let generation = svc.metadata.generation;
    let spec = svc.spec.as_ref().expect("checked by is_our_service");
    let mut errors = Vec::new();

    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => {
                errors.push(format!(
                    "spec.ports[{i}].protocol: {other} is not supported (only TCP and UDP)"
                ));
                continue;
            }
        };
        let Some(port) = u16::try_from(p.port).ok().filter(|p| *p != 0) else {
            errors.push(format!("spec.ports[{i}].port: {} is out of range", p.port));
            continue;
        };
        let name = p.name.clone().unwrap_or_default();
        ports.push(FrontendPort {
            backend_port: BackendPort::Endpoint(name.clone()),
            name,
            port,
            protocol,
        });
    }
    if ports.is_empty() && errors.is_empty() {
        errors.push("spec.ports: a LoadBalancer Service needs at least one port".into());
    }

    let request = match (
        annotation(&svc.metadata, ANNOTATION_ADDRESSES),
        spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(list), _) => {
            let mut ips = Vec::new();
            for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                match a.parse::<IpAddr>() {
                    Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                    Ok(_) => {}
                    Err(_) => errors.push(format!(
                        "metadata.annotations[{ANNOTATION_ADDRESSES}]: {a:?} is not an IP address"
                    )),
                }
            }
            AddressRequest::Specific(ips)
        }
        (None, Some(ip)) => match ip.parse::<IpAddr>() {
            Ok(ip) => AddressRequest::Specific(vec![ip]),
            Err(_) => {
                errors.push(format!("spec.loadBalancerIP: {ip:?} is not an IP address"));
                AddressRequest::Specific(Vec::new())
            }
        },
        (None, None) => AddressRequest::Pool {
            pool: annotation(&svc.metadata, ANNOTATION_POOL).map(str::to_string),
            families: service_families(spec),
        },
    };

    let mut source_ranges = Vec::new();
    for (i, r) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        match r.trim().parse::<IpNet>() {
            Ok(n) => source_ranges.push(n.trunc()),
            Err(_) => errors.push(format!(
                "spec.loadBalancerSourceRanges[{i}]: {r:?} is not a CIDR"
            )),
        }
    }

    let previous = parse_previous(
        svc.status
            .iter()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .filter_map(|i| i.ip.as_deref()),
    );
    if !errors.is_empty() {
        return Source::Invalid {
            key,
            generation,
            errors,
            previous,
        };
    }
    let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let persistence_timeout_s = if spec.session_affinity.as_deref() == Some("ClientIP") {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S)
    } else {
        0
    };
    Source::Frontend(Box::new(Frontend {
        key: key.clone(),
        generation,
        created: created(&svc.metadata),
        request,
        previous,
        sharing_key: annotation(&svc.metadata, ANNOTATION_SHARING_KEY).map(str::to_string),
        ports,
        // Local keeps the client address: the director rewrites only the
        // destination, to an endpoint on the same node.
        forwarding: if local_only {
            Forwarding::Nat
        } else {
            Forwarding::FullNat
        },
        toa: false,
        persistence_timeout_s,
        source_ranges,
        health_check: None,
        backends: BackendSource::Service {
            name: key.name.to_string(),
            port: None,
        },
        node_selector: BTreeMap::new(),
        announce: AnnounceModes {
            l2: true,
            bgp: false,
        },
        local_only,
    }))
}

/// One address per family the Service asks for (`ipFamilies`, trimmed to
/// one for SingleStack); IPv4 when unset, as for a default cluster.
fn service_families(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<Family> {
    let mut families: Vec<Family> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    if families.is_empty() {
        families.push(Family::V4);
    }
    let single = spec
        .ip_family_policy
        .as_deref()
        .is_none_or(|p| p == "SingleStack");
    if single {
        families.truncate(1);
    }
    families
}
