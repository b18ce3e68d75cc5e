//! End to end, as root: the TOA reader (`ballast-agent realserver --toa`) on
//! a FullNAT backend, with ordinary servers that only call accept() and
//! getpeername() or log their peer: an IPv4 Python server, a dual-stack one
//! (v4 clients as ::ffff:a.b.c.d), nginx from Debian.
//!
//! cgroup hooks are per cgroup, not per network namespace: each test
//! attaches the reader to cgroups of its own (its servers run in them),
//! never to the root, so parallel tests and the host are untouched; pins go
//! under a pin root of its own.
mod dual_stack;
mod ipv4;
mod nginx;
mod support;
