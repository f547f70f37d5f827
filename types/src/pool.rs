//! Pools: local instances the app starts when work waits and stops when they
//! idle, within the memory of the machine's GPUs (or its RAM).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One pool as `pools.json` keeps it (and as the window edits it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    /// Lower case letters, digits and `-`; members are `<id>-<n>`.
    pub id: String,
    /// Members are named `<name> #<n>`.
    pub name: String,
    /// The ComfyUI folder (with `main.py`) every member runs.
    pub comfyui_path: String,
    /// Its Python; `python3` from `PATH` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_nodes_path: Option<String>,
    /// Where members may run: GPU indices (`"0"`, `"1"`), or `["cpu"]`.
    /// Empty: every GPU NVML lists, or the CPU when it lists none.
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub min_members: u32,
    pub max_members: u32,
    /// A member with nothing to do for this long is stopped.
    pub idle_timeout_secs: u64,
    /// Members are added while the backlog's expected wait exceeds this.
    pub scale_up_wait_secs: f64,
    /// Time between two decisions of the same kind (start, stop).
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// Memory one member needs (MiB of VRAM on a GPU, of RAM on the CPU);
    /// absent: measured from the first member's first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_need_mib: Option<u64>,
    /// The need measured so far (the app writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_need_mib: Option<u64>,
    /// Members at most per device, lowered after a member ran out of memory
    /// there (the app writes it; the user may remove it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device_limits: BTreeMap<String, u32>,
    /// Off: the pool makes no decision (its members stay as they are).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_cooldown() -> u64 {
    10
}

fn yes() -> bool {
    true
}

impl PoolConfig {
    /// A pool with the defaults a new one gets in the window.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        comfyui_path: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            comfyui_path: comfyui_path.into(),
            python_path: None,
            extra_args: None,
            env_vars: None,
            custom_nodes_path: None,
            devices: Vec::new(),
            min_members: 0,
            max_members: 4,
            idle_timeout_secs: 120,
            scale_up_wait_secs: 30.0,
            cooldown_secs: default_cooldown(),
            memory_need_mib: None,
            measured_need_mib: None,
            device_limits: BTreeMap::new(),
            enabled: true,
        }
    }

    /// The need decisions use: set, else measured.
    pub fn need_mib(&self) -> Option<u64> {
        self.memory_need_mib.or(self.measured_need_mib)
    }
}

/// `pools.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolsFile {
    pub version: String,
    pub pools: Vec<PoolConfig>,
}

pub const POOLS_FILE_VERSION: &str = "1.0";

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PoolAction {
    Start,
    Stop,
    /// A start was wanted and not made (no memory, the maximum).
    NotStarted,
    /// A member ran out of memory: fewer members on that device from now on.
    LimitLowered,
    /// The need of one member was measured.
    Measured,
}

/// One decision, with its reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDecision {
    pub at: DateTime<Utc>,
    pub action: PoolAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub reason: String,
    /// Members starting or running after it.
    pub size: u32,
}

/// The pool's size at one moment (the plot).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSizePoint {
    pub at: DateTime<Utc>,
    pub size: u32,
    pub target: u32,
}

/// A pool as the window shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub config: PoolConfig,
    /// Member instance ids, by number.
    pub members: Vec<String>,
    /// Members starting or running.
    pub size: u32,
    /// What the pool aims at now.
    pub target: u32,
    /// The backlog's expected wait, seconds (None: nothing waits; infinite
    /// waits are sent as a very large number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_wait_secs: Option<f64>,
    /// Why the target is what it is, in words.
    pub why: String,
    /// Newest last, the last hundred.
    pub decisions: Vec<PoolDecision>,
    /// Newest last.
    pub history: Vec<PoolSizePoint>,
}
