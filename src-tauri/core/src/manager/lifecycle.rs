//! The instance lifecycle as a pure state machine: an enum of actions and one
//! transition table. Everything that changes an instance's status goes through
//! [`next`], so a transition that makes no sense is refused in one place.
//!
//! ```text
//!            start              ready
//!  stopped ---------> starting -------> running <----> paused
//!     ^                  |  stop          |  pause/resume  |
//!     |     stopped      v                v stop           | stop
//!     +------------- stopping <-----------+----------------+
//!
//!  any --fail--> error;  error --start/restart--> starting;  error --stop--> stopped
//! ```

use storycore_types::InstanceStatus;

/// What can happen to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum Action {
    /// The user (or autoStart) asks to start.
    Start,
    /// The server answered: it is up.
    Ready,
    /// The user asks to stop.
    Stop,
    /// The process ended / monitoring ended after a stop.
    Stopped,
    Pause,
    Resume,
    /// Something went wrong (crash, start failure).
    Fail,
    /// Start again after an error (or from running: stop then start).
    Restart,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Ready => "mark as running",
            Action::Stop => "stop",
            Action::Stopped => "mark as stopped",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Fail => "mark as failed",
            Action::Restart => "restart",
        }
    }
}

/// The status after `action`, or `None` when the action makes no sense from `from`.
pub fn next(from: InstanceStatus, action: Action) -> Option<InstanceStatus> {
    use Action as A;
    use InstanceStatus as S;
    Some(match (from, action) {
        (_, A::Fail) => S::Error,
        (S::Stopped, A::Start) => S::Starting,
        (S::Error, A::Start | A::Restart) => S::Starting,
        (S::Running | S::Paused, A::Restart) => S::Starting,
        (S::Starting, A::Ready) => S::Running,
        (S::Running, A::Pause) => S::Paused,
        (S::Paused, A::Resume) => S::Running,
        (S::Starting | S::Running | S::Paused, A::Stop) => S::Stopping,
        (S::Error, A::Stop) => S::Stopped,
        (S::Stopping, A::Stopped) => S::Stopped,
        _ => return None,
    })
}

/// A sentence for a refused transition, saying what to do instead.
pub fn refusal(name: &str, from: InstanceStatus, action: Action) -> String {
    use Action as A;
    use InstanceStatus as S;
    let hint = match (from, action) {
        (S::Stopped, A::Pause | A::Resume | A::Stop) => "start it first",
        (S::Running, A::Start) => "it is already running",
        (S::Starting, A::Start) => "it is already starting",
        (S::Paused, A::Start | A::Pause) => "it is paused: resume it",
        (S::Running, A::Resume) => "it is not paused",
        (S::Stopping, _) => "wait until it has stopped",
        (S::Error, A::Pause | A::Resume) => "restart it first",
        (S::Starting, A::Pause | A::Resume) => "wait until it is running",
        _ => "this makes no sense in its current state",
    };
    format!(
        "cannot {} instance \"{name}\" while it is {}: {hint}",
        action.verb(),
        from.as_str()
    )
}

/// Checks a transition table pair by pair: every (state, action) of
/// `states` x `actions` goes where `allowed` says, and nowhere when it is
/// not listed (`refused` then looks at the refusal). The instance lifecycle
/// and the job's state machine are both checked so.
#[cfg(test)]
pub(crate) fn check_every_pair<S, A>(
    states: &[S],
    actions: &[A],
    allowed: &[(S, A, S)],
    next: impl Fn(S, A) -> Option<S>,
    refused: impl Fn(S, A),
) where
    S: Copy + PartialEq + std::fmt::Debug,
    A: Copy + PartialEq + std::fmt::Debug,
{
    for &from in states {
        for &action in actions {
            let expected = allowed
                .iter()
                .find(|(f, a, _)| *f == from && *a == action)
                .map(|(_, _, to)| *to);
            assert_eq!(
                next(from, action),
                expected,
                "{from:?} --{action:?}--> should be {expected:?}"
            );
            if expected.is_none() {
                refused(from, action);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;
    use Action as A;
    use InstanceStatus as S;

    /// Every allowed transition; anything not listed must be refused.
    const ALLOWED: &[(S, A, S)] = &[
        (S::Stopped, A::Start, S::Starting),
        (S::Stopped, A::Fail, S::Error),
        (S::Starting, A::Ready, S::Running),
        (S::Starting, A::Stop, S::Stopping),
        (S::Starting, A::Fail, S::Error),
        (S::Running, A::Pause, S::Paused),
        (S::Running, A::Stop, S::Stopping),
        (S::Running, A::Restart, S::Starting),
        (S::Running, A::Fail, S::Error),
        (S::Paused, A::Resume, S::Running),
        (S::Paused, A::Stop, S::Stopping),
        (S::Paused, A::Restart, S::Starting),
        (S::Paused, A::Fail, S::Error),
        (S::Stopping, A::Stopped, S::Stopped),
        (S::Stopping, A::Fail, S::Error),
        (S::Error, A::Start, S::Starting),
        (S::Error, A::Restart, S::Starting),
        (S::Error, A::Stop, S::Stopped),
        (S::Error, A::Fail, S::Error),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        // Every variant, derived: a new status or action is checked too.
        check_every_pair(S::VARIANTS, A::VARIANTS, ALLOWED, next, |_, _| {});
    }

    #[test]
    fn refusals_say_what_to_do() {
        let m = refusal("GPU 0", S::Stopped, A::Pause);
        assert_eq!(
            m,
            "cannot pause instance \"GPU 0\" while it is stopped: start it first"
        );
        assert!(refusal("x", S::Running, A::Start).contains("already running"));
    }
}
