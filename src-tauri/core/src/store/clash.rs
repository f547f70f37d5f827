//! Clashes between imported instances and the current fleet, resolved by the
//! caller's [`ClashPolicy`]. Every lookup goes through an index (ids, names,
//! ports per machine), so importing n instances into a fleet of m costs
//! O(n + m), not O(n * m).

use crate::model::{machine_key, quote};
use std::collections::{HashMap, HashSet};
use storycore_types::import::{ClashPolicy, ImportAction, ImportEntry};
use storycore_types::{FieldError, InstanceConfig};

/// Names compare as the user sees them: case and surrounding spaces aside.
pub(crate) fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The fleet being built: the current instances (some replaced), then the
/// imported ones in the order of the data.
pub(crate) struct Placement<'a> {
    current: &'a [InstanceConfig],
    current_by_id: HashMap<&'a str, usize>,
    current_by_name: HashMap<String, usize>,
    /// Current instance -> the imported one that replaces it (None: removed
    /// because another of its clashes took its place).
    replaced: HashMap<usize, Option<(usize, InstanceConfig)>>,
    added: Vec<(usize, InstanceConfig)>,
    /// Everything taken so far, for renames: ids (also every id of the data),
    /// names, ports per machine.
    ids: HashSet<String>,
    names: HashSet<String>,
    ports: HashSet<(String, u32)>,
}

impl<'a> Placement<'a> {
    pub fn new(current: &'a [InstanceConfig], data_ids: impl Iterator<Item = String>) -> Self {
        let mut p = Self {
            current,
            current_by_id: HashMap::new(),
            current_by_name: HashMap::new(),
            replaced: HashMap::new(),
            added: Vec::new(),
            ids: data_ids.collect(),
            names: HashSet::new(),
            ports: HashSet::new(),
        };
        for (k, c) in current.iter().enumerate() {
            p.current_by_id.entry(c.id.as_str()).or_insert(k);
            p.current_by_name.entry(name_key(&c.name)).or_insert(k);
            p.take(c);
        }
        p
    }

    fn take(&mut self, c: &InstanceConfig) {
        self.ids.insert(c.id.clone());
        self.names.insert(name_key(&c.name));
        self.ports.insert((machine_key(c.host()), c.port));
    }

    /// The current instances an imported one clashes with (same id or name),
    /// in fleet order.
    fn clashing(&self, c: &InstanceConfig) -> Vec<usize> {
        let mut k: Vec<usize> = [
            self.current_by_id.get(c.id.as_str()),
            self.current_by_name.get(&name_key(&c.name)),
        ]
        .into_iter()
        .flatten()
        .copied()
        .filter(|k| !self.replaced.contains_key(k))
        .collect();
        k.sort_unstable();
        k.dedup();
        k
    }

    /// Puts one imported instance into the fleet as `policy` says, and writes
    /// what happened into its entry.
    pub fn place(
        &mut self,
        i: usize,
        mut c: InstanceConfig,
        policy: ClashPolicy,
        entry: &mut ImportEntry,
    ) {
        let clashing = self.clashing(&c);
        if clashing.is_empty() {
            self.take(&c);
            self.added.push((i, c));
            return;
        }
        let existing = |k: usize| &self.current[k];
        let described: Vec<String> = clashing
            .iter()
            .map(|&k| format!("{} ({})", quote(&existing(k).name), quote(&existing(k).id)))
            .collect();
        match policy {
            ClashPolicy::Fail => {
                entry.action = ImportAction::Rejected;
                for &k in &clashing {
                    let e = existing(k);
                    let field = if e.id == c.id { "id" } else { "name" };
                    entry.errors.push(FieldError::new(
                        field,
                        format!(
                            "It clashes with the existing instance {} ({}): import again choosing to skip, rename or replace clashing instances.",
                            quote(&e.name),
                            quote(&e.id)
                        ),
                    ));
                }
            }
            ClashPolicy::Skip => {
                entry.action = ImportAction::Skipped {
                    reason: format!(
                        "the existing instance {} has the same id or name",
                        described.join(" and ")
                    ),
                };
            }
            ClashPolicy::Rename => {
                let new_id = if self.current_by_id.contains_key(c.id.as_str()) {
                    self.free_id(&c.id)
                } else {
                    c.id.clone()
                };
                let new_name = self.free_name(&c.name);
                let new_port = self
                    .ports
                    .contains(&(machine_key(c.host()), c.port))
                    .then(|| self.free_port(&c))
                    .flatten();
                c.id.clone_from(&new_id);
                c.name.clone_from(&new_name);
                if let Some(p) = new_port {
                    c.port = p;
                }
                entry.action = ImportAction::Renamed {
                    new_id,
                    new_name,
                    new_port,
                };
                self.take(&c);
                self.added.push((i, c));
            }
            ClashPolicy::Replace => {
                let replaced_ids = clashing.iter().map(|&k| existing(k).id.clone()).collect();
                self.take(&c);
                self.replaced.insert(clashing[0], Some((i, c)));
                for &k in &clashing[1..] {
                    self.replaced.insert(k, None);
                }
                entry.action = ImportAction::Replaced { replaced_ids };
            }
        }
    }

    /// The fleet: current instances in order (a replaced one's place taken by
    /// what replaced it), then the added ones; each with the data's index of
    /// an imported instance.
    pub fn into_fleet(mut self) -> Vec<(Option<usize>, InstanceConfig)> {
        let mut out = Vec::with_capacity(self.current.len() + self.added.len());
        for (k, c) in self.current.iter().enumerate() {
            match self.replaced.remove(&k) {
                None => out.push((None, c.clone())),
                Some(Some((i, with))) => out.push((Some(i), with)),
                Some(None) => {}
            }
        }
        out.extend(self.added.into_iter().map(|(i, c)| (Some(i), c)));
        out
    }

    /// `{id}_2`, `{id}_3`, ... free among the fleet and every id of the data.
    fn free_id(&self, id: &str) -> String {
        (2..)
            .map(|n| {
                let suffix = format!("_{n}");
                let base: String = id.chars().take(64 - suffix.len()).collect();
                format!("{base}{suffix}")
            })
            .find(|cand| !self.ids.contains(cand))
            .expect("an unbounded range of candidates always holds a free one")
    }

    /// `{name} (2)`, `{name} (3)`, ... free among the fleet.
    fn free_name(&self, name: &str) -> String {
        (2..)
            .map(|n| {
                let suffix = format!(" ({n})");
                let base: String = name.trim().chars().take(100 - suffix.len()).collect();
                format!("{base}{suffix}")
            })
            .find(|cand| !self.names.contains(&name_key(cand)))
            .expect("an unbounded range of candidates always holds a free one")
    }

    /// The next port above the instance's own that no instance on its machine uses.
    fn free_port(&self, c: &InstanceConfig) -> Option<u32> {
        let machine = machine_key(c.host());
        (c.port.saturating_add(1)..=65535)
            .chain(1024..c.port)
            .find(|&p| !self.ports.contains(&(machine.clone(), p)))
    }
}
