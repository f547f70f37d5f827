//! One task per monitored instance. The task owns the instance's
//! [`HealthState`], probes on the policy's intervals, takes commands over a
//! channel, publishes `HealthChanged` and `Alert` events, and stops when its
//! handle is dropped or its cancellation token fires.

use super::alerts::describe;
use super::policy::{HealthPolicy, HealthState, Observation};
use super::probe::{active_workflows, probe, resource_sample};
use crate::client::ComfyClient;
use chrono::Utc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use storycore_types::{Alert, AppEvent, InstanceHealth};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("the health monitor of instance '{instance_id}' has stopped")]
    Stopped { instance_id: String },
}

/// What one turn of the monitor's loop did, to schedule the next probes.
enum Done {
    HealthProbe,
    ResourceSample,
    PolicyChange,
    /// Nothing that moves the schedule.
    Nothing,
}

enum Command {
    CheckNow(oneshot::Sender<InstanceHealth>),
    SetPolicy(HealthPolicy),
    /// A workflow failed there: one more error for the error-rate alert.
    RecordError,
}

/// Starts monitors; see [`HealthMonitor::spawn`].
pub struct HealthMonitor {
    instance_id: String,
    client: ComfyClient,
    probe_client: ComfyClient,
    state: HealthState,
    events: broadcast::Sender<AppEvent>,
    current: watch::Sender<InstanceHealth>,
    /// When `/queue` was last read. A scheduled probe reads it again only
    /// once `resource_interval` has passed: the queue is a resource figure,
    /// and with probes every second it was half the probes' requests.
    queue_read: Option<Instant>,
    /// Set once the server has answered anything since its start (see
    /// [`HealthHandle::start_phase_over`]).
    answered_once: Arc<AtomicBool>,
}

/// The owner's side of a running monitor. Dropping it stops the monitor.
pub struct HealthHandle {
    instance_id: String,
    commands: mpsc::Sender<Command>,
    current: watch::Receiver<InstanceHealth>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    answered_once: Arc<AtomicBool>,
}

impl HealthMonitor {
    /// Starts monitoring on the current Tokio runtime. The first probe runs at
    /// once; events go to `events` (sending never blocks, and nobody listening
    /// is fine).
    pub fn spawn(
        instance_id: String,
        client: ComfyClient,
        policy: HealthPolicy,
        events: broadcast::Sender<AppEvent>,
    ) -> HealthHandle {
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (cur_tx, cur_rx) = watch::channel(InstanceHealth::default());
        let cancel = CancellationToken::new();
        let answered_once = Arc::new(AtomicBool::new(false));
        let monitor = HealthMonitor {
            answered_once: answered_once.clone(),
            instance_id: instance_id.clone(),
            probe_client: client.with_timeout(policy.probe_timeout),
            client,
            state: HealthState::new(policy, Utc::now()),
            events,
            current: cur_tx,
            queue_read: None,
        };
        let task = tokio::spawn(monitor.run(cmd_rx, cancel.clone()));
        HealthHandle {
            instance_id,
            commands: cmd_tx,
            current: cur_rx,
            cancel,
            task: Some(task),
            answered_once,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let mut next_health = Instant::now();
        let mut next_resource = Instant::now() + self.state.policy().resource_interval;
        loop {
            let done = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some(Command::CheckNow(reply)) => {
                        if !self.health_probe(&cancel, true).await {
                            break;
                        }
                        let _ = reply.send(self.state.health().clone());
                        Done::HealthProbe
                    }
                    Some(Command::SetPolicy(policy)) => {
                        self.probe_client = self.client.with_timeout(policy.probe_timeout);
                        self.state.set_policy(policy);
                        Done::PolicyChange
                    }
                    Some(Command::RecordError) => {
                        let obs = self.state.on_error(Utc::now());
                        self.publish(obs);
                        Done::Nothing
                    }
                },
                _ = sleep_until(next_health) => {
                    if !self.health_probe(&cancel, false).await {
                        break;
                    }
                    Done::HealthProbe
                }
                _ = sleep_until(next_resource) => {
                    if !self.resource_sample(&cancel).await {
                        break;
                    }
                    Done::ResourceSample
                }
            };
            let now = Instant::now();
            let health_in = self.state.next_probe_in();
            let resource_in = self.state.policy().resource_interval;
            match done {
                // A health probe also read the resources: the next sample can wait.
                Done::HealthProbe => {
                    next_health = on_grid(now + health_in, health_in);
                    next_resource = on_grid(now + resource_in, resource_in);
                }
                Done::ResourceSample => next_resource = on_grid(now + resource_in, resource_in),
                // Shorter intervals take effect at once; longer ones after the next probe.
                Done::PolicyChange => {
                    next_health = next_health.min(now + health_in);
                    next_resource = next_resource.min(now + resource_in);
                }
                Done::Nothing => {}
            }
        }
        tracing::debug!(instance = %self.instance_id, "health monitor stopped");
    }

    /// Whether this probe should read `/queue` too: always when asked for
    /// (`check now`), else once per `resource_interval`.
    fn queue_due(&mut self, asked: bool) -> bool {
        let policy = self.state.policy();
        let due = policy.watch_queue
            && (asked
                || self
                    .queue_read
                    .is_none_or(|t| t.elapsed() >= policy.resource_interval));
        if due {
            self.queue_read = Some(Instant::now());
        }
        due
    }

    /// Returns false when cancelled mid-probe.
    async fn health_probe(&mut self, cancel: &CancellationToken, asked: bool) -> bool {
        let previous_active = self.active_workflows();
        let read_queue = self.queue_due(asked);
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return false,
            o = probe(&self.probe_client, read_queue, previous_active) => o,
        };
        let obs = self.state.on_probe(outcome, Utc::now());
        self.publish(obs);
        true
    }

    async fn resource_sample(&mut self, cancel: &CancellationToken) -> bool {
        let watch_queue = self.queue_due(true);
        let fetched = tokio::select! {
            _ = cancel.cancelled() => return false,
            r = async {
                let stats = self.probe_client.system_stats().await?;
                let queue = if watch_queue { self.probe_client.queue().await.ok() } else { None };
                Ok::<_, crate::client::ClientError>((stats, queue))
            } => r,
        };
        match fetched {
            Ok((stats, queue)) => {
                let active = queue
                    .as_ref()
                    .map_or_else(|| self.active_workflows(), active_workflows);
                let obs = self
                    .state
                    .on_resources(resource_sample(&stats, active), Utc::now());
                self.publish(obs);
            }
            // Failures are the health probe's business; a resource sample only
            // refreshes figures.
            Err(e) => {
                tracing::debug!(instance = %self.instance_id, error = %e, "resource sample failed")
            }
        }
        true
    }

    fn active_workflows(&self) -> u32 {
        self.state
            .health()
            .system_stats
            .as_ref()
            .map_or(0, |s| s.active_workflows)
    }

    fn publish(&mut self, obs: Observation) {
        if !self.state.is_starting() {
            // Before the watch wakes its readers, so they see it.
            self.answered_once.store(true, Ordering::Release);
        }
        let health = self.state.health().clone();
        self.current.send_replace(health.clone());
        if let Some((from, to)) = obs.status_change {
            tracing::info!(instance = %self.instance_id, ?from, ?to, error = ?self.state.last_error(), "health changed");
        }
        if obs.worth_publishing || obs.status_change.is_some() {
            let _ = self.events.send(AppEvent::HealthChanged {
                id: self.instance_id.clone(),
                health,
            });
        }
        for kind in obs.alerts {
            let message = describe(
                &kind,
                &self.instance_id,
                self.client.base_url(),
                self.state.last_error(),
            );
            tracing::warn!(instance = %self.instance_id, %message, "health alert");
            let _ = self.events.send(AppEvent::Alert(Alert {
                instance_id: self.instance_id.clone(),
                kind,
                message,
                at: Utc::now(),
            }));
        }
    }
}

/// Probe times are rounded to a grid shared by every monitor, so that many
/// instances probed at the same interval wake the runtime together, and
/// their events reach the window in one batch (see the app's event bridge),
/// instead of one by one all through the interval. The grid is a quarter of
/// the interval, between 100 ms and 1 s: at most four rounds per interval.
/// Only the first probe moves (by at most half a step); once on the grid,
/// a steady interval stays exact, so the mean rate does not change.
fn grid_for(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// `at` moved to the nearest point of the grid for `interval`, when that
/// interval is a second or more (the shorter ones of the start phase and of
/// tests stay exact).
fn on_grid(at: Instant, interval: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    if interval < Duration::from_secs(1) {
        return at;
    }
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = grid_for(interval).as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let rounded = (since + grid / 2) / grid * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

impl HealthHandle {
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Probes now and answers the resulting health (the seed's
    /// `checkInstanceHealth`). Waits at most about one probe timeout, plus a
    /// probe already in flight.
    pub async fn check_now(&self) -> Result<InstanceHealth, HealthError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::CheckNow(tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())
    }

    /// Whether the start phase is over: the server answered, even if only
    /// to refuse the probe (401). Such a server is running, and unhealthy.
    pub fn start_phase_over(&self) -> bool {
        self.answered_once.load(Ordering::Acquire)
    }

    /// The health as of the last probe, without waiting.
    pub fn current(&self) -> InstanceHealth {
        self.current.borrow().clone()
    }

    /// A receiver that wakes at each new health figure.
    pub fn watch(&self) -> watch::Receiver<InstanceHealth> {
        self.current.clone()
    }

    /// Replaces the thresholds and intervals from the next probe on.
    pub async fn set_policy(&self, policy: HealthPolicy) -> Result<(), HealthError> {
        self.commands
            .send(Command::SetPolicy(policy))
            .await
            .map_err(|_| self.stopped())
    }

    /// Counts a failed workflow toward the error-rate alert (never waits: a
    /// busy monitor drops it rather than slow the caller).
    pub fn record_error(&self) {
        let _ = self.commands.try_send(Command::RecordError);
    }

    /// Stops the monitor without waiting for it.
    pub fn stop(self) {
        self.cancel.cancel();
    }

    /// Stops the monitor and waits until its task has ended.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stopped(&self) -> HealthError {
        HealthError::Stopped {
            instance_id: self.instance_id.clone(),
        }
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_times_meet_on_the_grid_without_drifting() {
        let second = Duration::from_secs(1);
        assert_eq!(grid_for(second), Duration::from_millis(250));
        assert_eq!(grid_for(Duration::from_secs(30)), second);
        let step = grid_for(second);
        let g = on_grid(Instant::now() + second, second);
        // A point already on the grid stays: a steady 1 s probe stays at 1 s.
        assert_eq!(on_grid(g, second), g);
        assert_eq!(on_grid(g + second, second), g + second);
        // Probes due up to 124 ms either side of a grid point all wake there.
        for ms in [1, 60, 124] {
            let d = Duration::from_millis(ms);
            assert_eq!(on_grid(g + d, second), g, "+{ms} ms");
            assert_eq!(on_grid(g - d, second), g, "-{ms} ms");
        }
        // Beyond half a step, the next point.
        assert_eq!(on_grid(g + Duration::from_millis(126), second), g + step);
        // Short intervals (start phase, tests) stay exact.
        let t = g + Duration::from_millis(37);
        assert_eq!(on_grid(t, Duration::from_millis(150)), t);
    }
}
