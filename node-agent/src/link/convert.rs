//! Pure: a received `ballast.v1.NodeState` checked field by field and turned
//! into the typed [`NodeDesired`] the agent core applies, with the names it
//! gives the wire's objects so that apply errors can be put back on the wire
//! naming them (see [`super::wire_errors`]).
//!
//! Two kinds of problem, as the wire's `ServiceErrorKind` has them:
//! - INVALID: the sender broke the contract (`ballast.proto` documents every
//!   rule). The version is refused whole, nothing is applied, and every
//!   problem is listed in wire order, not just the first.
//! - UNSUPPORTED: well-formed, but this data plane cannot do it (it forwards
//!   IPv4 only). That part is skipped and reported; the rest applies.
//!
//! Only what [`NodeDesired`] cannot represent is checked here (address
//! lengths, port and enum ranges, lists the wire may repeat, prefix
//! lengths), plus the health-check and source-range rules, which name the
//! wire field once here instead of once per VIP × port after expansion. The
//! rules on the typed state (TOA needs TCP and FullNAT, one service per VIP,
//! port and protocol, unusable addresses, BGP) stay with
//! [`crate::core::validate`], whose errors `wire_errors` maps.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ballast_api::Protocol;
use ballast_proto::v1;

use crate::core::{Announcements, NodeDesired, Settings};
use fields::{Problems, Site};

mod fields;
mod service;

/// Agent-side defaults filled in where the wire leaves a setting empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// FullNAT sources when the state names none (the node's InternalIP).
    pub snat_addrs: Vec<Ipv4Addr>,
    /// SNAT source ports, inclusive, when the state's range is 0-0.
    pub snat_ports: (u16, u16),
}

/// Object name as `NodeDesired`/`Service.object` carries it -> the wire
/// `ObjectRef` (so errors from apply can be put back on the wire naming the
/// object).
pub type ObjectNames = BTreeMap<String, v1::ObjectRef>;

/// A state the agent can apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// `version` = the state's version.
    pub desired: NodeDesired,
    /// Every object of the state, skipped parts or not.
    pub objects: ObjectNames,
    /// Parts this agent cannot do (IPv6): skipped, reported, the rest
    /// applies. All of kind [`ErrorKind::Unsupported`], in wire order.
    pub unsupported: Vec<ConvertError>,
}

/// Whether a problem refuses the version or only skips a part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed: the whole version is refused.
    Invalid,
    /// Well-formed, beyond this data plane: that part is skipped.
    Unsupported,
}

/// One problem with one field of a received state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {reason}", subject(.object.as_ref()))]
pub struct ConvertError {
    /// The object whose service is at fault, as the wire gave it (even when
    /// the fault is in the reference itself); `None` for node-wide fields
    /// (version, settings, announcements) and a service with no object.
    pub object: Option<v1::ObjectRef>,
    /// The VIP the problem is at, when at one.
    pub vip: Option<IpAddr>,
    /// The frontend port the problem is at; 0: no single port.
    pub port: u16,
    /// The port's protocol, when the problem is at a port that has a valid
    /// one.
    pub protocol: Option<Protocol>,
    pub kind: ErrorKind,
    /// Path from the `NodeState`, e.g.
    /// `services[3].ports[0].backends[2].address`.
    pub field: String,
    pub reason: String,
}

/// `VirtualServer default/web: ` before a field, or nothing.
fn subject(object: Option<&v1::ObjectRef>) -> String {
    object
        .map(|o| format!("{}: ", object_label(o)))
        .unwrap_or_default()
}

/// `VirtualServer ns/name` / `Service ns/name`, as status and logs name a
/// wire object (an unknown kind by its number).
pub fn object_label(o: &v1::ObjectRef) -> String {
    let kind = match v1::ObjectKind::try_from(o.kind) {
        Ok(v1::ObjectKind::VirtualServer) => "VirtualServer".to_string(),
        Ok(v1::ObjectKind::Service) => "Service".to_string(),
        _ => format!("object of kind {}", o.kind),
    };
    format!("{kind} {}/{}", o.namespace, o.name)
}

/// The object's name in a [`NodeDesired`]: `ns/name` for a VirtualServer
/// (as standalone files name them), `Service ns/name` for a Service (the two
/// cannot collide: a namespace has no space). `None` for an unknown kind.
pub fn object_name(o: &v1::ObjectRef) -> Option<String> {
    match v1::ObjectKind::try_from(o.kind) {
        Ok(v1::ObjectKind::VirtualServer) => Some(format!("{}/{}", o.namespace, o.name)),
        Ok(v1::ObjectKind::Service) => Some(format!("Service {}/{}", o.namespace, o.name)),
        _ => None,
    }
}

/// Whole-version conversion. `Err`: the version is refused whole (every
/// INVALID problem listed, in wire order); nothing may be applied.
pub fn node_desired(
    state: &v1::NodeState,
    defaults: &Defaults,
) -> Result<Converted, Vec<ConvertError>> {
    let mut p = Problems::default();
    if state.version == 0 {
        p.invalid(&Site::default(), "version".into(), "0: versions start at 1");
    }
    let settings = settings(state.settings.as_ref(), defaults, &mut p);
    let mut objects = ObjectNames::new();
    let mut first_at = BTreeMap::new();
    let mut services = Vec::new();
    // Every VIP a wire service lists, whether served here or skipped.
    let mut listed = BTreeSet::new();
    for (i, s) in state.services.iter().enumerate() {
        let name = object(i, s.object.as_ref(), &mut first_at, &mut p);
        let expanded = service::expand(i, s, name.as_deref().unwrap_or_default(), &mut p);
        listed.extend(expanded.vips);
        services.extend(expanded.services);
        if let (Some(name), Some(o)) = (name, &s.object) {
            objects.insert(name, o.clone());
        }
    }
    let served: BTreeSet<Ipv4Addr> = services.iter().map(|s| s.vip).collect();
    let announce = match &state.announcements {
        Some(a) => Announcements {
            l2: announced(&a.l2, "l2", &listed, &served, &mut p),
            bgp: announced(&a.bgp, "bgp", &listed, &served, &mut p),
        },
        None => Announcements::default(),
    };
    if !p.invalid.is_empty() {
        return Err(p.invalid);
    }
    Ok(Converted {
        desired: NodeDesired {
            version: state.version,
            settings,
            services,
            announce,
        },
        objects,
        unsupported: p.unsupported,
    })
}

/// One wire service converted on its own, when it has no problem at all
/// (None: it has one, INVALID or UNSUPPORTED): its object's name in the
/// core state and its core services. The fast path of a delta, which
/// converts only what the delta upserts; a part with a problem sends the
/// receiver to [`node_desired`] of the whole state, whose report names
/// every problem where it is in the state.
pub fn clean_service(s: &v1::Service) -> Option<(String, Vec<crate::core::Service>)> {
    let mut p = Problems::default();
    let name = object(0, s.object.as_ref(), &mut BTreeMap::new(), &mut p)?;
    let expanded = service::expand(0, s, &name, &mut p);
    (p.invalid.is_empty() && p.unsupported.is_empty()).then_some((name, expanded.services))
}

/// Node settings converted on their own, when they have no problem (see
/// [`clean_service`]).
pub fn clean_settings(s: Option<&v1::NodeSettings>, defaults: &Defaults) -> Option<Settings> {
    let mut p = Problems::default();
    let out = settings(s, defaults, &mut p);
    (p.invalid.is_empty() && p.unsupported.is_empty()).then_some(out)
}

/// An announced address, when it is one this agent announces as it is
/// (IPv4; see [`clean_service`]). In a state with no problem every IPv4
/// VIP a service lists is served, so an IPv4 announcement converts to
/// itself whatever the services are.
pub fn clean_announced(raw: &[u8]) -> Option<Ipv4Addr> {
    match fields::address(raw) {
        Ok(IpAddr::V4(a)) => Some(a),
        _ => None,
    }
}

/// The object's name, when its reference is complete and its first.
fn object<'s>(
    i: usize,
    o: Option<&'s v1::ObjectRef>,
    first_at: &mut BTreeMap<(i32, &'s str, &'s str), usize>,
    p: &mut Problems,
) -> Option<String> {
    let field = format!("services[{i}].object");
    let Some(o) = o else {
        p.invalid(
            &Site::default(),
            field,
            "absent: every service names its object",
        );
        return None;
    };
    let site = Site::object(Some(o));
    let before = p.invalid.len();
    let name = object_name(o);
    if name.is_none() {
        let value = fields::enum_value(o.kind);
        p.invalid(
            &site,
            format!("{field}.kind"),
            format!("{value}: VIRTUAL_SERVER or SERVICE"),
        );
    }
    if o.namespace.is_empty() {
        p.invalid(&site, format!("{field}.namespace"), "empty");
    }
    if o.name.is_empty() {
        p.invalid(&site, format!("{field}.name"), "empty");
    }
    let key = (o.kind, o.namespace.as_str(), o.name.as_str());
    if let Some(&j) = first_at.get(&key) {
        let reason = format!("listed twice (first at services[{j}]): one service per object");
        p.invalid(&site, field, reason);
    } else {
        first_at.insert(key, i);
    }
    name.filter(|_| p.invalid.len() == before)
}

/// Node settings, the agent's defaults filling what the wire leaves empty.
fn settings(s: Option<&v1::NodeSettings>, defaults: &Defaults, p: &mut Problems) -> Settings {
    let Some(s) = s else {
        return Settings {
            snat_addrs: defaults.snat_addrs.clone(),
            snat_ports: defaults.snat_ports,
        };
    };
    let node = Site::default();
    let mut snat_addrs = Vec::new();
    for (k, raw) in s.snat_addresses.iter().enumerate() {
        let field = format!("settings.snat_addresses[{k}]");
        match p.read(&node, field.clone(), fields::address(raw)) {
            None => {}
            Some(IpAddr::V4(a)) => snat_addrs.push(a),
            // An IPv6-only list leaves none: FullNAT services are then
            // refused by core validation (NoSnatAddress), rather than
            // sourced from the node's default the controller did not choose.
            Some(IpAddr::V6(a)) => p.unsupported(
                &node,
                field,
                format!("IPv6 SNAT address {a}: this data plane forwards IPv4 only; not used"),
            ),
        }
    }
    if s.snat_addresses.is_empty() {
        snat_addrs = defaults.snat_addrs.clone();
    }
    Settings {
        snat_addrs,
        snat_ports: snat_ports(s.snat_port_min, s.snat_port_max, defaults, p),
    }
}

fn snat_ports(min: u32, max: u32, defaults: &Defaults, p: &mut Problems) -> (u16, u16) {
    if (min, max) == (0, 0) {
        return defaults.snat_ports;
    }
    let node = Site::default();
    let lo = p.read(
        &node,
        "settings.snat_port_min".into(),
        fields::port(min).map_err(|e| format!("{e}, or 0 together with snat_port_max 0")),
    );
    let hi = p.read(&node, "settings.snat_port_max".into(), fields::port(max));
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi >= lo => (lo, hi),
        (Some(lo), Some(hi)) => {
            let reason = format!("{hi} is below snat_port_min {lo}");
            p.invalid(&node, "settings.snat_port_max".into(), reason);
            (lo, hi)
        }
        _ => defaults.snat_ports,
    }
}

/// One announcement list. IPv6 VIPs and VIPs whose every service was
/// skipped are dropped (reported): announcing what this node does not
/// direct would draw traffic it drops. A VIP no wire service lists is kept
/// for core validation to refuse (the sender's mistake, not our limit).
fn announced(
    list: &[Vec<u8>],
    name: &str,
    listed: &BTreeSet<IpAddr>,
    served: &BTreeSet<Ipv4Addr>,
    p: &mut Problems,
) -> BTreeSet<Ipv4Addr> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    for (k, raw) in list.iter().enumerate() {
        let field = format!("announcements.{name}[{k}]");
        let Some(ip) = p.read(&Site::default(), field.clone(), fields::address(raw)) else {
            continue;
        };
        let site = Site::default().at_vip(ip);
        if !seen.insert(ip) {
            p.invalid(&site, field, "listed twice");
            continue;
        }
        match ip {
            IpAddr::V6(_) => p.unsupported(
                &site,
                field,
                "IPv6 VIP: this data plane forwards IPv4 only; not announced",
            ),
            IpAddr::V4(v4) if listed.contains(&ip) && !served.contains(&v4) => p.unsupported(
                &site,
                field,
                "every service of this VIP is skipped (see their errors); not announced",
            ),
            IpAddr::V4(v4) => {
                out.insert(v4);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
