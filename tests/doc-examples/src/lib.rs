//! The examples users read, gathered for the tests that check them: every
//! fenced ```` ```yaml ```` block of `README.md` and `docs/*.md`, and every
//! file of `examples/`, each with where it is and what it is meant to show
//! ([`Expect`], from a marker comment on its first line); the AddressPool
//! the README's install creates ([`readme_pool`]); and the links between the
//! docs ([`links`]).
//!
//! Parsing and gathering only: what "valid" means is decided by the crates
//! whose tests use this (the API's validation, the controller against the
//! fake API server, the agent's file reader).

pub mod example;
pub mod links;
pub mod markdown;
pub mod readme_pool;

use std::path::{Path, PathBuf};

pub use example::{Example, Expect, Reader, all_examples};
pub use readme_pool::readme_pool;

/// The repository's root (this crate is `tests/doc-examples`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// `README.md` and every `docs/*.md`, as paths relative to the root, sorted.
pub fn markdown_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    out.extend(docs);
    out
}
