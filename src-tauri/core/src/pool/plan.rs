//! What a pool should do now: pure, over a snapshot of its members, the
//! devices' free memory and the queue's backlog. The controller gathers the
//! snapshot, calls [`plan`], and carries out what it returns.
//!
//! The size follows the placement model's expected wait: the backlog (work
//! waiting that the pool's members may take, plus what runs and is expected
//! to remain) spread over the lanes that can take it (instances outside the
//! pool, and the pool's members starting or running). The pool aims at the
//! fewest lanes that keep that wait under its trigger, so a burst of fifty
//! jobs starts several members in one decision rather than one per cooldown.

use std::time::Duration;
use storycore_types::{InstanceStatus, PoolConfig};

/// One member as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub number: u32,
    pub status: InstanceStatus,
    /// `cpu` or a GPU index, as its `gpuDevice` says.
    pub device: String,
    /// Prompts of this app on it that ComfyUI has not finished.
    pub in_flight: u32,
    /// How long it has had nothing to do (None: busy, or not running).
    pub idle_for: Option<Duration>,
    /// Memory it holds now, MiB (None: not measurable here).
    pub used_mib: Option<u64>,
}

impl Member {
    /// Starting or running: what the pool counts as its size. Paused
    /// members take no work, so they are not capacity.
    pub fn active(&self) -> bool {
        matches!(
            self.status,
            InstanceStatus::Starting | InstanceStatus::Running
        )
    }
}

/// Free memory of one device the pool may use, MiB.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub device: String,
    /// What the device reports free now.
    pub free_mib: u64,
    /// For the reasons: "GPU 0 (NVIDIA RTX 4090)" or "the CPU (RAM)".
    pub label: String,
}

/// Everything one decision looks at.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub config: &'a PoolConfig,
    pub members: Vec<Member>,
    pub rooms: Vec<Room>,
    /// Queued jobs a member may take.
    pub waiting_jobs: usize,
    /// Their expected seconds, plus the expected seconds left of what runs
    /// on the lanes below.
    pub backlog_secs: f64,
    /// Instances outside the pool that take the same work now.
    pub other_lanes: u32,
    /// Since the pool last started / stopped a member (None: never).
    pub since_start: Option<Duration>,
    pub since_stop: Option<Duration>,
}

/// A start the plan wants, on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub device: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub member: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub target: u32,
    /// Seconds; None when nothing waits, infinite with no lane at all.
    pub expected_wait: Option<f64>,
    pub why: String,
    pub starts: Vec<Start>,
    /// A start was wanted and none could be made: why.
    pub not_started: Option<String>,
    pub stops: Vec<Stop>,
}

/// Seconds as a user reads them.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        "unbounded (no instance can take the work)".into()
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

pub fn mib(m: u64) -> String {
    if m >= 1024 {
        format!("{:.1} GiB", m as f64 / 1024.0)
    } else {
        format!("{m} MiB")
    }
}

/// The members a device may hold: its lowered limit, else the pool's maximum.
fn device_limit(config: &PoolConfig, device: &str) -> u32 {
    config
        .device_limits
        .get(device)
        .copied()
        .unwrap_or(config.max_members)
}

/// The decision.
pub fn plan(s: &Snapshot) -> Plan {
    let c = s.config;
    let active = s.members.iter().filter(|m| m.active()).count() as u32;
    let busy = s
        .members
        .iter()
        .filter(|m| m.active() && m.in_flight > 0)
        .count() as u32;
    let lanes = s.other_lanes + active;
    let expected_wait = (s.waiting_jobs > 0).then(|| {
        if lanes == 0 {
            f64::INFINITY
        } else {
            s.backlog_secs / f64::from(lanes)
        }
    });
    let trigger = c.scale_up_wait_secs.max(0.001);
    // The fewest lanes that keep the wait under the trigger.
    let wanted_by_backlog = match expected_wait {
        Some(_) => {
            let lanes_needed = (s.backlog_secs / trigger).ceil().max(1.0) as u32;
            lanes_needed.saturating_sub(s.other_lanes)
        }
        None => 0,
    };
    let target = wanted_by_backlog
        .max(busy)
        .max(c.min_members)
        .min(c.max_members.max(c.min_members));
    let mut why = match expected_wait {
        None if busy > 0 => format!("nothing waits; {busy} member(s) at work"),
        None => "nothing waits".to_string(),
        Some(w) => format!(
            "{} job(s) wait, expected wait {} on {lanes} lane(s) (trigger {})",
            s.waiting_jobs,
            secs(w),
            secs(trigger)
        ),
    };
    if target == c.min_members && target > wanted_by_backlog.max(busy) {
        why.push_str(&format!("; the pool keeps at least {}", c.min_members));
    }
    if wanted_by_backlog > c.max_members {
        why.push_str(&format!(
            "; {wanted_by_backlog} member(s) would be needed, the maximum is {}",
            c.max_members
        ));
    }
    let mut out = Plan {
        target,
        expected_wait,
        why,
        ..Plan::default()
    };

    // Up: to the minimum at once; for the backlog, once per cooldown.
    let below_min = active < c.min_members;
    let cooled = s
        .since_start
        .is_none_or(|t| t >= Duration::from_secs(c.cooldown_secs));
    let over_trigger = expected_wait.is_some_and(|w| w > trigger);
    if target > active && (below_min || (cooled && over_trigger)) {
        let reason = if below_min {
            format!("the pool keeps at least {} member(s)", c.min_members)
        } else {
            format!(
                "expected wait {} over the trigger of {}: {} job(s) waiting, target {target}",
                secs(expected_wait.unwrap_or_default()),
                secs(trigger),
                s.waiting_jobs
            )
        };
        let (starts, refusal) = place_starts(s, target - active, &reason);
        out.starts = starts;
        out.not_started = refusal;
    }

    // Down: idle members past the timeout, above the target and the
    // minimum, never one at work, not right after a start.
    let floor = target.max(c.min_members);
    let settled = s
        .since_start
        .is_none_or(|t| t >= Duration::from_secs(c.cooldown_secs));
    if active > floor && settled {
        let timeout = Duration::from_secs(c.idle_timeout_secs);
        let mut idle: Vec<&Member> = s
            .members
            .iter()
            .filter(|m| m.status == InstanceStatus::Running && m.in_flight == 0)
            .filter(|m| m.idle_for.is_some_and(|t| t >= timeout))
            .collect();
        idle.sort_by_key(|m| std::cmp::Reverse(m.number));
        let mut size = active;
        for m in idle {
            if size <= floor {
                break;
            }
            size -= 1;
            out.stops.push(Stop {
                member: m.id.clone(),
                reason: format!(
                    "idle for {} (timeout {}); {} member(s) for a target of {target}",
                    secs(m.idle_for.unwrap_or_default().as_secs_f64()),
                    secs(timeout.as_secs_f64()),
                    size + 1
                ),
            });
        }
    }
    out
}

/// Devices for `count` new members: each needs its memory free (after what
/// the members there still have to allocate) and its device below its limit.
fn place_starts(s: &Snapshot, count: u32, reason: &str) -> (Vec<Start>, Option<String>) {
    let c = s.config;
    let need = c.need_mib();
    // Per device: members there, and memory still to be taken by them.
    let mut rooms: Vec<(Room, u32, u64)> = s
        .rooms
        .iter()
        .map(|r| {
            let here: Vec<&Member> = s
                .members
                .iter()
                .filter(|m| m.active() && m.device == r.device)
                .collect();
            let pending: u64 = here
                .iter()
                .map(|m| need.unwrap_or(0).saturating_sub(m.used_mib.unwrap_or(0)))
                .sum();
            (r.clone(), here.len() as u32, pending)
        })
        .collect();
    let mut starts = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    for _ in 0..count {
        refusals.clear();
        let mut best: Option<(usize, u64)> = None;
        for (k, (room, members, pending)) in rooms.iter().enumerate() {
            let limit = device_limit(c, &room.device);
            if *members >= limit {
                refusals.push(format!(
                    "{} holds its limit of {limit} member(s)",
                    room.label
                ));
                continue;
            }
            if room.free_mib == 0 {
                refusals.push(format!("{} has no free memory", room.label));
                continue;
            }
            let free = room.free_mib.saturating_sub(*pending);
            match need {
                Some(n) if free < n => {
                    refusals.push(format!(
                        "{} has {} free of the {} a member needs",
                        room.label,
                        mib(free),
                        mib(n)
                    ));
                    continue;
                }
                None if *members > 0 => {
                    refusals.push(format!(
                        "{} has a member already, and a member's memory need is not known yet (set it, or it is measured over the first run)",
                        room.label
                    ));
                    continue;
                }
                _ => {}
            }
            // The device with the most room left after the start.
            let left = free.saturating_sub(need.unwrap_or(0));
            if best.is_none_or(|(_, l)| left > l) {
                best = Some((k, left));
            }
        }
        let Some((k, _)) = best else { break };
        rooms[k].1 += 1;
        rooms[k].2 += need.unwrap_or(0);
        starts.push(Start {
            device: rooms[k].0.device.clone(),
            reason: reason.to_string(),
        });
    }
    let refusal = ((starts.len() as u32) < count).then(|| {
        let missing = count - starts.len() as u32;
        if s.rooms.is_empty() {
            format!("{missing} member(s) not started: the pool has no device to run on")
        } else {
            format!("{missing} member(s) not started: {}", refusals.join("; "))
        }
    });
    (starts, refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolConfig {
        let mut c = PoolConfig::new("p", "P", "/comfy");
        c.min_members = 1;
        c.max_members = 4;
        c.scale_up_wait_secs = 10.0;
        c.cooldown_secs = 5;
        c.idle_timeout_secs = 30;
        c.memory_need_mib = Some(8 * 1024);
        c
    }

    fn member(n: u32, status: InstanceStatus, in_flight: u32, idle: u64) -> Member {
        Member {
            id: format!("p-{n}"),
            number: n,
            status,
            device: "0".into(),
            in_flight,
            idle_for: (in_flight == 0 && status == InstanceStatus::Running)
                .then(|| Duration::from_secs(idle)),
            used_mib: None,
        }
    }

    fn gpu(device: &str, free_gib: u64) -> Room {
        Room {
            device: device.into(),
            free_mib: free_gib * 1024,
            label: format!("GPU {device}"),
        }
    }

    fn snap<'a>(
        c: &'a PoolConfig,
        members: Vec<Member>,
        waiting: usize,
        secs: f64,
    ) -> Snapshot<'a> {
        Snapshot {
            config: c,
            members,
            rooms: vec![gpu("0", 80)],
            waiting_jobs: waiting,
            backlog_secs: secs,
            other_lanes: 0,
            since_start: None,
            since_stop: None,
        }
    }

    #[test]
    fn a_burst_starts_several_members_in_one_decision() {
        let c = pool();
        let p = plan(&snap(
            &c,
            vec![member(1, InstanceStatus::Running, 2, 0)],
            20,
            40.0,
        ));
        assert_eq!(p.target, 4);
        assert_eq!(p.starts.len(), 3, "{p:?}");
        assert_eq!(p.expected_wait, Some(40.0));
        assert!(p.starts[0].reason.contains("over the trigger"), "{p:?}");
    }

    #[test]
    fn a_short_backlog_starts_nothing() {
        let c = pool();
        let p = plan(&snap(
            &c,
            vec![member(1, InstanceStatus::Running, 2, 0)],
            2,
            8.0,
        ));
        assert!(p.starts.is_empty(), "{p:?}");
        assert_eq!(p.target, 1);
    }

    #[test]
    fn the_cooldown_holds_a_second_decision() {
        let c = pool();
        let mut s = snap(&c, vec![member(1, InstanceStatus::Running, 2, 0)], 20, 40.0);
        s.since_start = Some(Duration::from_secs(2));
        assert!(plan(&s).starts.is_empty());
        s.since_start = Some(Duration::from_secs(6));
        assert_eq!(plan(&s).starts.len(), 3);
    }

    #[test]
    fn starting_members_count_as_lanes() {
        let c = pool();
        let members = vec![
            member(1, InstanceStatus::Running, 2, 0),
            member(2, InstanceStatus::Starting, 0, 0),
            member(3, InstanceStatus::Starting, 0, 0),
            member(4, InstanceStatus::Starting, 0, 0),
        ];
        let p = plan(&snap(&c, members, 20, 40.0));
        assert!(p.starts.is_empty(), "{p:?}");
        assert_eq!(p.expected_wait, Some(10.0));
    }

    #[test]
    fn paused_members_are_not_capacity() {
        let c = pool();
        let members = vec![
            member(1, InstanceStatus::Paused, 0, 0),
            member(2, InstanceStatus::Running, 1, 0),
        ];
        let p = plan(&snap(&c, members, 3, 30.0));
        assert_eq!(p.expected_wait, Some(30.0));
        assert_eq!(p.starts.len(), 2, "{p:?}");
    }

    #[test]
    fn memory_limits_the_starts_and_says_why() {
        let c = pool();
        let mut s = snap(&c, vec![member(1, InstanceStatus::Running, 2, 0)], 20, 40.0);
        s.rooms = vec![gpu("0", 20)];
        let p = plan(&s);
        // 20 GiB free, member 1 counted as still to allocate 8: room for one more.
        assert_eq!(p.starts.len(), 1, "{p:?}");
        let why = p.not_started.expect("a refusal");
        assert!(why.contains("2 member(s) not started"), "{why}");
        assert!(
            why.contains("GPU 0 has 4.0 GiB free of the 8.0 GiB a member needs"),
            "{why}"
        );
    }

    #[test]
    fn measured_use_is_not_booked_twice() {
        let c = pool();
        let mut m = member(1, InstanceStatus::Running, 2, 0);
        m.used_mib = Some(8 * 1024);
        let mut s = snap(&c, vec![m], 20, 40.0);
        s.rooms = vec![gpu("0", 16)];
        assert_eq!(plan(&s).starts.len(), 2);
    }

    #[test]
    fn a_lowered_limit_caps_a_device_and_others_take_over() {
        let mut c = pool();
        c.device_limits.insert("0".into(), 1);
        let mut s = snap(&c, vec![member(1, InstanceStatus::Running, 2, 0)], 20, 40.0);
        s.rooms = vec![gpu("0", 80), gpu("1", 10)];
        let p = plan(&s);
        assert_eq!(p.starts.len(), 1);
        assert_eq!(p.starts[0].device, "1");
        let why = p.not_started.unwrap();
        assert!(
            why.contains("GPU 0 holds its limit of 1 member(s)"),
            "{why}"
        );
    }

    #[test]
    fn unknown_need_means_one_member_per_device() {
        let mut c = pool();
        c.memory_need_mib = None;
        let mut s = snap(&c, vec![], 20, 40.0);
        s.rooms = vec![gpu("0", 80), gpu("1", 80)];
        let p = plan(&s);
        assert_eq!(p.starts.len(), 2);
        assert!(p.not_started.unwrap().contains("not known yet"));
    }

    #[test]
    fn a_device_without_free_memory_is_never_used_even_with_an_unknown_need() {
        let mut c = pool();
        c.memory_need_mib = None;
        let mut s = snap(&c, vec![], 4, 40.0);
        s.rooms = vec![Room {
            device: "0".into(),
            free_mib: 0,
            label: "GPU 0, which NVML does not list".into(),
        }];
        let p = plan(&s);
        assert!(p.starts.is_empty(), "{p:?}");
        assert!(p
            .not_started
            .unwrap()
            .contains("GPU 0, which NVML does not list has no free memory"));
    }

    #[test]
    fn idle_members_stop_down_to_the_minimum_and_busy_ones_never() {
        let c = pool();
        let members = vec![
            member(1, InstanceStatus::Running, 0, 100),
            member(2, InstanceStatus::Running, 1, 0),
            member(3, InstanceStatus::Running, 0, 100),
            member(4, InstanceStatus::Running, 0, 10),
        ];
        let p = plan(&snap(&c, members, 0, 0.0));
        assert_eq!(p.target, 1, "{p:?}");
        let stopped: Vec<&str> = p.stops.iter().map(|s| s.member.as_str()).collect();
        // 4 is not idle long enough, 2 is at work: 3 then 1 (the newest first).
        assert_eq!(stopped, ["p-3", "p-1"]);
        assert!(p.stops[0].reason.contains("idle for 100 s"), "{p:?}");
    }

    #[test]
    fn the_minimum_is_kept() {
        let c = pool();
        let p = plan(&snap(
            &c,
            vec![member(1, InstanceStatus::Running, 0, 1000)],
            0,
            0.0,
        ));
        assert!(p.stops.is_empty());
        let p = plan(&snap(&c, vec![], 0, 0.0));
        assert_eq!(p.starts.len(), 1);
        assert!(p.starts[0].reason.contains("at least 1"));
    }

    #[test]
    fn other_instances_are_lanes_too() {
        let c = pool();
        let mut s = snap(&c, vec![member(1, InstanceStatus::Running, 1, 0)], 6, 40.0);
        s.other_lanes = 3;
        let p = plan(&s);
        assert_eq!(p.expected_wait, Some(10.0));
        assert!(p.starts.is_empty());
    }
}
