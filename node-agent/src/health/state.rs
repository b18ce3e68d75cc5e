//! Pure: one backend's health verdict from its probe results.
//!
//! A target starts UP, unless a previous agent on the interface left its
//! verdict (see `HealthChecker::seed`): a configuration that is just loaded serves at once,
//! and a backend that is really dead is taken out after `unhealthy_threshold`
//! probes (keepalived and IPVS-based balancers behave alike). Starting DOWN
//! would refuse every connection of a fresh load for `healthy_threshold`
//! intervals, and of every new backend added on a reload.

use serde::{Deserialize, Serialize};

/// The verdict on one probe target and how it got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Receives new flows.
    pub up: bool,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// Why the most recent failed probe failed (kept after recovery, so that
    /// a flapping backend shows its cause).
    pub last_failure: Option<String>,
    /// UP -> DOWN and DOWN -> UP changes since the target was first probed.
    pub transitions: u64,
}

/// A change of verdict, returned by [`Health::record`] so the caller can
/// log it and re-apply the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    WentDown,
    CameUp,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// UP, with no history (see the module doc for why UP).
    pub fn new() -> Self {
        Health {
            up: true,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_failure: None,
            transitions: 0,
        }
    }

    /// Counts one probe result. An UP target goes DOWN on its
    /// `unhealthy_threshold`-th failure in a row; a DOWN one comes UP on its
    /// `healthy_threshold`-th success in a row. Thresholds of 0 act as 1.
    pub fn record(
        &mut self,
        result: Result<(), String>,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        match result {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                if !self.up && self.consecutive_successes >= healthy_threshold.max(1) {
                    self.up = true;
                    self.transitions += 1;
                    return Some(Transition::CameUp);
                }
            }
            Err(reason) => {
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_failure = Some(reason);
                if self.up && self.consecutive_failures >= unhealthy_threshold.max(1) {
                    self.up = false;
                    self.transitions += 1;
                    return Some(Transition::WentDown);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s` = success, `f` = failure; `up` is the verdict after each probe.
    struct Case {
        name: &'static str,
        healthy: u32,
        unhealthy: u32,
        probes: &'static str,
        up: &'static str,
        transitions: u64,
    }

    const CASES: &[Case] = &[
        Case {
            name: "starts up and stays up on successes",
            healthy: 2,
            unhealthy: 2,
            probes: "sss",
            up: "111",
            transitions: 0,
        },
        Case {
            name: "one failure below the threshold keeps it up",
            healthy: 2,
            unhealthy: 2,
            probes: "fsfs",
            up: "1111",
            transitions: 0,
        },
        Case {
            name: "down on the threshold-th consecutive failure",
            healthy: 2,
            unhealthy: 3,
            probes: "fffff",
            up: "11000",
            transitions: 1,
        },
        Case {
            name: "back up after healthy-threshold successes in a row",
            healthy: 2,
            unhealthy: 2,
            probes: "ffssss",
            up: "100111",
            transitions: 2,
        },
        Case {
            name: "a failure resets the success run while down",
            healthy: 3,
            unhealthy: 1,
            probes: "fssfsss",
            up: "0000001",
            transitions: 2,
        },
        Case {
            name: "threshold 1 flips on every change",
            healthy: 1,
            unhealthy: 1,
            probes: "fsfs",
            up: "0101",
            transitions: 4,
        },
        Case {
            name: "threshold 0 acts as 1",
            healthy: 0,
            unhealthy: 0,
            probes: "fs",
            up: "01",
            transitions: 2,
        },
    ];

    #[test]
    fn verdicts_follow_the_thresholds() {
        for c in CASES {
            let mut h = Health::new();
            assert!(h.up, "{}: starts up", c.name);
            let mut got = String::new();
            for (i, p) in c.probes.chars().enumerate() {
                let was = h.up;
                let result = if p == 's' {
                    Ok(())
                } else {
                    Err(format!("failure #{i}"))
                };
                let t = h.record(result, c.healthy, c.unhealthy);
                let want_t = match (was, h.up) {
                    (true, false) => Some(Transition::WentDown),
                    (false, true) => Some(Transition::CameUp),
                    _ => None,
                };
                assert_eq!(t, want_t, "{}: transition at probe {i}", c.name);
                got.push(if h.up { '1' } else { '0' });
            }
            assert_eq!(got, c.up, "{}", c.name);
            assert_eq!(h.transitions, c.transitions, "{}", c.name);
        }
    }

    #[test]
    fn last_failure_is_kept_after_recovery() {
        let mut h = Health::new();
        h.record(Err("connect: connection refused".into()), 1, 1);
        assert!(!h.up);
        h.record(Ok(()), 1, 1);
        assert!(h.up);
        assert_eq!(
            h.last_failure.as_deref(),
            Some("connect: connection refused")
        );
        assert_eq!((h.consecutive_successes, h.consecutive_failures), (1, 0));
    }
}
