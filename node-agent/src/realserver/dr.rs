//! `ballast-agent realserver --vip`: the LVS-DR real-server setup. The VIP goes on
//! `lo` so the backend accepts packets for it, and ARP is restricted so that
//! the backend never answers or announces the VIP on the shared segment.
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

fn ip(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))
}

/// Whether `cidr` (a /32) is configured on `lo`.
fn on_lo(cidr: &str) -> anyhow::Result<bool> {
    let out = ip(&["-4", "-o", "addr", "show", "dev", "lo"])?;
    if !out.status.success() {
        bail!(
            "ip -4 addr show dev lo: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w == cidr))
}

fn sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("setting {key}={value}"))
}

pub fn apply(vips: &[Ipv4Addr], remove: bool) -> anyhow::Result<()> {
    if !remove {
        // arp_ignore=1: answer ARP only for addresses on the receiving
        // interface; arp_announce=2: never use the VIP as ARP source.
        for scope in ["all", "lo"] {
            sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
            sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
        }
    }
    for vip in vips {
        let cidr = format!("{vip}/32");
        let verb = if remove { "del" } else { "replace" };
        let out = ip(&["addr", verb, &cidr, "dev", "lo"])?;
        if !out.status.success() {
            // Removing an address that is not there is not an error. Asked
            // of the kernel rather than read from the message, which differs
            // between iproute2 versions ("Cannot assign requested address",
            // "ipv4: Address not found").
            if remove && !on_lo(&cidr)? {
                println!("{cidr} was not on lo");
                continue;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("ip addr {verb} {cidr} dev lo: {}", err.trim());
        }
        println!(
            "{} {cidr} on lo",
            if remove { "removed" } else { "configured" }
        );
    }
    Ok(())
}
