//! Backends from EndpointSlices: which endpoints of a Service port exist,
//! which receive new flows and which only drain.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use ballast_api::Protocol;

/// Label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One endpoint of one port, borrowing its node name from the slice (the
/// planner builds 100k of these per full plan and keeps none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint<'a> {
    pub address: IpAddr,
    pub port: u16,
    /// Receives new flows. Endpoints that are not ready (terminating, or
    /// failing readiness) are kept with weight 0 so their open flows finish.
    pub ready: bool,
    pub node: Option<&'a str>,
}

/// EndpointSlices grouped by namespace, then service name (nested so that
/// lookups need no owned key).
#[derive(Clone, Debug, Default)]
pub struct EndpointIndex {
    by_service: HashMap<String, HashMap<String, Vec<Arc<EndpointSlice>>>>,
}

impl EndpointIndex {
    pub fn build(slices: &[Arc<EndpointSlice>]) -> Self {
        let mut idx = EndpointIndex::default();
        for s in slices {
            idx.insert(s.clone());
        }
        idx
    }

    /// The (namespace, service) a slice belongs to.
    pub fn owner(slice: &EndpointSlice) -> Option<(String, String)> {
        let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some((
            slice.metadata.namespace.clone().unwrap_or_default(),
            svc.clone(),
        ))
    }

    /// Adds or replaces (by name) a slice; returns its service.
    pub fn insert(&mut self, slice: Arc<EndpointSlice>) -> Option<(String, String)> {
        let owner = Self::owner(&slice)?;
        let list = self
            .by_service
            .entry(owner.0.clone())
            .or_default()
            .entry(owner.1.clone())
            .or_default();
        match list
            .iter_mut()
            .find(|s| s.metadata.name == slice.metadata.name)
        {
            Some(old) => *old = slice,
            None => list.push(slice),
        }
        Some(owner)
    }

    /// Removes a slice by identity; returns its service.
    pub fn remove(&mut self, slice: &EndpointSlice) -> Option<(String, String)> {
        let owner = Self::owner(slice)?;
        if let Some(list) = self
            .by_service
            .get_mut(&owner.0)
            .and_then(|m| m.get_mut(&owner.1))
        {
            list.retain(|s| s.metadata.name != slice.metadata.name);
        }
        Some(owner)
    }

    /// Endpoints of `port_name` ("" for an unnamed port) of the Service,
    /// with `fixed_port` overriding the slice's port number when given.
    /// Sorted and de-duplicated: a slice migration can list one endpoint
    /// twice, and the ready copy wins.
    pub fn endpoints(
        &self,
        namespace: &str,
        service: &str,
        port_name: &str,
        protocol: Protocol,
        fixed_port: Option<u16>,
    ) -> Vec<Endpoint<'_>> {
        let Some(slices) = self.by_service.get(namespace).and_then(|m| m.get(service)) else {
            return Vec::new();
        };
        let mut out: Vec<Endpoint> = Vec::new();
        for slice in slices {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue; // FQDN slices name hosts, not addresses
            }
            let Some(slice_port) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && protocol_matches(p.protocol.as_deref(), protocol)
            }) else {
                continue;
            };
            let Some(port) = fixed_port.or_else(|| {
                slice_port
                    .port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
            }) else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                // Nil `ready` means "unknown", which consumers must treat as
                // ready (EndpointConditions API doc).
                let ready = c.and_then(|c| c.ready).unwrap_or(true)
                    && !c.and_then(|c| c.terminating).unwrap_or(false);
                for a in &ep.addresses {
                    let Ok(address) = a.parse::<IpAddr>() else {
                        continue;
                    };
                    out.push(Endpoint {
                        address,
                        port,
                        ready,
                        node: ep.node_name.as_deref(),
                    });
                }
            }
        }
        // Ready copies sort first within an (address, port), so dedup keeps them.
        out.sort_by_key(|e| (e.address, e.port, !e.ready));
        out.dedup_by(|later, first| later.address == first.address && later.port == first.port);
        out
    }
}

fn protocol_matches(slice: Option<&str>, want: Protocol) -> bool {
    match slice.unwrap_or("TCP") {
        "TCP" => want == Protocol::Tcp,
        "UDP" => want == Protocol::Udp,
        _ => false,
    }
}

/// Why a `serviceRef` cannot be followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceRefError {
    #[error("Service {0} does not exist")]
    ServiceNotFound(String),
    #[error("Service {service} has no port {port}")]
    PortNotFound { service: String, port: String },
}

/// Resolves `serviceRef.port` (number or name) to the Service port's name,
/// which is what its EndpointSlice ports are called.
pub fn service_port_name(
    service: Option<&Service>,
    name: &str,
    port: &IntOrString,
) -> Result<String, ServiceRefError> {
    let svc = service.ok_or_else(|| ServiceRefError::ServiceNotFound(name.to_string()))?;
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let found = ports.into_iter().flatten().find(|p| match port {
        IntOrString::Int(n) => p.port == *n,
        IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
    });
    match found {
        Some(p) => Ok(p.name.clone().unwrap_or_default()),
        None => Err(ServiceRefError::PortNotFound {
            service: name.to_string(),
            port: match port {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            },
        }),
    }
}
