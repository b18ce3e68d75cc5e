//! Which nodes may act as directors.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::selector::{Labels, map_matches};

/// The well-known label that keeps a node out of external load balancing.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Shared: cloned into every object's director list.
    pub name: Arc<str>,
    pub labels: Labels,
}

/// Nodes that are Ready, not being deleted and not excluded, sorted by name.
pub fn usable_nodes(nodes: &[Arc<Node>]) -> Vec<NodeInfo> {
    let mut out: Vec<NodeInfo> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| is_ready(n))
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .map(|n| NodeInfo {
            name: n.metadata.name.as_deref().unwrap_or_default().into(),
            labels: n.metadata.labels.clone().unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The node's Ready condition is True: the only part of a Node's status
/// planning reads.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn selected<'n>(
    nodes: &'n [NodeInfo],
    selector: &'n std::collections::BTreeMap<String, String>,
) -> impl Iterator<Item = &'n NodeInfo> + 'n {
    nodes
        .iter()
        .filter(move |n| map_matches(selector, &n.labels))
}
