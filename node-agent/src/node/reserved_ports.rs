//! Keeping the kernel off the SNAT ports. In Kubernetes mode FullNAT flows
//! leave with the node's own address, so a port the data plane hands to a
//! flow must never be one the kernel picks for a connection of its own to
//! the same backend (kubelet probes pods, which are backends): the replies
//! of one would be taken for the other. The agent adds its SNAT range to
//! `net.ipv4.ip_local_reserved_ports` (the kernel skips those when it picks
//! an ephemeral port; explicit binds are unaffected), keeping what is there.
//!
//! The reservation is left in place when the agent stops: forwarding goes
//! on with the same ports. A range that would leave the kernel no
//! ephemeral port at all is refused at start.
//!
//! A range wholly outside `net.ipv4.ip_local_port_range` needs no
//! reservation (the kernel picks ephemeral ports only inside it) and gets
//! no write: a container's `/proc/sys` is read-only, and the default range
//! (10000-29999, below the kernel's 32768-60999) must start there. This is
//! decided at start: widening the ephemeral range over the SNAT ports later
//! needs the agent restarted (or the ports reserved by hand).
use std::path::Path;

pub const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
pub const EPHEMERAL: &str = "/proc/sys/net/ipv4/ip_local_port_range";

#[derive(Debug, thiserror::Error)]
pub enum ReservedPortsError {
    #[error("{path}: {source}")]
    Io {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: cannot read {text:?}")]
    Parse { path: &'static str, text: String },
    #[error(
        "SNAT ports {min}-{max} would leave the kernel no ephemeral port of its range {lo}-{hi} (net.ipv4.ip_local_port_range): choose --snat-ports outside it"
    )]
    NoEphemeralLeft {
        min: u16,
        max: u16,
        lo: u16,
        hi: u16,
    },
    #[error(
        "SNAT ports {min}-{max} overlap the kernel's ephemeral ports {lo}-{hi} (net.ipv4.ip_local_port_range) and {RESERVED} is read-only here (a container): choose --snat-ports outside {lo}-{hi}, or reserve them on the node"
    )]
    ReadOnly {
        min: u16,
        max: u16,
        lo: u16,
        hi: u16,
    },
}

/// Inclusive port ranges, sorted and merged.
pub type Ranges = Vec<(u16, u16)>;

/// Parses the sysctl's format: comma-separated ports and `a-b` ranges
/// (empty: none).
pub fn parse(text: &str) -> Option<Ranges> {
    let mut out = Vec::new();
    for part in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let p = part.parse().ok()?;
                (p, p)
            }
        };
        if b < a {
            return None;
        }
        out.push((a, b));
    }
    Some(merge(out))
}

fn merge(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The sysctl's format.
pub fn render(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `existing` with `ours` added; None when it already covers it.
pub fn with_reserved(existing: &[(u16, u16)], ours: (u16, u16)) -> Option<Ranges> {
    let covered = existing.iter().any(|&(a, b)| a <= ours.0 && ours.1 <= b);
    (!covered).then(|| merge(existing.iter().copied().chain([ours]).collect()))
}

/// Whether the kernel could pick a port of `ours` for a connection of its
/// own: only ports of its ephemeral range `lo..=hi` are picked.
pub fn overlaps(ours: (u16, u16), (lo, hi): (u16, u16)) -> bool {
    ours.0 <= hi && lo <= ours.1
}

/// Ephemeral ports of `lo..=hi` left to the kernel once `reserved` is.
pub fn ephemeral_left((lo, hi): (u16, u16), reserved: &[(u16, u16)]) -> u32 {
    let total = u32::from(hi) - u32::from(lo) + 1;
    let taken: u32 = reserved
        .iter()
        .map(|&(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            if a > b {
                0
            } else {
                u32::from(b) - u32::from(a) + 1
            }
        })
        .sum();
    total - taken
}

fn read(path: &'static str) -> Result<String, ReservedPortsError> {
    std::fs::read_to_string(Path::new(path))
        .map_err(|source| ReservedPortsError::Io { path, source })
}

/// Reserves `ours` in this network namespace. Returns what was written
/// (None: already reserved).
pub fn reserve(ours: (u16, u16)) -> Result<Option<String>, ReservedPortsError> {
    let text = read(EPHEMERAL)?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
        return Err(ReservedPortsError::Parse {
            path: EPHEMERAL,
            text,
        });
    };
    if !overlaps(ours, (lo, hi)) {
        return Ok(None);
    }
    let text = read(RESERVED)?;
    let existing = parse(&text).ok_or(ReservedPortsError::Parse {
        path: RESERVED,
        text,
    })?;
    let Some(next) = with_reserved(&existing, ours) else {
        return Ok(None);
    };
    if ephemeral_left((lo, hi), &next) == 0 {
        return Err(ReservedPortsError::NoEphemeralLeft {
            min: ours.0,
            max: ours.1,
            lo,
            hi,
        });
    }
    let line = render(&next);
    std::fs::write(RESERVED, &line).map_err(|source| {
        if source.raw_os_error() == Some(libc::EROFS) {
            ReservedPortsError::ReadOnly {
                min: ours.0,
                max: ours.1,
                lo,
                hi,
            }
        } else {
            ReservedPortsError::Io {
                path: RESERVED,
                source,
            }
        }
    })?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sysctl_format_parses_merges_and_renders() {
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("\n"), Some(vec![]));
        assert_eq!(
            parse("8080,9000-9010\n"),
            Some(vec![(8080, 8080), (9000, 9010)])
        );
        assert_eq!(parse("9005-9020,9000-9010,9021"), Some(vec![(9000, 9021)]));
        assert_eq!(parse("9010-9000"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(render(&[(8080, 8080), (9000, 9010)]), "8080,9000-9010");
    }

    #[test]
    fn ours_is_added_to_what_is_there() {
        let existing = vec![(8080, 8080), (40000, 40010)];
        assert_eq!(
            with_reserved(&existing, (10000, 29999)),
            Some(vec![(8080, 8080), (10000, 29999), (40000, 40010)])
        );
        assert_eq!(
            with_reserved(&[(10000, 30000)], (10000, 29999)),
            None,
            "already covered"
        );
        assert_eq!(
            with_reserved(&[(29000, 35000)], (10000, 29999)),
            Some(vec![(10000, 35000)])
        );
    }

    #[test]
    fn only_a_range_the_kernel_could_pick_from_is_reserved() {
        let kernel = (32768, 60999);
        assert!(!overlaps((10000, 29999), kernel), "the default range");
        assert!(!overlaps((61000, 65535), kernel));
        assert!(overlaps((30000, 32768), kernel), "first port shared");
        assert!(overlaps((60999, 65000), kernel), "last port shared");
        assert!(overlaps((40000, 41000), kernel));
        assert!(overlaps((1, 65535), kernel));
    }

    #[test]
    fn ephemeral_ports_left_count_only_the_overlap() {
        let kernel = (32768, 60999);
        assert_eq!(ephemeral_left(kernel, &[(10000, 29999)]), 28232);
        assert_eq!(ephemeral_left(kernel, &[(40000, 49999)]), 28232 - 10000);
        assert_eq!(ephemeral_left(kernel, &[(1, 65535)]), 0);
    }
}
