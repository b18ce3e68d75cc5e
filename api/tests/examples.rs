//! Every example a user reads (the fenced YAML blocks of README.md and
//! docs/*.md, and the files of examples/; see `ballast-doc-examples` for
//! the markers that say what each shows) holds only fields the resource
//! has, and:
//!
//! - a VirtualServer passes the CRD's CEL rules, as the apiserver would run
//!   them on `kubectl apply`, and the shared validation in the context of
//!   its reader (the controller, or the agent's files for the examples of
//!   docs/standalone.md);
//! - one marked `# invalid: <field>: ...` is refused, at that field;
//! - a Service parses with k8s-openapi without losing a field, and is of
//!   type LoadBalancer.
//!
//! What the controller makes of the cluster examples (accepted, given an
//! address from the README's pool) is controller/tests/doc_examples.rs.

mod examples_support;

use ballast_api::{AddressPool, Families, ValidationContext, VirtualServer, check};
use ballast_doc_examples::{Example, Expect, Reader, all_examples, readme_pool};
use examples_support::{dropped, schema_problems};
use k8s_openapi::api::core::v1::Service;
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value;

fn schema_of(kind: &str) -> Value {
    let crd = match kind {
        "VirtualServer" => serde_json::to_value(VirtualServer::crd()),
        "AddressPool" => serde_json::to_value(AddressPool::crd()),
        other => panic!("no schema for kind {other:?}"),
    }
    .unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn context(ex: &Example) -> ValidationContext {
    match ex.reader {
        Reader::Cluster => ValidationContext::Controller,
        Reader::Standalone => ValidationContext::Standalone,
    }
}

/// Fields the resource does not have, or of the wrong type.
fn assert_known_fields(at: &str, kind: &str, doc: &Value) {
    let problems = schema_problems(&schema_of(kind), doc);
    assert!(problems.is_empty(), "{at}: {}", problems.join("; "));
}

fn check_virtual_server(ex: &Example, at: &str, doc: &Value) {
    assert_known_fields(at, "VirtualServer", doc);
    let vs: VirtualServer = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{at}: does not parse as a VirtualServer: {e}"));
    let verdict = check(&vs, context(ex), Families::Both);
    match &ex.expect {
        Expect::Valid => {
            if let Err(e) = verdict {
                panic!("{at}: validation refused it: {e}");
            }
            let crd = schema_of("VirtualServer");
            if let Err(e) = Validator::new().validate(&crd, doc, None) {
                panic!("{at}: CEL rejected it: {e:?}");
            }
        }
        Expect::Invalid { field, .. } => match verdict {
            Ok(_) => panic!("{at}: marked invalid ({field}) but validation accepted it"),
            Err(e) => assert!(
                e.errors.iter().any(|f| f.field == *field),
                "{at}: marked invalid at {field}, refused for: {e}"
            ),
        },
        Expect::Part { .. } => unreachable!("fragments are checked apart"),
    }
}

fn check_service(ex: &Example, at: &str, doc: &Value) {
    assert_eq!(
        ex.expect,
        Expect::Valid,
        "{at}: only valid Services are shown"
    );
    assert_eq!(
        ex.reader,
        Reader::Cluster,
        "{at}: a Service outside a cluster"
    );
    let svc: Service = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{at}: does not parse as a Service: {e}"));
    let back = serde_json::to_value(&svc).unwrap();
    let lost = dropped(doc, &back, "");
    assert!(
        lost.is_empty(),
        "{at}: fields k8s-openapi drops: {}",
        lost.join("; ")
    );
    let spec = svc.spec.unwrap_or_default();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"), "{at}");
}

fn check_example(ex: &Example) {
    for (i, doc) in ex.documents.iter().enumerate() {
        let at = format!("{} (document {})", ex.origin, i + 1);
        let kind = doc["kind"].as_str().unwrap_or("");
        if let Expect::Part { kind } = &ex.expect {
            assert_known_fields(&at, kind, doc);
            continue;
        }
        match kind {
            "VirtualServer" => check_virtual_server(ex, &at, doc),
            "AddressPool" => {
                assert_known_fields(&at, kind, doc);
                // What its addresses are worth is the controller's to say
                // (controller/tests/doc_examples.rs).
                serde_json::from_value::<AddressPool>(doc.clone())
                    .unwrap_or_else(|e| panic!("{at}: does not parse as an AddressPool: {e}"));
            }
            "Service" => check_service(ex, &at, doc),
            other => panic!(
                "{at}: a YAML example of kind {other:?}, which no test checks: \
                 mark a fragment `# part of a VirtualServer`, or check the kind here"
            ),
        }
    }
}

#[test]
fn every_example_holds_known_fields_and_is_valid_or_refused_as_marked() {
    let examples = all_examples();
    for ex in &examples {
        check_example(ex);
    }
    // The gathering itself must not go quiet: each page shows examples.
    for page in ["README.md", "docs/user-guide.md", "docs/standalone.md"] {
        assert!(
            examples
                .iter()
                .any(|e| e.origin.starts_with(&format!("{page}:"))),
            "no YAML example found in {page}"
        );
    }
    let refusals = examples
        .iter()
        .filter(|e| matches!(e.expect, Expect::Invalid { .. }))
        .count();
    assert!(refusals >= 3, "the refusals the guides show: {refusals}");
}

#[test]
fn the_examples_directory_has_one_virtual_server_per_documented_mode() {
    let mut modes: Vec<String> = all_examples()
        .iter()
        .filter(|e| e.origin.starts_with("examples/"))
        .flat_map(|e| e.documents.iter())
        .filter(|d| d["kind"] == "VirtualServer")
        .map(|d| {
            d["spec"]["forwarding"]
                .as_str()
                .unwrap_or("FullNAT")
                .to_string()
        })
        .collect();
    modes.sort();
    assert_eq!(modes, ["DR", "FullNAT"]);
}

#[test]
fn the_example_pool_is_the_one_the_readmes_install_creates() {
    let pool = all_examples()
        .into_iter()
        .find(|e| e.origin == "examples/addresspool.yaml")
        .expect("examples/addresspool.yaml");
    assert_eq!(pool.documents, [readme_pool()]);
}
