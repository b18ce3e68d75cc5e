//! Pacing a sweep: a sweep of millions of entries must not take a core
//! from the data plane's softirqs, so it sleeps between chunks.
use std::time::{Duration, Instant};

/// Keeps the sweep's CPU share at `max_cpu` by sleeping after each chunk.
pub struct Pacer {
    max_cpu: f64,
    busy: Duration,
    chunk_start: Instant,
}

impl Pacer {
    pub fn new(max_cpu: f64) -> Self {
        Self {
            max_cpu: if max_cpu.is_finite() && max_cpu > 0.0 {
                max_cpu.min(1.0)
            } else {
                1.0
            },
            busy: Duration::ZERO,
            chunk_start: Instant::now(),
        }
    }

    /// Work starts now (the time since the last chunk is not work).
    pub(super) fn start_chunk(&mut self) {
        self.chunk_start = Instant::now();
    }

    /// Time spent working so far.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    pub(super) fn chunk_done(&mut self) {
        let worked = self.chunk_start.elapsed();
        self.busy += worked;
        if self.max_cpu < 1.0 {
            std::thread::sleep(worked.mul_f64((1.0 - self.max_cpu) / self.max_cpu));
        }
        self.chunk_start = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_bounds_the_cpu_share() {
        let mut p = Pacer::new(0.5);
        let t = Instant::now();
        p.chunk_start = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        p.chunk_done();
        // 20 ms of "work" at 50%: at least 20 ms of pause.
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert!(p.busy >= Duration::from_millis(20));
        for bad in [0.0, -1.0, f64::NAN, 7.0] {
            assert_eq!(Pacer::new(bad).max_cpu, 1.0, "{bad}");
        }
    }
}
