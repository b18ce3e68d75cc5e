//! Which kinds the server serves: the built-in table and the registry that
//! CustomResourceDefinitions add to.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::status::QualifiedResource;

/// Which name syntax a kind's objects must have (apimachinery's name validators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: lower-case alphanumerics, `-` and `.`, at most 253 characters.
    Subdomain,
    /// RFC 1123 label: lower-case alphanumerics and `-`, at most 63 characters.
    Label,
    /// RFC 1035 label: an RFC 1123 label that starts with a letter (Service names).
    Label1035,
}

/// One built-in kind. Adding a kind to the server is adding a line to [`BUILTINS`].
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// API group, `""` for core.
    pub group: &'static str,
    /// The (only) served version.
    pub version: &'static str,
    /// Kind, e.g. `Service`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `services`.
    pub plural: &'static str,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource (status is then ignored by main-resource writes).
    pub has_status: bool,
    /// Whether the kind's strategy maintains `metadata.generation` (most
    /// built-ins without a spec/status split, like Service or Lease, do not).
    pub generation: bool,
    /// Whether a PUT to a missing object creates it (the strategy's `AllowCreateOnUpdate`).
    pub create_on_update: bool,
    /// Whether DELETE answers with the deleted object (the registry's
    /// `ReturnDeletedObject`) rather than a success Status.
    pub delete_returns_object: bool,
    /// Name validation.
    pub names: NameRule,
    /// Field selector labels beyond `metadata.name` / `metadata.namespace`.
    pub fields: &'static [&'static str],
}

/// The kinds served without any CRD.
#[rustfmt::skip]
pub const BUILTINS: &[Builtin] = &[
    Builtin { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false, has_status: true, generation: false, create_on_update: false, delete_returns_object: true, names: NameRule::Label, fields: &["status.phase"] },
    Builtin { group: "", version: "v1", kind: "Service", plural: "services", namespaced: true, has_status: true, generation: false, create_on_update: false, delete_returns_object: true, names: NameRule::Label1035, fields: &["spec.clusterIP", "spec.type"] },
    Builtin { group: "", version: "v1", kind: "Node", plural: "nodes", namespaced: false, has_status: true, generation: false, create_on_update: false, delete_returns_object: false, names: NameRule::Subdomain, fields: &["spec.unschedulable"] },
    Builtin { group: "", version: "v1", kind: "Secret", plural: "secrets", namespaced: true, has_status: false, generation: false, create_on_update: false, delete_returns_object: false, names: NameRule::Subdomain, fields: &["type"] },
    Builtin { group: "", version: "v1", kind: "Event", plural: "events", namespaced: true, has_status: false, generation: false, create_on_update: true, delete_returns_object: false, names: NameRule::Subdomain, fields: &["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"] },
    Builtin { group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices", namespaced: true, has_status: false, generation: true, create_on_update: false, delete_returns_object: false, names: NameRule::Subdomain, fields: &["addressType"] },
    Builtin { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", namespaced: true, has_status: false, generation: false, create_on_update: true, delete_returns_object: false, names: NameRule::Subdomain, fields: &[] },
    Builtin { group: "events.k8s.io", version: "v1", kind: "Event", plural: "events", namespaced: true, has_status: false, generation: false, create_on_update: true, delete_returns_object: false, names: NameRule::Subdomain, fields: &[] },
    Builtin { group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition", plural: "customresourcedefinitions", namespaced: false, has_status: true, generation: true, create_on_update: false, delete_returns_object: true, names: NameRule::Subdomain, fields: &[] },
];

/// Namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The storage key of a kind: objects are shared by all its served versions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds a key.
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }

    /// `namespaces` in the core group.
    pub fn namespaces() -> Self {
        Self::new("", "namespaces")
    }

    /// `customresourcedefinitions.apiextensions.k8s.io`.
    pub fn crds() -> Self {
        Self::new("apiextensions.k8s.io", "customresourcedefinitions")
    }

    /// The form used in error messages.
    pub fn qualified(&self) -> QualifiedResource {
        QualifiedResource {
            group: self.group.clone(),
            resource: self.resource.clone(),
        }
    }
}

/// A served version of a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// e.g. `v1alpha1`.
    pub name: String,
    /// Whether this version has a `/status` subresource (per version for CRDs).
    pub has_status: bool,
}

/// Everything the server knows about one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group, empty for core.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Kind of its lists.
    pub list_kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Served versions, most preferred first.
    pub versions: Vec<VersionInfo>,
    /// See [`Builtin::generation`].
    pub generation: bool,
    /// See [`Builtin::create_on_update`].
    pub create_on_update: bool,
    /// See [`Builtin::delete_returns_object`].
    pub delete_returns_object: bool,
    /// Name validation.
    pub names: NameRule,
    /// Field selector labels beyond `metadata.name` / `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// Backed by a CRD (custom resources do not accept strategic merge patch).
    pub custom: bool,
}

impl ResourceKind {
    /// From a [`BUILTINS`] row.
    pub fn from_builtin(b: &Builtin) -> Self {
        ResourceKind {
            group: b.group.into(),
            kind: b.kind.into(),
            list_kind: format!("{}List", b.kind),
            plural: b.plural.into(),
            singular: b.kind.to_lowercase(),
            short_names: Vec::new(),
            namespaced: b.namespaced,
            versions: vec![VersionInfo {
                name: b.version.into(),
                has_status: b.has_status,
            }],
            generation: b.generation,
            create_on_update: b.create_on_update,
            delete_returns_object: b.delete_returns_object,
            names: b.names,
            selectable_fields: b.fields.iter().map(|f| f.to_string()).collect(),
            custom: false,
        }
    }

    /// The storage key.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// `group/version`, or just `version` for core.
    pub fn api_version(&self, version: &str) -> String {
        api_version(&self.group, version)
    }

    /// The apiVersion objects are stored under (the preferred version).
    pub fn storage_api_version(&self) -> String {
        self.api_version(&self.versions[0].name)
    }

    /// Whether `version` is served, and how.
    pub fn version(&self, version: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.name == version)
    }
}

/// `group/version`, or just `version` for the core group.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an apiVersion into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// A kind as addressed by one request: the kind plus the version in the URL.
#[derive(Clone, Debug)]
pub struct Served {
    /// The kind.
    pub kind: Arc<ResourceKind>,
    /// The version in the request path.
    pub version: String,
    /// Whether that version has a status subresource.
    pub has_status: bool,
}

impl Served {
    /// apiVersion of the request's version.
    pub fn api_version(&self) -> String {
        self.kind.api_version(&self.version)
    }

    /// Storage key.
    pub fn group_resource(&self) -> GroupResource {
        self.kind.group_resource()
    }

    /// Form used in error messages.
    pub fn qualified(&self) -> QualifiedResource {
        self.group_resource().qualified()
    }
}

/// Kubernetes version ordering: GA before beta before alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32, Reverse<String>) {
    let parse = || -> Option<(u8, u32, u32)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u32 = digits.parse().ok()?;
        let rest = &rest[digits.len()..];
        if rest.is_empty() {
            return Some((3, major, 0));
        }
        let (level, num) = if let Some(n) = rest.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = rest.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    };
    match parse() {
        Some((l, a, b)) => (l, a, b, Reverse(String::new())),
        None => (0, 0, 0, Reverse(v.to_string())),
    }
}

/// The set of served kinds, keyed by group and plural.
#[derive(Clone, Debug)]
pub struct Registry {
    kinds: BTreeMap<GroupResource, Arc<ResourceKind>>,
}

impl Default for Registry {
    fn default() -> Self {
        let kinds = BUILTINS
            .iter()
            .map(|b| {
                let k = ResourceKind::from_builtin(b);
                (k.group_resource(), Arc::new(k))
            })
            .collect();
        Registry { kinds }
    }
}

impl Registry {
    /// Adds or replaces a kind.
    pub fn insert(&mut self, kind: ResourceKind) {
        self.kinds.insert(kind.group_resource(), Arc::new(kind));
    }

    /// Stops serving a kind.
    pub fn remove(&mut self, gr: &GroupResource) -> Option<Arc<ResourceKind>> {
        self.kinds.remove(gr)
    }

    /// The kind stored under `gr`.
    pub fn get(&self, gr: &GroupResource) -> Option<&Arc<ResourceKind>> {
        self.kinds.get(gr)
    }

    /// The kind served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Served> {
        let kind = self.kinds.get(&GroupResource::new(group, plural))?;
        let v = kind.version(version)?;
        Some(Served {
            has_status: v.has_status,
            version: version.to_string(),
            kind: Arc::clone(kind),
        })
    }

    /// All kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<ResourceKind>> {
        self.kinds.values()
    }

    /// Kinds served at `group/version`.
    pub fn kinds_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceKind>> {
        self.kinds
            .values()
            .filter(|k| k.group == group && k.version(version).is_some())
            .cloned()
            .collect()
    }

    /// Non-core groups with their served versions, preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in self.kinds.values().filter(|k| !k.group.is_empty()) {
            let vs = groups.entry(k.group.clone()).or_default();
            for v in &k.versions {
                if !vs.contains(&v.name) {
                    vs.push(v.name.clone());
                }
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by_key(|v| Reverse(version_priority(v)));
                (g, vs)
            })
            .collect()
    }
}

/// Reads the served kind out of a CustomResourceDefinition (as JSON).
///
/// Errors are validation messages for `metadata.name` / `spec`.
pub fn kind_from_crd(crd: &Value) -> Result<ResourceKind, (String, String)> {
    let spec = &crd["spec"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let group = s(&spec["group"]);
    let names = &spec["names"];
    let plural = s(&names["plural"]);
    let kind = s(&names["kind"]);
    if group.is_empty() {
        return Err(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        return Err(("spec.names.plural".into(), "Required value".into()));
    }
    if kind.is_empty() {
        return Err(("spec.names.kind".into(), "Required value".into()));
    }
    let name = s(&crd["metadata"]["name"]);
    if name != format!("{plural}.{group}") {
        return Err((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            return Err((
                "spec.scope".into(),
                "Unsupported value: must be \"Cluster\" or \"Namespaced\"".into(),
            ));
        }
    };
    let mut versions: Vec<VersionInfo> = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .map(|v| VersionInfo {
            name: s(&v["name"]),
            has_status: v["subresources"].get("status").is_some(),
        })
        .collect();
    if versions.is_empty() {
        return Err((
            "spec.versions".into(),
            "Invalid value: must have at least one served version".into(),
        ));
    }
    versions.sort_by_key(|v| Reverse(version_priority(&v.name)));
    let selectable_fields = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|v| {
            v["selectableFields"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| {
            f["jsonPath"]
                .as_str()
                .map(|p| p.trim_start_matches('.').to_string())
        })
        .collect();
    let list_kind = names["listKind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let short_names = names["shortNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceKind {
        group,
        kind,
        list_kind,
        plural,
        singular,
        short_names,
        namespaced,
        versions,
        generation: true,
        create_on_update: false,
        delete_returns_object: false,
        names: NameRule::Subdomain,
        selectable_fields,
        custom: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2beta1", "v1", "foo", "v1beta2", "v2"];
        v.sort_by_key(|v| Reverse(version_priority(v)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }

    #[test]
    fn builtins_are_looked_up_by_group_version_plural() {
        let r = Registry::default();
        let s = r.lookup("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(s.kind.kind, "Lease");
        assert!(!s.has_status);
        assert!(r.lookup("", "v1", "services").unwrap().has_status);
        assert!(r.lookup("", "v2", "services").is_none());
        // The two Event kinds are distinct resources.
        assert_ne!(
            r.lookup("", "v1", "events").unwrap().group_resource(),
            r.lookup("events.k8s.io", "v1", "events")
                .unwrap()
                .group_resource()
        );
    }

    #[test]
    fn crd_kinds_take_scope_versions_and_status_from_the_crd() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        });
        let k = kind_from_crd(&crd).unwrap();
        assert!(!k.namespaced);
        assert_eq!(k.list_kind, "WidgetList");
        assert_eq!(
            k.versions
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["v1", "v1alpha1"]
        );
        assert!(k.version("v1").unwrap().has_status);
        assert!(!k.version("v1alpha1").unwrap().has_status);

        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("widgets");
        assert_eq!(kind_from_crd(&bad).unwrap_err().0, "metadata.name");
    }
}
