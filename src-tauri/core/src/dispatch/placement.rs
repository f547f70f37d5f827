//! Which instance takes a job: pure, over a snapshot of the candidates. The
//! queue calls [`Planner::place`] for its queued jobs in order, within one pass
//! over a [`Candidate`] list that the planner updates as it decides.
//!
//! ComfyUI runs one prompt at a time, and `POST /prompt` answers long before the
//! prompt ends, so load is counted until a job finishes. The default policy
//! aims at the earliest expected finish: (work already there + this job) x the
//! instance's measured seconds per unit of work. When the instance that would
//! finish first is full, the job waits in the app for it rather than going to
//! a slower instance; that wait is counted as work on it, so that later jobs
//! in the same pass spill onto other instances only when that is faster.

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
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::EarliestFinish,
        Policy::RoundRobin,
        Policy::FewestInFlight,
        Policy::ShortestQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EarliestFinish => "earliest finish (this app)",
            Self::RoundRobin => "round-robin",
            Self::FewestInFlight => "fewest in flight (SwarmUI)",
            Self::ShortestQueue => "shortest queue (ComfyUI-Distributed)",
        }
    }
}

/// One instance that may take work now (running, unpaused, healthy).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    /// `maxConcurrentWorkflows`.
    pub capacity: u32,
    /// Jobs of this app sent there and not finished.
    pub in_flight: u32,
    /// Their estimated work.
    pub in_flight_work: f64,
    /// The instance's measured (or assumed) seconds per unit of work.
    pub secs_per_unit: f64,
    /// Running + pending prompts as the instance last reported (any client's).
    pub reported_queue: u32,
    /// Work of jobs that chose to wait for this instance in this pass.
    pub waiting_work: f64,
}

impl Candidate {
    pub fn has_room(&self) -> bool {
        self.in_flight < self.capacity.max(1)
    }

    /// When a job of `work` would finish here, in seconds from now.
    pub fn expected_finish(&self, work: f64) -> f64 {
        (self.in_flight_work + self.waiting_work + work) * self.secs_per_unit
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
}

impl Planner {
    pub fn new(policy: Policy) -> Self {
        Self { policy, cursor: 0 }
    }

    /// Decides for one job of `work` among the candidates `allowed` accepts,
    /// and books the decision into `fleet` (so the next call sees it).
    pub fn place(
        &mut self,
        fleet: &mut [Candidate],
        allowed: impl Fn(&Candidate) -> bool,
        work: f64,
    ) -> Decision {
        let ok: Vec<usize> = (0..fleet.len()).filter(|&i| allowed(&fleet[i])).collect();
        let pick = match self.policy {
            Policy::EarliestFinish => {
                let best = ok.iter().copied().min_by(|&a, &b| {
                    let (ca, cb) = (&fleet[a], &fleet[b]);
                    ca.expected_finish(work)
                        .total_cmp(&cb.expected_finish(work))
                        .then(cb.has_room().cmp(&ca.has_room()))
                        .then(ca.in_flight.cmp(&cb.in_flight))
                        .then(ca.id.cmp(&cb.id))
                });
                match best {
                    Some(i) if !fleet[i].has_room() => {
                        fleet[i].waiting_work += work;
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
        };
        match pick {
            Some(i) => {
                let c = &mut fleet[i];
                c.in_flight += 1;
                c.in_flight_work += work;
                c.reported_queue += 1;
                Decision::Place(i)
            }
            None => Decision::Wait,
        }
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
