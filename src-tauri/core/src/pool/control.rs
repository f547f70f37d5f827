//! The pools' controller: every tick it reads each pool's backlog, its
//! members and the devices' free memory, decides with [`plan::plan`], and
//! carries the decision out (start, stop, wait), logging why.

use super::check::member_number;
use super::plan;
use super::runtime::*;
use crate::dispatch::Outlook;
use crate::manager::ManagerError;
use crate::supervisor::ExitCause;
use std::time::Instant;
use storycore_types::{Instance, InstanceStatus, JobTarget, PoolAction, PoolConfig};

pub(super) async fn controller(weak: std::sync::Weak<Inner>) {
    if let Some(inner) = weak.upgrade() {
        if inner.options.hold {
            let cancel = inner.cancel.clone();
            let begun = async { inner.begun.notified().await };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = begun => {}
            }
        }
    }
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.options.tick;
        let cancel = inner.cancel.clone();
        tick(&inner).await;
        let woken = async {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = woken => {}
        }
    }
}

/// One look at every pool. Decisions are made one at a time (the pools'
/// lock), but the members they start are launched after it is let go: a
/// pool command from the window does not wait behind a member's launch.
pub(super) async fn tick(inner: &Inner) {
    let op = inner.ops.lock().await;
    let mut launches = Vec::new();
    let ids: Vec<String> = inner
        .pools
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.config.enabled)
        .map(|r| r.config.id.clone())
        .collect();
    for id in ids {
        if inner.cancel.is_cancelled() {
            return;
        }
        launches.extend(decide(inner, &id).await);
        publish(inner, &id, false);
    }
    drop(op);
    for l in launches {
        let started = inner.manager.start(&l.member).await;
        let size = members_of(&inner.manager.list(), &l.pool)
            .iter()
            .filter(|m| active(m.status))
            .count() as u32;
        with_pool(inner, &l.pool, |r| {
            r.last_start = Some(Instant::now());
            match started {
                Ok(_) => r.decide(PoolAction::Start, Some(&l.member), l.reason, size),
                Err(ref e) => r.decide(
                    PoolAction::NotStarted,
                    Some(&l.member),
                    format!("a member could not be started: {}", manager_error_text(e)),
                    size,
                ),
            }
            r.note_size(size);
        });
        publish(inner, &l.pool, false);
    }
}

/// A member made ready to start by a decision, launched once the pools'
/// lock is let go.
pub(super) struct Launch {
    pool: String,
    member: String,
    reason: String,
}

/// The work the pool's members may take: waiting jobs and what runs.
pub(super) fn backlog(
    outlook: &Outlook,
    members: &[String],
    lanes: &[String],
    active: Option<&str>,
) -> (usize, f64) {
    // The queue's one rule: some member may run it, or a member not yet
    // started (any instance may take a job of the automatic target
    // without pins).
    let takes = |target: &JobTarget, pins: &[String]| {
        (*target == JobTarget::Auto && pins.is_empty())
            || members
                .iter()
                .any(|m| crate::dispatch::target_allows(target, pins, m, active))
    };
    let waiting: Vec<f64> = outlook
        .waiting
        .iter()
        .filter(|w| takes(&w.target, &w.pins))
        .map(|w| w.secs)
        .collect();
    let running: f64 = lanes
        .iter()
        .filter_map(|l| outlook.in_flight.get(l))
        .map(|(_, secs)| secs)
        .sum();
    (waiting.len(), waiting.iter().sum::<f64>() + running)
}

/// The device a member runs on, as the plan names devices.
pub(super) fn device_of(m: &Instance) -> String {
    match m.config.gpu_device.as_deref() {
        Some(d) => d.strip_prefix("cuda:").unwrap_or(d).to_string(),
        None => "default".to_string(),
    }
}

/// The devices the pool may use, with their free memory now.
pub(super) fn rooms(inner: &Inner, c: &PoolConfig) -> Vec<plan::Room> {
    let gpus = inner.memory.gpus();
    let cpu = || plan::Room {
        device: "cpu".into(),
        free_mib: inner.memory.available_ram() >> 20,
        label: "the CPU (RAM)".into(),
    };
    let wanted: Vec<String> = if c.devices.is_empty() {
        if gpus.is_empty() {
            return vec![cpu()];
        }
        gpus.iter().map(|g| g.index.to_string()).collect()
    } else {
        c.devices.clone()
    };
    wanted
        .iter()
        .map(|d| {
            if d == "cpu" {
                return cpu();
            }
            // A GPU NVML does not list has no memory to give: said, not used.
            match gpus.iter().find(|g| g.index.to_string() == *d) {
                Some(g) => plan::Room {
                    device: d.clone(),
                    free_mib: g.memory_free_bytes >> 20,
                    label: format!("GPU {d} ({})", g.name),
                },
                None => plan::Room {
                    device: d.clone(),
                    free_mib: 0,
                    label: format!(
                        "GPU {d}, which NVML does not list ({})",
                        crate::telemetry::nvml_status()
                            .map_or_else(|| "no such GPU".to_string(), |e| format!("NVML: {e}"))
                    ),
                },
            }
        })
        .collect()
}

/// Memory the member's processes hold on its device, MiB.
pub(super) fn used_mib(inner: &Inner, m: &Instance, device: &str) -> Option<u64> {
    let pid = inner.manager.process_pid(&m.id)?;
    let (rss, pids) = inner.memory.ram_of(pid)?;
    if device == "cpu" {
        Some(rss >> 20)
    } else {
        inner.memory.vram_of(&pids).map(|b| b >> 20)
    }
}

/// One look at one pool: measure, react to out-of-memory exits, plan, act.
pub(super) async fn decide(inner: &Inner, id: &str) -> Vec<Launch> {
    let mut launches = Vec::new();
    let instances = inner.manager.list();
    let members = members_of(&instances, id);
    let outlook = inner.queue.outlook();
    if with_pool(inner, id, |_| ()).is_none() {
        return launches;
    }
    let now = Instant::now();
    // A member's memory is read (a walk of the process table) only when a
    // figure is used: to measure an unknown need, or to book what members
    // still have to take when a start may be wanted.
    let (need_known, min) = with_pool(inner, id, |r| {
        (r.config.need_mib().is_some(), r.config.min_members)
    })
    .unwrap_or((true, 0));
    let active_now = members.iter().filter(|m| active(m.status)).count() as u32;
    let may_start = !outlook.waiting.is_empty() || active_now < min;
    let mut snapshot_members = Vec::new();
    for m in &members {
        let device = device_of(m);
        let in_flight = outlook.in_flight.get(&m.id).map_or(0, |l| l.0);
        let wanted = active(m.status) && (may_start || (!need_known && in_flight > 0));
        let used = wanted.then(|| used_mib(inner, m, &device)).flatten();
        let idle_for = with_pool(inner, id, |r| {
            if m.status == InstanceStatus::Running && in_flight == 0 {
                Some(now - *r.idle_since.entry(m.id.clone()).or_insert(now))
            } else {
                r.idle_since.remove(&m.id);
                None
            }
        })
        .flatten();
        measure(inner, id, m, in_flight, used, &device).await;
        out_of_memory(inner, id, m, &device, &members).await;
        snapshot_members.push(plan::Member {
            id: m.id.clone(),
            number: member_number(id, &m.id).unwrap_or(0),
            status: m.status,
            device,
            in_flight,
            idle_for,
            used_mib: used,
        });
    }
    let member_ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let others: Vec<String> = instances
        .iter()
        .filter(|i| !member_ids.contains(&i.id) && i.takes_work())
        .map(|i| i.id.clone())
        .collect();
    let lanes: Vec<String> = members
        .iter()
        .filter(|m| active(m.status))
        .map(|m| m.id.clone())
        .chain(others.iter().cloned())
        .collect();
    let chosen = inner.manager.active_instance().map(|i| i.id);
    let (waiting_jobs, backlog_secs) = backlog(&outlook, &member_ids, &lanes, chosen.as_deref());
    // The config again: measuring or an out-of-memory exit may have changed it.
    let Some((config, since_start, since_stop)) = with_pool(inner, id, |r| {
        (
            r.config.clone(),
            r.last_start.map(|t| now - t),
            r.last_stop.map(|t| now - t),
        )
    }) else {
        return launches;
    };
    let snap = plan::Snapshot {
        config: &config,
        members: snapshot_members,
        rooms: rooms(inner, &config),
        waiting_jobs,
        backlog_secs,
        other_lanes: others.len() as u32,
        since_start,
        since_stop,
    };
    let decision = plan::plan(&snap);
    let mut size = snap.members.iter().filter(|m| m.active()).count() as u32;
    with_pool(inner, id, |r| {
        r.target = decision.target;
        r.expected_wait = decision.expected_wait;
        r.why = decision.why.clone();
        r.note_size(size);
    });
    for start in &decision.starts {
        match prepare_member(inner, &config, &members, &start.device).await {
            Ok(member) => {
                size += 1;
                launches.push(Launch {
                    pool: id.to_string(),
                    member,
                    reason: format!("on {}: {}", device_label(&start.device), start.reason),
                });
            }
            Err(ref e) => with_pool(inner, id, |r| {
                r.last_start = Some(Instant::now());
                r.decide(
                    PoolAction::NotStarted,
                    None,
                    format!("a member could not be started: {}", manager_error_text(e)),
                    size,
                );
            })
            .unwrap_or_default(),
        }
    }
    with_pool(inner, id, |r| {
        if let Some(refusal) = &decision.not_started {
            let repeat = match &r.last_refusal {
                Some((last, at)) => last != refusal || at.elapsed() >= REFUSAL_REPEAT,
                None => true,
            };
            if repeat {
                r.last_refusal = Some((refusal.clone(), Instant::now()));
                r.decide(PoolAction::NotStarted, None, refusal.clone(), size);
            }
            r.why = format!("{}; {refusal}", r.why);
        } else if decision.starts.is_empty() {
            r.last_refusal = None;
        }
    });
    for stop in &decision.stops {
        let failed = match claim_idle(inner, &stop.member).await {
            Ok(true) => {
                with_pool(inner, id, |r| {
                    size -= 1;
                    r.last_stop = Some(Instant::now());
                    r.idle_since.remove(&stop.member);
                    r.decide(
                        PoolAction::Stop,
                        Some(&stop.member),
                        stop.reason.clone(),
                        size,
                    );
                    r.note_size(size);
                });
                inner.manager.stop(&stop.member).await.err()
            }
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            with_pool(inner, id, |r| {
                r.decide(
                    PoolAction::Stop,
                    Some(&stop.member),
                    format!("could not be stopped: {}", manager_error_text(&e)),
                    size,
                )
            });
        }
    }
    launches
}

pub(super) fn device_label(device: &str) -> String {
    match device {
        "cpu" => "the CPU".into(),
        "default" => "ComfyUI's default device".into(),
        d => format!("GPU {d}"),
    }
}

pub(super) fn with_pool<T>(
    inner: &Inner,
    id: &str,
    f: impl FnOnce(&mut Runtime) -> T,
) -> Option<T> {
    let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
    pools.iter_mut().find(|r| r.config.id == id).map(f)
}

/// The need of a member, from the most memory the first member held while
/// it ran its first job, plus a tenth for what another workflow may take.
pub(super) async fn measure(
    inner: &Inner,
    id: &str,
    m: &Instance,
    in_flight: u32,
    used: Option<u64>,
    device: &str,
) {
    let measured = with_pool(inner, id, |r| {
        if r.config.need_mib().is_some() {
            return None;
        }
        if in_flight > 0 {
            r.worked.insert(m.id.clone());
            if let Some(u) = used {
                let peak = r.peak_mib.entry(m.id.clone()).or_insert(0);
                *peak = (*peak).max(u);
            }
            return None;
        }
        if !r.worked.contains(&m.id) {
            return None;
        }
        let peak = r.peak_mib.get(&m.id).copied().filter(|p| *p > 0)?;
        Some((peak + peak / 10, peak))
    })
    .flatten();
    let Some((need, peak)) = measured else {
        return;
    };
    let change = |c: &mut PoolConfig| c.measured_need_mib = Some(need);
    save_then(inner, id, change, |r| {
        let size = r.history.back().map_or(0, |p| p.size);
        r.decide(
            PoolAction::Measured,
            Some(&m.id),
            format!(
                "a member needs {} on {} (at most {} held over its first run, plus a tenth)",
                plan::mib(need),
                device_label(device),
                plan::mib(peak)
            ),
            size,
        );
    })
    .await;
}

/// Saves the pools' configs with `change` made to pool `id` (on the blocking
/// pool, like every save), then makes it and does `then` under one lock:
/// what the window shows, a decision with its change, is what a restart
/// reads.
pub(super) async fn save_then(
    inner: &Inner,
    id: &str,
    change: impl Fn(&mut PoolConfig),
    then: impl FnOnce(&mut Runtime),
) {
    if !inner.read_only {
        let mut all: Vec<PoolConfig> = inner
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.config.clone())
            .collect();
        all.iter_mut().filter(|c| c.id == id).for_each(&change);
        if let Err(e) = save(inner, all).await {
            tracing::warn!("pools.json could not be saved: {e}");
        }
    }
    with_pool(inner, id, |r| {
        change(&mut r.config);
        then(r);
    });
}

/// A member whose process ended out of memory: fewer members on its device.
pub(super) async fn out_of_memory(
    inner: &Inner,
    id: &str,
    m: &Instance,
    device: &str,
    members: &[Instance],
) {
    let (count, cause) = inner.manager.exits(&m.id);
    let new = with_pool(inner, id, |r| {
        let seen = r.exits_seen.entry(m.id.clone()).or_insert(0);
        let new = count > *seen;
        *seen = count;
        new
    })
    .unwrap_or(false);
    let oom = match cause {
        Some(ExitCause::CudaOutOfMemory) => "GPU memory",
        Some(ExitCause::KilledByOs) if device == "cpu" => "memory (killed by the system)",
        _ => return,
    };
    if !new {
        return;
    }
    let there = members
        .iter()
        .filter(|o| device_of(o) == device && (active(o.status) || o.id == m.id))
        .count() as u32;
    let stop_it = with_pool(inner, id, |r| {
        let old = r
            .config
            .device_limits
            .get(device)
            .copied()
            .unwrap_or(r.config.max_members);
        let limit = there.saturating_sub(1).max(1).min(old);
        let lowered = limit < old || !r.config.device_limits.contains_key(device);
        let reason = if lowered {
            format!(
                "{} ran out of {oom} on {} with {there} member(s) there: at most {limit} there from now on (remove the limit in the pool's settings once memory is free)",
                m.name,
                device_label(device)
            )
        } else {
            format!(
                "{} ran out of {oom} on {} with {there} member(s) there; the limit there is already {limit}: set a larger memory need per member, or free memory",
                m.name,
                device_label(device)
            )
        };
        (reason, lowered.then_some(limit), there > limit)
    });
    let Some((reason, limit, stop_it)) = stop_it else {
        return;
    };
    let change = |c: &mut PoolConfig| {
        if let Some(limit) = limit {
            c.device_limits.insert(device.to_string(), limit);
        }
    };
    save_then(inner, id, change, |r| {
        r.decide(PoolAction::LimitLowered, Some(&m.id), reason, there)
    })
    .await;
    if stop_it {
        if let Err(e) = inner.manager.stop(&m.id).await {
            tracing::warn!(member = %m.id, "not stopped after running out of memory: {e}");
        }
    }
}

/// Takes an idle member out of placement before it is stopped: it is
/// paused, so no job is placed on it while it stops, and resumed if one
/// reached it meanwhile. True if it may be stopped.
pub(super) async fn claim_idle(inner: &Inner, id: &str) -> Result<bool, ManagerError> {
    let m = &inner.manager;
    m.pause(id).await?;
    if inner
        .queue
        .outlook()
        .in_flight
        .get(id)
        .is_some_and(|l| l.0 > 0)
    {
        m.resume(id).await?;
        return Ok(false);
    }
    Ok(true)
}

/// A manager error with the fields it names.
pub(super) fn manager_error_text(e: &ManagerError) -> String {
    match e {
        ManagerError::Invalid { fields } if !fields.is_empty() => summary(fields),
        e => e.to_string(),
    }
}
