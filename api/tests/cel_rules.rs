//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated client-side
//! with kube's CEL validator, the same rules the apiserver runs on admission.
//! Each case is also run through `validate::check`, so the two layers agree:
//! what the apiserver admits, the controller accepts, and vice versa.

use ballast_api::{Families, ValidationContext, VirtualServer, check};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = VirtualServer::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn base() -> Value {
    json!({
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "VirtualServer",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "addresses": ["203.0.113.10"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "forwarding": "FullNAT",
            "clientAddress": "TOA",
            "backends": {"static": [{"address": "198.51.100.11", "weight": 1}]}
        }
    })
}

type Mutation = fn(&mut Value);

/// (case, mutation, substring of the CEL message, field named by `check`).
const REJECTED: &[(&str, Mutation, &str, &str)] = &[
    (
        "TOA with DR",
        |v| {
            v["spec"]["forwarding"] = json!("DR");
            v["spec"]["ports"][0]["targetPort"] = json!(80);
        },
        "TOA requires forwarding FullNAT",
        "spec.clientAddress",
    ),
    (
        "TOA with NAT",
        |v| v["spec"]["forwarding"] = json!("NAT"),
        "TOA requires forwarding FullNAT",
        "spec.clientAddress",
    ),
    (
        "DR changes the port",
        |v| {
            v["spec"]["forwarding"] = json!("DR");
            v["spec"]["clientAddress"] = json!("None");
        },
        "DR forwarding cannot change the port",
        "spec.ports[0].targetPort",
    ),
    (
        "static and serviceRef",
        |v| v["spec"]["backends"]["serviceRef"] = json!({"name": "web", "port": 80}),
        "mutually exclusive",
        "spec.backends",
    ),
    (
        "neither static nor serviceRef",
        |v| v["spec"]["backends"] = json!({}),
        "one of static or serviceRef is required",
        "spec.backends",
    ),
    (
        "duplicate port/protocol",
        |v| {
            v["spec"]["ports"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "again", "port": 80, "protocol": "TCP"}))
        },
        "ports must be unique per protocol",
        "spec.ports[1].port",
    ),
    (
        "duplicate port with the protocol defaulted",
        |v| {
            v["spec"]["ports"]
                .as_array_mut()
                .unwrap()
                .push(json!({"port": 80}))
        },
        "ports must be unique per protocol",
        "spec.ports[1].port",
    ),
    (
        "health check with both probes",
        |v| v["spec"]["healthCheck"] = json!({"tcp": {}, "http": {"path": "/"}}),
        "set exactly one of tcp, http and udp",
        "spec.healthCheck",
    ),
    (
        "health check with tcp and udp",
        |v| v["spec"]["healthCheck"] = json!({"tcp": {}, "udp": {}}),
        "set exactly one of tcp, http and udp",
        "spec.healthCheck",
    ),
    (
        "health check with no probe",
        |v| v["spec"]["healthCheck"] = json!({"intervalSeconds": 5}),
        "set exactly one of tcp, http and udp",
        "spec.healthCheck",
    ),
    (
        "health check timeout above interval",
        |v| {
            v["spec"]["healthCheck"] = json!({"tcp": {}, "intervalSeconds": 2, "timeoutSeconds": 3})
        },
        "timeoutSeconds must not exceed intervalSeconds",
        "spec.healthCheck.timeoutSeconds",
    ),
];

const ACCEPTED: &[(&str, Mutation)] = &[
    ("the example", |_| {}),
    ("health check timeout equal to a 1 s interval", |v| {
        v["spec"]["healthCheck"] = json!({"tcp": {}, "intervalSeconds": 1, "timeoutSeconds": 1})
    }),
    ("same port on TCP and UDP", |v| {
        v["spec"]["clientAddress"] = json!("None");
        v["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "dns", "port": 80, "protocol": "UDP"}))
    }),
    ("DR with equal ports", |v| {
        v["spec"]["forwarding"] = json!("DR");
        v["spec"]["clientAddress"] = json!("None");
        v["spec"]["ports"][0]["targetPort"] = json!(80);
    }),
    ("DR with targetPort omitted", |v| {
        v["spec"]["forwarding"] = json!("DR");
        v["spec"]["clientAddress"] = json!("None");
        v["spec"]["ports"][0]
            .as_object_mut()
            .unwrap()
            .remove("targetPort");
    }),
    ("serviceRef, addresses from a pool", |v| {
        v["spec"]["backends"] = json!({"serviceRef": {"name": "web", "port": "http"}});
        v["spec"]["addresses"] = json!([]);
        v["spec"]["addressPool"] = json!("public");
    }),
    ("forwarding and clientAddress defaulted", |v| {
        let spec = v["spec"].as_object_mut().unwrap();
        spec.remove("forwarding");
        spec.remove("clientAddress");
    }),
    (
        "http health check",
        |v| v["spec"]["healthCheck"] = json!({"http": {"path": "/healthz", "expectStatus": 204}}),
    ),
];

#[test]
fn cel_rules_reject_what_validation_rejects() {
    let schema = schema();
    let validator = Validator::new();
    for (case, mutate, message, field) in REJECTED {
        let mut v = base();
        mutate(&mut v);
        let errors = validator
            .validate(&schema, &v, None)
            .expect_err(&format!("{case}: CEL accepted it"));
        assert!(
            errors.iter().any(|e| e.message.contains(message)),
            "{case}: CEL errors {errors:?} lack {message:?}"
        );
        let vs: VirtualServer = serde_json::from_value(v).unwrap();
        let err = check(&vs, ValidationContext::Controller, Families::Both)
            .expect_err(&format!("{case}: check accepted it"));
        assert!(
            err.errors.iter().any(|e| e.field == *field),
            "{case}: check errors {err} lack field {field}"
        );
    }
}

#[test]
fn cel_rules_accept_what_validation_accepts() {
    let schema = schema();
    let validator = Validator::new();
    for (case, mutate) in ACCEPTED {
        let mut v = base();
        mutate(&mut v);
        if let Err(e) = validator.validate(&schema, &v, None) {
            panic!("{case}: CEL rejected it: {e:?}");
        }
        let vs: VirtualServer = serde_json::from_value(v).unwrap();
        if let Err(e) = check(&vs, ValidationContext::Controller, Families::Both) {
            panic!("{case}: check rejected it: {e}");
        }
    }
}
