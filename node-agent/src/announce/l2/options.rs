//! The hot-standby flags of `ballast-agent standalone`, and what they
//! become.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::shell::StandbyOptions;
use super::standby::Timing;
use super::wire::{Key, MAX_NAME};

/// The port heartbeats use when `--peers` names an address without one.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 9470;
/// Shortest key accepted: 128 bits.
const MIN_KEY_BYTES: usize = 16;

/// Durations as flags take them: `100ms`, `3s`, `1m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|e| format!("{s}: {e}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s}: unit must be ms, s or m")),
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct StandbyArgs {
    /// This node's name in its hot-standby group: equal priorities go to
    /// the name that sorts first, and peers' logs name it.
    #[arg(long, requires = "peers")]
    pub node_name: Option<String>,
    /// The other directors of the hot-standby group, comma separated (IP,
    /// or IP:port when it listens on another port than ours). With it,
    /// each VIP is announced by one node of the group (the live one with
    /// the highest `announce.l2.priority`); without it, this agent
    /// announces every VIP it serves.
    #[arg(long, value_delimiter = ',', requires_all = ["node_name", "heartbeat_key_file"])]
    pub peers: Vec<String>,
    /// A file holding the group's shared secret (at least 16 bytes; every
    /// member has the same): heartbeats carry an HMAC-SHA256 under it.
    #[arg(long)]
    pub heartbeat_key_file: Option<PathBuf>,
    /// UDP port heartbeats are received on.
    #[arg(long, default_value_t = DEFAULT_HEARTBEAT_PORT)]
    pub heartbeat_port: u16,
    /// Time between two heartbeats to each peer.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a peer counts as dead (with no ARP answer
    /// from it on the segment): failover takes interval x misses.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub heartbeat_misses: u32,
    /// How long a returning higher-priority node hears its peers before it
    /// takes its VIPs back (preemption); 0 takes them back at once.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub preempt_hold: Duration,
    /// How long the data plane goes on answering ARP for this node's VIPs
    /// after the agent stops refreshing it: an agent restart shorter than
    /// this moves nothing; a crashed agent that stays down loses its VIPs
    /// this long (plus interval x misses) after it died.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub restart_grace: Duration,
}

impl StandbyArgs {
    /// None without `--peers`: no group, every VIP announced.
    pub fn options(&self, interface: &str) -> anyhow::Result<Option<StandbyOptions>> {
        if self.peers.is_empty() {
            return Ok(None);
        }
        let node_name = self
            .node_name
            .clone()
            .context("--peers needs --node-name")?;
        anyhow::ensure!(
            !node_name.is_empty() && node_name.len() <= MAX_NAME,
            "--node-name must be 1 to {MAX_NAME} bytes"
        );
        let key_file = self
            .heartbeat_key_file
            .as_ref()
            .context("--peers needs --heartbeat-key-file")?;
        let secret = std::fs::read(key_file)
            .with_context(|| format!("--heartbeat-key-file {}", key_file.display()))?;
        let secret = secret.trim_ascii_end();
        anyhow::ensure!(
            secret.len() >= MIN_KEY_BYTES,
            "--heartbeat-key-file {}: the key is {} bytes, at least {MIN_KEY_BYTES} are needed",
            key_file.display(),
            secret.len()
        );
        let mut peers = Vec::new();
        for p in &self.peers {
            let addr = match p.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => SocketAddr::new(
                    p.parse::<IpAddr>()
                        .with_context(|| format!("--peers {p}: not an IP or IP:port"))?,
                    DEFAULT_HEARTBEAT_PORT,
                ),
            };
            anyhow::ensure!(
                !peers.iter().any(|q: &SocketAddr| q.ip() == addr.ip()),
                "--peers {p}: listed twice"
            );
            peers.push(addr);
        }
        anyhow::ensure!(
            self.heartbeat_interval >= Duration::from_millis(10),
            "--heartbeat-interval must be at least 10ms"
        );
        Ok(Some(StandbyOptions {
            node_name,
            peers,
            listen: SocketAddr::from(([0, 0, 0, 0], self.heartbeat_port)),
            key: Key::new(secret),
            timing: Timing {
                interval: self.heartbeat_interval,
                misses: self.heartbeat_misses,
                hold: self.preempt_hold,
            },
            stamp_lifetime: self.restart_grace,
            interface: interface.to_string(),
        }))
    }
}
