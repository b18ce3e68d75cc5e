//! The BPF objects that never ship, compiled from dataplane-ebpf/test/ by
//! this crate's build script.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `xdp_pass` (for the peer of a veth that receives XDP_TX frames) and
/// `xdp_floor` (the benchmarks' MAC-swap floor): no maps, quick to verify.
pub static TEST_PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast-test.bpf.o"));

/// The benchmark wrappers around the director (`bench_*`), loaded beside a
/// director's pinned maps.
pub static BENCH_WRAPPERS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast-bench.bpf.o"));

/// The forwarding benchmark's traffic generator and sink (`xdp_gen`,
/// `xdp_sink`).
pub static TRAFFIC: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/traffic.bpf.o"));

/// Writes [`TEST_PROGRAMS`] to `dir/name`, for iproute2, which loads
/// objects from files; returns the path.
pub fn write_test_programs(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, TEST_PROGRAMS)
        .with_context(|| format!("writing the test XDP object to {}", path.display()))?;
    Ok(path)
}

/// The data plane's flow-expiry predicates, one call per BPF_PROG_TEST_RUN
/// (`expiry_rules`), for node-agent/tests/expiry_rules.rs.
pub static EXPIRY_RULES: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rules.bpf.o"));

/// `toa_writer`: a sockops program that adds a TOA option claiming
/// 10.66.66.66:6666 to every SYN of the cgroup it is attached to (a client
/// spoofing its address), for node-agent/tests/toa_reader/ and
/// benches/toa_reader.rs (SYNs that carry the option, as a director's do).
pub static TOA_WRITER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/toa_writer.bpf.o"));

/// `toa_find_case`: the TOA reader's option search (include/toa_find.h)
/// on one TCP header per BPF_PROG_TEST_RUN, for node-agent/tests/toa_find.rs.
pub static TOA_FIND: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/toa_find.bpf.o"));
