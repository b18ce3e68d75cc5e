//! Gratuitous ARPs after a VIP starts being announced from this node: a
//! schedule per VIP, sent on the segment. Used by the hot-standby
//! announcer on takeover, and by the core when a version makes it announce
//! a VIP it did not (a controller's new owner, a standalone agent's start),
//! so that clients and routers move at once instead of after their ARP
//! entries expire.
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::arp;
use super::segment::Segment;

/// When gratuitous ARPs go out after a takeover, from the claim: five, as
/// keepalived's `vrrp_garp_master_repeat` default, but spread rather than
/// back to back, so that one lost frame, a switch still learning the port,
/// or a host that was busy does not keep a client on the old MAC; the last
/// at 5 s matches keepalived's `vrrp_garp_master_delay` second round.
pub const GARP_SCHEDULE: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// The pending gratuitous ARPs: (when, VIP, index into GARP_SCHEDULE).
#[derive(Debug, Default)]
pub struct GarpSchedule {
    pending: Vec<(Instant, Ipv4Addr, usize)>,
}

impl GarpSchedule {
    /// Starts `vip`'s schedule at `now` (again, if it was running).
    pub fn start(&mut self, vip: Ipv4Addr, now: Instant) {
        self.cancel(vip);
        self.pending.push((now, vip, 0));
    }

    /// No more for `vip`: this node let it go.
    pub fn cancel(&mut self, vip: Ipv4Addr) {
        self.pending.retain(|(_, v, _)| *v != vip);
    }

    /// The VIPs due at `now`, each scheduled for its next one.
    pub fn due(&mut self, now: Instant) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for (at, vip, k) in &mut self.pending {
            if *at <= now {
                out.push(*vip);
                *k += 1;
                if let Some(later) = GARP_SCHEDULE.get(*k) {
                    *at += *later - GARP_SCHEDULE[*k - 1];
                }
            }
        }
        self.pending.retain(|(_, _, k)| *k < GARP_SCHEDULE.len());
        out
    }

    /// When the next one is due, if any.
    pub fn next(&self) -> Option<Instant> {
        self.pending.iter().map(|(at, _, _)| *at).min()
    }

    /// Sends what is due on `segment`; returns how many went out.
    pub fn send_due(&mut self, segment: &Segment, mac: [u8; 6], now: Instant) -> usize {
        let mut sent = 0;
        for vip in self.due(now) {
            match segment.send(&arp::gratuitous(mac, vip)) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!(%vip, "gratuitous ARP: {e}"),
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_per_vip_on_the_schedule_and_none_after_a_cancel() {
        let t0 = Instant::now();
        let (a, b) = (
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11),
        );
        let mut s = GarpSchedule::default();
        s.start(a, t0);
        s.start(b, t0);
        let mut sent_a = Vec::new();
        let mut now = t0;
        while now <= t0 + Duration::from_secs(6) {
            for v in s.due(now) {
                if v == a {
                    sent_a.push(now - t0);
                }
            }
            if now == t0 + Duration::from_millis(200) {
                s.cancel(b);
            }
            now += Duration::from_millis(50);
        }
        assert_eq!(sent_a, GARP_SCHEDULE, "every one of a's, each on time");
        assert_eq!(s.next(), None, "nothing left");
        s.start(b, t0);
        assert_eq!(s.due(t0), [b]);
        assert_eq!(s.next(), Some(t0 + Duration::from_millis(100)));
    }
}
