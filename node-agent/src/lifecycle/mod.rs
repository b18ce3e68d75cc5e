//! The agent process's lifecycle around its data plane: which pin directory
//! is its own (`identity`: keyed by network namespace and ifindex, not by
//! interface name), one agent per interface (`lock`), whether its pins
//! outlive it (`bpffs`), signals handled from the first moment (`signals`),
//! interface facts worth a warning at start (`veth`), and removing a data
//! plane (`cleanup`).
pub mod bpffs;
pub mod cleanup;
pub mod identity;
pub mod lock;
pub mod signals;
pub mod veth;
