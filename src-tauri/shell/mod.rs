//! The Tauri layer: window, commands, events, tray. Thin by design: it parses,
//! calls the part that owns the work, and maps errors to `ApiError`.

mod commands;
mod events;
mod heartbeat;
mod notifier;
mod signals;
mod tray;
mod window;

use storycore_core::engine::{Engine, EngineOptions};
use storycore_core::paths::AppPaths;
use storycore_core::settings::{EnvSettings, GatewayChoice};
use tauri::Manager;

pub use events::emit;
use window::show_main_window;
pub use window::{StartupNotices, WindowGateway, MAIN_WINDOW};

/// Builds and runs the Tauri app until the user quits.
pub fn run(paths: AppPaths, env: EnvSettings) -> Result<(), String> {
    // Tauri's tasks run on the engine's runtime (its threads named, so the
    // tests can tell a worker from the blocking pool).
    let runtime =
        storycore_core::engine::runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    tauri::async_runtime::set(runtime.handle().clone());
    let app = tauri::Builder::default()
        // Must be the first plugin: a second launch hands its arguments to this
        // process and exits before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            tracing::info!(?argv, "second launch: focusing the running window");
            show_main_window(app);
            events::emit(app, storycore_types::AppEvent::SecondLaunch);
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_dialog::init())
        .manage(StartupNotices::default())
        .manage(commands::desktop::EditorWindows::default())
        .manage(WindowGateway::default())
        .invoke_handler(tauri::generate_handler![
            commands::app::app_info,
            commands::instances::list_instances,
            commands::instances::get_instance,
            commands::instances::create_instance,
            commands::instances::update_instance,
            commands::instances::delete_instance,
            commands::instances::start_instance,
            commands::instances::stop_instance,
            commands::instances::pause_instance,
            commands::instances::resume_instance,
            commands::instances::restart_instance,
            commands::instances::set_active_instance,
            commands::instances::get_active_instance,
            commands::instances::get_healthy_instance,
            commands::instances::get_instances_by_load,
            commands::instances::check_instance_health,
            commands::instances::get_instance_stats,
            commands::instances::export_instances,
            commands::instances::import_instances,
            commands::instances::export_instances_to,
            commands::instances::preview_import,
            commands::instances::import_instances_file,
            commands::desktop::pick_instances_file,
            commands::desktop::open_comfyui,
            commands::desktop::open_fleet_comfyui,
            commands::instances::take_startup_notices,
            commands::instances::test_connection,
            commands::instances::set_api_key,
            commands::instances::set_secret_env,
            commands::instances::get_health_history,
            commands::instances::get_instance_log,
            commands::instances::export_instance_log,
            commands::instances::suggest_port,
            commands::instances::list_gpus,
            commands::settings::get_settings,
            commands::settings::set_settings,
            commands::settings::gateway_status,
            commands::settings::list_gateway_tokens,
            commands::settings::create_gateway_token,
            commands::settings::revoke_gateway_token,
            commands::settings::set_gateway_token,
            tray::tray_menu,
            commands::jobs::list_jobs,
            commands::jobs::instance_workflow_history,
            commands::jobs::instance_models,
            commands::jobs::refresh_instance_models,
            commands::jobs::submit_workflow,
            commands::jobs::submit_template,
            commands::jobs::list_templates,
            commands::jobs::cancel_job,
            commands::jobs::retry_job,
            commands::jobs::release_job,
            commands::jobs::remove_job,
            commands::jobs::job_output_image,
            commands::jobs::read_workflow_file,
            commands::jobs::create_template,
            commands::jobs::delete_template,
            commands::jobs::set_template_pins,
            commands::pools::list_pools,
            commands::pools::create_pool,
            commands::pools::update_pool,
            commands::pools::delete_pool,
            commands::projects::list_projects,
            commands::projects::create_project,
            commands::projects::update_project,
            commands::projects::delete_project,
            commands::projects::set_current_project,
            commands::desktop::open_instance_path,
            commands::desktop::pick_folder,
            commands::desktop::pick_workflow_file,
        ])
        .setup(move |app| {
            // Every part, in the engine's one order; the queue's and the
            // pools' tasks run on Tauri's runtime.
            let options = EngineOptions::new(paths, env, GatewayChoice::Settings);
            let opened = tauri::async_runtime::block_on(Engine::open(options))?;
            let engine = opened.engine;
            let notices = app.state::<StartupNotices>();
            for n in opened.notices {
                notices.add(n);
            }
            if let Err(e) = opened.gateway {
                let n = format!("The ComfyUI-compatible gateway is off: {e}. Choose another address in Settings.");
                tracing::warn!("{n}");
                notices.add(n);
            }
            let manager = engine.manager().clone();
            let pools = match engine.pools() {
                Ok(p) => p.clone(),
                Err(e) => {
                    tauri::async_runtime::block_on(engine.shutdown());
                    return Err(e.to_string().into());
                }
            };
            app.manage(manager.clone());
            app.manage(engine.queue().clone());
            app.manage(engine.projects().clone());
            app.manage(pools);
            app.manage(engine.paths().clone());
            app.manage(engine.clone());
            tray::install(app.handle(), manager.clone())?;
            notifier::spawn(app.handle().clone(), engine.bus().subscribe());
            heartbeat::spawn(app.handle().clone());
            events::bridge(app.handle().clone(), engine.bus().subscribe());
            signals::quit_on_signals(app.handle().clone());
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                for n in engine.begin().await {
                    handle.state::<StartupNotices>().add(n);
                }
            });
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| e.to_string())?;
    app.run(|app, event| {
        if let tauri::RunEvent::Exit = event {
            // Keep jobs on disk, stop what the app launched (unless kept),
            // write health histories, before the process ends.
            if let Some(engine) = app.try_state::<Engine>() {
                let engine = engine.inner().clone();
                tauri::async_runtime::block_on(async move { engine.shutdown().await });
            }
        }
    });
    Ok(())
}
