//! What the benchmarks that run a queue share: a manager in a temp folder
//! with quick health probes, over stand-ins already running, each attached
//! as `gpu{i}` and started, returned once all are running and healthy.

use std::path::Path;
use std::time::Duration;
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::{HealthStatus, InstanceConfig, InstanceStatus};

/// Instances `gpu0`, `gpu1`, ... on these ports of 127.0.0.1, with `slots`
/// concurrent workflows each (`None`: the default), running and healthy.
pub async fn running(dir: &Path, ports: &[u16], slots: Option<u32>) -> InstanceManager {
    let mut o = ManagerOptions::new(dir);
    o.health = HealthPolicy {
        interval: Duration::from_millis(200),
        resource_interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        ..HealthPolicy::default()
    };
    let (m, _) = InstanceManager::open(o).unwrap();
    for (i, port) in ports.iter().enumerate() {
        let mut c = InstanceConfig::new(format!("gpu{i}"), format!("GPU {i}"), u32::from(*port));
        c.host = Some("127.0.0.1".into());
        c.max_concurrent_workflows = slots;
        m.create(c).await.unwrap();
        m.start(&format!("gpu{i}")).await.unwrap();
    }
    while !m
        .list()
        .iter()
        .all(|i| i.status == InstanceStatus::Running && i.health.status == HealthStatus::Healthy)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m
}
