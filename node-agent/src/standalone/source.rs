//! The files as a source of the agent core: read on change and on SIGHUP,
//! resolved (last-good versions, first-come ownership, warnings), made one
//! [`NodeDesired`] version per reload and handed to the running
//! [`crate::core::Agent`]. This is the logging edge: resolve's messages and
//! the report's typed errors become log lines here.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info, warn};

use super::desired::{self, LastGood};
use crate::config_files;
use crate::core::{AgentHandle, Settings};
use crate::lifecycle::signals::Signals;

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
    fingerprint: Option<u64>,
    /// The version the last reload handed over.
    version: u64,
}

impl FileSource {
    pub fn new(config: PathBuf, settings: Settings, announce: bool, poll: Duration) -> Self {
        FileSource {
            config,
            settings,
            announce,
            poll,
            last_good: LastGood::default(),
            fingerprint: None,
            version: 0,
        }
    }

    /// Reads, resolves and applies the configuration as the next version.
    /// Returns the errors (already logged); valid documents are applied
    /// regardless.
    pub async fn reload(&mut self, agent: &AgentHandle) -> anyhow::Result<Vec<String>> {
        self.fingerprint = config_files::fingerprint(&self.config).ok();
        let docs = config_files::read_documents(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let resolved = desired::resolve(&docs, &mut self.last_good, &self.settings.snat_addrs);
        for w in &resolved.warnings {
            warn!("{w}");
        }
        self.version += 1;
        let wanted = desired::to_node_desired(
            self.version,
            &resolved.services,
            &self.settings,
            self.announce,
        );
        let report = agent.apply(wanted).await?;
        // The logging edge: typed until here.
        let mut errors: Vec<String> = resolved.errors.iter().map(|e| e.to_string()).collect();
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
            info!(
                version = self.version,
                services = report.programmed,
                errors = errors.len(),
                "configuration applied"
            );
        }
        Ok(errors)
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
