//! L2 hot standby: one director of a group answers ARP for each VIP, the
//! next live one takes over when its heartbeats stop, without the
//! controller or the API server. `standby` decides (pure), `wire` is the
//! datagram, `arp` the frames; `segment`, `owned` and `shell` are the I/O
//! (the ARP socket and carrier, the maps and liveness stamp, the task).
pub mod arp;
pub mod counters;
pub mod garp;
pub mod options;
pub mod owned;
pub mod segment;
pub mod shell;
pub mod standby;
pub mod wire;

pub use counters::{StandbyCounters, StandbySnapshot};
pub use shell::{StandbyOptions, run};
pub use standby::{Table, Timing};
