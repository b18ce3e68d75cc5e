//! Semantic validation of `VirtualServer` objects and their normalisation into
//! the per-(VIP, port) entries the data plane programs.
//!
//! Everything here is pure so the node agent (standalone mode), the controller
//! and tests all apply exactly the same rules.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use std::sync::OnceLock;

pub use crate::health::{HealthCheckSpec, Probe};
use crate::virtual_server::{
    ClientAddressMode, ForwardingMode, PortProtocol, SCHEDULER_MAGLEV, VirtualServer,
    VirtualServerSpec,
};

pub const API_VERSION: &str = "ballast.dev/v1alpha1";
pub const KIND: &str = "VirtualServer";

/// Upper bound for `spec.persistence.timeoutSeconds` (7 days).
pub const MAX_PERSISTENCE_TIMEOUT_S: i64 = 7 * 86_400;

/// Upper bound for a backend weight; keeps weight sums far from overflowing
/// the Maglev credit arithmetic and matches the 16-bit weight of IPVS tools
/// people port configurations from.
pub const MAX_WEIGHT: i64 = 65_535;

/// Transport protocol of a data-plane service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forwarding {
    FullNat,
    Dr,
    Nat,
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forwarding::FullNat => "FullNAT",
            Forwarding::Dr => "DR",
            Forwarding::Nat => "NAT",
        })
    }
}

impl From<ForwardingMode> for Forwarding {
    fn from(m: ForwardingMode) -> Self {
        match m {
            ForwardingMode::FullNat => Forwarding::FullNat,
            ForwardingMode::Dr => Forwarding::Dr,
            ForwardingMode::Nat => Forwarding::Nat,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    pub address: Ipv4Addr,
    /// 0 = draining: keeps existing connections, receives no new ones.
    pub weight: u32,
}

/// One (VIP, port, protocol) the data plane serves, fully defaulted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    /// `namespace/name` of the VirtualServer this came from.
    pub object: String,
    /// `spec.ports[].name`, or empty when the port is unnamed.
    pub port_name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: u16,
    pub forwarding: Forwarding,
    /// Insert the client address as a TCP option (FullNAT + TCP only).
    pub toa: bool,
    /// 0 = no client affinity.
    pub persistence_timeout_s: u32,
    /// Clients allowed to start a flow (`spec.sourceRanges`, host bits
    /// cleared); empty admits everyone.
    pub source_ranges: Vec<IpNet>,
    /// Empty for `serviceRef` objects validated in [`Mode::Controller`]; the
    /// controller fills them from the Service's endpoints.
    pub backends: Vec<BackendSpec>,
    /// `spec.healthCheck`, defaulted; none = every backend is used.
    pub health_check: Option<HealthCheckSpec>,
}

/// A single problem at one field of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path in the object, e.g. `spec.ports[1].targetPort`.
    pub field: String,
    pub reason: String,
}

/// Every problem found in one object; validation never stops at the first one
/// so a user fixes a file in one round trip.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// `namespace/name`.
    pub object: String,
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    /// One self-contained line per problem, for logs and status messages.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.errors
            .iter()
            .map(|e| format!("{}: {}: {}", self.object, e.field, e.reason))
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "{}: invalid", self.object);
        }
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

/// Where the backends of an object come from, which decides whether
/// `serviceRef` is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Files on a node: nothing can resolve a Service, so only `static` works.
    Standalone,
    /// The controller resolves `serviceRef` to endpoints itself.
    Controller,
}

/// Validates in [`Mode::Standalone`] — the strict default, so a caller that
/// does not think about modes never silently gets a service with no backends.
pub fn validate(vs: &VirtualServer) -> Result<Vec<ServiceSpec>, ValidationError> {
    validate_with(vs, Mode::Standalone)
}

/// Same as [`validate`]; named for call sites that want to be explicit.
pub fn validate_standalone(vs: &VirtualServer) -> Result<Vec<ServiceSpec>, ValidationError> {
    validate_with(vs, Mode::Standalone)
}

/// An object that passed every rule, normalised but not yet expanded into
/// per-(VIP, port) entries. IPv4 and IPv6 both pass here: the controller
/// plans either family; [`validate_with`] is where the data plane's IPv4-only
/// limit is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedSpec {
    /// `namespace/name`.
    pub object: String,
    /// `spec.addresses` parsed, in order; may be empty in [`Mode::Controller`]
    /// (the controller allocates).
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<CheckedPort>,
    pub forwarding: Forwarding,
    /// `clientAddress: TOA` (applies to the TCP ports only).
    pub toa: bool,
    /// 0 = no client affinity.
    pub persistence_timeout_s: u32,
    pub source_ranges: Vec<IpNet>,
    /// `spec.backends.static`; empty for `serviceRef`.
    pub static_backends: Vec<CheckedBackend>,
    pub health_check: Option<HealthCheckSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckedPort {
    /// Empty when the port is unnamed.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckedBackend {
    pub address: IpAddr,
    /// 0 = draining.
    pub weight: u32,
}

/// Checks every rule of `vs` (collecting all problems) and returns it
/// normalised.
pub fn check(vs: &VirtualServer, mode: Mode) -> Result<CheckedSpec, ValidationError> {
    check_families(vs, mode, Families::Both)
}

/// Which address families the caller can serve.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Families {
    Both,
    /// The data plane: IPv6 addresses are errors, reported with the others.
    Ipv4Only,
}

/// The namespace an object is in: `default` when unset, as the apiserver
/// defaults it.
fn namespace_of(vs: &VirtualServer) -> &str {
    vs.metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// `namespace/name`, the name every error and status uses for an object;
/// `None` without a name (validation then reports `metadata.name`).
pub fn object_key(vs: &VirtualServer) -> Option<String> {
    let name = vs.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    Some(format!("{}/{name}", namespace_of(vs)))
}

fn check_families(
    vs: &VirtualServer,
    mode: Mode,
    families: Families,
) -> Result<CheckedSpec, ValidationError> {
    let name = vs.metadata.name.as_deref().filter(|n| !n.is_empty());
    let object = object_key(vs).unwrap_or_else(|| format!("{}/<unnamed>", namespace_of(vs)));
    let mut errs = Errors::default();

    if name.is_none() {
        errs.push("metadata.name", "required");
    }
    let spec = &vs.spec;
    let addresses = check_addresses(spec, mode, families, &mut errs);
    let ports = check_ports(spec, &mut errs);
    check_general(spec, &mut errs);
    let static_backends = check_backends(spec, mode, families, &addresses, &mut errs);
    let source_ranges = crate::checks::source_ranges(&spec.source_ranges, &mut errs);
    let health_check = crate::checks::health_check(spec.health_check.as_ref(), &mut errs);
    crate::checks::node_selector(&spec.node_selector, &mut errs);
    crate::checks::address_pool(spec, mode, &mut errs);
    crate::checks::announce(spec, mode, &mut errs);

    if !errs.0.is_empty() {
        return Err(ValidationError {
            object,
            errors: errs.0,
        });
    }
    Ok(CheckedSpec {
        object,
        addresses,
        ports,
        forwarding: Forwarding::from(spec.forwarding),
        toa: spec.client_address == ClientAddressMode::Toa,
        persistence_timeout_s: spec
            .persistence
            .as_ref()
            .map_or(0, |p| p.timeout_seconds as u32),
        source_ranges,
        static_backends,
        health_check,
    })
}

/// Checks every rule and, if all pass, returns one [`ServiceSpec`] per
/// address × port, in `spec.addresses` then `spec.ports` order. The data
/// plane is IPv4-only for now, so IPv6 addresses are errors here.
pub fn validate_with(vs: &VirtualServer, mode: Mode) -> Result<Vec<ServiceSpec>, ValidationError> {
    let checked = check_families(vs, mode, Families::Ipv4Only)?;
    let v4 = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => *v4,
        IpAddr::V6(_) => unreachable!("Families::Ipv4Only rejected IPv6"),
    };
    let backends: Vec<BackendSpec> = checked
        .static_backends
        .iter()
        .map(|b| BackendSpec {
            address: v4(&b.address),
            weight: b.weight,
        })
        .collect();
    let mut out = Vec::with_capacity(checked.addresses.len() * checked.ports.len());
    for vip in &checked.addresses {
        for p in &checked.ports {
            out.push(ServiceSpec {
                object: checked.object.clone(),
                port_name: p.name.clone(),
                vip: v4(vip),
                port: p.port,
                protocol: p.protocol,
                target_port: p.target_port,
                forwarding: checked.forwarding,
                toa: checked.toa && p.protocol == Protocol::Tcp,
                persistence_timeout_s: checked.persistence_timeout_s,
                source_ranges: checked.source_ranges.clone(),
                backends: backends.clone(),
                health_check: checked.health_check.clone(),
            });
        }
    }
    Ok(out)
}

/// Finds (VIP, port, protocol) triples claimed by more than one object. The
/// first claimant in `specs` order keeps it; each later object gets one
/// [`ValidationError`] listing everything it lost, naming the owner, so the
/// caller can drop that whole object rather than serve half of it.
pub fn check_conflicts(specs: &[ServiceSpec]) -> Vec<ValidationError> {
    let mut owners: HashMap<(Ipv4Addr, u16, Protocol), &str> = HashMap::new();
    let mut out: Vec<ValidationError> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for s in specs {
        let key = (s.vip, s.port, s.protocol);
        let Some(owner) = owners.get(&key).copied() else {
            owners.insert(key, &s.object);
            continue;
        };
        let endpoint = format!("{}:{}/{}", s.vip, s.port, s.protocol);
        let reason = if owner == s.object {
            format!("{endpoint} is listed more than once")
        } else {
            format!("{endpoint} is already claimed by {owner}")
        };
        let i = *index.entry(&s.object).or_insert_with(|| {
            out.push(ValidationError {
                object: s.object.clone(),
                errors: Vec::new(),
            });
            out.len() - 1
        });
        out[i].errors.push(FieldError {
            field: "spec".to_string(),
            reason,
        });
    }
    out
}

/// Parses one YAML document as a `VirtualServer`, rejecting other kinds and
/// unknown `spec` fields.
///
/// Unknown fields are rejected here, not by `deny_unknown_fields`, because
/// objects read back from a cluster may legitimately carry fields from newer
/// schema versions, while in a hand-written file an unknown field is almost
/// always a typo that would otherwise be silently ignored.
///
/// Serde errors keep their `at line L column C` suffix; pad `doc` with leading
/// newlines to make those lines match an enclosing file.
pub fn parse_yaml(doc: &str) -> Result<VirtualServer, String> {
    let raw: serde_yaml::Value = serde_yaml::from_str(doc).map_err(|e| e.to_string())?;
    let serde_yaml::Value::Mapping(map) = &raw else {
        return Err(format!(
            "expected a {KIND} object (a mapping), found {}",
            value_kind(&raw)
        ));
    };
    let kind = map.get("kind").and_then(|v| v.as_str());
    let api_version = map.get("apiVersion").and_then(|v| v.as_str());
    match kind {
        None => return Err(format!("missing kind (expected {KIND})")),
        Some(k) if k != KIND => {
            return Err(format!(
                "kind {k} is not supported (expected {KIND}, apiVersion {API_VERSION})"
            ));
        }
        Some(_) => {}
    }
    match api_version {
        None => return Err(format!("missing apiVersion (expected {API_VERSION})")),
        Some(a) if a != API_VERSION => {
            return Err(format!(
                "apiVersion {a} is not supported for kind {KIND} (expected {API_VERSION})"
            ));
        }
        Some(_) => {}
    }

    // Parsed from the text again (not from `raw`) so serde errors keep line
    // and column information.
    let vs: VirtualServer = serde_yaml::from_str(doc).map_err(|e| e.to_string())?;

    let mut unknown = Vec::new();
    if let Some(spec) = map.get("spec") {
        let schema = spec_schema();
        find_unknown("spec", spec, schema, schema, &mut unknown);
    }
    if !unknown.is_empty() {
        return Err(unknown.join("; "));
    }
    Ok(vs)
}

/// The JSON schema of the spec is the one list of field names that cannot
/// drift from the types, so unknown-field detection walks it.
fn spec_schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| schemars::schema_for!(VirtualServerSpec).to_value())
}

/// Follows `$ref` and the `anyOf` schemars emits for `Option<T>` to the node
/// that actually describes the value's shape.
fn resolve<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if let Some(r) = n.get("$ref").and_then(|r| r.as_str())
            && let Some(name) = r.strip_prefix("#/$defs/")
            && let Some(def) = root.get("$defs").and_then(|d| d.get(name))
        {
            stack.push(def);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = n.get(key).and_then(|b| b.as_array()) {
                stack.extend(branches);
            }
        }
        out.push(n);
    }
    out
}

fn find_unknown(
    path: &str,
    raw: &serde_yaml::Value,
    root: &serde_json::Value,
    schema: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_yaml::Value;
    let nodes = resolve(root, schema);
    match raw {
        Value::Mapping(r) => {
            let Some(props) = nodes
                .iter()
                .find_map(|n| n.get("properties").and_then(|p| p.as_object()))
            else {
                return;
            };
            for (key, value) in r {
                let Some(key_str) = key.as_str() else {
                    out.push(format!("{path}: unexpected non-string key {key:?}"));
                    continue;
                };
                match props.get(key_str) {
                    Some(sub) => find_unknown(&format!("{path}.{key_str}"), value, root, sub, out),
                    None => {
                        let hint = props
                            .keys()
                            .find(|c| normalise_key(c) == normalise_key(key_str))
                            .map(|c| format!(" (did you mean {c}?)"))
                            .unwrap_or_default();
                        out.push(format!("{path}.{key_str}: unknown field{hint}"));
                    }
                }
            }
        }
        Value::Sequence(r) => {
            let Some(items) = nodes.iter().find_map(|n| n.get("items")) else {
                return;
            };
            for (i, rv) in r.iter().enumerate() {
                find_unknown(&format!("{path}[{i}]"), rv, root, items, out);
            }
        }
        _ => {}
    }
}

fn normalise_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn value_kind(v: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value;
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }
}

const IPV6_UNSUPPORTED: &str = "IPv6 is not supported by the data plane yet";

/// Rejects addresses that can never be a unicast endpoint; programming them
/// would black-hole traffic without any visible error.
pub(crate) fn unicast_problem(ip: IpAddr) -> Option<String> {
    if ip.is_unspecified() {
        Some(format!("{ip} is the unspecified address"))
    } else if ip.is_multicast() {
        Some(format!("{ip} is a multicast address"))
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some(format!("{ip} is the broadcast address"))
    } else {
        None
    }
}

fn check_addresses(
    spec: &VirtualServerSpec,
    mode: Mode,
    families: Families,
    errs: &mut Errors,
) -> Vec<IpAddr> {
    if spec.addresses.is_empty() && mode == Mode::Standalone {
        errs.push("spec.addresses", "at least one address is required");
    }
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    let mut vips = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        let ip = match a.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                errs.push(field, format!("{a:?} is not an IP address"));
                continue;
            }
        };
        // Compared as parsed addresses so that different spellings of the
        // same IPv6 address are caught too.
        if let Some(j) = seen.get(&ip) {
            errs.push(field, format!("duplicate of spec.addresses[{j}] ({ip})"));
            continue;
        }
        seen.insert(ip, i);
        if ip.is_ipv6() && families == Families::Ipv4Only {
            errs.push(field, IPV6_UNSUPPORTED);
        } else if let Some(p) = unicast_problem(ip) {
            errs.push(field, p);
        } else {
            vips.push(ip);
        }
    }
    vips
}

fn check_ports(spec: &VirtualServerSpec, errs: &mut Errors) -> Vec<CheckedPort> {
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

fn check_general(spec: &VirtualServerSpec, errs: &mut Errors) {
    if spec.client_address == ClientAddressMode::Toa && spec.forwarding != ForwardingMode::FullNat {
        errs.push(
            "spec.clientAddress",
            format!(
                "TOA requires FullNAT forwarding ({} already delivers the client address unchanged)",
                Forwarding::from(spec.forwarding)
            ),
        );
    }
    if spec.scheduler != SCHEDULER_MAGLEV {
        errs.push(
            "spec.scheduler",
            format!(
                "scheduler {:?} is not supported (only {SCHEDULER_MAGLEV})",
                spec.scheduler
            ),
        );
    }
    if let Some(p) = &spec.persistence {
        let t = p.timeout_seconds;
        if t < 0 {
            errs.push(
                "spec.persistence.timeoutSeconds",
                format!("{t} is negative"),
            );
        } else if t > MAX_PERSISTENCE_TIMEOUT_S {
            errs.push(
                "spec.persistence.timeoutSeconds",
                format!(
                    "{t} exceeds {MAX_PERSISTENCE_TIMEOUT_S} (7 days): affinity that long pins \
                     clients to one backend indefinitely, so weight changes and drains stop \
                     taking effect and the affinity entries are never reclaimed"
                ),
            );
        }
    }
}

fn check_backends(
    spec: &VirtualServerSpec,
    mode: Mode,
    families: Families,
    vips: &[IpAddr],
    errs: &mut Errors,
) -> Vec<CheckedBackend> {
    let family_word = match families {
        Families::Both => "an IP address",
        Families::Ipv4Only => "an IPv4 address",
    };
    let b = &spec.backends;
    match (&b.static_backends, &b.service_ref) {
        (Some(_), Some(_)) => errs.push(
            "spec.backends",
            "static and serviceRef are mutually exclusive; set exactly one",
        ),
        (None, None) => errs.push("spec.backends", "one of static or serviceRef is required"),
        (None, Some(r)) => match mode {
            Mode::Standalone => errs.push(
                "spec.backends.serviceRef",
                "serviceRef is not supported in standalone mode; list the backends under \
                 spec.backends.static",
            ),
            Mode::Controller => {
                if r.name.is_empty() {
                    errs.push("spec.backends.serviceRef.name", "required");
                }
            }
        },
        (Some(_), None) => {}
    }

    let mut out = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    // Checked even when combined with serviceRef, so all problems surface at once.
    for (i, be) in b.static_backends.iter().flatten().enumerate() {
        let base = format!("spec.backends.static[{i}]");
        let mut address = None;
        match be.address.parse::<IpAddr>() {
            Err(_) => errs.push(
                format!("{base}.address"),
                format!("{:?} is not {family_word}", be.address),
            ),
            Ok(ip) => {
                if let Some(j) = seen.get(&ip) {
                    errs.push(
                        format!("{base}.address"),
                        format!("duplicate of spec.backends.static[{j}] ({ip})"),
                    );
                } else {
                    seen.insert(ip, i);
                    if ip.is_ipv6() && families == Families::Ipv4Only {
                        errs.push(format!("{base}.address"), IPV6_UNSUPPORTED);
                    } else if let Some(p) = crate::checks::backend_address(ip) {
                        errs.push(format!("{base}.address"), p);
                    } else if vips.contains(&ip) {
                        // The balancer would forward the packet to itself.
                        errs.push(
                            format!("{base}.address"),
                            format!("{ip} is also a VIP of this VirtualServer"),
                        );
                    } else {
                        address = Some(ip);
                    }
                }
            }
        }
        let weight = u32::try_from(be.weight)
            .ok()
            .filter(|w| i64::from(*w) <= MAX_WEIGHT);
        if weight.is_none() {
            errs.push(
                format!("{base}.weight"),
                format!("weight {} is out of range 0..={MAX_WEIGHT}", be.weight),
            );
        }
        if let (Some(address), Some(weight)) = (address, weight) {
            out.push(CheckedBackend { address, weight });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtual_server::{ServiceRef, StaticBackend, VirtualServerPort};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// The example from the VirtualServer design, verbatim.
    const EXAMPLE: &str = r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: web, namespace: default}
spec:
  addresses: [203.0.113.10]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}   # targetPort defaults to port
  forwarding: FullNAT          # FullNAT | DR | NAT   (default FullNAT)
  scheduler: Maglev            # only Maglev for now (default Maglev)
  clientAddress: TOA           # TOA | None (FullNAT only) (default None)
  persistence: {timeoutSeconds: 0}   # optional
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}   # weight defaults to 1; weight 0 = drain
"#;

    fn example() -> VirtualServer {
        parse_yaml(EXAMPLE).expect("example parses")
    }

    fn port(
        name: Option<&str>,
        port: i32,
        protocol: PortProtocol,
        target: Option<i32>,
    ) -> VirtualServerPort {
        VirtualServerPort {
            name: name.map(str::to_string),
            port,
            protocol,
            target_port: target,
        }
    }

    fn backend(address: &str, weight: i64) -> StaticBackend {
        StaticBackend {
            address: address.to_string(),
            weight,
        }
    }

    #[test]
    fn example_yields_one_service() {
        let specs = validate(&example()).expect("example is valid");
        assert_eq!(
            specs,
            vec![ServiceSpec {
                object: "default/web".into(),
                port_name: "http".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
                target_port: 8080,
                forwarding: Forwarding::FullNat,
                toa: true,
                persistence_timeout_s: 0,
                source_ranges: vec![],
                backends: vec![BackendSpec {
                    address: Ipv4Addr::new(198, 51, 100, 11),
                    weight: 1,
                }],
                health_check: None,
            }]
        );
    }

    #[test]
    fn defaults_apply() {
        let vs = parse_yaml(
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
            (specs[0].port, specs[0].target_port, specs[0].protocol),
            (53, 53, Protocol::Udp)
        );
        assert_eq!(
            (specs[1].port, specs[1].target_port, specs[1].protocol),
            (80, 80, Protocol::Tcp)
        );
        assert_eq!(specs[1].port_name, "");
        assert!(!specs[1].toa);
        assert_eq!(specs[0].backends[0].weight, 1);
    }

    #[test]
    fn one_spec_per_address_and_port() {
        let mut vs = example();
        vs.spec.addresses = vec!["203.0.113.10".into(), "203.0.113.11".into()];
        vs.spec
            .ports
            .push(port(Some("https"), 443, PortProtocol::Tcp, None));
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

    type Mutation = fn(&mut VirtualServer);

    /// Each case breaks exactly one rule of an otherwise valid object and
    /// names the field and a fragment of the reason it must be reported with.
    const INVALID: &[(&str, Mutation, &str, &str)] = &[
        (
            "name missing",
            |vs| vs.metadata.name = None,
            "metadata.name",
            "required",
        ),
        (
            "no addresses",
            |vs| vs.spec.addresses.clear(),
            "spec.addresses",
            "at least one address",
        ),
        (
            "unparsable address",
            |vs| vs.spec.addresses = vec!["web.example".into()],
            "spec.addresses[0]",
            "is not an IP address",
        ),
        (
            "cidr address",
            |vs| vs.spec.addresses = vec!["203.0.113.10/32".into()],
            "spec.addresses[0]",
            "is not an IP address",
        ),
        (
            "ipv6 address",
            |vs| vs.spec.addresses = vec!["2001:db8::1".into()],
            "spec.addresses[0]",
            "IPv6 is not supported by the data plane yet",
        ),
        (
            "duplicate address",
            |vs| vs.spec.addresses.push("203.0.113.10".into()),
            "spec.addresses[1]",
            "duplicate of spec.addresses[0]",
        ),
        (
            "unspecified address",
            |vs| vs.spec.addresses = vec!["0.0.0.0".into()],
            "spec.addresses[0]",
            "unspecified",
        ),
        (
            "multicast address",
            |vs| vs.spec.addresses = vec!["239.1.1.1".into()],
            "spec.addresses[0]",
            "multicast",
        ),
        (
            "no ports",
            |vs| vs.spec.ports.clear(),
            "spec.ports",
            "at least one port",
        ),
        (
            "port zero",
            |vs| vs.spec.ports[0].port = 0,
            "spec.ports[0].port",
            "port 0 is out of range 1..=65535",
        ),
        (
            "port too big",
            |vs| vs.spec.ports[0].port = 65536,
            "spec.ports[0].port",
            "port 65536 is out of range",
        ),
        (
            "target port zero",
            |vs| vs.spec.ports[0].target_port = Some(0),
            "spec.ports[0].targetPort",
            "targetPort 0 is out of range",
        ),
        (
            "target port too big",
            |vs| vs.spec.ports[0].target_port = Some(70000),
            "spec.ports[0].targetPort",
            "targetPort 70000 is out of range",
        ),
        (
            "sctp",
            |vs| vs.spec.ports[0].protocol = PortProtocol::Sctp,
            "spec.ports[0].protocol",
            "SCTP is not supported",
        ),
        (
            "duplicate port",
            |vs| {
                vs.spec
                    .ports
                    .push(port(Some("other"), 80, PortProtocol::Tcp, None))
            },
            "spec.ports[1].port",
            "port 80/TCP is already defined by spec.ports[0]",
        ),
        (
            "duplicate port name",
            |vs| {
                vs.spec
                    .ports
                    .push(port(Some("http"), 81, PortProtocol::Tcp, None))
            },
            "spec.ports[1].name",
            "duplicate port name \"http\"",
        ),
        (
            "empty port name",
            |vs| vs.spec.ports[0].name = Some(String::new()),
            "spec.ports[0].name",
            "must not be empty",
        ),
        (
            "toa with dr",
            |vs| {
                vs.spec.forwarding = ForwardingMode::Dr;
                vs.spec.ports[0].target_port = None;
            },
            "spec.clientAddress",
            "TOA requires FullNAT forwarding (DR",
        ),
        (
            "toa with nat",
            |vs| vs.spec.forwarding = ForwardingMode::Nat,
            "spec.clientAddress",
            "TOA requires FullNAT forwarding (NAT",
        ),
        (
            "toa with udp",
            |vs| {
                vs.spec
                    .ports
                    .push(port(Some("dns"), 53, PortProtocol::Udp, None))
            },
            "spec.ports[1].protocol",
            "cannot be used with UDP",
        ),
        (
            "dr changes port",
            |vs| {
                vs.spec.forwarding = ForwardingMode::Dr;
                vs.spec.client_address = ClientAddressMode::None;
            },
            "spec.ports[0].targetPort",
            "DR forwarding cannot change the port (targetPort 8080 != port 80)",
        ),
        (
            "scheduler",
            |vs| vs.spec.scheduler = "RoundRobin".into(),
            "spec.scheduler",
            "\"RoundRobin\" is not supported (only Maglev)",
        ),
        (
            "persistence too long",
            |vs| vs.spec.persistence.as_mut().unwrap().timeout_seconds = 604_801,
            "spec.persistence.timeoutSeconds",
            "exceeds 604800 (7 days)",
        ),
        (
            "persistence negative",
            |vs| vs.spec.persistence.as_mut().unwrap().timeout_seconds = -1,
            "spec.persistence.timeoutSeconds",
            "negative",
        ),
        (
            "static and serviceRef",
            |vs| {
                vs.spec.backends.service_ref = Some(ServiceRef {
                    name: "web".into(),
                    port: IntOrString::Int(80),
                })
            },
            "spec.backends",
            "mutually exclusive",
        ),
        (
            "no backends",
            |vs| vs.spec.backends.static_backends = None,
            "spec.backends",
            "one of static or serviceRef is required",
        ),
        (
            "serviceRef standalone",
            |vs| {
                vs.spec.backends.static_backends = None;
                vs.spec.backends.service_ref = Some(ServiceRef {
                    name: "web".into(),
                    port: IntOrString::String("http".into()),
                });
            },
            "spec.backends.serviceRef",
            "not supported in standalone mode",
        ),
        (
            "backend unparsable",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("backend-1", 1)]),
            "spec.backends.static[0].address",
            "\"backend-1\" is not an IPv4 address",
        ),
        (
            "backend ipv6",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("2001:db8::2", 1)]),
            "spec.backends.static[0].address",
            "IPv6 is not supported by the data plane yet",
        ),
        (
            "backend duplicate",
            |vs| {
                vs.spec
                    .backends
                    .static_backends
                    .as_mut()
                    .unwrap()
                    .push(backend("198.51.100.11", 2))
            },
            "spec.backends.static[1].address",
            "duplicate of spec.backends.static[0]",
        ),
        (
            "backend broadcast",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("255.255.255.255", 1)]),
            "spec.backends.static[0].address",
            "broadcast",
        ),
        (
            "backend loopback",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("127.0.0.1", 1)]),
            "spec.backends.static[0].address",
            "127.0.0.1 is a loopback address",
        ),
        (
            "backend loopback, not 127.0.0.1",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("127.3.2.1", 1)]),
            "spec.backends.static[0].address",
            "loopback",
        ),
        (
            "backend link-local",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("169.254.0.7", 1)]),
            "spec.backends.static[0].address",
            "169.254.0.7 is a link-local address",
        ),
        (
            "backend multicast",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("224.0.0.251", 1)]),
            "spec.backends.static[0].address",
            "224.0.0.251 is a multicast address",
        ),
        (
            "backend unspecified",
            |vs| vs.spec.backends.static_backends = Some(vec![backend("0.0.0.0", 1)]),
            "spec.backends.static[0].address",
            "0.0.0.0 is the unspecified address",
        ),
        (
            "announce bgp in standalone",
            |vs| {
                vs.spec.announce = Some(crate::virtual_server::Announce {
                    l2: None,
                    bgp: Some(Default::default()),
                })
            },
            "spec.announce.bgp",
            "standalone mode has no BGP speaker",
        ),
        (
            "backend is vip",
            |vs| {
                vs.spec
                    .backends
                    .static_backends
                    .as_mut()
                    .unwrap()
                    .push(backend("203.0.113.10", 1))
            },
            "spec.backends.static[1].address",
            "is also a VIP",
        ),
        (
            "weight too big",
            |vs| vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 65_536,
            "spec.backends.static[0].weight",
            "weight 65536 is out of range 0..=65535",
        ),
        (
            "weight negative",
            |vs| vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = -1,
            "spec.backends.static[0].weight",
            "out of range",
        ),
    ];

    #[test]
    fn each_rule_is_enforced() {
        for (case, mutate, field, reason) in INVALID {
            let mut vs = example();
            mutate(&mut vs);
            let err = match validate(&vs) {
                Ok(s) => panic!("{case}: expected an error, got {s:?}"),
                Err(e) => e,
            };
            assert_eq!(
                err.errors.len(),
                1,
                "{case}: exactly one error expected: {err}"
            );
            assert_eq!(err.errors[0].field, *field, "{case}: {err}");
            assert!(err.errors[0].reason.contains(reason), "{case}: {err}");
        }
    }

    /// Boundary and "looks suspicious but is legal" cases.
    const VALID: &[(&str, Mutation)] = &[
        ("max persistence", |vs| {
            vs.spec.persistence.as_mut().unwrap().timeout_seconds = 604_800
        }),
        ("no persistence", |vs| vs.spec.persistence = None),
        ("all drained", |vs| {
            vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 0
        }),
        ("empty static list", |vs| {
            vs.spec.backends.static_backends = Some(vec![])
        }),
        ("backend next to the loopback and link-local ranges", |vs| {
            vs.spec.backends.static_backends = Some(vec![
                backend("126.255.255.255", 1),
                backend("128.0.0.1", 1),
                backend("169.253.255.255", 1),
                backend("169.255.0.1", 1),
                backend("223.255.255.254", 1),
            ])
        }),
        ("announce l2 in standalone", |vs| {
            vs.spec.announce = Some(crate::virtual_server::Announce {
                l2: Some(Default::default()),
                bgp: None,
            })
        }),
        ("max weight", |vs| {
            vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 65_535
        }),
        ("port bounds", |vs| {
            vs.spec.ports[0].port = 65535;
            vs.spec.ports[0].target_port = Some(1);
        }),
        ("same port other protocol", |vs| {
            vs.spec.client_address = ClientAddressMode::None;
            vs.spec.ports.push(port(None, 80, PortProtocol::Udp, None));
        }),
        ("unnamed ports", |vs| {
            vs.spec.ports[0].name = None;
            vs.spec.ports.push(port(None, 81, PortProtocol::Tcp, None));
        }),
        ("nat changes port", |vs| {
            vs.spec.forwarding = ForwardingMode::Nat;
            vs.spec.client_address = ClientAddressMode::None;
        }),
        ("dr same port", |vs| {
            vs.spec.forwarding = ForwardingMode::Dr;
            vs.spec.client_address = ClientAddressMode::None;
            vs.spec.ports[0].target_port = Some(80);
        }),
    ];

    #[test]
    fn legal_edge_cases_pass() {
        for (case, mutate) in VALID {
            let mut vs = example();
            mutate(&mut vs);
            if let Err(e) = validate(&vs) {
                panic!("{case}: {e}");
            }
        }
    }

    #[test]
    fn toa_only_marks_tcp_ports() {
        let mut vs = example();
        vs.spec.client_address = ClientAddressMode::None;
        let specs = validate(&vs).unwrap();
        assert!(!specs[0].toa);
    }

    #[test]
    fn display_matches_documented_format() {
        let mut vs = example();
        vs.spec.forwarding = ForwardingMode::Dr;
        vs.spec.client_address = ClientAddressMode::None;
        vs.spec.ports = vec![
            port(Some("https"), 443, PortProtocol::Tcp, None),
            port(Some("http"), 80, PortProtocol::Tcp, Some(8080)),
        ];
        let err = validate(&vs).unwrap_err();
        assert_eq!(err.object, "default/web");
        assert_eq!(err.errors[0].field, "spec.ports[1].targetPort");
        assert_eq!(
            err.to_string(),
            "default/web: spec.ports[1].targetPort: DR forwarding cannot change the port \
             (targetPort 8080 != port 80)"
        );
    }

    #[test]
    fn all_errors_are_collected() {
        let mut vs = example();
        vs.spec.addresses = vec!["nope".into(), "2001:db8::1".into()];
        vs.spec.ports[0].port = 0;
        vs.spec.scheduler = "WRR".into();
        vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = -5;
        let err = validate(&vs).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.addresses[0]",
                "spec.addresses[1]",
                "spec.ports[0].port",
                "spec.scheduler",
                "spec.backends.static[0].weight",
            ]
        );
        let text = err.to_string();
        assert_eq!(text.matches("default/web: ").count(), 5, "{text}");
        assert_eq!(err.lines().count(), 5);
    }

    #[test]
    fn controller_mode_accepts_service_ref() {
        let mut vs = example();
        vs.spec.backends.static_backends = None;
        vs.spec.backends.service_ref = Some(ServiceRef {
            name: "web".into(),
            port: IntOrString::String("http".into()),
        });
        assert!(validate_standalone(&vs).is_err());
        let specs = validate_with(&vs, Mode::Controller).unwrap();
        assert_eq!(specs.len(), 1);
        assert!(specs[0].backends.is_empty());

        vs.spec.backends.service_ref.as_mut().unwrap().name.clear();
        let err = validate_with(&vs, Mode::Controller).unwrap_err();
        assert_eq!(err.errors[0].field, "spec.backends.serviceRef.name");
    }

    fn spec(object: &str, vip: [u8; 4], port: u16, protocol: Protocol) -> ServiceSpec {
        ServiceSpec {
            object: object.into(),
            port_name: String::new(),
            vip: Ipv4Addr::from(vip),
            port,
            protocol,
            target_port: port,
            forwarding: Forwarding::FullNat,
            toa: false,
            persistence_timeout_s: 0,
            source_ranges: vec![],
            backends: vec![],
            health_check: None,
        }
    }

    #[test]
    fn conflicts_blame_the_later_object() {
        let specs = [
            spec("default/a", [203, 0, 113, 10], 80, Protocol::Tcp),
            spec("default/b", [203, 0, 113, 10], 80, Protocol::Udp),
            spec("default/b", [203, 0, 113, 11], 80, Protocol::Tcp),
            spec("default/c", [203, 0, 113, 10], 443, Protocol::Tcp),
            spec("other/c", [203, 0, 113, 10], 80, Protocol::Tcp),
            spec("other/c", [203, 0, 113, 11], 80, Protocol::Tcp),
            spec("default/d", [203, 0, 113, 10], 80, Protocol::Udp),
        ];
        let errs = check_conflicts(&specs);
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "other/c: spec: 203.0.113.10:80/TCP is already claimed by default/a; \
                 other/c: spec: 203.0.113.11:80/TCP is already claimed by default/b",
                "default/d: spec: 203.0.113.10:80/UDP is already claimed by default/b",
            ]
        );
        assert_eq!(errs[0].object, "other/c");
        assert_eq!(errs[0].errors.len(), 2);
        assert!(check_conflicts(&specs[..4]).is_empty());
    }

    #[test]
    fn conflicts_within_one_object() {
        let s = spec("default/a", [192, 0, 2, 1], 80, Protocol::Tcp);
        let errs = check_conflicts(&[s.clone(), s]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].errors[0].reason.contains("listed more than once"));
    }

    #[test]
    fn parse_rejects_other_kinds_and_versions() {
        let cases = [
            (
                EXAMPLE.replace("kind: VirtualServer", "kind: Service"),
                "kind Service is not supported",
            ),
            (EXAMPLE.replace("kind: VirtualServer", ""), "missing kind"),
            (
                EXAMPLE.replace("ballast.dev/v1alpha1", "ballast.dev/v1"),
                "apiVersion ballast.dev/v1 is not supported",
            ),
            ("- a\n- b\n".to_string(), "found a list"),
        ];
        for (doc, want) in cases {
            let err = parse_yaml(&doc).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn parse_rejects_unknown_spec_fields() {
        let doc = EXAMPLE
            .replace("targetPort: 8080", "targetport: 8080")
            .replace("scheduler: Maglev", "shceduler: Maglev");
        let err = parse_yaml(&doc).unwrap_err();
        assert_eq!(
            err,
            "spec.ports[0].targetport: unknown field (did you mean targetPort?); \
             spec.shceduler: unknown field"
        );
        // Explicit nulls are how optional fields get unset; not unknown.
        let doc = EXAMPLE.replace("persistence: {timeoutSeconds: 0}", "persistence: null");
        assert!(parse_yaml(&doc).is_ok());
        // Unknown fields outside spec (e.g. status, annotations) are tolerated.
        let doc = format!("{EXAMPLE}status: {{addresses: [203.0.113.10]}}\n");
        assert!(parse_yaml(&doc).is_ok());
    }

    #[test]
    fn parse_errors_carry_location() {
        let doc = EXAMPLE.replace("port: 80,", "port: eighty,");
        let err = parse_yaml(&doc).unwrap_err();
        // Line 8: EXAMPLE starts with a newline.
        assert!(err.contains("at line 8 column 26"), "{err}");
        let doc = EXAMPLE.replace("forwarding: FullNAT", "forwarding: LVS");
        let err = parse_yaml(&doc).unwrap_err();
        assert!(err.contains("unknown variant `LVS`"), "{err}");
    }

    #[test]
    fn constants_match_the_resource() {
        use kube::Resource;
        assert_eq!(VirtualServer::api_version(&()), API_VERSION);
        assert_eq!(VirtualServer::kind(&()), KIND);
    }
}
