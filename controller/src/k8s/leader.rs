//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! The algorithm is client-go's: read the Lease; take it when it is free, or
//! when its record has not changed for a whole lease duration *as measured
//! on our own clock* (so clock skew between controllers cannot steal a live
//! lease); write with the read resourceVersion, so of two candidates racing
//! for an expired lease exactly one wins and the other gets 409.
//!
//! Written here rather than taken from kube-lease-manager (0.13.1 was tried:
//! it passes `controller_api.rs` but fails two promises that
//! `tests/leader_election.rs` checks). Its standby re-reads a lease someone
//! else holds only when that lease expires, so a release on shutdown hands
//! over after up to a lease duration instead of a retry period. And a holder
//! whose renewals fail keeps reporting leadership: `changed()` returns only
//! when the holder changes, never on a renewal, so no renew deadline can be
//! added on top. It also takes an expired lease with an unconditional patch
//! (no resourceVersion) followed by a server-side apply, where this module
//! writes with the resourceVersion it read, as client-go does.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Who we are (pod name); must be unique among candidates.
    pub identity: String,
    /// How long a silent holder keeps the lease.
    pub duration: Duration,
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The holder's record as last seen, and when we first saw it.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// One round: acquire or renew. `Ok(true)` when we hold the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_s = self.config.duration.as_secs().max(1) as i32;
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_s),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, _)) if *seen == spec => {}
            _ => self.observed = Some((spec.clone(), Instant::now())),
        }
        let ours = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let holder_duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_s).max(1) as u64);
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() > holder_duration);
        if !ours && !free && !expired {
            return Ok(false);
        }
        let mut next = lease.clone();
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration_s),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 }),
            ..spec
        });
        // `next` carries the resourceVersion we read: a concurrent writer
        // makes this a 409, and we lost.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.observed = written.spec.map(|s| (s, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Who held the lease when last read (`None`: free, or not read yet).
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(spec, _)| spec.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once
    /// instead of after a lease duration.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
