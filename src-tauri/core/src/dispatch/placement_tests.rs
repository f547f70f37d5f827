//! The planner, alone and inside a small discrete-event simulation of a fleet
//! (each instance runs one prompt at a time, like ComfyUI), with seeded
//! randomness so a failure can be replayed.

use super::*;
use crate::dispatch::speed::SpeedBook;

fn cand(id: &str, capacity: u32, in_flight: u32, spu: f64) -> Candidate {
    Candidate {
        id: id.into(),
        capacity,
        in_flight,
        backlog_secs: f64::from(in_flight) * spu,
        fixed_secs: 0.0,
        secs_per_unit: spu,
        reported_queue: in_flight,
        ..Candidate::default()
    }
}

/// xorshift64*: enough randomness for a test, reproducible from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn a_full_fast_instance_is_waited_for_rather_than_a_slow_one_used() {
    let mut p = Planner::new(Policy::EarliestFinish);
    let mut fleet = vec![cand("fast", 1, 1, 1.0), cand("slow", 1, 0, 10.0)];
    assert_eq!(p.place(&mut fleet, |_| true, 1.0), Decision::Wait);
    assert_eq!(fleet[0].waiting_secs, 1.0);
    // Enough work waiting for the fast one: the slow one becomes the earlier finish.
    let mut placed_on_slow = false;
    for _ in 0..12 {
        if p.place(&mut fleet, |_| true, 1.0) == Decision::Place(1) {
            placed_on_slow = true;
            break;
        }
    }
    assert!(placed_on_slow, "{fleet:?}");
    assert_eq!(fleet[1].in_flight, 1);
}

#[test]
fn no_policy_exceeds_capacity_or_uses_a_refused_instance() {
    for policy in Policy::ALL {
        let mut p = Planner::new(policy);
        let mut fleet = vec![
            cand("a", 2, 0, 1.0),
            cand("b", 1, 0, 2.0),
            cand("c", 3, 0, 0.5),
        ];
        for _ in 0..20 {
            if let Decision::Place(i) = p.place(&mut fleet, |c| c.id != "c", 1.0) {
                assert_ne!(fleet[i].id, "c", "{policy:?}");
            }
        }
        let a = if policy == Policy::IdleFirst { 1 } else { 2 };
        assert_eq!(fleet[0].in_flight, a, "{policy:?}");
        assert_eq!(fleet[1].in_flight, 1, "{policy:?}");
        assert_eq!(fleet[2].in_flight, 0, "{policy:?}");
    }
}

/// Simulates `jobs` (work units, all submitted at t=0) over instances whose
/// true cost of a job is `fixed + per_unit * work` seconds, with `capacity`
/// slots each (as [`Policy::slots`] allows), and returns the makespan. Costs
/// are learned from finished jobs, as the queue does; an instance's slot
/// frees when its prompt ends.
fn simulate(policy: Policy, costs: &[(f64, f64)], capacity: u32, jobs: &[f64]) -> f64 {
    let mut planner = Planner::new(policy);
    let mut book = SpeedBook::new(1.0);
    let mut queued: Vec<f64> = jobs.to_vec();
    // Per instance: FIFO of (work), and when its running job started.
    let mut fifo: Vec<Vec<f64>> = vec![Vec::new(); costs.len()];
    let mut started: Vec<Option<f64>> = vec![None; costs.len()];
    let true_cost = |i: usize, w: f64| costs[i].0 + costs[i].1 * w;
    let mut now = 0.0f64;
    let ids: Vec<String> = (0..costs.len()).map(|i| format!("i{i}")).collect();
    // The calibration each instance runs when it first becomes healthy.
    for (i, id) in ids.iter().enumerate() {
        book.record(id, true_cost(i, 1.0), 1.0);
    }
    loop {
        // Place what can be placed now.
        let mut fleet: Vec<Candidate> = (0..costs.len())
            .map(|i| {
                let (fixed_secs, secs_per_unit) = book
                    .params(&ids[i])
                    .unwrap_or_else(|| (0.0, book.secs_per_unit(&ids[i])));
                let expect = |w: f64| fixed_secs + secs_per_unit * w;
                let backlog_secs = fifo[i]
                    .iter()
                    .enumerate()
                    .map(|(k, w)| match (k, started[i]) {
                        (0, Some(t)) => (expect(*w) - (now - t)).max(expect(*w) * 0.05),
                        _ => expect(*w),
                    })
                    .sum();
                Candidate {
                    id: ids[i].clone(),
                    capacity: policy.slots(capacity),
                    in_flight: fifo[i].len() as u32,
                    backlog_secs,
                    fixed_secs,
                    secs_per_unit,
                    reported_queue: fifo[i].len() as u32,
                    ..Candidate::default()
                }
            })
            .collect();
        let keys: Vec<(f64, f64)> = queued.iter().map(|w| (*w, now)).collect();
        let mut still = Vec::new();
        for k in policy.order(&keys, f64::INFINITY) {
            let w = queued[k];
            match planner.place(&mut fleet, |_| true, w) {
                Decision::Place(i) => {
                    assert!(
                        fifo[i].len() < policy.slots(capacity) as usize,
                        "over capacity"
                    );
                    fifo[i].push(w);
                }
                Decision::Wait => still.push(w),
            }
        }
        queued = still;
        for i in 0..costs.len() {
            if started[i].is_none() && !fifo[i].is_empty() {
                started[i] = Some(now);
            }
        }
        // Advance to the next finish.
        let Some((i, end)) = (0..costs.len())
            .filter_map(|i| started[i].map(|t| (i, t + true_cost(i, fifo[i][0]))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            assert!(queued.is_empty(), "jobs left with nothing running");
            return now;
        };
        now = end;
        let w = fifo[i].remove(0);
        book.record(&ids[i], true_cost(i, w), w);
        started[i] = None;
    }
}

/// For instances whose costs are proportional (`speed * (fixed + work)`).
fn lower_bound(speeds: &[f64], fixed: f64, jobs: &[f64]) -> f64 {
    let total_speed: f64 = speeds.iter().map(|s| 1.0 / s).sum();
    let fastest = speeds.iter().copied().fold(f64::INFINITY, f64::min);
    let size = |w: f64| fixed + w;
    let longest = jobs.iter().copied().fold(0.0, f64::max);
    (jobs.iter().map(|w| size(*w)).sum::<f64>() / total_speed).max(size(longest) * fastest)
}

#[test]
fn earliest_finish_beats_the_common_policies_on_mixed_fleets() {
    const N: usize = Policy::ALL.len();
    let mut sums = [0.0f64; N];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = rng.range(2, 5) as usize;
        let speeds: Vec<f64> = (0..n).map(|_| rng.range(1, 8) as f64).collect();
        let fixed = rng.range(0, 3) as f64;
        let costs: Vec<(f64, f64)> = speeds.iter().map(|s| (s * fixed, *s)).collect();
        // Mostly short jobs, some ten times longer.
        let jobs: Vec<f64> = (0..rng.range(10, 60))
            .map(|_| match rng.range(0, 9) {
                0 => rng.range(20, 40) as f64,
                _ => rng.range(1, 8) as f64,
            })
            .collect();
        let lb = lower_bound(&speeds, fixed, &jobs);
        for (k, policy) in Policy::ALL.into_iter().enumerate() {
            let ratio = simulate(policy, &costs, 2, &jobs) / lb;
            assert!(ratio >= 1.0 - 1e-9, "seed {seed}: below the lower bound");
            sums[k] += ratio;
        }
    }
    let mean = sums.map(|s| s / 40.0);
    eprintln!("mean ratio to the lower bound: {mean:?}");
    assert!(
        mean[0] < 1.10,
        "earliest finish too far from the bound: {mean:?}"
    );
    for k in 1..N {
        assert!(
            mean[0] < mean[k],
            "{:?} did better: {mean:?}",
            Policy::ALL[k]
        );
    }
}

#[test]
fn longest_first_unless_a_job_waited_past_the_bound() {
    // (work, seconds waited), in submission order.
    let jobs = [
        (1.0, 5.0),
        (9.0, 1.0),
        (4.0, 700.0),
        (9.0, 0.0),
        (2.0, 650.0),
    ];
    assert_eq!(
        Policy::EarliestFinish.order(&jobs, 600.0),
        [2, 4, 1, 3, 0],
        "aged ones first, oldest first (by submission); then longest, ties in submission order"
    );
    for peer in &Policy::ALL[1..] {
        assert_eq!(
            peer.order(&jobs, 600.0),
            [0, 1, 2, 3, 4],
            "{peer:?}: as submitted"
        );
    }
}

#[test]
fn late_binding_holds_one_running_and_one_queued_at_most() {
    assert_eq!(Policy::EarliestFinish.slots(8), 2);
    assert_eq!(
        Policy::EarliestFinish.slots(1),
        1,
        "the user's limit is kept"
    );
    assert_eq!(Policy::IdleFirst.slots(8), 1);
    assert_eq!(Policy::RoundRobin.slots(8), 8);
}

#[test]
fn people_take_turns_then_longest_first_within_each() {
    // Policy order (longest first): a's three, then b's, then c's two.
    let owners = [
        Some("a"),
        Some("a"),
        Some("a"),
        Some("b"),
        Some("c"),
        Some("c"),
    ];
    let order = [0, 1, 2, 3, 4, 5];
    let idle = |_: Option<&str>| 0;
    assert_eq!(fair_share(&order, &owners, idle), [0, 3, 4, 1, 5, 2]);
    // Whoever has the fewest in flight goes first.
    let a_busy = |o: Option<&str>| usize::from(o == Some("a")) * 4;
    assert_eq!(fair_share(&order, &owners, a_busy), [3, 4, 0, 5, 1, 2]);
    // One person, or nobody named: the order as it was.
    assert_eq!(fair_share(&[2, 0, 1], &[None, None, None], idle), [2, 0, 1]);
    assert_eq!(fair_share(&[1, 0], &[Some("a"), Some("a")], idle), [1, 0]);
    // This machine's own prompts (no token) are one more person.
    assert_eq!(
        fair_share(&[0, 1, 2], &[Some("a"), Some("a"), None], idle),
        [0, 2, 1]
    );
}

// ----- the seed's balancing (`by_load`) ----------------------------------

fn inst(
    id: &str,
    status: storycore_types::InstanceStatus,
    health: HealthStatus,
    reported: u32,
    max: u32,
) -> Instance {
    let mut c = storycore_types::InstanceConfig::new(id, id, 8188);
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
    i.health.system_stats = Some(storycore_types::SystemStats {
        active_workflows: reported,
        ..Default::default()
    });
    i
}

fn ids(v: Vec<&Instance>) -> Vec<&str> {
    v.into_iter().map(|i| i.id.as_str()).collect()
}

fn idle(_: &str) -> Load {
    Load::default()
}

#[test]
fn paused_stopped_and_unhealthy_take_no_work() {
    use storycore_types::InstanceStatus as S;
    use HealthStatus as H;
    let fleet = vec![
        inst("paused", S::Paused, H::Healthy, 0, 1),
        inst("stopped", S::Stopped, H::Healthy, 0, 1),
        inst("sick", S::Running, H::Unhealthy, 0, 1),
        inst("unknown", S::Running, H::Unknown, 0, 1),
    ];
    assert!(by_load(&fleet, idle, |_| false, None).is_empty());
}

#[test]
fn least_loaded_healthy_first_then_degraded() {
    use storycore_types::InstanceStatus as S;
    use HealthStatus as H;
    let fleet = vec![
        inst("busy", S::Running, H::Healthy, 2, 2),
        inst("degraded-idle", S::Running, H::Degraded, 0, 1),
        inst("half", S::Running, H::Healthy, 1, 2),
        inst("idle", S::Running, H::Healthy, 0, 1),
    ];
    assert_eq!(
        ids(by_load(&fleet, idle, |_| false, None)),
        ["idle", "half", "busy", "degraded-idle"]
    );
}

#[test]
fn the_active_instance_wins_a_tie() {
    use storycore_types::InstanceStatus as S;
    use HealthStatus as H;
    let fleet = vec![
        inst("a", S::Running, H::Healthy, 0, 1),
        inst("b", S::Running, H::Healthy, 0, 1),
    ];
    assert_eq!(ids(by_load(&fleet, idle, |_| false, Some("b")))[0], "b");
    assert_eq!(ids(by_load(&fleet, idle, |_| false, Some("a")))[0], "a");
}

#[test]
fn the_queues_own_load_and_cooldown_rank_an_instance_lower() {
    use storycore_types::InstanceStatus as S;
    use HealthStatus as H;
    let fleet = vec![
        inst("a", S::Running, H::Healthy, 0, 2),
        inst("b", S::Running, H::Healthy, 0, 2),
        inst("c", S::Running, H::Healthy, 0, 2),
    ];
    // Two prompts of this app on a that ComfyUI has not shown yet; one
    // short one on b.
    let load = |id: &str| match id {
        "a" => Load {
            in_flight: 2,
            backlog_secs: 20.0,
        },
        "b" => Load {
            in_flight: 1,
            backlog_secs: 2.0,
        },
        _ => Load::default(),
    };
    assert_eq!(ids(by_load(&fleet, load, |_| false, None)), ["c", "b", "a"]);
    // c just failed to answer: last, though idle.
    assert_eq!(
        ids(by_load(&fleet, load, |id| id == "c", None)),
        ["b", "a", "c"]
    );
}

// ----- models ------------------------------------------------------------

fn holding(id: &str, in_flight: u32, backlog_secs: f64, holds: &[&str]) -> Candidate {
    Candidate {
        id: id.into(),
        capacity: 2,
        in_flight,
        backlog_secs,
        secs_per_unit: 1.0,
        holds: holds.iter().map(|h| h.to_string()).collect(),
        ..Candidate::default()
    }
}

#[test]
fn a_job_goes_where_its_model_is_held_unless_spreading_finishes_sooner() {
    let mut p = Planner::new(Policy::EarliestFinish);
    let m = [("sdxl.safetensors".to_string(), 8.0)];
    let ask = Ask {
        work: 1.0,
        models: &m,
        keys: &[],
    };
    // a holds it and is busy for 2 s; b is idle but would load it (8 s).
    let mut fleet = vec![
        holding("a", 1, 2.0, &["sdxl.safetensors"]),
        holding("b", 0, 0.0, &[]),
    ];
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Place(0));
    // a's backlog is long now: loading it on b finishes sooner, and b
    // holds it after.
    fleet[0].backlog_secs = 30.0;
    fleet[0].in_flight = 1;
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Place(1));
    assert_eq!(fleet[1].holds, ["sdxl.safetensors"]);
    // A load measured there replaces the prior.
    fleet[1].holds.clear();
    fleet[1].load_secs.insert("sdxl.safetensors".into(), 0.5);
    assert_eq!(fleet[1].model_secs(&m), 0.5);
}

#[test]
fn taking_the_only_holder_of_a_model_others_wait_for_costs_its_load_again() {
    let c = [("c.safetensors".to_string(), 8.0)];
    let ask = Ask {
        work: 1.0,
        models: &c,
        keys: &[],
    };
    let fleet = || {
        vec![
            holding("a", 0, 0.0, &["a.safetensors"]),
            holding("b", 0, 3.0, &["b.safetensors"]),
        ]
    };
    // Nobody waits for a's model: the idle a takes the job.
    let mut p = Planner::new(Policy::EarliestFinish);
    p.set_demand(["c.safetensors"]);
    assert_eq!(
        p.place_ask(&mut fleet(), |_| true, &ask),
        Decision::Place(0)
    );
    // Two jobs wait for a's model, which only a holds: b, busier but
    // holding nothing anyone waits for, takes it.
    let mut p = Planner::new(Policy::EarliestFinish);
    p.set_demand(["c.safetensors", "a.safetensors", "a.safetensors"]);
    assert_eq!(
        p.place_ask(&mut fleet(), |_| true, &ask),
        Decision::Place(1)
    );
}

#[test]
fn swarms_rule_waits_for_pressure_then_loads_on_a_free_instance() {
    let x = [("x.safetensors".to_string(), 8.0)];
    let ask = Ask {
        work: 1.0,
        models: &x,
        keys: &[],
    };
    let mut p = Planner::new(Policy::SwarmModels);
    // a holds x but is full; b holds y; c holds nothing.
    let mut fleet = vec![
        holding("a", 2, 2.0, &["x.safetensors"]),
        holding("b", 1, 1.0, &["y.safetensors"]),
        holding("c", 0, 0.0, &[]),
    ];
    // The pressure is 1 s old: it waits.
    p.set_pressure(&[("x.safetensors", 1.0)], false);
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Wait);
    // 1.6 s: x loads, on the idle free instance.
    p.set_pressure(&[("x.safetensors", 1.6)], false);
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Place(2));
    // One load per pass; the next x job goes where x is now held.
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Place(2));
    // At once when only one instance is free.
    let mut p = Planner::new(Policy::SwarmModels);
    let mut fleet = vec![
        holding("a", 2, 2.0, &["x.safetensors"]),
        holding("b", 1, 1.0, &["y.safetensors"]),
    ];
    p.set_pressure(&[("x.safetensors", 0.0)], true);
    assert_eq!(p.place_ask(&mut fleet, |_| true, &ask), Decision::Place(1));
}
