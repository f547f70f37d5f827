//! How fast each instance has been: an exponentially weighted moving average of
//! seconds per unit of work (see `workflow::estimate_work`), per instance.

use std::collections::HashMap;

/// Weight of the newest measure: recent enough to follow a GPU that got busy
/// with something else, smooth enough that one odd job does not swing placement.
const ALPHA: f64 = 0.3;

#[derive(Debug, Clone)]
pub struct SpeedBook {
    initial: f64,
    secs_per_unit: HashMap<String, f64>,
}

impl SpeedBook {
    /// `initial`: seconds per unit assumed for an instance before any measure
    /// when no instance has been measured yet.
    pub fn new(initial: f64) -> Self {
        Self {
            initial: initial.max(1e-6),
            secs_per_unit: HashMap::new(),
        }
    }

    /// Folds in one finished job: `secs` of running time for `work` units.
    pub fn record(&mut self, instance: &str, secs: f64, work: f64) {
        if !(secs.is_finite() && secs >= 0.0 && work > 0.0) {
            return;
        }
        let sample = (secs / work).max(1e-6);
        self.secs_per_unit
            .entry(instance.to_string())
            .and_modify(|v| *v += ALPHA * (sample - *v))
            .or_insert(sample);
    }

    /// The estimate for an instance. An unmeasured one is assumed as fast as
    /// the fastest measured instance: optimistic, so it gets work and thereby a
    /// measure, instead of never being tried.
    pub fn secs_per_unit(&self, instance: &str) -> f64 {
        if let Some(v) = self.secs_per_unit.get(instance) {
            return *v;
        }
        self.secs_per_unit
            .values()
            .copied()
            .min_by(f64::total_cmp)
            .unwrap_or(self.initial)
    }

    pub fn measured(&self, instance: &str) -> bool {
        self.secs_per_unit.contains_key(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_toward_new_measures_and_seeds_unmeasured_optimistically() {
        let mut b = SpeedBook::new(2.0);
        assert_eq!(b.secs_per_unit("a"), 2.0);
        b.record("a", 10.0, 10.0);
        assert_eq!(b.secs_per_unit("a"), 1.0);
        b.record("a", 20.0, 10.0);
        assert!((b.secs_per_unit("a") - 1.3).abs() < 1e-9);
        b.record("b", 5.0, 10.0);
        assert_eq!(b.secs_per_unit("c"), 0.5, "unmeasured: the fastest known");
        b.record("a", f64::NAN, 1.0);
        assert!(
            (b.secs_per_unit("a") - 1.3).abs() < 1e-9,
            "bad measures ignored"
        );
    }
}
