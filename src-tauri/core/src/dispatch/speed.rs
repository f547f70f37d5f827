//! What a job costs on each instance: `a + b * work` seconds, a fixed cost per
//! prompt (loading, queue hand-over, saving) plus a cost per unit of work (see
//! `workflow::estimate_work`), fitted per instance by least squares over its
//! recent runs, older runs weighing less. The durations are ComfyUI's own
//! (`execution_start` to `execution_success` timestamps on `/ws`), so the
//! app's time to fetch outputs does not blur a fast GPU into a slow one.

use std::collections::HashMap;

/// Each new run multiplies the weight of the older ones by this: recent enough
/// to follow a GPU that got busy with something else, smooth enough that one
/// odd job does not swing placement.
const DECAY: f64 = 0.9;

/// Decayed sums of one instance's runs (x: work, y: seconds).
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64) {
        for s in [
            &mut self.n,
            &mut self.sx,
            &mut self.sy,
            &mut self.sxx,
            &mut self.sxy,
        ] {
            *s *= DECAY;
        }
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
    }

    /// (a, b). With one size of job seen so far the fixed cost cannot be told
    /// apart: the cost is taken as proportional to the work.
    fn params(&self) -> (f64, f64) {
        let (mx, my) = (self.sx / self.n, self.sy / self.n);
        let ratio = (0.0, (my / mx).max(1e-9));
        let var = self.sxx / self.n - mx * mx;
        if self.n < 1.5 || var <= 1e-9 * mx * mx {
            return ratio;
        }
        let b = (self.sxy / self.n - mx * my) / var;
        let a = my - b * mx;
        if b <= 0.0 {
            ratio
        } else if a < 0.0 {
            (0.0, (self.sxy / self.sxx).max(1e-9))
        } else {
            (a, b)
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpeedBook {
    initial: f64,
    fits: HashMap<String, Fit>,
}

impl SpeedBook {
    /// `initial`: seconds per unit assumed for an instance before any measure
    /// when no instance has been measured yet.
    pub fn new(initial: f64) -> Self {
        Self {
            initial: initial.max(1e-6),
            fits: HashMap::new(),
        }
    }

    /// Folds in one run: `secs` of execution for `work` units.
    pub fn record(&mut self, instance: &str, secs: f64, work: f64) {
        if !(secs.is_finite() && secs >= 0.0 && work.is_finite() && work > 0.0) {
            return;
        }
        self.fits
            .entry(instance.to_string())
            .or_default()
            .add(work, secs.max(1e-6));
    }

    /// The fitted (fixed seconds, seconds per unit), if measured.
    pub fn params(&self, instance: &str) -> Option<(f64, f64)> {
        self.fits.get(instance).map(Fit::params)
    }

    /// Expected seconds of a job of `work` there. An unmeasured instance is
    /// assumed as fast as the fastest measured one for this job: optimistic,
    /// so it gets work and thereby a measure, instead of never being tried.
    pub fn expected_secs(&self, instance: &str, work: f64) -> f64 {
        let cost = |(a, b): (f64, f64)| a + b * work;
        if let Some(p) = self.params(instance) {
            return cost(p);
        }
        self.fits
            .values()
            .map(|f| cost(f.params()))
            .min_by(f64::total_cmp)
            .unwrap_or(self.initial * work)
    }

    /// Expected seconds of a job of `work` on an instance of the fleet
    /// taken at random: the mean over the measured instances (the initial
    /// assumption before any measure). Pools size themselves with it.
    pub fn typical_secs(&self, work: f64) -> f64 {
        if self.fits.is_empty() {
            return self.initial * work;
        }
        let total: f64 = self
            .fits
            .values()
            .map(|f| {
                let (a, b) = f.params();
                a + b * work
            })
            .sum();
        total / self.fits.len() as f64
    }

    /// Seconds per unit of work (the slope), or the assumption if unmeasured.
    pub fn secs_per_unit(&self, instance: &str) -> f64 {
        match self.params(instance) {
            Some((_, b)) => b,
            None => self.expected_secs(instance, 1.0),
        }
    }

    pub fn measured(&self, instance: &str) -> bool {
        self.fits.contains_key(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_fixed_cost_and_a_cost_per_unit() {
        let mut b = SpeedBook::new(2.0);
        assert_eq!(b.expected_secs("a", 3.0), 6.0, "nothing measured");
        // a = 0.5 s, b = 0.1 s per unit, exactly.
        for w in [1.0, 10.0, 5.0, 20.0, 2.0] {
            b.record("a", 0.5 + 0.1 * w, w);
        }
        let (fixed, per) = b.params("a").unwrap();
        assert!((fixed - 0.5).abs() < 1e-9 && (per - 0.1).abs() < 1e-9);
        assert!((b.expected_secs("a", 100.0) - 10.5).abs() < 1e-9);
        // One size only: proportional.
        b.record("c", 4.0, 8.0);
        assert_eq!(b.params("c"), Some((0.0, 0.5)));
        assert_eq!(
            b.expected_secs("new", 1.0),
            0.5,
            "unmeasured: the cheapest known for this job"
        );
        b.record("a", f64::NAN, 1.0);
        b.record("a", 1.0, 0.0);
        assert!(
            (b.expected_secs("a", 100.0) - 10.5).abs() < 1e-9,
            "bad runs ignored"
        );
    }

    #[test]
    fn follows_an_instance_that_slows_down() {
        let mut b = SpeedBook::new(1.0);
        for w in [1.0, 4.0, 2.0, 8.0] {
            b.record("a", 0.1 * w, w);
        }
        for w in [1.0, 4.0, 2.0, 8.0, 3.0, 6.0, 1.0, 4.0, 2.0, 8.0] {
            b.record("a", 0.4 * w, w);
        }
        let per = b.secs_per_unit("a");
        assert!(per > 0.3, "recent runs dominate: {per}");
    }
}
