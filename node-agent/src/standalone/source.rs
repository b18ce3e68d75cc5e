//! The files as a source of the agent core: read on change and on SIGHUP,
//! resolved (last-good versions, first-come ownership, warnings), made one
//! version per reload and handed to the running [`crate::core::Agent`] as
//! what changed since the last (a [`NodeChange`]), so a reload costs the
//! agent what it changes; only unchanged documents' texts are read again
//! without parsing. This is the logging edge: resolve's messages and the
//! report's typed errors become log lines here.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::desired::{self, LastGood};
use crate::announce::l2::Table;
use crate::config_files::{self, ParseCache};
use crate::core::{AgentHandle, Announcements, ApplyReport, NodeChange, NodeDesired, Settings};
use crate::lifecycle::signals::Signals;

/// What one reading of the files hands the agent.
#[derive(Debug)]
pub enum Handover {
    /// What changed since the version the agent holds from this source.
    Change(NodeChange),
    /// The whole version: the first, or after the agent did not apply the
    /// last one (it compares with what it holds).
    Whole(NodeDesired),
}

/// One reading of the files: the version to hand over, and the errors
/// found in the files (the agent's are added by [`FileSource::settle`]).
#[derive(Debug)]
pub struct Reading {
    pub handover: Handover,
    pub errors: Vec<String>,
    pub cost: ReadCost,
}

/// Where a reading's time went.
#[derive(Clone, Debug, Default)]
pub struct ReadCost {
    /// Reading the files (and hashing them for change detection) and
    /// parsing the documents whose text changed.
    pub documents: Duration,
    /// Documents parsed this time (the rest came from the cache).
    pub parsed: usize,
    /// Validation, last-good fallback, ownership, the change.
    pub resolve: Duration,
}

pub struct FileSource {
    /// A VirtualServer YAML file or a directory of them.
    pub config: PathBuf,
    /// From the flags: every version carries them.
    pub settings: Settings,
    /// Announce every VIP over L2 (`--no-announce` turns it off).
    pub announce: bool,
    /// How often to look for changes.
    pub poll: Duration,
    last_good: LastGood,
    /// The documents of the last read: only changed ones are parsed again.
    parsed: ParseCache,
    /// Services per VIP in what `last_good` serves: the VIPs announced.
    vips: BTreeMap<Ipv4Addr, usize>,
    /// Whether the agent holds what the last round served (the last
    /// version handed over was applied): then the next is handed over as
    /// its change, costing the agent what changed; otherwise (the first
    /// round, or after a refusal or a failure) as the whole version, which
    /// the agent compares with what it holds.
    in_step: bool,
    fingerprint: Option<u64>,
    /// The version the last reload handed over.
    version: u64,
    /// In a hot-standby group: where the VIPs served (and this node's
    /// priority for each) go after each reload, for the announcer; the
    /// core then announces nothing itself.
    standby: Option<watch::Sender<Option<Table>>>,
}

impl FileSource {
    pub fn new(config: PathBuf, settings: Settings, announce: bool, poll: Duration) -> Self {
        FileSource {
            config,
            settings,
            announce,
            poll,
            last_good: LastGood::default(),
            parsed: ParseCache::default(),
            vips: BTreeMap::new(),
            in_step: false,
            fingerprint: None,
            version: 0,
            standby: None,
        }
    }

    /// A source for a node of a hot-standby group: the announcer decides
    /// who answers ARP, from the table this source publishes after every
    /// reload (VIPs with a programmed service, and their priorities).
    pub fn in_standby_group(mut self, tables: watch::Sender<Option<Table>>) -> Self {
        self.announce = false;
        self.last_good = LastGood::new(true);
        self.standby = Some(tables);
        self
    }

    /// Reads, resolves and applies the configuration as the next version.
    /// Returns the errors (already logged); valid documents are applied
    /// regardless.
    pub async fn reload(&mut self, agent: &AgentHandle) -> anyhow::Result<Vec<String>> {
        let reading = self.read()?;
        let report = match reading.handover {
            Handover::Change(change) => agent.apply_change(change).await,
            Handover::Whole(whole) => agent.apply(whole).await,
        };
        let report = report?;
        if let Some(tables) = &self.standby {
            tables.send_replace(Some(self.standby_table(&report)));
        }
        let errors = self.settle(reading.errors, report);
        release_freed_memory();
        Ok(errors)
    }

    /// The first half of [`Self::reload`]: reads and resolves the files as
    /// the next version, and what to hand the agent for it. Warnings are
    /// logged here; errors are returned to be logged with the agent's.
    pub fn read(&mut self) -> anyhow::Result<Reading> {
        let mut cost = ReadCost::default();
        let start = Instant::now();
        // What the poll compares with: what this read saw (none when it
        // failed, so that the next poll that can read reloads).
        self.fingerprint = None;
        let docs = config_files::read_documents_with(&self.config, &mut self.parsed)
            .with_context(|| format!("reading {}", self.config.display()))?;
        self.fingerprint = Some(self.parsed.fingerprint_last());
        cost.documents = start.elapsed();
        cost.parsed = self.parsed.parsed_last();
        let resolved = desired::resolve(&docs, &mut self.last_good, &self.settings.snat_addrs);
        cost.resolve = start.elapsed() - cost.documents;
        for w in &resolved.warnings {
            warn!("{w}");
        }
        self.version += 1;
        let vips_moved = self.count_vips(&resolved.change.vips);
        let handover = if self.in_step {
            Handover::Change(NodeChange {
                version: self.version,
                settings: None,
                objects: resolved.change.objects,
                announce: (self.announce && vips_moved).then(|| self.announcements()),
            })
        } else {
            Handover::Whole(desired::to_node_desired(
                self.version,
                self.last_good.services(),
                &self.settings,
                self.announce,
            ))
        };
        // Until the agent's report says otherwise.
        self.in_step = false;
        let errors = resolved.errors.iter().map(|e| e.to_string()).collect();
        Ok(Reading {
            handover,
            errors,
            cost,
        })
    }

    /// The second half of [`Self::reload`]: takes the agent's report on the
    /// version [`Self::read`] made, logs the errors, and returns them.
    pub fn settle(&mut self, mut errors: Vec<String>, report: ApplyReport) -> Vec<String> {
        // The logging edge: typed until here.
        errors.extend(report.errors.iter().map(|e| e.to_string()));
        for e in &errors {
            error!("{e}");
        }
        if report.refused(self.version) {
            // Resolve keeps every rule the core checks, so this is a bug;
            // the previous version keeps serving.
            error!(
                version = self.version,
                applied = report.applied_version,
                "configuration refused"
            );
        } else {
            self.in_step = true;
            info!(
                version = self.version,
                services = report.programmed,
                errors = errors.len(),
                "configuration applied"
            );
        }
        errors
    }

    /// Moves the services per VIP by `moved`; whether the set of VIPs with
    /// services changed.
    fn count_vips(&mut self, moved: &BTreeMap<Ipv4Addr, isize>) -> bool {
        let mut changed = false;
        for (vip, by) in moved {
            let n = self.vips.entry(*vip).or_default();
            let was = *n;
            *n = n.saturating_add_signed(*by);
            changed |= (was == 0) != (*n == 0);
            if *n == 0 {
                self.vips.remove(vip);
            }
        }
        changed
    }

    /// The VIPs served with this node's priority for each (the highest of
    /// its objects' `announce.l2.priority`, keepalived's 100 when unset),
    /// leaving out VIPs none of whose services the agent programmed: a node
    /// announces only what it can forward.
    fn standby_table(&self, report: &ApplyReport) -> Table {
        let failed: std::collections::BTreeSet<_> =
            report.errors.iter().filter_map(|e| e.service()).collect();
        let mut table = Table::new();
        let mut programmed = std::collections::BTreeSet::new();
        for s in self.last_good.services() {
            let prio = s.l2_priority.unwrap_or(ballast_api::DEFAULT_L2_PRIORITY);
            let entry = table.entry(IpAddr::V4(s.vip)).or_insert(prio);
            *entry = (*entry).max(prio);
            if !failed.contains(&s.id()) {
                programmed.insert(IpAddr::V4(s.vip));
            }
        }
        table.retain(|vip, _| programmed.contains(vip));
        table
    }

    /// Every VIP served, announced over L2.
    fn announcements(&self) -> Announcements {
        Announcements {
            l2: self.vips.keys().copied().collect(),
            bgp: Default::default(),
        }
    }

    fn changed(&self) -> bool {
        config_files::fingerprint(&self.config).ok() != self.fingerprint
    }

    /// Feeds `agent` until SIGTERM or SIGINT, or until the agent stops.
    pub async fn serve(&mut self, agent: &AgentHandle, signals: &mut Signals) {
        if let Err(e) = self.reload(agent).await {
            // A missing config is not fatal: the agent waits for it.
            warn!("{e:#}");
        }
        let mut tick = tokio::time::interval(self.poll);
        loop {
            tokio::select! {
                _ = signals.hup.recv() => {
                    info!("SIGHUP: reloading");
                    if let Err(e) = self.reload(agent).await { error!("{e:#}"); }
                }
                _ = tick.tick() => {
                    if self.changed() {
                        info!("configuration changed: reloading");
                        if let Err(e) = self.reload(agent).await { error!("{e:#}"); }
                    }
                }
                _ = signals.stop.recv() => return,
                () = agent.closed() => return,
            }
        }
    }
}

/// Hands the pages a reload freed back to the kernel. A reload allocates
/// and frees the whole parsed configuration (tens of MB at 10k services)
/// on whichever runtime thread runs it; glibc keeps such pages in that
/// thread's arena, so without this the agent's RSS settles at its peak
/// during a reload, not at what it holds (measured at 10k services from
/// one 4 MB file: 169 MB resident after the first reload, without this).
/// Costs a walk of the heap's free lists, a few ms, once per reload.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests;
