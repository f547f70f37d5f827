//! What the queue knows of the fleet's models: what each instance offers
//! (read from its `/object_info` once per run), the model files it will
//! hold once the prompts sent there have run, what it has loaded now, and
//! how long loading each file took there.

use super::{QueueState, Sent};
use crate::dispatch::models::Offer;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use storycore_types::Instance;

/// Weight of a new measure of a load's seconds (an exponential average).
const LOAD_WEIGHT: f64 = 0.5;

/// What an instance offers, read in one run of it (`status_since`); `None`:
/// it could not be read, so nothing is held against it.
type ReadOffer = (Option<DateTime<Utc>>, Option<Arc<Offer>>);

#[derive(Default)]
pub(crate) struct FleetModels {
    offers: HashMap<String, ReadOffer>,
    /// Instances whose offer is being read: no work for them until then.
    reading: HashSet<String>,
    /// The model files each instance will hold once its sent prompts ran.
    holds: HashMap<String, Vec<String>>,
    /// The model files of the last prompt each instance finished.
    loaded: HashMap<String, Vec<String>>,
    /// The cache keys of the last prompt sent to each instance.
    cached: HashMap<String, Arc<HashSet<u64>>>,
    /// Seconds a file's load took, per instance.
    load_secs: HashMap<String, HashMap<String, f64>>,
}

impl QueueState {
    /// What the instance offers in its current run, when read.
    pub fn offer_of(&self, instance_id: &str) -> Option<&Offer> {
        self.models
            .offers
            .get(instance_id)
            .and_then(|(_, o)| o.as_deref())
    }

    /// Whether the instance's offer is not read yet in its current run (it
    /// takes no work meanwhile).
    pub fn reading_offer(&self, i: &Instance) -> bool {
        self.models.reading.contains(&i.id)
            || self
                .models
                .offers
                .get(&i.id)
                .is_none_or(|(run, _)| *run != i.status_since)
    }

    /// Marks the instance's offer as to be read when it was not read in
    /// its current run: true when the caller should read it now. A new run
    /// (a restart) also forgets what it held.
    pub fn begin_offer_read(&mut self, i: &Instance) -> bool {
        let m = &mut self.models;
        if m.reading.contains(&i.id)
            || m.offers
                .get(&i.id)
                .is_some_and(|(run, _)| *run == i.status_since)
        {
            return false;
        }
        m.holds.remove(&i.id);
        m.loaded.remove(&i.id);
        m.cached.remove(&i.id);
        m.reading.insert(i.id.clone());
        true
    }

    /// Keeps what the instance offers in run `run` (`None`: unreadable).
    pub fn set_offer(
        &mut self,
        instance_id: &str,
        run: Option<DateTime<Utc>>,
        offer: Option<Offer>,
    ) {
        self.models.reading.remove(instance_id);
        self.models
            .offers
            .insert(instance_id.to_string(), (run, offer.map(Arc::new)));
    }

    /// The instance's offer is read again (its files changed); what it
    /// holds stays. No work for it until then.
    pub fn reread_offer(&mut self, instance_id: &str) {
        self.models.reading.insert(instance_id.to_string());
    }

    /// The model files the instance will hold once its sent prompts ran.
    pub fn holds(&self, instance_id: &str) -> &[String] {
        self.models
            .holds
            .get(instance_id)
            .map_or(&[], Vec::as_slice)
    }

    /// The model files of the last prompt it finished: loaded there now.
    pub fn loaded(&self, instance_id: &str) -> &[String] {
        self.models
            .loaded
            .get(instance_id)
            .map_or(&[], Vec::as_slice)
    }

    /// Seconds each file's load took on the instance, as measured there.
    pub fn measured_loads(&self, instance_id: &str) -> HashMap<String, f64> {
        self.models
            .load_secs
            .get(instance_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Measured seconds of each file's load on the instance; for a file
    /// it never loaded, the mean of the instances that did (a file's size
    /// and the disks of one fleet are alike more often than not).
    pub fn load_secs_of(&self, instance_id: &str) -> HashMap<String, f64> {
        let mut sums: HashMap<&str, (f64, u32)> = HashMap::new();
        for (i, files) in &self.models.load_secs {
            if i == instance_id {
                continue;
            }
            for (f, secs) in files {
                let s = sums.entry(f).or_default();
                s.0 += secs;
                s.1 += 1;
            }
        }
        let mut out: HashMap<String, f64> = sums
            .into_iter()
            .map(|(f, (sum, n))| (f.to_string(), sum / f64::from(n)))
            .collect();
        if let Some(own) = self.models.load_secs.get(instance_id) {
            out.extend(own.iter().map(|(f, s)| (f.clone(), *s)));
        }
        out
    }

    /// A prompt loading `files`, of nodes `keys`, was sent to the instance:
    /// it holds them, and their outputs, after.
    pub(super) fn models_sent(
        &mut self,
        instance_id: &str,
        files: &[(String, f64)],
        keys: &[(u64, f64)],
    ) {
        if !files.is_empty() {
            let files = files.iter().map(|(f, _)| f.clone()).collect();
            self.models.holds.insert(instance_id.to_string(), files);
        }
        if !keys.is_empty() {
            let keys = keys.iter().map(|(k, _)| *k).collect();
            self.models
                .cached
                .insert(instance_id.to_string(), Arc::new(keys));
        }
    }

    /// A prompt this queue did not send ran there: its cache holds that.
    pub(super) fn forget_cached(&mut self, instance_id: &str) {
        self.models.cached.remove(instance_id);
    }

    /// The cache keys of the last prompt sent to the instance.
    pub fn cached_keys(&self, instance_id: &str) -> Arc<HashSet<u64>> {
        self.models
            .cached
            .get(instance_id)
            .cloned()
            .unwrap_or_default()
    }

    /// A prompt loading `files` succeeded there: they are loaded now.
    pub(super) fn models_ran(&mut self, instance_id: &str, files: &[(String, f64)]) {
        if !files.is_empty() {
            let files = files.iter().map(|(f, _)| f.clone()).collect();
            self.models.loaded.insert(instance_id.to_string(), files);
        }
    }

    /// The instance let its models go (out of memory, `/free`, a restart).
    pub fn models_dropped(&mut self, instance_id: &str) {
        self.models.holds.remove(instance_id);
        self.models.loaded.remove(instance_id);
        self.models.cached.remove(instance_id);
    }

    /// ComfyUI started executing `node` of the sending (`None`: it ended):
    /// the node before ended, and when it was a loader of a file its
    /// instance did not hold, its time is that load's.
    pub fn node_started(&mut self, sent: Sent<'_>, node: Option<&str>) {
        let Some(e) = self.jobs.get_mut(sent.job) else {
            return;
        };
        let needs = e.needs.clone();
        let Some(a) = e.sent_as(sent.prompt) else {
            return;
        };
        let now = Instant::now();
        let ended = std::mem::replace(&mut a.node, node.map(|n| (n.to_string(), now)));
        let measured = ended.and_then(|(n, since)| {
            let file = needs.loaded_by(&n)?;
            a.loads
                .iter()
                .any(|f| f == file)
                .then(|| (file.to_string(), (now - since).as_secs_f64()))
        });
        if let Some((file, secs)) = measured {
            tracing::debug!(instance = %sent.instance, %file, secs, "a model's load measured");
            self.learn_load(sent.instance, &file, secs);
        }
    }

    /// Loading `file` took `secs` on the instance.
    pub fn learn_load(&mut self, instance_id: &str, file: &str, secs: f64) {
        if !(secs.is_finite() && secs >= 0.0) {
            return;
        }
        let known = self
            .models
            .load_secs
            .entry(instance_id.to_string())
            .or_default();
        let v = known.entry(file.to_string()).or_insert(secs);
        *v += LOAD_WEIGHT * (secs - *v);
    }
}
