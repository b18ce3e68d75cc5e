//! The `AddressPool` custom resource (`ballast.dev/v1alpha1`, cluster-scoped):
//! where the controller takes VIPs from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{conditions_schema, label_selector_schema};

/// A set of addresses VirtualServers and Services of type LoadBalancer may be
/// given.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ballast.dev",
    version = "v1alpha1",
    kind = "AddressPool",
    status = "AddressPoolStatus",
    shortname = "ap",
    category = "ballast",
    doc = "Addresses (IPv4 and IPv6 CIDRs and ranges) the controller allocates VIPs from.",
    derive = "PartialEq",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(name = "Auto", type_ = "boolean", json_path = ".spec.autoAssign"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocated"),
    printcolumn(name = "Total", type_ = "string", json_path = ".status.total"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolSpec {
    /// CIDRs (`203.0.113.0/28`, `2001:db8::/120`) and inclusive ranges
    /// (`203.0.113.10-203.0.113.20`).
    #[schemars(length(min = 1, max = 256))]
    pub addresses: Vec<String>,

    /// Whether objects that name no pool may be given addresses from this
    /// one. A pool with `autoAssign: false` is used only when asked for by
    /// name (`spec.addressPool`, annotation `ballast.dev/address-pool`).
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Skip addresses ending in .0 and .255: some client stacks treat them as
    /// network or broadcast addresses even inside a larger CIDR.
    // MetalLB's spelling, which users will copy.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// Let objects share an address without a common
    /// `ballast.dev/sharing-key`, as long as their ports don't clash.
    #[serde(default)]
    pub share_by_default: bool,

    /// Namespaces whose objects may use this pool; empty admits all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolStatus {
    /// Distinct addresses currently assigned from this pool.
    #[serde(default)]
    pub allocated: i64,
    /// Addresses the pool holds after exclusions, as a decimal string (an
    /// IPv6 pool can exceed any integer type a client would parse).
    #[serde(default)]
    pub total: String,
    /// Valid: False with a reason when an entry of spec.addresses is bad.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
