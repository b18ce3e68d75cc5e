//! How a build script compiles one of the C programs here into a BPF
//! object: shared by node-agent/build.rs (the shipped object) and
//! tests/testbed/build.rs (test and benchmark programs), each including it
//! with `#[path]`. Rust eBPF would need nightly and rust-src.
use std::path::Path;
use std::process::Command;

/// Compiles `src` into `out` with clang for the BPF target; the include
/// path is `include` (the data plane's headers), then `extra_include`.
/// Panics with what to install when clang is missing or fails.
pub fn compile_bpf(dataplane: &Path, src: &str, extra_include: Option<&str>, out: &Path) {
    println!("cargo:rerun-if-env-changed=BALLAST_CLANG");
    let clang = std::env::var("BALLAST_CLANG").unwrap_or_else(|_| "clang".into());
    // Debian keeps <asm/types.h> under the multiarch directory, which the
    // BPF target does not search by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let src = dataplane.join(src);
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(dataplane.join("include"));
    if let Some(dir) = extra_include {
        cmd.arg("-I").arg(dataplane.join(dir));
    }
    let status = cmd
        .arg("-I")
        .arg(&multiarch)
        .arg("-c")
        .arg(&src)
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
