//! Helpers shared by the core's integration tests: the stand-in launcher, the
//! fault proxy, recorded ComfyUI answers, and waiting on conditions.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod keyring;
pub mod standin;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// A file recorded from a real ComfyUI 0.3.64 (copied from comfyui-api/).
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/fixtures/comfyui-api")
        .join(rel)
}

pub fn read_fixture(rel: &str) -> String {
    let p = fixture(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Polls `check` every 20 ms until it yields `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receives until `pick` accepts an item, failing the test after `timeout`.
pub async fn recv_until<E, T>(
    rx: &mut tokio::sync::mpsc::Receiver<E>,
    timeout: Duration,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting for {what}"))
            .unwrap_or_else(|| panic!("channel closed while waiting for {what}"));
        if let Some(v) = pick(&item) {
            return v;
        }
    }
}
