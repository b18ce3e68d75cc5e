//! Tests, benchmarks and the demo that need root say so in the runner's own
//! terms: they fail with the reason. One that returned early would report
//! success without having tested anything.

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails (panics: the test fails, a benchmark exits non-zero) unless the
/// process is root; `what` says what needs it.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(is_root(), "needs root: {what}");
}
