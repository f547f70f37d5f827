//! Which instance should take work: pure functions over a snapshot of the fleet.
//! Load is the server's active workflows (running + pending, counted until the
//! job is finished, not until the HTTP reply) over its `maxConcurrentWorkflows`.

use storycore_types::{HealthStatus, Instance, InstanceStatus};

/// The load of an instance: active workflows per allowed concurrent workflow.
pub fn load(i: &Instance) -> f64 {
    let active = i
        .health
        .system_stats
        .as_ref()
        .map(|s| s.active_workflows)
        .unwrap_or(0);
    f64::from(active) / f64::from(i.config.max_concurrent().max(1))
}

/// Takes new work: running (not paused) and answering.
pub fn eligible(i: &Instance) -> bool {
    i.status == InstanceStatus::Running
        && matches!(
            i.health.status,
            HealthStatus::Healthy | HealthStatus::Degraded
        )
}

fn health_rank(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        _ => 2,
    }
}

/// Eligible instances, best first: healthy before degraded, then least loaded,
/// then the active instance, then the least recently used.
pub fn by_load<'a>(fleet: &'a [Instance], active: Option<&str>) -> Vec<&'a Instance> {
    let mut v: Vec<&Instance> = fleet.iter().filter(|i| eligible(i)).collect();
    v.sort_by(|a, b| {
        health_rank(a.health.status)
            .cmp(&health_rank(b.health.status))
            .then(load(a).total_cmp(&load(b)))
            .then_with(|| {
                let aa = Some(a.id.as_str()) == active;
                let bb = Some(b.id.as_str()) == active;
                bb.cmp(&aa)
            })
            .then(a.last_used_at.cmp(&b.last_used_at))
    });
    v
}

/// The seed's `getHealthyInstance`: the best eligible instance, if any.
pub fn healthy_instance<'a>(fleet: &'a [Instance], active: Option<&str>) -> Option<&'a Instance> {
    by_load(fleet, active).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use storycore_types::{InstanceConfig, SystemStats};

    fn inst(
        id: &str,
        status: InstanceStatus,
        health: HealthStatus,
        active: u32,
        max: u32,
    ) -> Instance {
        let mut c = InstanceConfig::new(id, id, 8188);
        c.max_concurrent_workflows = Some(max);
        let mut i = Instance {
            id: id.into(),
            name: id.into(),
            config: c,
            status,
            health: Default::default(),
            stats: Default::default(),
            created_at: chrono::Utc::now(),
            last_used_at: None,
            status_reason: None,
            status_since: None,
            start_progress: None,
        };
        i.health.status = health;
        i.health.system_stats = Some(SystemStats {
            active_workflows: active,
            ..Default::default()
        });
        i
    }

    #[test]
    fn paused_stopped_and_unhealthy_take_no_work() {
        use HealthStatus as H;
        use InstanceStatus as S;
        let fleet = vec![
            inst("paused", S::Paused, H::Healthy, 0, 1),
            inst("stopped", S::Stopped, H::Healthy, 0, 1),
            inst("sick", S::Running, H::Unhealthy, 0, 1),
            inst("unknown", S::Running, H::Unknown, 0, 1),
        ];
        assert!(healthy_instance(&fleet, None).is_none());
    }

    #[test]
    fn least_loaded_healthy_first_then_degraded() {
        use HealthStatus as H;
        use InstanceStatus as S;
        let fleet = vec![
            inst("busy", S::Running, H::Healthy, 2, 2),
            inst("degraded-idle", S::Running, H::Degraded, 0, 1),
            inst("half", S::Running, H::Healthy, 1, 2),
            inst("idle", S::Running, H::Healthy, 0, 1),
        ];
        let order: Vec<&str> = by_load(&fleet, None)
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(order, ["idle", "half", "busy", "degraded-idle"]);
    }

    #[test]
    fn the_active_instance_wins_a_tie() {
        use HealthStatus as H;
        use InstanceStatus as S;
        let fleet = vec![
            inst("a", S::Running, H::Healthy, 0, 1),
            inst("b", S::Running, H::Healthy, 0, 1),
        ];
        assert_eq!(healthy_instance(&fleet, Some("b")).unwrap().id, "b");
        assert_eq!(healthy_instance(&fleet, Some("a")).unwrap().id, "a");
    }
}
