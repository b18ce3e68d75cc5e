//! Announcement: making the VIPs reachable, beside the agent core (which
//! programs what is served). One module per protocol, each a pure state
//! machine (events in, actions out) with a thin I/O shell. Today: L2 hot
//! standby (`l2`); BGP and BFD follow the same shape.
pub mod l2;
