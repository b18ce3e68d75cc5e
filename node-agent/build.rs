//! Compiles the C XDP program (dataplane-ebpf/) with clang into OUT_DIR so
//! that the agent embeds it. Rust eBPF would need nightly and rust-src.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dp = manifest.join("../dataplane-ebpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("ballast.bpf.o");
    println!("cargo:rerun-if-changed={}", dp.join("src").display());
    println!("cargo:rerun-if-changed={}", dp.join("include").display());
    println!("cargo:rerun-if-env-changed=BALLAST_CLANG");

    let clang = std::env::var("BALLAST_CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps <asm/types.h> under the multiarch directory, which the
    // BPF target does not search by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(dp.join("include"))
        .arg("-I")
        .arg(&multiarch)
        .arg("-c")
        .arg(dp.join("src/ballast.c"))
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to build the XDP program ({s}); see the errors above"),
        Err(e) => panic!(
            "cannot run `{clang}` ({e}): install clang and libbpf-dev (apt-get install clang libbpf-dev) or set BALLAST_CLANG"
        ),
    }
}
