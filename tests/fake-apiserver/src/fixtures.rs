//! Objects tests of Ballast put in the server through a real client, the
//! way a cluster would hold them.
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Creates Node `name` and marks it Ready (as a kubelet would, through the
/// status subresource).
///
/// # Panics
/// If the server refuses either write.
pub async fn ready_node(client: &kube::Client, name: &str) {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
    )
    .expect("a Node");
    api.create(&PostParams::default(), &node)
        .await
        .expect("creating the Node");
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .expect("marking the Node Ready");
}
