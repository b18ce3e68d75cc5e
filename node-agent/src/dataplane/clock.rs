//! The data plane's clock as user space reads it. The data plane stamps
//! flows in jiffies (conntrack.h: `bpf_jiffies64` is inlined into a load,
//! where `bpf_ktime_get_coarse_ns` is a helper call costing ~17 ns a
//! packet). User space has no jiffies clock, so it asks the data plane: the
//! `ballast_clock` program, run once with BPF_PROG_TEST_RUN, writes the
//! current jiffies and coarse monotonic nanoseconds into the frame. The
//! program is pinned next to the maps, so that the sweeper thread and
//! `stats` can open it too.
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;

use crate::dataplane::error::DataplaneError;

/// Where the clock program is pinned, under the pin directory.
pub const CLOCK_PIN: &str = "clock";
pub const CLOCK_PROGRAM: &str = "ballast_clock";

/// One reading: the same instant on both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    pub jiffies: u64,
    pub coarse_ns: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HzError {
    #[error("the readings are {0} ns apart; at least {MIN_SPAN_NS} ns are needed")]
    TooClose(u64),
    #[error("measured {0} jiffies per second, not a kernel tick rate (100 to 1000)")]
    Implausible(u64),
}

/// Readings this far apart put the tick rate within 5% (one tick either
/// end) even at HZ=100.
pub const MIN_SPAN_NS: u64 = 200_000_000;
/// The tick rates a kernel is built with (CONFIG_HZ_*).
const KNOWN_HZ: [u32; 5] = [100, 250, 300, 500, 1000];

/// Jiffies per second from two readings. Both clocks advance at the tick,
/// so the ratio is exact to a tick either end; it is snapped to the nearest
/// known rate when within 5% (any other rate is returned as measured).
pub fn hz_from(a: ClockReading, b: ClockReading) -> Result<u32, HzError> {
    let span_ns = b.coarse_ns.saturating_sub(a.coarse_ns);
    if span_ns < MIN_SPAN_NS {
        return Err(HzError::TooClose(span_ns));
    }
    let ticks = b.jiffies.saturating_sub(a.jiffies);
    let hz = (ticks as u128 * 1_000_000_000 + span_ns as u128 / 2) / span_ns as u128;
    let hz = hz as u64;
    if !(90..=1100).contains(&hz) {
        return Err(HzError::Implausible(hz));
    }
    let nearest = KNOWN_HZ
        .iter()
        .copied()
        .min_by_key(|k| (i64::from(*k) - hz as i64).unsigned_abs())
        .expect("non-empty");
    if (i64::from(nearest) - hz as i64).unsigned_abs() * 20 <= u64::from(nearest) {
        Ok(nearest)
    } else {
        Ok(hz as u32)
    }
}

/// The pinned `ballast_clock` program.
pub struct DataplaneClock {
    prog: Xdp,
}

impl DataplaneClock {
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let path = pin_dir.join(CLOCK_PIN);
        let prog = Xdp::from_pin(&path, XdpAttachType::Interface).map_err(|e| {
            DataplaneError::Program {
                name: CLOCK_PROGRAM,
                source: Box::new(e),
            }
        })?;
        Ok(Self { prog })
    }

    pub fn read(&self) -> Result<ClockReading, DataplaneError> {
        // The kernel wants at least an Ethernet header's worth of frame.
        let frame = [0u8; 64];
        let mut out = [0u8; 64];
        let r = self
            .prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .map_err(|e| DataplaneError::Program {
                name: CLOCK_PROGRAM,
                source: Box::new(e),
            })?;
        const XDP_PASS: u32 = 2;
        if r.return_value != XDP_PASS {
            return Err(DataplaneError::Clock(format!(
                "{CLOCK_PROGRAM} returned {}",
                r.return_value
            )));
        }
        let word =
            |i: usize| u64::from_ne_bytes(out[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(ClockReading {
            jiffies: word(0),
            coarse_ns: word(1),
        })
    }

    /// Now, in the data plane's time unit (jiffies).
    pub fn now(&self) -> Result<u64, DataplaneError> {
        Ok(self.read()?.jiffies)
    }

    /// The kernel's tick rate, measured once per process (it cannot change
    /// while the kernel runs): two readings MIN_SPAN_NS apart.
    pub fn hz(&self) -> Result<u32, DataplaneError> {
        static HZ: OnceLock<u32> = OnceLock::new();
        if let Some(hz) = HZ.get() {
            return Ok(*hz);
        }
        let a = self.read()?;
        let mut b = a;
        // A tick late at either end: sleep a little past the span.
        while b.coarse_ns.saturating_sub(a.coarse_ns) < MIN_SPAN_NS {
            std::thread::sleep(Duration::from_millis(20));
            b = self.read()?;
        }
        let hz = hz_from(a, b).map_err(|e| DataplaneError::Clock(e.to_string()))?;
        Ok(*HZ.get_or_init(|| hz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(jiffies: u64, coarse_ns: u64) -> ClockReading {
        ClockReading { jiffies, coarse_ns }
    }

    #[test]
    fn tick_rates_are_recognised_a_tick_off_either_way() {
        for hz in KNOWN_HZ {
            // The shortest span hz() accepts, and a tick's error.
            let span = MIN_SPAN_NS;
            let ticks = span * u64::from(hz) / 1_000_000_000;
            for extra in [-1i64, 0, 1] {
                let got = hz_from(
                    reading(1_000, 7_000_000),
                    reading((1_000 + ticks as i64 + extra) as u64, 7_000_000 + span),
                );
                assert_eq!(got, Ok(hz), "HZ={hz}, {extra:+} tick");
            }
        }
    }

    #[test]
    fn readings_too_close_or_implausible_are_refused() {
        assert_eq!(
            hz_from(reading(0, 0), reading(15, 150_000_000)),
            Err(HzError::TooClose(150_000_000))
        );
        assert_eq!(
            hz_from(reading(0, 0), reading(0, 300_000_000)),
            Err(HzError::Implausible(0))
        );
    }

    #[test]
    fn an_unknown_rate_is_kept_as_measured() {
        // 400 Hz is 20% from both 300 and 500.
        assert_eq!(hz_from(reading(0, 0), reading(400, 1_000_000_000)), Ok(400));
    }
}
