//! The rules of a pool, field by field; the members' launch fields (folder,
//! Python, arguments, environment) by the instances' own rules, on a member
//! as the pool would make it.

use crate::model::quote;
use storycore_types::{FieldError, InstanceConfig, PoolConfig};

const MAX_MEMBERS: u32 = 64;

/// Every problem of `p`, given the other pools.
pub fn check_pool(p: &PoolConfig, others: &[PoolConfig]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(FieldError::new(field, message));
    let id_ok = !p.id.is_empty()
        && p.id.len() <= 32
        && p.id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !p.id.starts_with('-');
    if !id_ok {
        bad(
            "id",
            format!(
                "The pool id {} must be 1 to 32 lower case letters, digits and '-', not starting with '-'.",
                quote(&p.id)
            ),
        );
    }
    if others.iter().any(|o| o.id == p.id) {
        bad("id", format!("Another pool has the id {}.", quote(&p.id)));
    }
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        bad(
            "name",
            "Give the pool a name of 1 to 64 characters, without control characters.".into(),
        );
    }
    if others.iter().any(|o| o.name.trim() == name) {
        bad("name", format!("Another pool is named {}.", quote(name)));
    }
    if p.max_members == 0 || p.max_members > MAX_MEMBERS {
        bad(
            "maxMembers",
            format!(
                "The maximum must be 1 to {MAX_MEMBERS} members; it is {}.",
                p.max_members
            ),
        );
    }
    if p.min_members > p.max_members {
        bad(
            "minMembers",
            format!(
                "The minimum ({}) is above the maximum ({}).",
                p.min_members, p.max_members
            ),
        );
    }
    if p.idle_timeout_secs == 0 || p.idle_timeout_secs > 7 * 86_400 {
        bad(
            "idleTimeoutSecs",
            "The idle timeout must be 1 second to 7 days.".into(),
        );
    }
    if !(p.scale_up_wait_secs.is_finite()
        && p.scale_up_wait_secs > 0.0
        && p.scale_up_wait_secs <= 86_400.0)
    {
        bad(
            "scaleUpWaitSecs",
            "The expected wait that adds a member must be above 0 and at most a day (seconds)."
                .into(),
        );
    }
    if p.cooldown_secs > 3600 {
        bad(
            "cooldownSecs",
            "The cooldown must be at most an hour.".into(),
        );
    }
    for (field, v) in [
        ("memoryNeedMib", p.memory_need_mib),
        ("measuredNeedMib", p.measured_need_mib),
    ] {
        if let Some(v) = v {
            if v == 0 || v > 16 << 20 {
                bad(
                    field,
                    format!("{v} MiB is not a memory need: give 1 MiB to 16 TiB."),
                );
            }
        }
    }
    let mut seen = Vec::new();
    for d in &p.devices {
        if d != "cpu" && d.parse::<u32>().is_err() {
            bad(
                "devices",
                format!(
                    "{} is not a device: use a GPU number such as 0, or cpu.",
                    quote(d)
                ),
            );
        }
        if seen.contains(&d) {
            bad("devices", format!("{} is listed twice.", quote(d)));
        }
        seen.push(d);
    }
    if p.devices.iter().any(|d| d == "cpu") && p.devices.len() > 1 {
        bad(
            "devices",
            "A pool runs on GPUs or on the CPU, not both: make two pools.".into(),
        );
    }
    for (d, limit) in &p.device_limits {
        if *limit == 0 || (d != "cpu" && d.parse::<u32>().is_err()) {
            bad(
                "deviceLimits",
                format!(
                    "{}: {limit} is not a limit of members on a device.",
                    quote(d)
                ),
            );
        }
    }
    // The launch fields, as an instance of the pool would carry them.
    let sample = member_config(p, 1, 8190, None);
    if let Err(fields) = crate::model::validate_config(&sample, &[]) {
        errors.extend(
            fields
                .into_iter()
                .filter(|f| !matches!(f.field.as_str(), "id" | "name" | "port")),
        );
    }
    errors
}

/// Member `n` of the pool as an instance: `<id>-<n>`, `<name> #<n>`.
pub fn member_config(p: &PoolConfig, n: u32, port: u16, device: Option<&str>) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        member_id(&p.id, n),
        format!("{} #{n}", p.name.trim()),
        u32::from(port),
    );
    c.comfyui_path = Some(p.comfyui_path.clone());
    c.python_path = p.python_path.clone();
    c.extra_args = p.extra_args.clone();
    c.env_vars = p.env_vars.clone();
    c.custom_nodes_path = p.custom_nodes_path.clone();
    c.gpu_device = device.map(str::to_string);
    c.pool_id = Some(p.id.clone());
    c.description = Some(format!(
        "Started and stopped by the pool {}.",
        quote(&p.name)
    ));
    c
}

pub fn member_id(pool: &str, n: u32) -> String {
    format!("{pool}-{n}")
}

/// The number of a member from its id, if it is one of `pool`'s.
pub fn member_number(pool: &str, id: &str) -> Option<u32> {
    id.strip_prefix(pool)?.strip_prefix('-')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_bad_field() {
        let mut p = PoolConfig::new("Bad Id", "", "relative/path");
        p.max_members = 0;
        p.min_members = 2;
        p.idle_timeout_secs = 0;
        p.scale_up_wait_secs = f64::NAN;
        p.devices = vec!["cpu".into(), "0".into(), "x".into()];
        p.memory_need_mib = Some(0);
        let fields: Vec<String> = check_pool(&p, &[]).into_iter().map(|f| f.field).collect();
        for f in [
            "id",
            "name",
            "maxMembers",
            "minMembers",
            "idleTimeoutSecs",
            "scaleUpWaitSecs",
            "devices",
            "memoryNeedMib",
            "comfyuiPath",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
    }

    #[test]
    fn member_ids_round_trip() {
        assert_eq!(member_number("gpu", &member_id("gpu", 12)), Some(12));
        assert_eq!(member_number("gpu", "gpu2-1"), None);
        assert_eq!(member_number("gpu", "gpu-x"), None);
    }
}
