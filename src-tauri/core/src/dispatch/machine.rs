//! A job's state machine as one transition table, like the instance
//! lifecycle's: every change of a job's state is an [`JobAction`] checked by
//! [`next`] (in `shared`, the state's one owner), and a pair that makes no
//! sense is refused with a sentence instead of being written.
//!
//! ```text
//! queued ──place──▶ dispatched ──start──▶ running ──succeed──▶ succeeded
//!   ▲  │                │  └───────fail/succeed──────┘ └──fail──▶ failed
//!   │  └─hold─▶ held    └─requeue/suspect (from either) ─▶ queued | suspect
//!   └── retry (failed, cancelled) / release (held, suspect)
//! any unfinished ──cancel──▶ cancelled
//! dispatched ◀──hand over (a copy takes the attempt's place)──▶ running
//! ```

use storycore_types::JobState;

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum JobAction {
    /// The scheduler chose an instance: a new attempt.
    Place,
    /// Its instance started executing it.
    Start,
    /// Its prompt ended well and its outputs are kept.
    Succeed,
    /// It ended badly (ComfyUI's error, a refusal, a timeout, too many attempts).
    Fail,
    /// Its attempt ended without an outcome: back in the app's queue.
    Requeue,
    /// Its attempt ended on a second instance that died: held as suspect.
    Suspect,
    /// Its target instance is gone: held until the user says.
    Hold,
    /// The user cancelled it.
    Cancel,
    /// The user runs a failed or cancelled job again.
    Retry,
    /// The user lets a held or suspect job run again.
    Release,
    /// Its copy takes the attempt's place, the copy already executing.
    HandOverRunning,
    /// Its copy takes the attempt's place, the copy still waiting there.
    HandOverWaiting,
}

impl JobAction {
    pub fn verb(self) -> &'static str {
        match self {
            JobAction::Place => "place",
            JobAction::Start => "mark as running",
            JobAction::Succeed => "mark as succeeded",
            JobAction::Fail => "mark as failed",
            JobAction::Requeue => "queue again",
            JobAction::Suspect => "hold as suspect",
            JobAction::Hold => "hold",
            JobAction::Cancel => "cancel",
            JobAction::Retry => "retry",
            JobAction::Release => "release",
            JobAction::HandOverRunning | JobAction::HandOverWaiting => "hand over to its copy",
        }
    }
}

/// The state after `action`, or `None` when the action makes no sense from `from`.
pub fn next(from: JobState, action: JobAction) -> Option<JobState> {
    use JobAction as A;
    use JobState as S;
    Some(match (from, action) {
        (S::Queued, A::Place) => S::Dispatched,
        (S::Queued, A::Hold) => S::Held,
        (S::Dispatched, A::Start) => S::Running,
        (S::Dispatched | S::Running, A::Succeed) => S::Succeeded,
        (S::Dispatched | S::Running, A::Fail) => S::Failed,
        (S::Dispatched | S::Running, A::Requeue) => S::Queued,
        (S::Dispatched | S::Running, A::Suspect) => S::Suspect,
        (S::Dispatched | S::Running, A::HandOverRunning) => S::Running,
        (S::Dispatched | S::Running, A::HandOverWaiting) => S::Dispatched,
        (S::Queued | S::Dispatched | S::Running | S::Held | S::Suspect, A::Cancel) => S::Cancelled,
        (S::Failed | S::Cancelled, A::Retry) => S::Queued,
        (S::Held | S::Suspect, A::Release) => S::Queued,
        _ => return None,
    })
}

/// A sentence for a refused pair, saying what to do instead.
pub fn refusal(job_id: &str, from: JobState, action: JobAction) -> String {
    use JobAction as A;
    use JobState as S;
    let hint = match (from, action) {
        (S::Succeeded | S::Failed | S::Cancelled, A::Cancel) => "it has finished",
        (S::Succeeded, A::Retry) => "it succeeded: submit it again for another run",
        (_, A::Retry) => "only a failed or cancelled job is retried",
        (_, A::Release) => "only a held or suspect job is released",
        (S::Held | S::Suspect, _) => "release it first",
        (S::Succeeded | S::Failed | S::Cancelled, _) => "it has finished: retry it first",
        (S::Queued, _) => "it has not been sent",
        _ => "this makes no sense in its current state",
    };
    format!(
        "cannot {} job \"{job_id}\" while it is {}: {hint}",
        action.verb(),
        from.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;
    use JobAction as A;
    use JobState as S;

    /// Every allowed transition; anything not listed must be refused.
    const ALLOWED: &[(S, A, S)] = &[
        (S::Queued, A::Place, S::Dispatched),
        (S::Queued, A::Hold, S::Held),
        (S::Queued, A::Cancel, S::Cancelled),
        (S::Dispatched, A::Start, S::Running),
        (S::Dispatched, A::Succeed, S::Succeeded),
        (S::Dispatched, A::Fail, S::Failed),
        (S::Dispatched, A::Requeue, S::Queued),
        (S::Dispatched, A::Suspect, S::Suspect),
        (S::Dispatched, A::HandOverRunning, S::Running),
        (S::Dispatched, A::HandOverWaiting, S::Dispatched),
        (S::Dispatched, A::Cancel, S::Cancelled),
        (S::Running, A::Succeed, S::Succeeded),
        (S::Running, A::Fail, S::Failed),
        (S::Running, A::Requeue, S::Queued),
        (S::Running, A::Suspect, S::Suspect),
        (S::Running, A::HandOverRunning, S::Running),
        (S::Running, A::HandOverWaiting, S::Dispatched),
        (S::Running, A::Cancel, S::Cancelled),
        (S::Failed, A::Retry, S::Queued),
        (S::Cancelled, A::Retry, S::Queued),
        (S::Held, A::Release, S::Queued),
        (S::Held, A::Cancel, S::Cancelled),
        (S::Suspect, A::Release, S::Queued),
        (S::Suspect, A::Cancel, S::Cancelled),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        // Every state and action, derived: a new one is checked too.
        crate::manager::lifecycle::check_every_pair(
            S::VARIANTS,
            A::VARIANTS,
            ALLOWED,
            next,
            |from, action| {
                let why = refusal("j1", from, action);
                assert!(
                    why.starts_with("cannot ") && why.contains(from.as_str()),
                    "{why}"
                );
            },
        );
    }

    #[test]
    fn a_finished_job_is_never_changed_but_by_the_user() {
        for &from in S::VARIANTS.iter().filter(|s| s.is_final()) {
            for &action in A::VARIANTS {
                if let Some(to) = next(from, action) {
                    assert_eq!(action, A::Retry, "{from:?} --{action:?}--> {to:?}");
                }
            }
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert_eq!(
            refusal("j1", S::Succeeded, A::Cancel),
            "cannot cancel job \"j1\" while it is succeeded: it has finished"
        );
        assert!(refusal("j1", S::Queued, A::Release).contains("held or suspect"));
    }
}
