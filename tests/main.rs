//! Every test of the desktop app (end-to-end through WebDriver, the command
//! line, signals, the headless mode), as modules of one test binary: one link
//! and one build of tests/support instead of one per file. The README's test
//! command runs them with cargo-nextest, each test in a process of its own,
//! so a test may still own its process (environment variables, signals).

mod support;

mod app_signals;
mod cli;
mod e2e_desktop;
mod e2e_details;
mod e2e_flood;
mod e2e_frame;
mod e2e_gateway;
mod e2e_import_export;
mod e2e_instances;
mod e2e_open_comfyui;
mod e2e_panel;
mod e2e_pools;
mod e2e_projects;
mod e2e_scale;
mod e2e_secrets;
mod e2e_settings;
mod e2e_start_phase;
mod e2e_tray_notify;
mod e2e_workflows;
mod main_thread_io;
mod serve_headless;
mod window_cost;
