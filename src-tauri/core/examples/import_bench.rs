//! How importing scales with the number of instances: the whole import
//! (parse, clash resolution, validation of every instance against the fleet)
//! of n instances into an empty fleet, and of n more into a fleet of n.
//!
//! ```text
//! cargo run -p storycore-core --release --example import_bench
//! ```
//!
//! Linear means the time per instance stays flat as n grows.

use std::time::Instant;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::store::{import, ClashPolicy};
use storycore_types::{InstanceConfig, InstancesFile, INSTANCES_FILE_VERSION};

fn fleet(n: usize, offset: usize) -> Vec<InstanceConfig> {
    (0..n)
        .map(|k| {
            let k = k + offset;
            let mut c = InstanceConfig::new(
                format!("instance_{k:05}"),
                format!("Box {k:05}"),
                (10_000 + k % 50_000) as u32,
            );
            c.host = Some(format!(
                "10.{}.{}.{}",
                k / 65536 % 256,
                k / 256 % 256,
                k % 256
            ));
            c.description = Some(format!("imported box number {k}"));
            c
        })
        .collect()
}

fn file(instances: Vec<InstanceConfig>) -> InstancesFile {
    InstancesFile {
        version: INSTANCES_FILE_VERSION.into(),
        instances,
        active_instance_id: None,
        last_saved: None,
    }
}

#[tokio::main]
async fn main() {
    println!("| instances | into an empty fleet | ms per 1000 | into a fleet of as many (rename clashes) | ms per 1000 | through the app's manager, saved to disk |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in [1_000, 2_000, 6_000, 10_000, 20_000] {
        let data = serde_json::to_string(&file(fleet(n, 0))).unwrap();
        let empty = file(Vec::new());
        let t = Instant::now();
        let out = import(&data, &empty, ClashPolicy::Fail).expect("a valid import");
        let alone = t.elapsed();
        assert_eq!(out.file.instances.len(), n);
        // The same ids and names again, onto the first: every one clashes
        // and is renamed (new id, name and port on its machine).
        let t = Instant::now();
        let out = import(&data, &out.file, ClashPolicy::Rename).expect("a valid import");
        let onto = t.elapsed();
        assert_eq!(out.file.instances.len(), 2 * n);
        // What the user waits for: the manager's import (the same, then the
        // registry, the events and the file written atomically).
        let dir = tempfile::tempdir().unwrap();
        let (m, _) = InstanceManager::open(ManagerOptions::new(dir.path())).unwrap();
        let t = Instant::now();
        m.import(&data, ClashPolicy::Fail).await.unwrap();
        let managed = t.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "| {n} | {:.0} ms | {:.1} | {:.0} ms | {:.1} | {:.0} ms |",
            alone.as_secs_f64() * 1e3,
            per(alone),
            onto.as_secs_f64() * 1e3,
            per(onto),
            managed.as_secs_f64() * 1e3
        );
    }
}
