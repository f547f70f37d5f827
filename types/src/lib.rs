//! The types that cross the Tauri boundary. The backend (native) and the UI (WASM)
//! both compile this crate, so each struct is written once.

pub mod app;
pub mod error;
pub mod event;
pub mod gpu;
pub mod health;
pub mod import;
pub mod instance;
pub mod job;
pub mod pool;
pub mod project;
pub mod settings;

pub use app::AppInfo;
pub use error::{ApiError, ErrorCode, FieldError};
pub use event::{AppEvent, Heartbeat, LogLines, Snapshot, APP_EVENT};
pub use gpu::{GpuInfo, GpuList};
pub use health::{
    Alert, AlertKind, HealthHistoryFile, HealthSample, HealthStatus, InstanceHealth, InstanceStats,
    Severity, SystemStats,
};
pub use instance::{
    ConnectionOutcome, ConnectionTest, DeviceSummary, Instance, InstanceConfig,
    InstanceConfigPatch, InstancePath, InstanceStatus, InstancesFile, KeyAuth, MigrationResult,
    Scheme, INSTANCES_FILE_VERSION,
};
pub use job::{
    GatewayPrompt, InputFile, InstanceModels, Job, JobCopy, JobError, JobNodeError, JobOutput,
    JobProgress, JobState, JobTarget, ParameterMark, ParameterType, TemplateDraft,
    TemplateParameter, WorkflowExecution, WorkflowFile, WorkflowInput, WorkflowTemplate,
};
pub use pool::{
    PoolAction, PoolConfig, PoolDecision, PoolSizePoint, PoolView, PoolsFile, POOLS_FILE_VERSION,
};
pub use project::{
    InstanceDefaults, Project, ProjectDraft, ProjectList, ProjectsFile, PROJECTS_FILE_VERSION,
};
pub use settings::{
    AppSettings, GatewaySettings, GatewayStatus, GatewayTokenInfo, HealthSettings,
    NotificationSettings, PlacementPolicy, TrayItem, DEFAULT_GATEWAY_ADDRESS,
    DEFAULT_JOB_RETENTION_DAYS, DEFAULT_MAX_FINISHED_JOBS,
};
