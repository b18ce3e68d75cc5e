//! The VirtualServers in the top-level `examples/` (what the README and the
//! chart's NOTES point users at) pass the CRD's CEL rules, as the apiserver
//! would run them on `kubectl apply`, and the controller's own validation.
//! Their structural schema is checked by charts/ballast/tests/checks.py.

use std::path::Path;

use ballast_api::{Families, ValidationContext, VirtualServer, check};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value;

#[test]
fn every_example_virtual_server_passes_cel_and_the_controllers_validation() {
    let crd = serde_json::to_value(VirtualServer::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = Validator::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] != "VirtualServer" {
                continue;
            }
            let at = format!("{}: {}", path.display(), v["metadata"]["name"]);
            if let Err(e) = validator.validate(schema, &v, None) {
                panic!("{at}: CEL rejected it: {e:?}");
            }
            let vs: VirtualServer = serde_json::from_value(v.clone()).unwrap();
            if let Err(e) = check(&vs, ValidationContext::Controller, Families::Both) {
                panic!("{at}: the controller's validation rejected it: {e}");
            }
            seen.push(
                v["spec"]["forwarding"]
                    .as_str()
                    .unwrap_or("FullNAT")
                    .to_string(),
            );
        }
    }
    seen.sort();
    assert_eq!(seen, ["DR", "FullNAT"], "one example per documented mode");
}
