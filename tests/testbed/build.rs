//! Compiles the programs that never ship (dataplane-ebpf/test/) into
//! OUT_DIR: the XDP_PASS and floor programs, the benchmark wrappers around
//! the director, the forwarding benchmark's traffic generator, and the
//! data plane's expiry predicates for node-agent/tests/expiry_rules.rs, and
//! a TOA-sending client and the TOA option search for node-agent/tests/
//! toa_reader.rs and toa_find.rs.
use std::path::PathBuf;

#[path = "../../dataplane-ebpf/build_bpf.rs"]
mod build_bpf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dp = manifest.join("../../dataplane-ebpf");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for dir in ["include", "test", "build_bpf.rs"] {
        println!("cargo:rerun-if-changed={}", dp.join(dir).display());
    }
    for (src, out) in [
        ("test/programs.c", "ballast-test.bpf.o"),
        ("test/bench.c", "ballast-bench.bpf.o"),
        ("test/traffic.c", "traffic.bpf.o"),
        ("test/rules.c", "rules.bpf.o"),
        ("test/toa_writer.c", "toa_writer.bpf.o"),
        ("test/toa_find.c", "toa_find.bpf.o"),
    ] {
        build_bpf::compile_bpf(&dp, src, Some("test"), &out_dir.join(out));
    }
}
