//! The checked-in CRDs under `crds/` must be exactly what the types generate;
//! regenerate with `cargo run -p ballast-controller -- crdgen --out crds`.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut stale = Vec::new();
    for (file, yaml) in ballast_controller::crdgen::manifests() {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != yaml {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "CRDs drifted from the Rust types: {stale:?}; run `cargo run -p ballast-controller -- crdgen --out crds`"
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "unexpected files in crds/: {files:?}");
}

#[test]
fn virtual_server_crd_has_the_printer_columns_and_rules() {
    let (_, yaml) = ballast_controller::crdgen::manifests()
        .into_iter()
        .find(|(f, _)| f.contains("virtualservers"))
        .unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Address",
            "Ports",
            "Mode",
            "Backends",
            "Programmed",
            "Announced By",
            "Age"
        ]
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    assert_eq!(rules.len(), 3);
    assert!(spec["properties"]["backends"]["x-kubernetes-validations"].is_array());
    assert_eq!(crd["spec"]["scope"], "Namespaced");
}
