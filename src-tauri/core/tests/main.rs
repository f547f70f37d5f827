//! Every integration test of storycore-core, as modules of one test binary:
//! one link and one build of the shared support code instead of one per file.
//! The README's test command runs them with cargo-nextest, each test in a
//! process of its own, so a test may still own its process (environment
//! variables, signal handlers, re-running this binary as a child).

mod dispatch_fleet;
mod gateway_support;
#[path = "../../../tests/comfyui-standin/tests/common/replay.rs"]
mod replay;
mod support;

mod client_auth;
mod client_http;
mod client_responses;
mod client_ws_messages;
mod client_ws_stream;
mod dispatch_crash;
mod dispatch_failover;
mod dispatch_models;
mod dispatch_projects;
mod dispatch_queue;
mod dispatch_retention;
mod dispatch_speculation;
mod dispatch_store;
mod dispatch_template_import;
mod faults;
mod faults_disk;
mod faults_orphans;
mod gateway;
mod gateway_client;
mod gateway_conformance;
mod gateway_people;
mod gateway_team;
mod gateway_uploads;
mod health_monitor;
mod health_policy;
mod input_properties;
mod input_refusals;
mod job_records;
mod manager_files;
mod manager_lifecycle;
mod manager_local;
mod model_paths;
mod model_validate;
mod pools;
mod projects_store;
mod secrets_env;
mod secrets_store;
mod store_crash;
mod store_health_history;
mod store_import_export;
mod store_instances;
mod store_migration;
mod structure;
mod supervisor_failures;
mod supervisor_launch;
mod supervisor_lifecycle;
mod telemetry_local;
