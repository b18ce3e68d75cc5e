//! The examples of docs/standalone.md, read as the agent reads its files
//! (`config_files::read_documents`: strict YAML, unknown `spec` fields are
//! errors) and resolved as a reload resolves them (`standalone::desired::
//! resolve`: validation with the data plane's limits, ownership, warnings),
//! with the SNAT address the page's command line gives: each valid one is
//! served whole, without an error or a warning; each marked
//! `# invalid: <field>: ...` is refused at that field. Pure: no root, no
//! data plane.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ballast_agent::config_files::read_documents;
use ballast_agent::standalone::desired::{LastGood, resolve};
use ballast_agent::standalone::file_errors::FileError;
use ballast_doc_examples::{Expect, Reader, all_examples};

/// `--snat-address` of the page's `ballast-agent standalone` command.
const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

#[test]
fn the_standalone_pages_examples_are_read_and_resolved_as_marked() {
    let examples: Vec<_> = all_examples()
        .into_iter()
        .filter(|e| e.reader == Reader::Standalone)
        .collect();
    assert!(
        examples.len() >= 3,
        "{} examples in docs/standalone.md",
        examples.len()
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("standalone_docs");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, ex) in examples.iter().enumerate() {
        let file = dir.join(format!("{n}.yaml"));
        std::fs::write(&file, &ex.text).unwrap();
        let docs = read_documents(&file).unwrap();
        // Examples that set a priority are a hot-standby group's files
        // (`--peers`); the rest are a lone agent's.
        let mut last = LastGood::new(ex.text.contains("priority:"));
        let outcome = resolve(&docs, &mut last, &[SNAT]);
        let at = &ex.origin;
        match &ex.expect {
            Expect::Valid => {
                let errors: Vec<String> = outcome.errors.iter().map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{at}: {}", errors.join("; "));
                let warnings: Vec<String> =
                    outcome.warnings.iter().map(|w| w.to_string()).collect();
                assert!(warnings.is_empty(), "{at}: warned: {}", warnings.join("; "));
                let served: BTreeSet<&str> = last.services().map(|s| s.object.as_str()).collect();
                let objects: BTreeSet<String> = ex
                    .documents
                    .iter()
                    .map(|d| {
                        let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
                        format!("{ns}/{}", d["metadata"]["name"].as_str().unwrap())
                    })
                    .collect();
                let objects: BTreeSet<&str> = objects.iter().map(String::as_str).collect();
                assert_eq!(served, objects, "{at}: served");
            }
            Expect::Invalid { field, .. } => {
                let refused_there = outcome.errors.iter().any(|e| match e {
                    FileError::Invalid { error, .. } => {
                        error.errors.iter().any(|f| f.field == *field)
                    }
                    _ => false,
                });
                let errors: Vec<String> = outcome.errors.iter().map(|e| e.to_string()).collect();
                assert!(
                    refused_there,
                    "{at}: marked invalid at {field}, the agent said: {errors:?}"
                );
                assert_eq!(last.services().count(), 0, "{at}: served though refused");
            }
            Expect::Part { .. } => {}
        }
    }
}
