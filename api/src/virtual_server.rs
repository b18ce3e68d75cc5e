//! The `VirtualServer` custom resource (`ballast.dev/v1alpha1`).
//!
//! The serde shape is deliberately permissive (defaults everywhere a sane
//! default exists, integers wider than their legal range): the apiserver and
//! [`crate::validate`] are where values are judged, so that a bad value produces
//! an error that names the field instead of an opaque deserialisation failure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{conditions_schema, int_or_string_schema};

/// `apiVersion` and `kind` of a [`VirtualServer`], for readers of objects
/// from outside a cluster (the agent's files).
pub const API_VERSION: &str = "ballast.dev/v1alpha1";
pub const KIND: &str = "VirtualServer";

/// Desired state of a virtual server: which VIPs and ports to answer on, and
/// where to send the traffic.
// clippy mistakes repeated `printcolumn(type_ = "string")` for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ballast.dev",
    version = "v1alpha1",
    kind = "VirtualServer",
    namespaced,
    status = "VirtualServerStatus",
    shortname = "vs",
    category = "ballast",
    doc = "A set of VIPs and ports load-balanced by the XDP data plane to a set of backends.",
    derive = "PartialEq",
    printcolumn(name = "Address", type_ = "string", json_path = ".status.addresses[*]"),
    printcolumn(name = "Ports", type_ = "string", json_path = ".spec.ports[*].port"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.forwarding"),
    printcolumn(
        name = "Backends",
        type_ = "string",
        json_path = ".status.backends.summary"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.programmedNodes"
    ),
    printcolumn(
        name = "Announced By",
        type_ = "string",
        json_path = ".status.announcedBy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// Cross-field rules the apiserver enforces on admission. `validate` applies
// the same rules (with field paths) for standalone files and as a second line
// of defence in the controller; a test keeps both in agreement.
#[x_kube(
    validation = Rule::new("!has(self.clientAddress) || self.clientAddress != 'TOA' || !has(self.forwarding) || self.forwarding == 'FullNAT'")
        .message("clientAddress TOA requires forwarding FullNAT")
        .field_path(".clientAddress"),
    validation = Rule::new("!has(self.forwarding) || self.forwarding != 'DR' || self.ports.all(p, !has(p.targetPort) || p.targetPort == p.port)")
        .message("DR forwarding cannot change the port: targetPort must equal port")
        .field_path(".ports"),
    validation = Rule::new("self.ports.all(p, self.ports.exists_one(q, q.port == p.port && (has(q.protocol) ? q.protocol : 'TCP') == (has(p.protocol) ? p.protocol : 'TCP')))")
        .message("ports must be unique per protocol")
        .field_path(".ports"),
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServerSpec {
    /// Virtual IPs (IPv4 or IPv6 literals) this server answers on. Leave
    /// empty to have the controller allocate one from an AddressPool.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub addresses: Vec<String>,

    /// Pool to allocate an address from when `addresses` is empty; default:
    /// any pool with autoAssign that admits this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_pool: Option<String>,

    /// Listening ports; every port is served on every address.
    #[schemars(length(min = 1, max = 64))]
    pub ports: Vec<VirtualServerPort>,

    /// How packets reach the backends: FullNAT (default), DR or NAT.
    #[serde(default)]
    pub forwarding: ForwardingMode,

    /// Backend selection algorithm; only Maglev is implemented.
    // A string rather than an enum so that an unsupported scheduler is
    // reported by validation with a reason instead of failing the whole parse.
    #[serde(default = "default_scheduler")]
    #[schemars(length(max = 64))]
    pub scheduler: String,

    /// TOA (FullNAT + TCP only) delivers the client address to backends in a
    /// TCP option; None (default) leaves packets untouched.
    #[serde(default)]
    pub client_address: ClientAddressMode,

    /// Client affinity: a client keeps its backend while it stays active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,

    /// Client CIDRs allowed to reach the VIPs; empty allows everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub source_ranges: Vec<String>,

    /// Where traffic goes: exactly one of `static` and `serviceRef`.
    pub backends: Backends,

    /// Active health checking of the backends from each director node; none
    /// means every listed (or ready) backend is used. A backend that fails
    /// `unhealthyThreshold` probes in a row gets no new flows (its
    /// established flows keep going) until it passes `healthyThreshold` in a
    /// row; a newly listed backend starts healthy. When every backend of a
    /// service is unhealthy, new connections are refused (TCP RST / ICMP
    /// port unreachable), not sent to a backend known to be down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// How the VIPs are made reachable: `l2` (ARP/NDP from one node, the
    /// default) and/or `bgp` (every director node advertises a route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<Announce>,

    /// Labels a node must carry to act as a director for this server; empty
    /// selects every node running the agent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// The only scheduler the data plane implements.
pub const SCHEDULER_MAGLEV: &str = "Maglev";

fn default_scheduler() -> String {
    SCHEDULER_MAGLEV.to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServerPort {
    /// Optional name; must be unique within the object when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Port the VIP listens on.
    // i32 (not u16) so that 0 or 70000 reach validation and get a field-named
    // error instead of a generic integer-overflow parse failure.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// TCP (default) or UDP.
    #[serde(default)]
    pub protocol: PortProtocol,

    /// Port on the backends. With `backends.static`, unset means `port`.
    /// With `backends.serviceRef`, unset means each endpoint's own port in
    /// the Service's EndpointSlices for the `serviceRef.port` (the Service
    /// port's `targetPort` as resolved for each Pod, so a named targetPort
    /// works); set, it replaces that port for every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<i32>,
}

// SCTP is accepted by the schema (it is a Kubernetes protocol) so validation
// can say it is unsupported, rather than the parser saying "unknown variant".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PortProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ForwardingMode {
    /// Source and destination are both rewritten; backends need no setup.
    #[default]
    #[serde(rename = "FullNAT")]
    FullNat,
    /// Direct server return: only the MAC is rewritten; backends must own the VIP.
    #[serde(rename = "DR")]
    Dr,
    /// Destination NAT; backends must route replies back through the balancer.
    #[serde(rename = "NAT")]
    Nat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ClientAddressMode {
    /// Backends see the balancer's address (FullNAT) or the real client (DR/NAT).
    #[default]
    #[serde(rename = "None")]
    None,
    /// FullNAT only: the client address travels in a TCP option (TOA).
    #[serde(rename = "TOA")]
    Toa,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    /// Client affinity lifetime; 0 disables affinity.
    #[serde(default)]
    #[schemars(range(min = 0, max = 604800))]
    pub timeout_seconds: i64,
}

// Both optional in the type so that the exclusivity is reported by
// validation with a field path rather than by the parser.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("!(has(self.static) && has(self.serviceRef))")
        .message("static and serviceRef are mutually exclusive; set exactly one"),
    validation = Rule::new("has(self.static) || has(self.serviceRef)")
        .message("one of static or serviceRef is required"),
)]
#[serde(rename_all = "camelCase")]
pub struct Backends {
    /// Fixed list of backend addresses.
    #[serde(rename = "static", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub static_backends: Option<Vec<StaticBackend>>,

    /// Backends taken from a Service's endpoints (resolved by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticBackend {
    /// IPv4 literal.
    pub address: String,

    /// Relative share of new connections; 0 drains the backend (existing
    /// connections keep going, no new ones arrive).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 65535))]
    pub weight: i64,
}

fn default_weight() -> i64 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// Service name in the VirtualServer's namespace.
    pub name: String,
    /// Service port, by number or by name.
    #[schemars(schema_with = "int_or_string_schema")]
    pub port: IntOrString,
}

/// Observed state, written by the controller.
// New fields must be `#[serde(default)]` so that status written by an older
// controller still parses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServerStatus {
    /// Addresses actually being served/announced.
    #[serde(default)]
    pub addresses: Vec<String>,

    /// Standard Kubernetes conditions, keyed by type: Accepted, Ready,
    /// Programmed.
    // Always serialised, even when empty, so a merge patch with an empty list
    // clears stale conditions instead of leaving them untouched.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// How many backends receive new flows, out of how many are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendCounts>,

    /// Per director node: whether its agent has applied the current plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeProgramStatus>,

    /// `programmed/total` director nodes, for the PROGRAMMED printer column
    /// (the Programmed condition says why when they differ).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub programmed_nodes: String,

    /// The nodes announcing the addresses (the L2 owner, or every BGP
    /// speaker), comma separated, for the ANNOUNCED BY printer column: the
    /// `nodes[]` with `announcing` set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub announced_by: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendCounts {
    /// Backends eligible for new flows (ready, weight > 0).
    pub ready: i64,
    /// Every backend known, draining ones included.
    pub total: i64,
    /// `ready/total`, for the BACKENDS printer column (a column can show one
    /// field only).
    pub summary: String,
}

impl BackendCounts {
    pub fn new(ready: usize, total: usize) -> Self {
        BackendCounts {
            ready: ready as i64,
            total: total as i64,
            summary: format!("{ready}/{total}"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProgramStatus {
    pub name: String,
    /// The agent on this node applied the node state version that holds
    /// this server's current service, and refused nothing about it.
    pub programmed: bool,
    /// A node state version holding this server's current service that
    /// the node's agent applied (versions count per node; 0 while not
    /// programmed). It moves when this server's service on the node
    /// changes, not with every push to the node.
    #[serde(default)]
    pub applied_version: u64,
    /// The generation of this server the node applied, when programmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Whether this node announces the addresses (L2 owner or BGP speaker).
    #[serde(default)]
    pub announcing: bool,
    /// Why it is not programmed, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("(has(self.tcp) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.udp) ? 1 : 0) == 1")
        .message("set exactly one of tcp, http and udp"),
    validation = Rule::new("self.timeoutSeconds <= self.intervalSeconds")
        .message("timeoutSeconds must not exceed intervalSeconds"),
)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Healthy when a TCP connection to the backend's target port opens
    /// (for UDP ports too, when asked: a server that also listens on TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    /// UDP ports only: a datagram (`payload`) to the backend's target port;
    /// healthy when no ICMP port unreachable comes back within
    /// timeoutSeconds, or, with `expect`, when a reply starting with
    /// `expect` does (keepalived's UDP_CHECK without and with
    /// `require_reply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpHealthCheck>,
    /// Healthy when an HTTP/1.1 GET to the backend's target port returns the
    /// expected status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    /// Seconds between two probes of a backend (default 5). Each backend's
    /// probes are offset within the interval so they do not all fire at once.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i64,
    /// Seconds a probe may take before it counts as a failure (default 2);
    /// at most intervalSeconds (a backend's probes never overlap: a slow
    /// one delays the next).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i64,
    /// Consecutive successes before an unhealthy backend gets new flows
    /// again (default 2).
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: i64,
    /// Consecutive failures before a backend stops getting new flows
    /// (default 2).
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: i64,
}

/// Defaults of [`HealthCheck`], also quoted in its field docs and docs/user-guide.md.
pub const DEFAULT_HEALTH_INTERVAL_SECONDS: i64 = 5;
pub const DEFAULT_HEALTH_TIMEOUT_SECONDS: i64 = 2;
pub const DEFAULT_HEALTH_THRESHOLD: i64 = 2;

fn default_interval() -> i64 {
    DEFAULT_HEALTH_INTERVAL_SECONDS
}
fn default_timeout() -> i64 {
    DEFAULT_HEALTH_TIMEOUT_SECONDS
}
fn default_threshold() -> i64 {
    DEFAULT_HEALTH_THRESHOLD
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TcpHealthCheck {}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UdpHealthCheck {
    /// The datagram sent (text, at most 512 bytes); default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    pub payload: String,
    /// When set, healthy only when a reply starting with it comes back
    /// within timeoutSeconds; when absent, healthy unless an ICMP port
    /// unreachable does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub expect: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthCheck {
    /// Path requested (default `/`).
    #[serde(default = "default_http_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// Status code that means healthy (default 200); any other status, or
    /// no valid response within timeoutSeconds, is a failure.
    #[serde(default = "default_expect_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: i64,
}

fn default_http_path() -> String {
    "/".to_string()
}
fn default_expect_status() -> i64 {
    200
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Announce {
    /// One node answers ARP/NDP for the VIPs; another takes over on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<L2Announce>,
    /// Every director node advertises the VIPs to its BGP peers (ECMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpAnnounce>,
}

/// One node answers ARP/NDP for the VIPs; the others of its hot-standby
/// group take over, in order, when its heartbeats stop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct L2Announce {
    /// Standalone agents with `--peers` only: this node's priority for the
    /// VIPs (1-254, default 100, as keepalived's): the live node with the
    /// highest announces them, equal priorities go to the node whose
    /// `--node-name` sorts first. Refused in a cluster, where the
    /// controller orders each VIP's director nodes itself, and by a
    /// standalone agent without `--peers`, which announces every VIP it
    /// serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub priority: Option<u8>,
}

/// keepalived's default priority for a VRRP instance.
pub const DEFAULT_L2_PRIORITY: u8 = 100;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BgpAnnounce {}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_is_namespaced_with_status_subresource() {
        let crd = VirtualServer::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("virtualservers.ballast.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["vs".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["backends", "ports"]));
        let port = &spec["properties"]["ports"]["items"]["properties"];
        assert!(port["targetPort"].is_object());
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
        if std::env::var_os("BALLAST_PRINT_CRD").is_some() {
            println!("{}", serde_yaml::to_string(&crd).unwrap());
        }
    }

    #[test]
    fn status_round_trips() {
        let status: VirtualServerStatus = serde_json::from_value(serde_json::json!({
            "addresses": ["203.0.113.10"],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Programmed", "message": "",
                "observedGeneration": 3, "lastTransitionTime": "2025-01-01T00:00:00Z"
            }]
        }))
        .unwrap();
        assert_eq!(status.conditions[0].observed_generation, Some(3));
        let back = serde_json::to_value(&status).unwrap();
        assert_eq!(back["conditions"][0]["reason"], "Programmed");
        // A node line written before appliedVersion and generation existed.
        let older: VirtualServerStatus = serde_json::from_value(serde_json::json!({
            "nodes": [{"name": "n1", "programmed": false}]
        }))
        .unwrap();
        assert_eq!(older.nodes[0].applied_version, 0);
        assert_eq!(older.nodes[0].generation, None);
        assert_eq!(older.programmed_nodes, "");
        // An empty status must still serialise its lists (see the field comment).
        let empty = serde_json::to_value(VirtualServerStatus::default()).unwrap();
        assert_eq!(
            empty,
            serde_json::json!({"addresses": [], "conditions": []})
        );
    }

    #[test]
    fn constants_match_the_resource() {
        use kube::Resource;
        assert_eq!(VirtualServer::api_version(&()), API_VERSION);
        assert_eq!(VirtualServer::kind(&()), KIND);
    }
}
