//! Status write passes, off the planning loop. A pass computes every
//! object's status from a plan and the agents' latest reports and patches
//! those that differ; at 10k objects that is tens of milliseconds of CPU
//! plus the API round trips of whatever changed. Run inside the loop, it
//! held the next plan — and so an endpoint change's way to the data
//! planes — behind it. Here the loop only asks for a pass (with the plan
//! to write); passes run one at a time, and requests made during a pass
//! collapse into one more pass with the newest plan, which reads the
//! reports as they are when it starts.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::stores::Stores;
use super::writer::Writer;
use crate::link::AgentReports;
use crate::metrics::Metrics;
use crate::plan::Plan;

/// The pass task and the handle the planning loop asks through.
pub struct StatusPasses {
    requests: watch::Sender<Option<Arc<Plan>>>,
    task: JoinHandle<()>,
}

/// Whether this replica may write: it leads, and knows which agents are
/// present (see `settle`). Read again when a pass starts, since a request
/// may wait behind a pass during which leadership moved.
pub struct MayWrite {
    pub leading: watch::Receiver<bool>,
    pub settled: watch::Receiver<bool>,
}

impl MayWrite {
    fn now(&self) -> bool {
        *self.leading.borrow() && *self.settled.borrow()
    }
}

impl StatusPasses {
    pub fn start(
        mut writer: Writer,
        stores: Stores,
        reports: AgentReports,
        may_write: MayWrite,
        metrics: Arc<Metrics>,
    ) -> StatusPasses {
        let (requests, mut pending) = watch::channel::<Option<Arc<Plan>>>(None);
        let task = tokio::spawn(async move {
            while pending.changed().await.is_ok() {
                let Some(plan) = pending.borrow_and_update().clone() else {
                    continue;
                };
                if !may_write.now() {
                    continue;
                }
                let report = writer.write(&plan, &stores, reports.facts()).await;
                metrics.status_writes.inc_by(report.writes);
                metrics.reconcile_errors.inc_by(report.errors);
            }
        });
        StatusPasses { requests, task }
    }

    /// Asks for a pass writing `plan`: now if none runs, else once the
    /// running one ends (only the newest request is kept).
    pub fn request(&self, plan: Arc<Plan>) {
        self.requests.send_replace(Some(plan));
    }

    /// Lets a running pass finish, then ends the task.
    pub async fn shutdown(self) {
        drop(self.requests);
        let _ = self.task.await;
    }
}
