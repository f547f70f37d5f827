//! The Tauri layer: window, commands, events, tray. Thin by design: it parses,
//! calls the part that owns the work, and maps errors to `ApiError`.

mod commands;
mod events;
mod heartbeat;
mod notifier;
mod signals;
mod tray;

use crate::app_settings::{self, SettingsStore};
use crate::paths::AppPaths;
use crate::settings::EnvSettings;
use std::sync::Mutex;
use storycore_core::dispatch::{DispatchOptions, JobQueue, Retention};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use tauri::Manager;

pub use events::emit;

/// Label of the one main window (see tauri.conf.json).
pub const MAIN_WINDOW: &str = "main";

/// What starting found that the user should read once (a config recovered
/// from its backup, a migration, read-only mode, jobs recovered or pruned):
/// the UI takes them when it loads, and they are then gone.
#[derive(Default)]
pub struct StartupNotices(pub Mutex<Vec<String>>);

impl StartupNotices {
    pub fn add(&self, notice: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice);
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The health policy of the settings; `STORYCORE_HEALTH_INTERVAL_MS`, when
/// set, overrides their interval (tests, a quick look at one instance).
pub(crate) fn health_policy_of(
    s: &storycore_types::AppSettings,
    env: &EnvSettings,
) -> storycore_core::health::HealthPolicy {
    let mut policy = storycore_core::health::HealthPolicy::from_settings(&s.health);
    if let Some(every) = env.health_interval {
        // Probes read RAM and VRAM each time; the queue keeps its own pace
        // (`resource_interval`): a probe every second costs one request.
        policy.interval = every;
    }
    policy
}

/// The gateway the desktop app runs, as the settings say.
#[derive(Default)]
pub struct GatewaySlot(pub tokio::sync::Mutex<Option<storycore_core::gateway::Gateway>>);

/// A loopback gateway over the same queue for the app's own "ComfyUI
/// (fleet)" window while the gateway is on the network (where it wants a
/// token and serves HTTPS that the webview does not trust); stopped when
/// the window closes.
#[derive(Default)]
pub struct WindowGateway(pub tokio::sync::Mutex<Option<storycore_core::gateway::Gateway>>);

/// Where the gateway listens: `STORYCORE_GATEWAY` when set, else the
/// settings (`None`: off).
pub(crate) fn gateway_addr(
    s: &storycore_types::AppSettings,
    env: &EnvSettings,
) -> Result<Option<std::net::SocketAddr>, String> {
    if let Some(o) = env.gateway {
        return Ok(o);
    }
    if !s.gateway.enabled {
        return Ok(None);
    }
    s.gateway.address.trim().parse().map(Some).map_err(|_| {
        format!(
            "the gateway address '{}' is not an address and port, such as 127.0.0.1:8288",
            s.gateway.address
        )
    })
}

/// Where the gateway's token is kept (the OS keyring).
pub(crate) const GATEWAY_TOKEN_REF: &str = "gateway/token";

/// Who may use the gateway: the token of `STORYCORE_GATEWAY_TOKEN` when
/// set, else the one set in Settings (read from the keyring), else anyone
/// on this machine. Blocks (a keyring read) when a token is set.
pub(crate) fn gateway_access(
    s: &storycore_types::AppSettings,
    env: &EnvSettings,
    config_dir: &std::path::Path,
) -> Result<storycore_core::gateway::Access, String> {
    let access = gateway_token(s, env, config_dir)?
        .with_tokens(storycore_core::gateway::TokenBook::open(config_dir))
        .with_max_waiting(s.gateway.max_waiting_per_person);
    let network = gateway_addr(s, env)
        .ok()
        .flatten()
        .is_some_and(|a| !a.ip().is_loopback());
    if !network {
        return Ok(access);
    }
    if s.gateway.plain_http {
        return Ok(access.with_plain_http());
    }
    use storycore_core::gateway::TlsIdentity;
    let tls = match (&s.gateway.tls_cert, &s.gateway.tls_key) {
        (Some(cert), Some(key)) => {
            TlsIdentity::from_files(std::path::Path::new(cert), std::path::Path::new(key))?
        }
        _ => TlsIdentity::generated(
            &config_dir.join(storycore_core::gateway::TLS_FOLDER),
            &storycore_core::gateway::certificate_names(access.hosts()),
        )?,
    };
    Ok(access.with_tls(tls))
}

/// The token part of [`gateway_access`], and the host names.
fn gateway_token(
    s: &storycore_types::AppSettings,
    env: &EnvSettings,
    config_dir: &std::path::Path,
) -> Result<storycore_core::gateway::Access, String> {
    use storycore_core::gateway::Access;
    let hosts = env
        .gateway_hosts
        .as_deref()
        .unwrap_or(&s.gateway.allowed_hosts);
    if let Some(a) = &env.gateway_access {
        return a.clone().with_hosts(hosts);
    }
    let Some(reference) = &s.gateway.token_ref else {
        return Access::open().with_hosts(hosts);
    };
    let auth =
        storycore_types::KeyAuth::parse(s.gateway.token_auth.as_deref().unwrap_or("bearer"))?;
    let token = storycore_core::secrets::Vault::new(config_dir)
        .load(reference)
        .map_err(|e| format!("the gateway's token could not be read: {e}"))?
        .ok_or_else(|| {
            "the gateway's token is no longer in the keyring: set it again in Settings".to_string()
        })?;
    Access::token(&token, auth)?.with_hosts(hosts)
}

/// Stops the gateway that runs, if any, and starts one on `addr`.
pub(crate) async fn apply_gateway(
    slot: &GatewaySlot,
    queue: JobQueue,
    manager: InstanceManager,
    addr: Option<std::net::SocketAddr>,
    access: storycore_core::gateway::Access,
) -> Result<Option<std::net::SocketAddr>, String> {
    let mut running = slot.0.lock().await;
    if let Some(old) = running.take() {
        old.stop().await;
    }
    let Some(addr) = addr else {
        tracing::info!("the gateway is off");
        return Ok(None);
    };
    let gw = storycore_core::gateway::Gateway::start_with(queue, manager, addr, access)
        .await
        .map_err(|e| e.to_string())?;
    let at = gw.addr();
    *running = Some(gw);
    Ok(Some(at))
}

/// The retention settings as the job queue takes them.
pub(crate) fn retention_of(s: &storycore_types::AppSettings) -> Retention {
    Retention::from_settings(s.job_retention_days, s.max_finished_jobs)
}

/// Builds and runs the Tauri app until the user quits.
pub fn run(paths: AppPaths, settings: EnvSettings) -> Result<(), String> {
    let (settings_store, notice) = SettingsStore::load(&paths.config_dir);
    let mut options = ManagerOptions::new(&paths.config_dir);
    options.data_dir = paths.data_dir.clone();
    options.health = health_policy_of(&settings_store.get(), &settings);
    let (manager, mut report) = InstanceManager::open(options)
        .map_err(|e| format!("cannot open the instance files: {e}"))?;
    let config_dir = paths.config_dir.clone();
    if let Some(n) = notice {
        tracing::warn!("{n}");
        report.notices.push(n);
    }
    if let Some(m) = &report.migration {
        tracing::info!(?m, "single-instance config looked at");
    }
    let notices = StartupNotices::default();
    for n in &report.notices {
        notices.add(n.clone());
    }
    let (projects, project_notices, legacy_projects) =
        storycore_core::projects::Projects::open(&paths.config_dir)
            .map_err(|e| format!("cannot open the projects file: {e}"))?;
    for n in project_notices {
        tracing::warn!("{n}");
        notices.add(n);
    }
    let current = settings_store.get();
    manager.set_keep_running(current.keep_instances_running);
    let dispatch_options = DispatchOptions {
        retention: retention_of(&current),
        policy: storycore_core::dispatch::Policy::from_setting(current.placement),
        speculate: current.copies_near_the_end,
        ..DispatchOptions::default()
    };
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
        .manage(settings_store)
        .manage(paths)
        .manage(manager.clone())
        .manage(projects.clone())
        .manage(notices)
        .manage(commands::desktop::EditorWindows::default())
        .manage(GatewaySlot::default())
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
            app_settings::get_settings,
            app_settings::set_settings,
            app_settings::gateway_status,
            app_settings::list_gateway_tokens,
            app_settings::create_gateway_token,
            app_settings::revoke_gateway_token,
            app_settings::set_gateway_token,
            tray::tray_menu,
            commands::jobs::list_jobs,
            commands::jobs::instance_workflow_history,
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
            tray::install(app.handle(), manager.clone())?;
            notifier::spawn(app.handle().clone(), manager.subscribe());
            // Projects that still name the single-instance server get its
            // instance (created by the migration above, or now).
            let migrated =
                tauri::async_runtime::block_on(projects.migrate(&manager, legacy_projects));
            for n in migrated {
                tracing::info!("{n}");
                app.state::<StartupNotices>().add(n);
            }
            // The job queue spawns its tasks on Tauri's runtime; jobs left in
            // flight by a previous run are looked up on their instances now.
            let (queue, recovered) = tauri::async_runtime::block_on(async {
                JobQueue::open(manager.clone(), &config_dir, dispatch_options)
            })
            .map_err(|e| format!("cannot open the job queue: {e}"))?;
            for n in &recovered.notices {
                tracing::warn!("{n}");
                app.state::<StartupNotices>().add(n.clone());
            }
            let q = queue.clone();
            manager.set_load_source(std::sync::Arc::new(move || q.in_flight()));
            // The gateway: a failure to listen is said, not fatal.
            let now = app.state::<SettingsStore>().get();
            let wanted = gateway_addr(&now, &settings)
                .and_then(|addr| Ok((addr, gateway_access(&now, &settings, &config_dir)?)));
            let started = match wanted {
                Ok((addr, access)) => tauri::async_runtime::block_on(apply_gateway(
                    &app.state::<GatewaySlot>(),
                    queue.clone(),
                    manager.clone(),
                    addr,
                    access,
                )),
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                let n = format!("The ComfyUI-compatible gateway is off: {e}. Choose another address in Settings.");
                tracing::warn!("{n}");
                app.state::<StartupNotices>().add(n);
            }
            // Pools: members started and stopped by the backlog, within the
            // memory NVML (or, without GPUs, the system) reports.
            let (pools, pool_notices) = tauri::async_runtime::block_on(async {
                storycore_core::pool::Pools::open(
                    &config_dir,
                    manager.clone(),
                    queue.clone(),
                    std::sync::Arc::new(storycore_core::pool::memory::SystemMemory::default()),
                    storycore_core::pool::PoolOptions {
                        hold: true,
                        ..Default::default()
                    },
                )
            })
            .map_err(|e| format!("cannot open the pools file: {e}"))?;
            for n in pool_notices {
                tracing::warn!("{n}");
                app.state::<StartupNotices>().add(n);
            }
            app.manage(pools);
            app.manage(queue);
            heartbeat::spawn(app.handle().clone());
            events::bridge(app.handle().clone(), manager.subscribe());
            signals::quit_on_signals(app.handle().clone());
            let m = manager.clone();
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                // API keys first (a D-Bus round trip each, off the window's
                // start): the monitors of what starts next send them.
                for n in m.load_secrets().await {
                    handle.state::<StartupNotices>().add(n);
                }
                // Re-attach before autoStart, so a kept process is not started twice.
                let kept = m.reattach_local().await;
                if !kept.is_empty() {
                    tracing::info!(?kept, "re-attached to instances left running");
                }
                for (id, e) in m.start_auto().await {
                    tracing::warn!(%id, "autoStart failed: {e}");
                }
                // Members kept running are re-attached: pools may decide.
                handle.state::<storycore_core::pool::Pools>().begin();
            });
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| e.to_string())?;
    app.run(|app, event| {
        if let tauri::RunEvent::Exit = event {
            // Keep jobs on disk, stop what the app launched, write health
            // histories, before the process ends.
            let m = app.state::<InstanceManager>().inner().clone();
            let q = app.try_state::<JobQueue>().map(|q| q.inner().clone());
            let pools = app
                .try_state::<storycore_core::pool::Pools>()
                .map(|p| p.inner().clone());
            let keep = app.state::<SettingsStore>().get().keep_instances_running;
            let slot = app.try_state::<GatewaySlot>();
            tauri::async_runtime::block_on(async move {
                if let Some(slot) = slot {
                    if let Some(g) = slot.0.lock().await.take() {
                        g.stop().await;
                    }
                }
                // Pools first: no member is started or stopped while the
                // rest shuts down.
                if let Some(p) = pools {
                    p.shutdown().await;
                }
                if let Some(q) = q {
                    q.shutdown().await;
                }
                if keep {
                    m.detach_all().await;
                }
                m.shutdown().await;
            });
        }
    });
    Ok(())
}

/// Shows, un-minimises and focuses the main window.
pub(crate) fn show_main_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}
