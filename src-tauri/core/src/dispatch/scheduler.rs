//! The scheduler task: whenever something changes (a job queued, a slot freed,
//! an instance back), it places queued jobs (see `placement` for the order and
//! the choice) and starts a runner for each one placed. The job's record as
//! `dispatched`, with its instance and prompt id, goes to the journal's
//! writer; the runner sends the job only once that record is durable. When
//! the write fails, nothing is sent: the job goes back to the queue with an
//! error saying what to do, and placing resumes by itself once writing works
//! again.

use super::placement::{target_allows, Ask, Candidate, Decision};
use super::state::{Effect, Mode, QueueState, Shared};
use super::writer::Durable;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{Instance, JobState, JobTarget};

/// Also re-plan this often without a wake-up: cooldowns expire and health
/// figures move without an event that concerns the queue.
const REPLAN_EVERY: Duration = Duration::from_millis(250);

/// Newly healthy instances are looked for this often (it reads the fleet).
const CALIBRATION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Idle instances are matched with running jobs this often (it reads the fleet).
const SPECULATION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A copy is worth it when it is expected to end within this fraction of
/// the time the job is expected to need still where it runs (a copy costs
/// a GPU's time, and the estimates are estimates)...
const COPY_GAIN: f64 = 0.5;

/// ... and that time left is at least this long.
const COPY_MIN_LEFT_SECS: f64 = 2.0;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut checked = Instant::now() - CALIBRATION_CHECK_EVERY;
    let mut speculated = Instant::now();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(REPLAN_EVERY) => {}
        }
        if checked.elapsed() >= CALIBRATION_CHECK_EVERY {
            checked = Instant::now();
            for instance in super::offers::to_read(&shared) {
                shared.effect(Effect::ReadOffer(Box::new(instance)));
            }
            for instance in calibrations(&shared) {
                shared.effect(Effect::Calibrate(Box::new(instance)));
            }
        }
        let placed = plan(&shared);
        let nothing_placed = placed.is_empty();
        for (job_id, durable) in placed {
            shared.effect(Effect::Run {
                job_id,
                mode: Mode::Submit,
                durable: Some(durable),
            });
        }
        if nothing_placed && speculated.elapsed() >= SPECULATION_CHECK_EVERY {
            speculated = Instant::now();
            for (job_id, durable) in speculate(&shared) {
                shared.effect(Effect::RunCopy { job_id, durable });
            }
        }
    }
}

/// The instances that may take work now, as the planner sees them.
pub(crate) struct Fleet {
    pub instances: Vec<Instance>,
    pub active: Option<String>,
    pub candidates: Vec<Candidate>,
}

impl Fleet {
    pub fn new(shared: &Shared, st: &mut QueueState) -> Self {
        let instances = shared.manager.list();
        let active = shared.manager.active_instance().map(|i| i.id);
        st.expire_cooldowns();
        // What an instance offers is read before it takes work, once per run.
        for i in instances.iter().filter(|i| i.takes_work()) {
            if st.begin_offer_read(i) {
                shared.effect(Effect::ReadOffer(Box::new(i.clone())));
            }
        }
        let load = st.load();
        let policy = st.planner().policy;
        let candidates = instances
            .iter()
            .filter(|i| {
                i.takes_work()
                    && !st.cooling(&i.id)
                    && !st.calibrating(&i.id)
                    && !st.reading_offer(i)
            })
            .map(|i| {
                let l = load.get(&i.id).copied().unwrap_or_default();
                let (fixed_secs, secs_per_unit) = st
                    .speeds()
                    .params(&i.id)
                    .unwrap_or_else(|| (0.0, st.speeds().secs_per_unit(&i.id)));
                Candidate {
                    id: i.id.clone(),
                    capacity: policy.slots(i.config.max_concurrent()),
                    in_flight: l.in_flight,
                    backlog_secs: l.backlog_secs,
                    fixed_secs,
                    secs_per_unit,
                    reported_queue: i
                        .health
                        .system_stats
                        .as_ref()
                        .map_or(0, |s| s.active_workflows),
                    waiting_secs: 0.0,
                    holds: st.holds(&i.id).to_vec(),
                    load_secs: st.load_secs_of(&i.id),
                    cached: st.cached_keys(&i.id),
                }
            })
            .collect();
        Self {
            instances,
            active,
            candidates,
        }
    }

    fn has_room(&self) -> bool {
        self.candidates.iter().any(Candidate::has_room)
    }
}

/// One pass: returns the jobs placed, each with the answer of its record's write.
pub(crate) fn plan(shared: &Arc<Shared>) -> Vec<(String, Durable)> {
    let mut placed = Vec::new();
    let mut st = shared.lock();
    if st.storage_blocked() {
        return placed;
    }
    // Most passes find nothing waiting: then the fleet is not even read.
    if !st
        .entries()
        .any(|e| e.accepted() && e.job().state == JobState::Queued)
    {
        return placed;
    }
    let mut fleet = Fleet::new(shared, &mut st);
    explain_waits(shared, &mut st, &fleet);
    if !fleet.has_room() {
        return placed;
    }
    let waiting: Vec<(String, f64, f64)> = st
        .in_order()
        .filter(|e| e.accepted() && e.job().state == JobState::Queued)
        .map(|e| {
            (
                e.job().id.clone(),
                e.work(),
                e.queued_at().elapsed().as_secs_f64(),
            )
        })
        .collect();
    if shared.options.model_costs {
        let files: Vec<Arc<[(String, f64)]>> = st
            .in_order()
            .filter(|e| e.accepted() && e.job().state == JobState::Queued)
            .map(|e| e.loads())
            .collect();
        st.set_demand(files.iter().flat_map(|l| l.iter().map(|(f, _)| f.as_str())));
    }
    if st.planner().policy == super::placement::Policy::SwarmModels {
        let models: Vec<(String, f64)> = st
            .in_order()
            .filter(|e| e.accepted() && e.job().state == JobState::Queued)
            .filter_map(|e| {
                let waited = e.queued_at().elapsed().as_secs_f64();
                e.loads().first().map(|(m, _)| (m.clone(), waited))
            })
            .collect();
        let refs: Vec<(&str, f64)> = models.iter().map(|(m, w)| (m.as_str(), *w)).collect();
        let one_free = fleet.candidates.iter().filter(|c| c.has_room()).count() == 1;
        st.set_pressure(&refs, one_free);
    }
    let keys: Vec<(f64, f64)> = waiting.iter().map(|(_, w, t)| (*w, *t)).collect();
    let fifo_after = shared.options.fifo_after.as_secs_f64();
    let order = st.planner().policy.order(&keys, fifo_after);
    let owners: Vec<Option<&str>> = waiting
        .iter()
        .map(|(id, _, _)| st.entry(id).and_then(|e| owner_of(e.job())))
        .collect();
    let busy = |o: Option<&str>| {
        st.entries()
            .filter(|e| e.job().state.is_in_flight() && owner_of(e.job()) == o)
            .count()
    };
    let order = super::placement::fair_share(&order, &owners, busy);
    drop(owners);
    for k in order {
        let id = &waiting[k].0;
        if place(shared, &mut st, &mut fleet, id) {
            let durable = shared.persist_now(&mut st, id).expect("just placed");
            placed.push((id.clone(), durable));
        }
        if !fleet.has_room() {
            break;
        }
    }
    placed
}

/// The person a job is for: its gateway token's name.
fn owner_of(job: &storycore_types::Job) -> Option<&str> {
    job.gateway.as_ref().and_then(|g| g.owner.as_deref())
}

/// Near the end of a batch, a fast instance can sit idle while a slow one
/// still has a long job: then a copy of that job runs on the idle one, and
/// the first to succeed wins (`runner::mark_executed`). Only when nothing
/// waits (copies use idle capacity only), on instances measured idle
/// (nothing of this app in flight there) and calibrated, for jobs the app
/// may place anywhere (target "auto") that run on another instance, have
/// no copy yet, and are expected to end there at least [`COPY_MIN_LEFT_SECS`]
/// from now, when the copy is expected to need under [`COPY_GAIN`] of that.
/// The copy's record is written before it is sent, like an attempt's.
pub(crate) fn speculate(shared: &Arc<Shared>) -> Vec<(String, Durable)> {
    let mut made = Vec::new();
    if !shared.speculate.load(std::sync::atomic::Ordering::Relaxed) {
        return made;
    }
    let mut st = shared.lock();
    if st.planner().policy != super::placement::Policy::EarliestFinish {
        return made;
    }
    if st.storage_blocked()
        || st
            .entries()
            .any(|e| e.accepted() && e.job().state == JobState::Queued)
    {
        return made;
    }
    // (job, its instance, work, seconds it has run): cheap, before the fleet.
    let running: Vec<(String, String, f64, f64)> = st
        .entries()
        .filter(|e| e.copy().is_none() && e.job().target == JobTarget::Auto)
        .filter_map(|e| {
            let a = e.attempt().filter(|a| !a.executed() && !a.recalling())?;
            let ran = a.started()?.elapsed().as_secs_f64();
            Some((e.job().id.clone(), a.instance().to_string(), e.work(), ran))
        })
        .collect();
    if running.is_empty() {
        return made;
    }
    let fleet = Fleet::new(shared, &mut st);
    let idle: Vec<String> = fleet
        .candidates
        .iter()
        .filter(|c| c.in_flight == 0 && c.reported_queue == 0 && st.speeds().measured(&c.id))
        .map(|c| c.id.clone())
        .collect();
    let mut taken: Vec<String> = Vec::new();
    for here in idle {
        let best = running
            .iter()
            .filter(|(id, on, ..)| *on != here && !taken.contains(id))
            .filter(|(id, ..)| {
                st.entry(id).is_some_and(|e| {
                    !e.job().instances_killed.contains(&here)
                        && target_allows(&e.job().target, &e.job().pinned_instances, &here, None)
                })
            })
            .filter_map(|(id, on, work, ran)| {
                let left = st.speeds().expected_secs(on, *work) - ran;
                let copy = st.speeds().expected_secs(&here, *work);
                (left >= COPY_MIN_LEFT_SECS && copy < left * COPY_GAIN)
                    .then(|| (id.clone(), on.clone(), left, copy))
            })
            .max_by(|a, b| (a.2 - a.3).total_cmp(&(b.2 - b.3)));
        let Some((id, on, left, copy)) = best else {
            continue;
        };
        tracing::info!(
            job = %id, from = %on, to = %here,
            "a copy runs on an idle instance: expected {copy:.1} s there, {left:.1} s left where it runs"
        );
        let durable = shared
            .start_copy(&mut st, &id, &here)
            .expect("listed above");
        made.push((id.clone(), durable));
        taken.push(id);
    }
    made
}

/// Decides for one queued job: on a place, its entry becomes `dispatched`
/// with a new attempt (the caller writes its record). True when placed.
pub(crate) fn place(shared: &Shared, st: &mut QueueState, fleet: &mut Fleet, id: &str) -> bool {
    let Some(e) = st.entry(id) else {
        return false;
    };
    if let JobTarget::Instance { id: want } = &e.job().target {
        if !fleet.instances.iter().any(|i| &i.id == want) {
            let want = want.clone();
            shared.hold_missing_target(st, id, &want);
            return false;
        }
    }
    let job = e.job();
    let needs = e.needs();
    let active = fleet.active.as_deref();
    // Its target and pins allow it, and the instance has its node classes
    // and model files (an offer not read is not held against it).
    let may = |c: &Candidate| {
        target_allows(&job.target, &job.pinned_instances, &c.id, active)
            && st.offer_of(&c.id).is_none_or(|o| o.lacks(needs).is_none())
    };
    let killed = &job.instances_killed;
    // Not where it died before, while another instance it may run on exists.
    let others_exist = fleet
        .candidates
        .iter()
        .any(|c| may(c) && !killed.contains(&c.id));
    let allowed: Vec<String> = fleet
        .candidates
        .iter()
        .filter(|c| may(c) && (!others_exist || !killed.contains(&c.id)))
        .map(|c| c.id.clone())
        .collect();
    let (work, loads, keys) = (e.work(), e.loads(), e.keys());
    // Loads weighed only when the options say so (the benchmark's "models
    // ignored" peer turns it off; eligibility stays).
    let no_loads: Arc<[(String, f64)]> = Arc::new([]);
    let swarm = st.planner().policy == super::placement::Policy::SwarmModels;
    let ask = Ask {
        work,
        models: if shared.options.model_costs || swarm {
            &loads
        } else {
            &no_loads
        },
        keys: &keys,
    };
    let allowed = |c: &Candidate| allowed.contains(&c.id);
    let policy = st.planner().policy;
    // What each holds, before the choice is booked into it (the card's
    // sentence is made for the chosen one only).
    let holding: Vec<Holding> = fleet
        .candidates
        .iter()
        .map(|c| Holding::of(c, &ask))
        .collect();
    let Decision::Place(i) = st.decide(&mut fleet.candidates, allowed, &ask) else {
        return false;
    };
    let instance_id = fleet.candidates[i].id.clone();
    let because = placed_because(holding[i], &ask, policy);
    shared.dispatch(st, id, &instance_id, &because)
}

/// What a candidate holds of a job: its whole prompt in ComfyUI's cache,
/// or every model it loads.
#[derive(Clone, Copy)]
struct Holding {
    cached: bool,
    models: bool,
}

impl Holding {
    fn of(c: &Candidate, ask: &Ask<'_>) -> Self {
        Self {
            cached: !ask.keys.is_empty() && ask.keys.iter().all(|(k, _)| c.cached.contains(k)),
            models: !ask.models.is_empty() && ask.models.iter().all(|(f, _)| c.holds.contains(f)),
        }
    }
}

/// Why a job goes to a candidate, in words for the job's card.
fn placed_because(h: Holding, ask: &Ask<'_>, policy: super::placement::Policy) -> String {
    let files = || {
        ask.models
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if h.cached {
        "its ComfyUI cache holds this prompt".to_string()
    } else if h.models {
        format!("has {} loaded", files())
    } else if !ask.models.is_empty() {
        format!("loads {} there, and finishes it first", files())
    } else if policy == super::placement::Policy::EarliestFinish {
        "the earliest expected finish".to_string()
    } else {
        policy.name().to_string()
    }
}

/// Says on each queued job why it waits when no instance it may run on can
/// take work (and clears it when one can): the record is rewritten only
/// when the reason changes.
fn explain_waits(shared: &Shared, st: &mut QueueState, fleet: &Fleet) {
    let changed: Vec<(String, Option<String>)> = st
        .entries()
        .filter(|e| e.accepted() && e.job().state == JobState::Queued)
        .filter_map(|e| {
            let why = waiting_reason(e.job(), fleet).or_else(|| lacking(e, fleet, st));
            (why != e.job().waiting).then(|| (e.job().id.clone(), why))
        })
        .collect();
    for (id, why) in changed {
        shared.explain_wait(st, &id, why);
    }
}

/// Why no instance the job may run on can take it now, or `None` when one
/// can (the job then waits only for room).
pub(crate) fn waiting_reason(job: &storycore_types::Job, fleet: &Fleet) -> Option<String> {
    let pins = &job.pinned_instances;
    let wanted: Vec<&str> = match &job.target {
        JobTarget::Auto if pins.is_empty() => {
            let ready = fleet.instances.iter().any(Instance::takes_work);
            return (!ready).then(|| {
                if fleet.instances.is_empty() {
                    "Waits for an instance: the fleet has none. Add one.".to_string()
                } else {
                    "Waits for an instance that can take work: none is running and healthy."
                        .to_string()
                }
            });
        }
        JobTarget::Auto => pins.iter().map(String::as_str).collect(),
        JobTarget::Active => match fleet.active.as_deref() {
            Some(a) => vec![a],
            None => return Some("Waits for an active instance: none is chosen.".to_string()),
        },
        JobTarget::Instance { id } => vec![id.as_str()],
    };
    let mut states = Vec::new();
    for id in &wanted {
        match fleet.instances.iter().find(|i| i.id == *id) {
            Some(i) if i.takes_work() => {
                if target_allows(&job.target, pins, id, fleet.active.as_deref()) {
                    return None;
                }
                states.push(format!("{} (not among the template's instances)", i.name));
            }
            Some(i) => states.push(format!("{} ({})", i.name, instance_state(i))),
            None => states.push(format!("{id} (deleted)")),
        }
    }
    let list = states.join(", ");
    Some(if pins.is_empty() {
        format!("Waits for {list}.")
    } else {
        let template = job.template_id.as_deref().unwrap_or("its template");
        format!(
            "Waits for an instance its template \"{template}\" is pinned to: {list}. Start one of them, or pin the template to more instances."
        )
    })
}

/// When every instance that could take the job lacks one of its node
/// classes or model files: which, and where (the instances checked).
fn lacking(e: &super::state::Entry, fleet: &Fleet, st: &QueueState) -> Option<String> {
    let job = e.job();
    let active = fleet.active.as_deref();
    let mut lacks = Vec::new();
    for i in fleet.instances.iter().filter(|i| i.takes_work()) {
        if !target_allows(&job.target, &job.pinned_instances, &i.id, active) {
            continue;
        }
        match st.offer_of(&i.id).and_then(|o| o.lacks(e.needs())) {
            Some(missing) => lacks.push(format!("{} lacks {missing}", i.name)),
            None => return None,
        }
    }
    (!lacks.is_empty()).then(|| {
        format!(
            "Waits for an instance that can run it: {}. Put the file in an instance's models folder and refresh its models, or install the node there.",
            lacks.join("; ")
        )
    })
}

/// A few words on why an instance takes no work.
fn instance_state(i: &Instance) -> String {
    use storycore_types::{HealthStatus, InstanceStatus};
    match (i.status, i.health.status) {
        (InstanceStatus::Running, HealthStatus::Unhealthy) => "unhealthy".into(),
        (InstanceStatus::Running, h) => format!("health {}", format!("{h:?}").to_lowercase()),
        (s, _) => s.as_str().into(),
    }
}

/// Instances to calibrate now: eligible, never measured, not tried yet in
/// this run (only the default policy uses costs).
fn calibrations(shared: &Shared) -> Vec<Instance> {
    if !shared.options.calibrate {
        return Vec::new();
    }
    let fleet = shared.manager.list();
    let mut st = shared.lock();
    if st.planner().policy != super::placement::Policy::EarliestFinish {
        return Vec::new();
    }
    fleet
        .into_iter()
        .filter(|i| i.takes_work() && !st.speeds().measured(&i.id) && st.begin_calibration(&i.id))
        .collect()
}

/// How long a calibration may take before the instance gets work anyway.
const CALIBRATION_LIMIT: Duration = Duration::from_secs(60);

/// Runs the built-in smoke test on a newly healthy instance and seeds its
/// cost model with ComfyUI's own execution time. The instance takes no job
/// until this ends (at most [`CALIBRATION_LIMIT`]): the first jobs, placed
/// longest first, would otherwise go to instances of unknown speed.
pub(crate) async fn calibrate(shared: Arc<Shared>, instance: Instance) {
    let id = instance.id.clone();
    let template = super::templates::smoke_test_template();
    let mut values = serde_json::Map::new();
    // A colour of its own, so ComfyUI's cache does not skip the work.
    values.insert("color".into(), serde_json::json!(rand_color(&id)));
    let run = async {
        let workflow = super::templates::render(&template, &values)
            .or_else(|_| super::templates::render(&template, &serde_json::Map::new()))
            .map_err(|e| e.to_string())?;
        let work = super::workflow::estimate_work(&workflow);
        let client = crate::client::ComfyClient::for_instance(&instance.config)
            .map_err(|e| e.to_string())?
            .with_timeout(shared.options.request_timeout);
        let prompt_id = uuid::Uuid::new_v4().to_string();
        client
            .submit_prompt(workflow, &prompt_id, &Shared::client_id(&id))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(h) = client
                .history(&prompt_id)
                .await
                .map_err(|e| e.to_string())?
            {
                return h
                    .execution_secs()
                    .map(|secs| (secs, work))
                    .ok_or_else(|| "it did not succeed".to_string());
            }
        }
    };
    let outcome = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        r = tokio::time::timeout(CALIBRATION_LIMIT, run) => r,
    };
    let measure = match outcome {
        Ok(Ok((secs, work))) => {
            tracing::info!(instance = %id, secs, "calibrated with the smoke test");
            Some((secs, work))
        }
        Ok(Err(why)) => {
            tracing::warn!(instance = %id, "calibration failed: {why}");
            None
        }
        Err(_) => {
            tracing::warn!(instance = %id, "calibration took too long");
            None
        }
    };
    shared.lock().end_calibration(&id, measure);
    shared.wake.notify_one();
}

fn rand_color(id: &str) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let h = id
        .bytes()
        .fold(nanos, |h, b| h.rotate_left(5) ^ u32::from(b));
    h & 0x00FF_FFFF
}
