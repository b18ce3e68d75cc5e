//! Compiles the C XDP program (dataplane-ebpf/) with clang into OUT_DIR so
//! that the agent embeds it. Rust eBPF would need nightly and rust-src.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dp = manifest.join("../dataplane-ebpf");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", dp.join("src").display());
    println!("cargo:rerun-if-changed={}", dp.join("include").display());
    println!("cargo:rerun-if-changed={}", dp.join("bench").display());
    println!("cargo:rerun-if-env-changed=BALLAST_CLANG");

    let clang = std::env::var("BALLAST_CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps <asm/types.h> under the multiarch directory, which the
    // BPF target does not search by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    compile(
        &clang,
        &multiarch,
        &dp.join("include"),
        &dp.join("src/ballast.c"),
        &out_dir.join("ballast.bpf.o"),
        &[],
    );
    // The director plus its benchmark wrappers, for the dataplane bench
    // only: the wrappers hold extra copies of the director, which the
    // agent's own object should not carry.
    compile(
        &clang,
        &multiarch,
        &dp.join("include"),
        &dp.join("src/ballast.c"),
        &out_dir.join("ballast-bench.bpf.o"),
        &["-DBALLAST_BENCH"],
    );
    // Benchmark traffic tools (generator, sink): not loaded by the agent.
    compile(
        &clang,
        &multiarch,
        &dp.join("include"),
        &dp.join("bench/bench.c"),
        &out_dir.join("bench.bpf.o"),
        &[],
    );

    // The data plane's expiry predicates for tests/expiry_rules.rs, which
    // checks the sweeper's Rust rules against them: not loaded by the agent.
    println!(
        "cargo:rerun-if-changed={}",
        dp.join("test/rules.c").display()
    );
    compile(
        &clang,
        &multiarch,
        &dp.join("include"),
        &dp.join("test/rules.c"),
        &out_dir.join("rules.bpf.o"),
        &[],
    );
}

fn compile(
    clang: &str,
    multiarch: &str,
    include: &std::path::Path,
    src: &std::path::Path,
    out: &std::path::Path,
    defines: &[&str],
) {
    let status = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .args(defines)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(multiarch)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "clang failed to build {} ({s}); see the errors above",
            src.display()
        ),
        Err(e) => panic!(
            "cannot run `{clang}` ({e}): install clang and libbpf-dev (apt-get install clang libbpf-dev) or set BALLAST_CLANG"
        ),
    }
}
