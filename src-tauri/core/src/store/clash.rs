//! Clashes between imported instances and the current fleet, resolved by the
//! caller's [`ClashPolicy`].

use super::import::{ClashPolicy, ImportAction, ImportEntry};
use crate::model::same_machine;
use storycore_types::{FieldError, InstanceConfig};

/// Where an instance of the fleet being built comes from.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Origin {
    Current,
    Imported(usize),
}

/// Names compare as the user sees them: case and surrounding spaces aside.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Puts one imported instance into the fleet as `policy` says, and writes
/// what happened into its entry.
pub(crate) fn place(
    i: usize,
    mut c: InstanceConfig,
    policy: ClashPolicy,
    fleet: &mut Vec<(Origin, InstanceConfig)>,
    taken_ids: &[String],
    entry: &mut ImportEntry,
) {
    let clashing: Vec<usize> = (0..fleet.len())
        .filter(|&k| {
            fleet[k].0 == Origin::Current
                && (fleet[k].1.id == c.id || same_name(&fleet[k].1.name, &c.name))
        })
        .collect();
    if clashing.is_empty() {
        fleet.push((Origin::Imported(i), c));
        return;
    }
    let described: Vec<String> = clashing
        .iter()
        .map(|&k| format!("'{}' ({})", fleet[k].1.name, fleet[k].1.id))
        .collect();
    match policy {
        ClashPolicy::Fail => {
            entry.action = ImportAction::Rejected;
            for &k in &clashing {
                let existing = &fleet[k].1;
                let field = if existing.id == c.id { "id" } else { "name" };
                entry.errors.push(FieldError::new(
                    field,
                    format!(
                        "It clashes with the existing instance '{}' ({}): import again choosing to skip, rename or replace clashing instances.",
                        existing.name, existing.id
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
            let in_fleet: Vec<&InstanceConfig> = fleet.iter().map(|(_, f)| f).collect();
            let new_id = if taken_ids.iter().filter(|t| **t == c.id).count() > 1 {
                free_id(&c.id, taken_ids, &in_fleet)
            } else {
                c.id.clone()
            };
            let new_name = free_name(&c.name, &in_fleet);
            let new_port = in_fleet
                .iter()
                .any(|f| f.port == c.port && same_machine(f.host(), c.host()))
                .then(|| free_port(&c, &in_fleet))
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
            fleet.push((Origin::Imported(i), c));
        }
        ClashPolicy::Replace => {
            let replaced_ids = clashing.iter().map(|&k| fleet[k].1.id.clone()).collect();
            let at = clashing[0];
            for &k in clashing.iter().rev() {
                fleet.remove(k);
            }
            fleet.insert(at, (Origin::Imported(i), c));
            entry.action = ImportAction::Replaced { replaced_ids };
        }
    }
}

/// `{id}_2`, `{id}_3`, ... free among the fleet and every id of the data.
fn free_id(id: &str, taken_ids: &[String], fleet: &[&InstanceConfig]) -> String {
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let base: String = id.chars().take(64 - suffix.len()).collect();
            format!("{base}{suffix}")
        })
        .find(|cand| !taken_ids.contains(cand) && !fleet.iter().any(|f| f.id == *cand))
        .expect("an unbounded range of candidates always holds a free one")
}

/// `{name} (2)`, `{name} (3)`, ... free among the fleet.
fn free_name(name: &str, fleet: &[&InstanceConfig]) -> String {
    (2..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let base: String = name.trim().chars().take(100 - suffix.len()).collect();
            format!("{base}{suffix}")
        })
        .find(|cand| !fleet.iter().any(|f| same_name(&f.name, cand)))
        .expect("an unbounded range of candidates always holds a free one")
}

/// The next port above the instance's own that no instance on its machine uses.
fn free_port(c: &InstanceConfig, fleet: &[&InstanceConfig]) -> Option<u32> {
    let used = |p: u32| {
        fleet
            .iter()
            .any(|f| f.port == p && same_machine(f.host(), c.host()))
    };
    (c.port.saturating_add(1)..=65535)
        .chain(1024..c.port)
        .find(|&p| !used(p))
}
