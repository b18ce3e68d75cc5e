//! L2 hot standby: one director of a group answers ARP for each VIP, the
//! next live one takes over when its heartbeats stop, without the
//! controller or the API server. `standby` decides (pure), `wire` is the
//! datagram, `arp` the frames, `shell` the sockets, maps and timers.
pub mod standby;
pub mod wire;
