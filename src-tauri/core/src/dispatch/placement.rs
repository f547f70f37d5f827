//! Which instance takes a job: pure, over a snapshot of the candidates. The
//! queue calls [`Planner::place`] for its queued jobs in order, within one pass
//! over a [`Candidate`] list that the planner updates as it decides.
//!
//! ComfyUI runs one prompt at a time, and `POST /prompt` answers long before the
//! prompt ends, so load is counted until ComfyUI says the prompt ended. The
//! default policy binds late and aims at the earliest expected finish:
//!
//! - An instance holds at most one running and one queued prompt of this app
//!   ([`LATE_BINDING_SLOTS`]): it never idles between prompts, and every other
//!   job is still free to go wherever a slot frees first.
//! - Waiting jobs are placed longest expected first (LPT, which keeps the
//!   long ones from ending up last on a slow instance), except that a job
//!   that waited [`DispatchOptions::fifo_after`](super::DispatchOptions) goes
//!   first, oldest first, so none waits forever.
//! - A job goes where it would finish first: the instance's expected backlog
//!   plus its own cost there, `a + b * work` from the instance's fitted cost
//!   model. When that instance is full, the job waits in the app for it
//!   rather than going to a slower one; its cost is booked on it, so that
//!   later jobs in the same pass spill elsewhere only when that is faster.

use std::collections::HashMap;
use storycore_types::{HealthStatus, Instance};

/// How to pick. The others are here to be compared against (benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    EarliestFinish,
    /// Next instance with a free slot, in turn.
    RoundRobin,
    /// Fewest jobs in flight from this app (how SwarmUI picks a backend).
    FewestInFlight,
    /// Shortest queue as the instance last reported it (how ComfyUI-Distributed picks).
    ShortestQueue,
    /// Only an instance with nothing of this app on it, the first such (how
    /// the ComfyPool of the npm package @saintno/comfyui-sdk picks).
    IdleFirst,
    /// SwarmUI's model rule (`BackendHandler.cs`), re-implemented for the
    /// model benchmark: a job goes to a free instance whose current model
    /// is its model, the least used first; otherwise it adds pressure to
    /// its model, and the model under the highest pressure (waiting jobs x
    /// 10 + whole seconds since its first one waited) is loaded, once that
    /// pressure is 1.5 s old (at once when only one instance is free), on
    /// the free instance, idle ones first, claimed longest ago. Not a
    /// setting: a peer to be measured against.
    SwarmModels,
}

/// Prompts of this app an instance holds under [`Policy::EarliestFinish`]:
/// one running, one queued behind it.
pub const LATE_BINDING_SLOTS: u32 = 2;

impl Policy {
    /// The policy a setting names.
    pub fn from_setting(p: storycore_types::PlacementPolicy) -> Self {
        use storycore_types::PlacementPolicy as P;
        match p {
            P::EarliestFinish => Self::EarliestFinish,
            P::RoundRobin => Self::RoundRobin,
            P::FewestInFlight => Self::FewestInFlight,
            P::ShortestQueue => Self::ShortestQueue,
            P::IdleFirst => Self::IdleFirst,
        }
    }

    pub const ALL: [Policy; 5] = [
        Policy::EarliestFinish,
        Policy::RoundRobin,
        Policy::FewestInFlight,
        Policy::ShortestQueue,
        Policy::IdleFirst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EarliestFinish => "earliest finish (this app)",
            Self::RoundRobin => "round-robin",
            Self::FewestInFlight => "fewest in flight (SwarmUI)",
            Self::ShortestQueue => "shortest queue (ComfyUI-Distributed)",
            Self::IdleFirst => "idle first (comfyui-sdk ComfyPool)",
            Self::SwarmModels => "model pressure (SwarmUI)",
        }
    }

    /// Prompts of this app an instance may hold, given its `maxConcurrentWorkflows`.
    pub fn slots(self, max_concurrent: u32) -> u32 {
        match self {
            Self::EarliestFinish => max_concurrent.clamp(1, LATE_BINDING_SLOTS),
            Self::IdleFirst => 1,
            // SwarmUI: MaxUsages = 1 + OverQueue (1).
            Self::SwarmModels => 2,
            _ => max_concurrent.max(1),
        }
    }

    /// The order in which waiting jobs are considered, given each one's
    /// expected work and how long it has waited (seconds), in submission
    /// order. Returns indices into `jobs`.
    pub fn order(self, jobs: &[(f64, f64)], fifo_after_secs: f64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..jobs.len()).collect();
        if self == Self::EarliestFinish {
            // Stable: equal keys keep submission order.
            idx.sort_by(|&a, &b| {
                let (wa, ta) = jobs[a];
                let (wb, tb) = jobs[b];
                let (aged_a, aged_b) = (ta >= fifo_after_secs, tb >= fifo_after_secs);
                aged_b
                    .cmp(&aged_a)
                    .then_with(|| if aged_a { a.cmp(&b) } else { wb.total_cmp(&wa) })
            });
        }
        idx
    }
}

/// `order` (indices into `owners`, as [`Policy::order`] gives them) taken
/// round-robin between the people `owners` names: one of each person's in
/// turn, each person's own in the order they had, the person with the
/// fewest prompts in flight (`busy`) first, ties by who comes first in
/// `order`. One person's thousand prompts then do not make another's one
/// wait behind them all. With one person (or none named), `order` as it is.
pub fn fair_share(
    order: &[usize],
    owners: &[Option<&str>],
    busy: impl Fn(Option<&str>) -> usize,
) -> Vec<usize> {
    let mut people: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for &k in order {
        match people.iter_mut().find(|(o, _)| *o == owners[k]) {
            Some((_, ks)) => ks.push(k),
            None => people.push((owners[k], vec![k])),
        }
    }
    if people.len() < 2 {
        return order.to_vec();
    }
    // Stable: ties keep who came first.
    people.sort_by_key(|(o, _)| busy(*o));
    let longest = people.iter().map(|(_, ks)| ks.len()).max().unwrap_or(0);
    (0..longest)
        .flat_map(|round| {
            people
                .iter()
                .filter_map(move |(_, ks)| ks.get(round).copied())
        })
        .collect()
}

/// The load of one instance, the queue's one measure of it: prompts of
/// this app sent there and not done executing (attempts and copies), and
/// their expected seconds left.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub in_flight: u32,
    pub backlog_secs: f64,
}

/// The seed's balancing (`getInstancesByLoad`), for what is not a job (the
/// gateway's read-only questions, files, the window's "healthy instance"),
/// on the queue's own load measure: the instances that take work, best
/// first. Healthy before degraded, then not in a cooldown (it just failed
/// to answer) before one in it, then the fewest expected seconds until it
/// is free (`load`), then the smallest share of its slots in use (the
/// prompts of this app there, or the queue it reported when larger: other
/// clients' prompts), then the active instance, then the least recently
/// used.
pub fn by_load<'a>(
    fleet: &'a [Instance],
    load: impl Fn(&str) -> Load,
    cooling: impl Fn(&str) -> bool,
    active: Option<&str>,
) -> Vec<&'a Instance> {
    let key = |i: &Instance| {
        let l = load(&i.id);
        let reported = i
            .health
            .system_stats
            .as_ref()
            .map_or(0, |s| s.active_workflows);
        let share =
            f64::from(l.in_flight.max(reported)) / f64::from(i.config.max_concurrent().max(1));
        let health = u8::from(i.health.status != HealthStatus::Healthy);
        (health, cooling(&i.id), l.backlog_secs, share)
    };
    let mut ranked: Vec<_> = fleet
        .iter()
        .filter(|i| i.takes_work())
        .map(|i| (key(i), i))
        .collect();
    ranked.sort_by(|(ka, a), (kb, b)| {
        (ka.0, ka.1)
            .cmp(&(kb.0, kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(ka.3.total_cmp(&kb.3))
            .then_with(|| (Some(b.id.as_str()) == active).cmp(&(Some(a.id.as_str()) == active)))
            .then(a.last_used_at.cmp(&b.last_used_at))
    });
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// One instance that may take work now (running, unpaused, healthy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub id: String,
    /// Prompts of this app it may hold ([`Policy::slots`]).
    pub capacity: u32,
    /// Prompts of this app sent there that ComfyUI has not finished.
    pub in_flight: u32,
    /// Expected seconds until those are done (the running one's remainder).
    pub backlog_secs: f64,
    /// Its cost model: `fixed_secs + secs_per_unit * work` per prompt.
    pub fixed_secs: f64,
    pub secs_per_unit: f64,
    /// Running + pending prompts as the instance last reported (any client's).
    pub reported_queue: u32,
    /// Expected seconds of jobs that chose to wait for it in this pass.
    pub waiting_secs: f64,
    /// The model files it will hold once the prompts sent there have run
    /// (those of the last one): a job needing others loads them first.
    pub holds: Vec<String>,
    /// Seconds it took to load a model file there, as measured.
    pub load_secs: HashMap<String, f64>,
    /// The cache keys of the nodes of the last prompt sent there: ComfyUI
    /// answers those from its cache (see `cache.rs`).
    pub cached: std::sync::Arc<std::collections::HashSet<u64>>,
}

/// One job as placement weighs it: its work, and the model files it
/// loads, each with the seconds its load is expected to take on an
/// instance that has not measured it (see `models::prior_load_secs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    pub work: f64,
    pub models: &'a [(String, f64)],
    /// Its nodes' cache keys, each with its work (`cache::node_keys`).
    pub keys: &'a [(u64, f64)],
}

impl Candidate {
    pub fn has_room(&self) -> bool {
        self.in_flight < self.capacity.max(1)
    }

    /// Expected seconds of a job of `work` here.
    pub fn cost(&self, work: f64) -> f64 {
        self.fixed_secs + self.secs_per_unit * work
    }

    /// Seconds to load the models of a job that this instance will not
    /// hold when the job's turn comes.
    pub fn model_secs(&self, models: &[(String, f64)]) -> f64 {
        models
            .iter()
            .filter(|(file, _)| !self.holds.contains(file))
            .map(|(file, prior)| self.load_secs.get(file).copied().unwrap_or(*prior))
            .sum()
    }

    /// Expected seconds of `ask` here: the work of its nodes not in the
    /// instance's cache (none when all are: ComfyUI answers at once), and
    /// its models' loads.
    pub fn cost_of(&self, ask: &Ask<'_>) -> f64 {
        let saved: f64 = ask
            .keys
            .iter()
            .filter(|(k, _)| self.cached.contains(k))
            .map(|(_, w)| w)
            .sum();
        if !ask.keys.is_empty() && saved >= ask.work {
            return 0.0;
        }
        self.cost(ask.work - saved) + self.model_secs(ask.models)
    }

    /// Books `ask` as the last prompt sent here: it holds its models and
    /// its nodes' outputs after.
    fn book(&mut self, ask: &Ask<'_>) {
        if !ask.models.is_empty() {
            self.holds = ask.models.iter().map(|(f, _)| f.clone()).collect();
        }
        if !ask.keys.is_empty() {
            self.cached = std::sync::Arc::new(ask.keys.iter().map(|(k, _)| *k).collect());
        }
    }

    /// When a job of `work` would finish here, in seconds from now.
    pub fn expected_finish(&self, work: f64) -> f64 {
        self.backlog_secs + self.waiting_secs + self.cost(work)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it to the candidate at this index now.
    Place(usize),
    /// Keep it in the app's queue for now.
    Wait,
}

#[derive(Debug, Clone, Default)]
pub struct Planner {
    pub policy: Policy,
    cursor: usize,
    /// [`Policy::SwarmModels`]: this pass's model to load (the highest
    /// pressure, see [`Planner::set_pressure`]), and when each instance
    /// was last claimed (pass count).
    load_now: Option<String>,
    claimed: HashMap<String, u64>,
    passes: u64,
    /// Jobs waiting in this pass per model file, not yet placed (see
    /// [`Planner::set_demand`]).
    demand: HashMap<String, u32>,
}

/// SwarmUI's wait before a model's pressure makes it load (`BackendHandler.cs`).
pub const SWARM_PRESSURE_AGE_SECS: f64 = 1.5;

impl Planner {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// The model files of the jobs waiting at the start of a pass: a job
    /// placed on the only instance that holds a model other waiting jobs
    /// need is charged that model's load again (they would have to load it
    /// elsewhere, or there after it), so one model's jobs stay together
    /// unless spreading them finishes sooner.
    pub fn set_demand<'a>(&mut self, files: impl IntoIterator<Item = &'a str>) {
        self.demand.clear();
        for f in files {
            *self.demand.entry(f.to_string()).or_default() += 1;
        }
    }

    /// Per candidate, what placing `ask` there costs the jobs still waiting
    /// for the model it would let go (see [`Planner::set_demand`]).
    fn evicts(&self, fleet: &[Candidate], ask: &Ask<'_>) -> Vec<f64> {
        if ask.models.is_empty() || self.policy != Policy::EarliestFinish {
            return vec![0.0; fleet.len()];
        }
        fleet
            .iter()
            .map(|c| {
                c.holds
                    .iter()
                    .filter(|h| !ask.models.iter().any(|(f, _)| f == *h))
                    .filter(|h| self.demand.get(*h).is_some_and(|n| *n > 0))
                    .filter(|h| fleet.iter().filter(|o| o.holds.contains(h)).count() == 1)
                    .map(|h| {
                        let prior = ask.models.first().map_or(0.0, |(_, p)| *p);
                        c.load_secs.get(h).copied().unwrap_or(prior)
                    })
                    .sum()
            })
            .collect()
    }

    /// [`Policy::SwarmModels`]: the waiting jobs' models at the start of a
    /// pass, each with the seconds its job waited, and whether only one
    /// instance is free. Picks the model to load in this pass, if any:
    /// the highest pressure (jobs x 10 + whole seconds since the first
    /// waited), once 1.5 s old or when only one instance is free.
    pub fn set_pressure(&mut self, waiting: &[(&str, f64)], one_free: bool) {
        self.passes += 1;
        let mut pressure: HashMap<&str, (u64, f64)> = HashMap::new();
        for (model, waited) in waiting {
            let p = pressure.entry(model).or_default();
            p.0 += 1;
            p.1 = p.1.max(*waited);
        }
        self.load_now = pressure
            .into_iter()
            .filter(|(_, (_, age))| one_free || *age > SWARM_PRESSURE_AGE_SECS)
            .max_by(|a, b| {
                let h = |(n, age): (u64, f64)| n * 10 + age.floor() as u64;
                h(a.1).cmp(&h(b.1)).then(b.0.cmp(a.0))
            })
            .map(|(m, _)| m.to_string());
    }

    /// Decides for one job of `work` among the candidates `allowed` accepts,
    /// and books the decision into `fleet` (so the next call sees it).
    pub fn place(
        &mut self,
        fleet: &mut [Candidate],
        allowed: impl Fn(&Candidate) -> bool,
        work: f64,
    ) -> Decision {
        self.place_ask(
            fleet,
            allowed,
            &Ask {
                work,
                models: &[],
                keys: &[],
            },
        )
    }

    /// [`place`](Self::place) for a job that loads models: under the
    /// default policy an instance that will hold them saves their load.
    pub fn place_ask(
        &mut self,
        fleet: &mut [Candidate],
        allowed: impl Fn(&Candidate) -> bool,
        ask: &Ask<'_>,
    ) -> Decision {
        let ok: Vec<usize> = (0..fleet.len()).filter(|&i| allowed(&fleet[i])).collect();
        let evicts = self.evicts(fleet, ask);
        let finish = |k: usize| {
            let c = &fleet[k];
            c.backlog_secs + c.waiting_secs + c.cost_of(ask) + evicts[k]
        };
        let pick = match self.policy {
            Policy::EarliestFinish => {
                let best = ok.iter().copied().min_by(|&a, &b| {
                    let (ca, cb) = (&fleet[a], &fleet[b]);
                    finish(a)
                        .total_cmp(&finish(b))
                        .then(cb.has_room().cmp(&ca.has_room()))
                        .then(ca.in_flight.cmp(&cb.in_flight))
                        .then(ca.id.cmp(&cb.id))
                });
                match best {
                    Some(i) if !fleet[i].has_room() => {
                        let c = &mut fleet[i];
                        c.waiting_secs += c.cost_of(ask);
                        c.book(ask);
                        return Decision::Wait;
                    }
                    other => other,
                }
            }
            Policy::RoundRobin => {
                let n = fleet.len().max(1);
                let start = self.cursor % n;
                let found = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| ok.contains(i) && fleet[*i].has_room());
                if let Some(i) = found {
                    self.cursor = i + 1;
                }
                found
            }
            Policy::FewestInFlight => ok
                .iter()
                .copied()
                .filter(|&i| fleet[i].has_room())
                .min_by_key(|&i| (fleet[i].in_flight, i)),
            Policy::ShortestQueue => ok
                .iter()
                .copied()
                .filter(|&i| fleet[i].has_room())
                .min_by_key(|&i| (fleet[i].reported_queue, i)),
            Policy::IdleFirst => ok
                .iter()
                .copied()
                .find(|&i| fleet[i].in_flight == 0 && fleet[i].has_room()),
            Policy::SwarmModels => self.swarm(fleet, &ok, ask),
        };
        match pick {
            Some(i) => {
                self.claimed.insert(fleet[i].id.clone(), self.passes);
                for (f, _) in ask.models {
                    if let Some(n) = self.demand.get_mut(f) {
                        *n = n.saturating_sub(1);
                    }
                }
                let c = &mut fleet[i];
                c.in_flight += 1;
                c.backlog_secs += c.cost_of(ask);
                c.reported_queue += 1;
                c.book(ask);
                Decision::Place(i)
            }
            None => Decision::Wait,
        }
    }
}

impl Planner {
    /// SwarmUI's choice for one job (see [`Policy::SwarmModels`]).
    fn swarm(&mut self, fleet: &[Candidate], ok: &[usize], ask: &Ask<'_>) -> Option<usize> {
        let free: Vec<usize> = ok
            .iter()
            .copied()
            .filter(|&i| fleet[i].has_room())
            .collect();
        let Some((model, _)) = ask.models.first() else {
            return free.into_iter().min_by_key(|&i| (fleet[i].in_flight, i));
        };
        // A free instance whose current model is this one, the least used.
        let holding = |c: &Candidate| c.holds.first() == Some(model);
        if let Some(i) = free
            .iter()
            .copied()
            .filter(|&i| holding(&fleet[i]))
            .min_by_key(|&i| (fleet[i].in_flight, i))
        {
            return Some(i);
        }
        // Otherwise the model under the highest pressure loads, once per
        // pass (one load of a model at a time).
        if self.load_now.as_ref() != Some(model) {
            return None;
        }
        let valid: Vec<usize> = free.into_iter().filter(|&i| !holding(&fleet[i])).collect();
        let idle: Vec<usize> = valid
            .iter()
            .copied()
            .filter(|&i| fleet[i].in_flight == 0)
            .collect();
        let pick = if idle.is_empty() { valid } else { idle };
        let chosen = pick
            .into_iter()
            .min_by_key(|&i| (self.claimed.get(&fleet[i].id).copied().unwrap_or(0), i))?;
        self.load_now = None;
        Some(chosen)
    }
}

/// What a job's target and pins allow: may it run on `instance_id`, with
/// `active` the active instance? The one rule the scheduler, the wait
/// reasons, the copies and the pools use.
pub fn target_allows(
    target: &storycore_types::JobTarget,
    pins: &[String],
    instance_id: &str,
    active: Option<&str>,
) -> bool {
    (pins.is_empty() || pins.iter().any(|p| p == instance_id))
        && match target {
            storycore_types::JobTarget::Auto => true,
            storycore_types::JobTarget::Active => active == Some(instance_id),
            storycore_types::JobTarget::Instance { id } => id == instance_id,
        }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
