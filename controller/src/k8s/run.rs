//! The controller loop: reflectors and the agents' reports feed the pure
//! planner; the leader writes the resulting statuses, with what the agents
//! report having programmed. Every replica plans (so a new leader has a
//! warm plan); only the leader writes, and only once it has settled which
//! agents are present (`settle`), so a restart or a leader change rewrites
//! nothing while agents reconnect. An agent's ack or nack arrives after the
//! plan that caused it, so a change in the reports rewrites status without
//! replanning.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::crd_check;
use super::leader::{LeaderElector, LeaseConfig};
use super::programmed::FactsStamp;
use super::settle::{Gate, Settling};
use super::status_passes::{MayWrite, StatusPasses};
use super::stores::SliceChange;
use super::stores::Stores;
use super::writer::{FIELD_MANAGER, Writer};
use crate::link::{AgentReports, LinkInputs};
use crate::metrics::Metrics;
use crate::plan::{AgentPresence, CondStatus, Plan, PlanOptions, Planner, usable_nodes};

/// The controller's debounce (`Options::debounce` in the binary): the
/// least time between two plans. A change after a quiet spell is planned
/// at once (an endpoint change's way to the data planes waits for no
/// timer); changes that follow within the window are planned together at
/// its end, so a burst (a rollout's EndpointSlice updates, agents
/// reconnecting together) costs two plans, not one per change.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
/// The binary's periodic replan.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Options {
    pub plan: PlanOptions,
    pub lease: LeaseConfig,
    /// How often the leader renews, and a standby retries.
    pub retry_period: Duration,
    /// The least time between two plans (see [`DEFAULT_DEBOUNCE`]).
    pub debounce: Duration,
    /// Replan at least this often, even without changes.
    pub resync: Duration,
    /// How long a disconnected agent keeps its node's duties (it keeps
    /// forwarding meanwhile and may be back), and how long a new leader
    /// waits for agents to reconnect before planning without the missing
    /// ones (`--agent-grace`).
    pub agent_grace: Duration,
}

/// A running controller.
pub struct Handle {
    /// The latest plan (every replica plans; the gRPC pusher reads this).
    pub plans: watch::Receiver<Option<Arc<Plan>>>,
    pub leader: watch::Receiver<bool>,
    /// Who holds the lease as last read (the link names it when refusing
    /// agents on a standby).
    pub leader_name: watch::Receiver<Option<String>>,
    /// True once every reflector finished its initial list.
    pub ready: watch::Receiver<bool>,
    /// True while this replica leads and knows which agents are present;
    /// the link sends nothing to agents until then (see `settle`).
    pub settled: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    main: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// What the link server follows from this controller.
    pub fn link_inputs(&self) -> LinkInputs {
        LinkInputs {
            plans: self.plans.clone(),
            leader: self.leader.clone(),
            leader_name: self.leader_name.clone(),
            settled: self.settled.clone(),
        }
    }

    /// Stops planning, releases the lease if held, and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.main.await;
    }
}

/// Checks the CRDs, then starts everything in the background. `reports`
/// are what the agents tell the link server (pass the same to
/// `link::serve`): director nodes are nodes with a present agent.
pub async fn start(
    client: Client,
    options: Options,
    metrics: Arc<Metrics>,
    reports: AgentReports,
) -> Result<Handle, crd_check::CrdCheckError> {
    crd_check::check(client.clone()).await?;
    let (plan_tx, plans) = watch::channel(None);
    let (leader_tx, leader) = watch::channel(false);
    let (leader_name_tx, leader_name) = watch::channel(None);
    let (ready_tx, ready) = watch::channel(false);
    let (settled_tx, settled) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let main = tokio::spawn(run(
        client,
        options,
        (metrics, reports),
        (plan_tx, settled_tx),
        (leader_tx, leader_name_tx),
        ready_tx,
        stop_rx,
    ));
    Ok(Handle {
        plans,
        leader,
        leader_name,
        ready,
        settled,
        stop,
        main,
    })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What woke the loop. Any wake-up replans when leadership, settledness
/// or presence (the settling gate) is not what the last plan was made
/// with; beyond that:
enum Wake {
    /// Cluster objects changed, or the periodic resync: replan if
    /// anything planning reads changed.
    World,
    /// An agent connected or left, leadership moved, or a grace period ran
    /// out: nothing more (the gate is the whole of what these change).
    Presence,
    /// An agent acked, nacked or beat: rewrite status if what it says
    /// about programming changed.
    Reports,
}

async fn run(
    client: Client,
    options: Options,
    (metrics, reports): (Arc<Metrics>, AgentReports),
    (plan_tx, settled_tx): (watch::Sender<Option<Arc<Plan>>>, watch::Sender<bool>),
    (leader_tx, leader_name_tx): (watch::Sender<bool>, watch::Sender<Option<String>>),
    ready_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let stores = Stores::start(&client, &mut tasks, changed.clone());
    let mut leading = leader_tx.subscribe();
    let may_write = MayWrite {
        leading: leader_tx.subscribe(),
        settled: settled_tx.subscribe(),
    };
    let election = tokio::spawn(elect(
        LeaderElector::new(client.clone(), options.lease.clone()),
        options.clone(),
        leader_tx,
        leader_name_tx,
        changed.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(options.lease.identity.clone()),
        },
    );
    let writer = Writer::new(client, recorder, metrics.events_queued.clone());

    tokio::select! {
        _ = stores.wait_until_ready() => {}
        _ = stopped(&mut stop) => { tasks.shutdown().await; let _ = election.await; return; }
    }
    let _ = ready_tx.send(true);
    tracing::info!("caches synced; planning");
    let passes = StatusPasses::start(
        writer,
        stores.clone(),
        reports.clone(),
        may_write,
        metrics.clone(),
    );
    let mut last_plan: Option<Instant> = None;
    let mut pool_series = PoolSeries::default();
    let mut settling = Settling::new(options.agent_grace);
    let mut connections = reports.connections();
    let mut report_changes = reports.changes();
    // What the last plan was made with; `None` before the first.
    let mut planned_with: Option<(bool, AgentPresence)> = None;
    let mut planned: Option<Arc<Plan>> = None;
    // Kept between runs: when only EndpointSlices changed, it re-resolves
    // just the objects that use them.
    let mut planner: Option<Planner> = None;
    // What the reports said when the last write pass was asked for, while
    // leading.
    let mut written: Option<FactsStamp> = None;
    let mut wake_at: Option<SystemTime> = None;
    // A deadline, not a sleep per turn: reports change every heartbeat and
    // would otherwise postpone the periodic replan forever.
    let mut next_resync = tokio::time::Instant::now() + options.resync;
    // The election task holds the sender until stopped; if it ever ended
    // early, planning goes on without the leadership wake-up.
    let mut election_running = true;

    loop {
        let until_wake = wake_at.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        let wake = tokio::select! {
            _ = changed.notified() => Wake::World,
            _ = tokio::time::sleep_until(next_resync) => Wake::World,
            _ = connections.changed() => Wake::Presence,
            r = leading.changed(), if election_running => {
                election_running = r.is_ok();
                Wake::Presence
            }
            _ = tokio::time::sleep(until_wake.unwrap_or_default()), if until_wake.is_some() => Wake::Presence,
            // Never closes: `reports` holds the sender.
            _ = report_changes.changed() => Wake::Reports,
            _ = stopped(&mut stop) => break,
        };
        // Leading edge: plan at once after a quiet spell, else at the end
        // of the window since the last plan. Connections are debounced
        // too (agents reconnecting after a restart arrive together);
        // reports replan only when the gate moved meanwhile (a grace
        // period ran out just before), so they wait for nothing.
        if !matches!(wake, Wake::Reports)
            && let Some(quiet) = last_plan.map(|at| at.elapsed())
            && quiet < options.debounce
        {
            tokio::time::sleep(options.debounce - quiet).await;
        }
        let is_leader = *leading.borrow_and_update();
        let gate = settling.update(
            is_leader,
            SystemTime::now(),
            &usable_nodes(&stores.nodes.state()),
            &reports.snapshot(),
        );
        wake_at = gate.wake;
        let Gate {
            settled, agents, ..
        } = gate;
        let started = Instant::now();
        // Whatever woke the loop, a gate other than the last plan's is
        // planned for: the wake-ups do not arrive in order. A new leader's
        // election sends both a leadership change and a world wake-up, and
        // the gate reads leadership as it is *now*; when the world wake-up
        // is taken first, it already sees (and consumes) the new
        // leadership, and the leadership wake-up never comes. Were the
        // gate's change planned only on a presence wake-up, the standby's
        // plan would stay, `settled` unsent, every write pass refused, and
        // no status written until the periodic resync (60 s).
        let gate_moved = planned_with
            .as_ref()
            .is_none_or(|(s, a)| *s != settled || *a != agents);
        let replan = gate_moved
            || match wake {
                // Events that change nothing planning reads (the
                // controller's own status writes coming back, kubelets'
                // Node status) wake the loop but plan nothing.
                Wake::World => {
                    planned.is_none()
                        || stores.has_changes()
                        || tokio::time::Instant::now() >= next_resync
                }
                Wake::Presence => false,
                Wake::Reports => planned.is_none(),
            };
        let current = match planned.clone() {
            Some(p) if !replan => p,
            _ => {
                let changes = stores.take_changes();
                // Presence, leadership, a relist, the periodic resync or
                // any other kind: everything again.
                let everything = changes.other
                    || !matches!(wake, Wake::World)
                    || tokio::time::Instant::now() >= next_resync
                    || gate_moved;
                let p = match planner.as_mut() {
                    Some(incremental) if !everything => {
                        for change in changes.slices {
                            match change {
                                SliceChange::Applied(s) => incremental.apply_endpoint_slice(s),
                                SliceChange::Deleted(s) => incremental.remove_endpoint_slice(&s),
                            }
                        }
                        metrics.endpoint_replans.inc();
                        Arc::new(incremental.plan().clone())
                    }
                    _ => {
                        let mut observed = stores.observed();
                        observed.agents = agents.clone();
                        let fresh = Planner::new(&observed, options.plan);
                        let p = Arc::new(fresh.plan().clone());
                        planner = Some(fresh);
                        next_resync = tokio::time::Instant::now() + options.resync;
                        p
                    }
                };
                metrics.reconciles.inc();
                last_plan = Some(Instant::now());
                record_plan_metrics(&metrics, &p, &mut pool_series);
                // The plan made with presence known goes out before
                // `settled`, so the link resyncs agents against it (see
                // `link::LinkInputs`).
                plan_tx.send_replace(Some(p.clone()));
                settled_tx.send_if_modified(|s| std::mem::replace(s, settled) != settled);
                planned_with = Some((settled, agents));
                planned = Some(p.clone());
                p
            }
        };
        if !(is_leader && settled) {
            written = None;
        } else {
            let stamp = FactsStamp::of(&reports.facts());
            if replan || written.as_ref() != Some(&stamp) {
                passes.request(current);
                written = Some(stamp);
            }
        }
        if replan {
            metrics
                .reconcile_duration
                .observe(started.elapsed().as_secs_f64());
        }
    }
    passes.shutdown().await;
    let _ = election.await;
    tasks.shutdown().await;
}

/// Runs leader election rounds until stopped; publishes the result on
/// `leader_tx` (which gates status writes) and the `leader` gauge.
async fn elect(
    mut elector: LeaderElector,
    options: Options,
    leader_tx: watch::Sender<bool>,
    leader_name_tx: watch::Sender<Option<String>>,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_renewal: Option<Instant> = None;
    loop {
        let held = match elector.try_acquire_or_renew().await {
            Ok(true) => {
                last_renewal = Some(Instant::now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "lease round failed");
                // Keep leading through brief API trouble, but never past the
                // point where another replica may have taken over.
                last_renewal.is_some_and(|t| t.elapsed() < options.lease.duration / 2)
            }
        };
        if !held {
            last_renewal = None;
        }
        let holder = elector.holder().map(str::to_string);
        leader_name_tx.send_if_modified(|name| {
            let changed = *name != holder;
            *name = holder;
            changed
        });
        let was = *leader_tx.borrow();
        if held != was {
            tracing::info!(identity = %options.lease.identity, leader = held, "leadership changed");
            metrics.leader.set(i64::from(held));
            let _ = leader_tx.send(held);
            if held {
                changed.notify_one(); // write what the previous leader left
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.retry_period) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    if *leader_tx.borrow() {
        metrics.leader.set(0);
        let _ = leader_tx.send(false);
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

/// Pools that have gauge series, so a deleted pool's series go with it
/// rather than reporting its last usage forever.
#[derive(Default)]
struct PoolSeries(std::collections::BTreeSet<String>);

fn record_plan_metrics(metrics: &Metrics, plan: &Plan, series: &mut PoolSeries) {
    series.0.retain(|name| {
        let keep = plan.pools.contains_key(name);
        if !keep {
            let _ = metrics.pool_allocated.remove_label_values(&[name.as_str()]);
            let _ = metrics.pool_total.remove_label_values(&[name.as_str()]);
        }
        keep
    });
    series.0.extend(plan.pools.keys().cloned());
    for (name, p) in &plan.pools {
        metrics
            .pool_allocated
            .with_label_values(&[name.as_str()])
            .set(p.allocated as i64);
        metrics
            .pool_total
            .with_label_values(&[name.as_str()])
            .set(p.total.min(i64::MAX as u128) as i64);
    }
    for (label, status) in [
        ("true", CondStatus::True),
        ("false", CondStatus::False),
        ("unknown", CondStatus::Unknown),
    ] {
        let n = plan
            .statuses
            .values()
            .filter(|s| s.ready.status == status)
            .count();
        metrics.objects.with_label_values(&[label]).set(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PoolStatus;

    fn plan_with_pools(names: &[&str]) -> Plan {
        Plan {
            pools: names
                .iter()
                .map(|n| {
                    let usage = PoolStatus {
                        allocated: 1,
                        total: 4,
                        errors: Vec::new(),
                    };
                    (n.to_string(), usage)
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn a_deleted_pool_loses_its_gauge_series() {
        let metrics = Metrics::new();
        let mut series = PoolSeries::default();
        record_plan_metrics(&metrics, &plan_with_pools(&["blue", "green"]), &mut series);
        let text = metrics.render();
        assert!(
            text.contains(r#"pool_addresses_allocated{pool="green"} 1"#),
            "{text}"
        );
        record_plan_metrics(&metrics, &plan_with_pools(&["blue"]), &mut series);
        let text = metrics.render();
        assert!(
            text.contains(r#"pool_addresses_total{pool="blue"} 4"#),
            "{text}"
        );
        assert!(!text.contains(r#"pool="green""#), "{text}");
    }
}
