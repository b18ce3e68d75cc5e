//! From probes to figures: the blast figure, and the capacity search (a
//! ramp from the blast's delivered rate, then a bisection).
use super::*;

/// A director's rate in frames/s; only a lower bound when it delivered
/// (nearly) all the generator could offer: then the generator may be what
/// limits it.
#[derive(Clone, Copy)]
pub struct Figure {
    pub rate: f64,
    pub lower_bound: bool,
}

impl Figure {
    pub fn show(&self) -> String {
        let bound = if self.lower_bound { ">=" } else { "" };
        format!("{bound:>2} {:6.3}", self.rate / 1e6)
    }
}

/// What the director delivered under overload.
pub fn blast_figure(blast: &Probe) -> Figure {
    Figure {
        rate: blast.delivered(),
        lower_bound: blast.ok(),
    }
}

/// The highest offered rate at which the director delivers DELIVERED_OK,
/// by paced probes. The blast's delivered rate is the first guess (close,
/// with the director on its own CPU); a ramp by RAMP brackets the
/// capacity, a bisection narrows the bracket to RESOLUTION.
pub fn capacity(g: &mut Generator, blast: &Probe) -> Figure {
    let top = blast.offered();
    if blast.ok() {
        return blast_figure(blast);
    }
    let mut best = 0.0f64;
    let mut passes = |g: &mut Generator, rate: f64| match sustained(g, rate) {
        Some(offered) => {
            best = best.max(offered);
            true
        }
        None => false,
    };
    // Target rates: `lo` passed, `hi` failed (the blast did).
    let (mut lo, mut hi) = (None, top);
    let mut rate = blast.delivered().min(top / RAMP);
    loop {
        assert!(
            rate >= MIN_RATE,
            "the director loses frames even at {rate:.0} fps"
        );
        if passes(g, rate) {
            lo = Some(rate);
            if rate * RAMP >= hi {
                break;
            }
            rate *= RAMP;
        } else {
            hi = rate;
            if lo.is_some() {
                break;
            }
            rate /= RAMP;
        }
    }
    let mut lo = lo.unwrap();
    while hi / lo > RESOLUTION {
        let mid = (lo * hi).sqrt();
        if passes(g, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Figure {
        rate: best,
        lower_bound: best >= GEN_LIMITED * top,
    }
}

/// Probes at `rate` and returns the offered rate if the director delivered
/// enough. A failure is tried once more: load from other processes can
/// only cost frames, so a pass is the better evidence.
pub fn sustained(g: &mut Generator, rate: f64) -> Option<f64> {
    for _ in 0..2 {
        let p = g.probe(rate);
        p.log(&format!("paced at {:.3} Mpps", rate / 1e6));
        if p.ok() {
            return Some(p.offered());
        }
    }
    None
}
