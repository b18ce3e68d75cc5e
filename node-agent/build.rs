//! Compiles the C XDP program (dataplane-ebpf/src/ballast.c) and the TOA
//! reader (src/toa_reader.c) with clang into OUT_DIR so that the agent
//! embeds them. Test and benchmark programs are
//! built by tests/testbed, not here: the agent ships only what it loads.
use std::path::PathBuf;

#[path = "../dataplane-ebpf/build_bpf.rs"]
mod build_bpf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dp = manifest.join("../dataplane-ebpf");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", dp.join("src").display());
    println!("cargo:rerun-if-changed={}", dp.join("include").display());
    println!(
        "cargo:rerun-if-changed={}",
        dp.join("build_bpf.rs").display()
    );
    build_bpf::compile_bpf(&dp, "src/ballast.c", None, &out_dir.join("ballast.bpf.o"));
    // The TOA reader (`realserver --toa`), for backends rather than directors.
    build_bpf::compile_bpf(
        &dp,
        "src/toa_reader.c",
        None,
        &out_dir.join("toa_reader.bpf.o"),
    );
}
