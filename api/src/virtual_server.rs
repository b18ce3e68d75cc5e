//! The `VirtualServer` custom resource (`ballast.dev/v1alpha1`).
//!
//! The serde shape is deliberately permissive (defaults everywhere a sane
//! default exists, integers wider than their legal range): the apiserver and
//! [`crate::validate`] are where values are judged, so that a bad value produces
//! an error that names the field instead of an opaque deserialisation failure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a virtual server: which VIPs and ports to answer on, and
/// where to send the traffic.
// clippy mistakes repeated `printcolumn(type_ = "string")` for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ballast.dev",
    version = "v1alpha1",
    kind = "VirtualServer",
    namespaced,
    status = "VirtualServerStatus",
    shortname = "vs",
    doc = "A set of VIPs and ports load-balanced by the XDP data plane to a set of backends.",
    derive = "PartialEq",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(name = "Forwarding", type_ = "string", json_path = ".spec.forwarding"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServerSpec {
    /// Virtual IPs (IPv4 or IPv6 literals) this server answers on.
    #[schemars(length(min = 1))]
    pub addresses: Vec<String>,

    /// Listening ports; every port is served on every address.
    #[schemars(length(min = 1))]
    pub ports: Vec<VirtualServerPort>,

    /// How packets reach the backends: FullNAT (default), DR or NAT.
    #[serde(default)]
    pub forwarding: ForwardingMode,

    /// Backend selection algorithm; only Maglev is implemented.
    // A string rather than an enum so that an unsupported scheduler is
    // reported by validation with a reason instead of failing the whole parse.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,

    /// TOA (FullNAT + TCP only) delivers the client address to backends in a
    /// TCP option; None (default) leaves packets untouched.
    #[serde(default)]
    pub client_address: ClientAddressMode,

    /// Client affinity: a client keeps its backend while it stays active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,

    /// Where traffic goes: exactly one of `static` and `serviceRef`.
    pub backends: Backends,
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

    /// Port on the backends; defaults to `port`.
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backends {
    /// Fixed list of backend addresses.
    #[serde(rename = "static", default, skip_serializing_if = "Option::is_none")]
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

    /// Standard Kubernetes conditions, keyed by type.
    // Always serialised, even when empty, so a merge patch with an empty list
    // clears stale conditions instead of leaving them untouched.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

// k8s-openapi implements JsonSchema only behind its `schemars` feature, and
// turning that on would change the shared k8s-openapi build for every crate in
// the workspace just for these two schemas. Their wire shapes are small and
// stable (they mirror upstream's), so they are spelled out here instead.

fn int_or_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "reason": {"type": "string", "maxLength": 1024},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {"type": "string", "maxLength": 316}
            }
        }
    })
}

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
        assert_eq!(
            spec["required"],
            serde_json::json!(["addresses", "backends", "ports"])
        );
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
        // An empty status must still serialise its lists (see the field comment).
        let empty = serde_json::to_value(VirtualServerStatus::default()).unwrap();
        assert_eq!(
            empty,
            serde_json::json!({"addresses": [], "conditions": []})
        );
    }
}
