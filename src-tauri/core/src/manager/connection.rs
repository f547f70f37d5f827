//! The editor's "Test Connection": one `/system_stats` with a short timeout,
//! told as reached / refused / timed out, with version and devices.

use crate::client::{ClientError, ComfyClient};
use std::time::{Duration, Instant};
use storycore_types::{ConnectionOutcome, ConnectionTest, DeviceSummary, InstanceConfig};

pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `key`: one typed in the editor and not stored yet; without it, the key
/// stored under the config's `apiKeyRef` (if any) is sent.
pub async fn test_connection(config: &InstanceConfig, key: Option<&str>) -> ConnectionTest {
    let client = match ComfyClient::for_instance(config) {
        Ok(c) => c.with_timeout(TEST_TIMEOUT),
        Err(e) => return failed(ConnectionOutcome::Failed, e),
    };
    let client = match key {
        Some(k) => match client.with_api_key(&config.key_auth(), k) {
            Ok(c) => c,
            Err(e) => return failed(ConnectionOutcome::Failed, e),
        },
        None => client,
    };
    let started = Instant::now();
    match client.system_stats().await {
        Ok(stats) => {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            ConnectionTest {
                outcome: ConnectionOutcome::Reached,
                message: format!(
                    "ComfyUI {} answered at {} in {ms:.0} ms",
                    stats.system.comfyui_version,
                    client.base_url()
                ),
                response_time: Some(ms),
                comfyui_version: Some(stats.system.comfyui_version.clone()),
                devices: stats
                    .devices
                    .iter()
                    .map(|d| DeviceSummary {
                        name: d.name.clone(),
                        kind: d.kind.clone(),
                        vram_total: d.vram_total,
                        vram_free: d.vram_free,
                    })
                    .collect(),
            }
        }
        Err(e @ ClientError::Refused { .. }) => failed(ConnectionOutcome::Refused, e),
        Err(e @ ClientError::TimedOut { .. }) => failed(ConnectionOutcome::TimedOut, e),
        Err(e) => failed(ConnectionOutcome::Failed, e),
    }
}

fn failed(outcome: ConnectionOutcome, e: ClientError) -> ConnectionTest {
    ConnectionTest {
        outcome,
        message: e.to_string(),
        response_time: None,
        comfyui_version: None,
        devices: Vec::new(),
    }
}
