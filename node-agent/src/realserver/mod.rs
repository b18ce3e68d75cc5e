//! `ballast-agent realserver`: what a backend needs behind a director. DR
//! (`--vip`): the VIP on `lo` with ARP restricted ([`dr`]). FullNAT
//! (`--toa`): the TOA reader, so that applications see the client rather
//! than the director's SNAT address ([`crate::toa_reader`]).
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ipnet::Ipv4Net;

use crate::toa_reader;

pub mod dr;
pub mod hold;

pub use dr::apply;

#[derive(Args, Debug)]
pub struct RealserverArgs {
    /// DR: put these VIPs on lo (arp_ignore=1, arp_announce=2).
    #[arg(long, num_args = 1.., required_unless_present_any = ["toa", "status"])]
    pub vip: Vec<Ipv4Addr>,
    /// FullNAT: install the TOA reader, so that accept() and getpeername()
    /// return the client's address from the director's TOA option.
    /// Pinned under <pin root>/toa; a second install updates the trusted set.
    #[arg(long)]
    pub toa: bool,
    /// Directors' SNAT addresses (CIDRs or addresses) the TOA option is
    /// believed from; required with --toa: nothing is trusted until named.
    #[arg(long, value_delimiter = ',', value_parser = toa_reader::trusted::parse_cidr,
          requires = "toa", conflicts_with = "remove")]
    pub toa_from: Vec<Ipv4Net>,
    /// The cgroup (v2) whose processes' sockets the reader serves
    /// (default: the cgroup2 root, i.e. the whole host).
    #[arg(long, requires = "toa", conflicts_with = "remove")]
    pub cgroup: Option<PathBuf>,
    /// Install, then keep running as one of the node's holders of the
    /// reader (a DaemonSet pod): reinstall if its pins vanish; on SIGTERM
    /// remove it only when no other holder on the node is alive.
    #[arg(long, requires = "toa", conflicts_with = "remove")]
    pub hold: bool,
    /// With --hold: seconds between checks that the reader is still pinned.
    #[arg(long, default_value_t = 30, requires = "hold",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recheck_seconds: u64,
    /// Undo: remove the VIPs from lo (--vip) / detach and unpin the reader (--toa).
    #[arg(long)]
    pub remove: bool,
    /// Show what is installed: the TOA reader's cgroup, trusted directors and counters.
    #[arg(long, conflicts_with_all = ["vip", "toa", "remove"])]
    pub status: bool,
}

pub fn run(args: &RealserverArgs, pin_root: &Path) -> anyhow::Result<()> {
    let toa_dir = toa_reader::pin_dir(pin_root);
    if args.status {
        let status = toa_reader::read_status(&toa_dir)?;
        print!("{}", toa_reader::status::render(status.as_ref(), &toa_dir));
        return Ok(());
    }
    if !args.vip.is_empty() {
        dr::apply(&args.vip, args.remove)?;
    }
    if args.toa && args.remove {
        let was = toa_reader::remove(&toa_dir)?;
        println!(
            "{}",
            if was {
                format!("TOA reader removed (unpinned {})", toa_dir.display())
            } else {
                format!(
                    "TOA reader was not installed (nothing at {})",
                    toa_dir.display()
                )
            }
        );
    } else if args.hold {
        hold::Hold {
            toa_dir: &toa_dir,
            holders_dir: toa_reader::holders::holders_dir(pin_root),
            cgroup: args.cgroup.as_deref(),
            trusted: &args.toa_from,
            recheck: std::time::Duration::from_secs(args.recheck_seconds),
        }
        .run()?;
    } else if args.toa {
        let outcome = toa_reader::install(&toa_dir, args.cgroup.as_deref(), &args.toa_from)
            .context("realserver --toa")?;
        println!("{outcome}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RealserverArgs,
    }

    fn parse(line: &[&str]) -> Result<RealserverArgs, String> {
        Cli::try_parse_from(std::iter::once("realserver").chain(line.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn vip_alone_keeps_working_and_something_must_be_asked() {
        let a = parse(&["--vip", "203.0.113.10", "--remove"]).unwrap();
        assert_eq!(a.vip, ["203.0.113.10".parse::<Ipv4Addr>().unwrap()]);
        assert!(a.remove && !a.toa);
        let err = parse(&[]).unwrap_err();
        assert!(err.contains("--vip"), "{err}");
    }

    #[test]
    fn toa_flags_parse_lists_and_need_toa() {
        let a = parse(&[
            "--toa",
            "--toa-from",
            "10.0.0.1,10.2.0.0/16",
            "--cgroup",
            "/sys/fs/cgroup/x",
        ])
        .unwrap();
        assert_eq!(
            a.toa_from,
            [
                "10.0.0.1/32".parse::<Ipv4Net>().unwrap(),
                "10.2.0.0/16".parse().unwrap()
            ]
        );
        assert_eq!(a.cgroup, Some(PathBuf::from("/sys/fs/cgroup/x")));
        let err = parse(&["--vip", "1.2.3.4", "--toa-from", "10.0.0.1"]).unwrap_err();
        assert!(err.contains("--toa"), "{err}");
        let err = parse(&["--toa", "--toa-from", "10.0.0.1/8"]).unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let err = parse(&["--toa", "--remove", "--toa-from", "10.0.0.1"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let a = parse(&["--toa", "--toa-from", "10.0.0.1", "--hold"]).unwrap();
        assert!(a.hold && a.recheck_seconds == 30);
        let err = parse(&["--toa", "--hold", "--remove"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = parse(&["--toa", "--recheck-seconds", "5"]).unwrap_err();
        assert!(err.contains("--hold"), "{err}");
        let err = parse(&["--toa", "--hold", "--recheck-seconds", "0"]).unwrap_err();
        assert!(err.contains("not in 1.."), "{err}");
        let err = parse(&["--status", "--toa"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        assert!(parse(&["--status"]).unwrap().status);
    }

    #[test]
    fn toa_without_trusted_directors_is_refused_before_touching_anything() {
        let a = parse(&["--toa"]).unwrap();
        let dir = std::env::temp_dir().join(format!("toa-none-{}", std::process::id()));
        let err = run(&a, &dir).unwrap_err();
        assert!(
            format!("{err:#}").contains("no director is trusted yet"),
            "{err:#}"
        );
        assert!(!dir.exists(), "nothing created");
    }
}
