//! Parsing request paths into what they address.

/// A resource path: `/api/v1/...` or `/apis/{group}/{version}/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group, empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// `Some` for `/namespaces/{ns}/{plural}...` paths.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub plural: String,
    /// Object name, for paths below a collection.
    pub name: Option<String>,
    /// Subresource (`status`), for paths below an object.
    pub subresource: Option<String>,
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/{version}` or `/apis/{group}/{version}`: (group, version).
    GroupVersion(String, String),
    /// A collection, object or subresource.
    Resource(ResourcePath),
}

fn resource(group: &str, version: &str, segs: &[&str]) -> Option<ApiPath> {
    let owned = |s: &&str| s.to_string();
    let at = |namespace: Option<String>, rest: &[&str]| {
        Some(ApiPath::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace,
            plural: rest[0].to_string(),
            name: rest.get(1).map(owned),
            subresource: rest.get(2).map(owned),
        }))
    };
    match segs {
        [] => Some(ApiPath::GroupVersion(
            group.to_string(),
            version.to_string(),
        )),
        // `/namespaces/{name}/status` and `/finalize` address the Namespace
        // object itself, not a namespaced collection (as in the apiserver).
        ["namespaces", ns, sub @ ("status" | "finalize")] => at(None, &["namespaces", ns, sub]),
        ["namespaces", ns, rest @ ..] if (1..=3).contains(&rest.len()) => {
            at(Some(ns.to_string()), rest)
        }
        rest if (1..=3).contains(&rest.len()) => at(None, rest),
        _ => None,
    }
}

/// Parses a request path; `None` when it addresses nothing the server knows.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Some(ApiPath::Version),
        ["api"] => Some(ApiPath::CoreVersions),
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis"] => Some(ApiPath::Groups),
        ["apis", group] => Some(ApiPath::Group(group.to_string())),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(path: &str) -> ResourcePath {
        match parse(path) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_namespaced_and_cluster_paths() {
        let r = rp("/api/v1/namespaces/default/services/web/status");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.plural.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("", Some("default"), "services", Some("web"), Some("status"))
        );
        let r = rp("/apis/coordination.k8s.io/v1/leases");
        assert_eq!(
            (r.namespace, r.plural.as_str(), r.name),
            (None, "leases", None)
        );
        let r = rp("/api/v1/nodes/n1");
        assert_eq!(r.name.as_deref(), Some("n1"));
    }

    #[test]
    fn namespace_objects_and_their_status() {
        let r = rp("/api/v1/namespaces/default");
        assert_eq!(
            (r.namespace, r.plural.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("default"))
        );
        let r = rp("/api/v1/namespaces/default/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(r.namespace, None);
        let r = rp("/api/v1/namespaces/default/services");
        assert_eq!(r.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/api"), Some(ApiPath::CoreVersions));
        assert_eq!(
            parse("/api/v1"),
            Some(ApiPath::GroupVersion(String::new(), "v1".into()))
        );
        assert_eq!(parse("/apis/x.io"), Some(ApiPath::Group("x.io".into())));
        assert_eq!(parse("/healthz"), None);
        assert_eq!(parse("/api/v1/a/b/c/d"), None);
    }
}
