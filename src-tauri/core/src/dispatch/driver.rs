//! The driver: the one place that starts the queue's tasks. Transitions of
//! the state hand it [`Effect`]s; it starts the runner, follower, recall,
//! take-back or calibration each asks for, under the queue's tracker. At
//! open it starts the long-lived ones (failover, scheduler, retention) and
//! the runners of jobs a previous run left in flight.

use super::state::{Effect, Mode, Shared};
use super::{failover, follower, recall, retention, runner, scheduler};
use std::sync::Arc;
use storycore_types::AppEvent;
use tokio::sync::{broadcast, mpsc};

/// Starts the queue: the jobs to follow again, the long-lived tasks, and
/// the driver itself, which runs until the queue stops.
pub(crate) fn start(
    shared: &Arc<Shared>,
    effects: mpsc::UnboundedReceiver<Effect>,
    events: broadcast::Receiver<AppEvent>,
    follow: Vec<String>,
) {
    for job_id in follow {
        shared.effect(Effect::Run {
            job_id,
            mode: Mode::Follow,
            durable: None,
        });
    }
    shared.tasks.spawn(failover::run(shared.clone(), events));
    shared.tasks.spawn(scheduler::run(shared.clone()));
    shared.tasks.spawn(retention::run_daily(shared.clone()));
    shared.tasks.spawn(run(shared.clone(), effects));
    shared.wake.notify_one();
}

async fn run(shared: Arc<Shared>, mut effects: mpsc::UnboundedReceiver<Effect>) {
    loop {
        let effect = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            e = effects.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let s = shared.clone();
        match effect {
            Effect::Run {
                job_id,
                mode,
                durable,
            } => shared.tasks.spawn(runner::run(s, job_id, mode, durable)),
            Effect::RunCopy { job_id, durable } => {
                shared.tasks.spawn(runner::run_copy(s, job_id, durable))
            }
            Effect::Recall {
                instance_id,
                why,
                taken,
            } => shared
                .tasks
                .spawn(recall::recall(s, instance_id, why, taken)),
            Effect::ClearOrphans { instance_id } => {
                shared.tasks.spawn(recall::clear_orphans(s, instance_id))
            }
            Effect::Follow {
                instance_id,
                client,
                connected,
            } => shared
                .tasks
                .spawn(follower::run(s, instance_id, client, connected)),
            Effect::TakeBack { instance_id } => {
                shared.tasks.spawn(failover::take_back(s, instance_id))
            }
            Effect::Calibrate(instance) => shared.tasks.spawn(scheduler::calibrate(s, *instance)),
            Effect::ReadOffer(instance) => shared.tasks.spawn(super::offers::read(s, *instance)),
        };
    }
}
