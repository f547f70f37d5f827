//! What a transition asks to happen next, beyond the state: a task to
//! start. The state hands them to the driver (`driver.rs`), the one place
//! that starts the queue's tasks; runner, follower, failover, recall and
//! scheduler never start each other.

use crate::client::ComfyClient;
use crate::dispatch::writer::Durable;
use storycore_types::Instance;
use tokio::sync::watch;

/// How a runner takes its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `POST /prompt`, then follow.
    Submit,
    /// Already sent (found dispatched or running after a restart, or
    /// finished on a lost instance after all): follow.
    Follow,
}

/// A job taken from its runner when its instance was lost.
pub(crate) struct Taken {
    pub job_id: String,
    pub prompt_id: String,
    pub instance_id: String,
    /// The one the instance was (most likely) running.
    pub running: bool,
}

impl Taken {
    pub fn sent(&self) -> super::Sent<'_> {
        super::Sent {
            job: &self.job_id,
            prompt: &self.prompt_id,
            instance: &self.instance_id,
        }
    }
}

pub(crate) enum Effect {
    /// Run the job's attempt. `durable`: the write of its `dispatched`
    /// record, when not awaited yet (nothing is sent before it is durable).
    Run {
        job_id: String,
        mode: Mode,
        durable: Option<Durable>,
    },
    /// Run the job's copy.
    RunCopy { job_id: String, durable: Durable },
    /// Take the jobs back from a lost instance (see `recall`).
    Recall {
        instance_id: String,
        why: String,
        taken: Vec<Taken>,
    },
    /// Stop, on an instance that answers again, the prompts it held.
    ClearOrphans { instance_id: String },
    /// Follow the instance's `/ws` stream, telling how its connection goes.
    Follow {
        instance_id: String,
        client: ComfyClient,
        connected: watch::Sender<Option<bool>>,
    },
    /// Take the not-yet-started prompts back from a paused instance.
    TakeBack { instance_id: String },
    /// Run the smoke test on a newly healthy instance.
    Calibrate(Box<Instance>),
    /// Read what an instance offers (its classes and model files).
    ReadOffer(Box<Instance>),
}
