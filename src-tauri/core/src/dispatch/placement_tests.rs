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
        in_flight_work: f64::from(in_flight),
        secs_per_unit: spu,
        reported_queue: in_flight,
        waiting_work: 0.0,
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
    assert_eq!(fleet[0].waiting_work, 1.0);
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
        assert_eq!(fleet[0].in_flight, 2, "{policy:?}");
        assert_eq!(fleet[1].in_flight, 1, "{policy:?}");
        assert_eq!(fleet[2].in_flight, 0, "{policy:?}");
    }
}

/// Simulates `jobs` (work units, all submitted at t=0) over instances of the
/// given true seconds per unit, with `capacity` slots each, and returns the
/// makespan. Speeds are learned from finished jobs, as the queue does.
fn simulate(policy: Policy, speeds: &[f64], capacity: u32, jobs: &[f64]) -> f64 {
    let mut planner = Planner::new(policy);
    let mut book = SpeedBook::new(1.0);
    let mut queued: Vec<f64> = jobs.to_vec();
    // Per instance: FIFO of (work), and when its running job ends.
    let mut fifo: Vec<Vec<f64>> = vec![Vec::new(); speeds.len()];
    let mut running_end: Vec<Option<f64>> = vec![None; speeds.len()];
    let mut now = 0.0f64;
    let ids: Vec<String> = (0..speeds.len()).map(|i| format!("i{i}")).collect();
    loop {
        // Place what can be placed now.
        let mut fleet: Vec<Candidate> = (0..speeds.len())
            .map(|i| Candidate {
                id: ids[i].clone(),
                capacity,
                in_flight: fifo[i].len() as u32,
                in_flight_work: fifo[i].iter().sum(),
                secs_per_unit: book.secs_per_unit(&ids[i]),
                reported_queue: fifo[i].len() as u32,
                waiting_work: 0.0,
            })
            .collect();
        let mut still = Vec::new();
        for w in queued.drain(..) {
            match planner.place(&mut fleet, |_| true, w) {
                Decision::Place(i) => {
                    assert!(fifo[i].len() < capacity as usize, "over capacity");
                    fifo[i].push(w);
                }
                Decision::Wait => still.push(w),
            }
        }
        queued = still;
        for i in 0..speeds.len() {
            if running_end[i].is_none() && !fifo[i].is_empty() {
                running_end[i] = Some(now + fifo[i][0] * speeds[i]);
            }
        }
        // Advance to the next finish.
        let Some((i, end)) = running_end
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
        else {
            assert!(queued.is_empty(), "jobs left with nothing running");
            return now;
        };
        now = end;
        let w = fifo[i].remove(0);
        book.record(&ids[i], w * speeds[i], w);
        running_end[i] = None;
    }
}

fn lower_bound(speeds: &[f64], jobs: &[f64]) -> f64 {
    let total_speed: f64 = speeds.iter().map(|s| 1.0 / s).sum();
    let fastest = speeds.iter().copied().fold(f64::INFINITY, f64::min);
    let longest = jobs.iter().copied().fold(0.0, f64::max);
    (jobs.iter().sum::<f64>() / total_speed).max(longest * fastest)
}

#[test]
fn earliest_finish_beats_the_common_policies_on_mixed_fleets() {
    let mut sums = [0.0f64; 4];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = rng.range(2, 5) as usize;
        let speeds: Vec<f64> = (0..n).map(|_| rng.range(1, 8) as f64).collect();
        let jobs: Vec<f64> = (0..rng.range(10, 60))
            .map(|_| rng.range(1, 8) as f64)
            .collect();
        let lb = lower_bound(&speeds, &jobs);
        for (k, policy) in Policy::ALL.into_iter().enumerate() {
            let ratio = simulate(policy, &speeds, 2, &jobs) / lb;
            assert!(ratio >= 1.0 - 1e-9, "seed {seed}: below the lower bound");
            sums[k] += ratio;
        }
    }
    let mean = sums.map(|s| s / 40.0);
    eprintln!("mean ratio to the lower bound: {mean:?}");
    assert!(
        mean[0] < 1.35,
        "earliest finish too far from the bound: {mean:?}"
    );
    for k in 1..4 {
        assert!(
            mean[0] < mean[k],
            "{:?} did better: {mean:?}",
            Policy::ALL[k]
        );
    }
}
