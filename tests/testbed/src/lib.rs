//! Test scaffolding for Ballast, kept out of the agent users run: the test
//! world (addresses and MACs), network-namespace testbeds with servers and
//! an AF_PACKET sniffer, the director in a testbed (`Lab`) or under
//! BPF_PROG_TEST_RUN (`PacketLab`), frames, the agent-process harness, a
//! Prometheus text parser, and the test and benchmark BPF programs
//! (dataplane-ebpf/test/, built by this crate's build script).
//!
//! A test that needs root calls [`require_root`]: it fails with the reason,
//! never passes without having run.

pub mod agent;
pub mod arp;
pub mod cgroup;
pub mod failover;
pub mod frames;
pub mod http;
pub mod in_process;
pub mod lab;
pub mod netns;
pub mod objects;
pub mod packet;
pub mod pki;
pub mod prometheus;
pub mod root;
pub mod servers;
pub mod sniff;
pub mod standby;
pub mod topology;
pub mod world;

pub use cgroup::TestCgroup;
pub use netns::{NetnsThread, in_netns, list_netns, spawn_in_netns, sysctl_get};
pub use root::{is_root, require_root};
pub use servers::{
    BackendServer, TRANSFER_CHUNK, TransferReport, tcp_probe, tcp_probes, tcp_transfer, udp_probe,
};
pub use sniff::{Sniffer, SynInfo, TcpOption, TcpPacket};
pub use topology::{BackendRouting, Testbed, TestbedSpec};
pub use world::*;
