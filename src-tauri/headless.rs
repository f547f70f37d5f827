//! `storycore-engine serve [--gateway ADDR]`: the instance manager, the
//! supervisor, the job queue and the ComfyUI-compatible gateway, with no
//! window and no display (a GPU server, the second box on the LAN). Logs
//! go to stderr and the log folder; SIGTERM or SIGINT stops it cleanly:
//! the gateway closes, jobs stay on disk, and what it launched is stopped
//! (unless "keep instances running" is on).

use crate::app_settings::SettingsStore;
use crate::paths::AppPaths;
use crate::settings::EnvSettings;
use std::net::SocketAddr;
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::gateway::{Gateway, DEFAULT_ADDR};
use storycore_core::manager::{InstanceManager, ManagerOptions};

pub const USAGE: &str = "usage: storycore-engine             the desktop app
       storycore-engine serve [--gateway ADDR]
                                    no window: the fleet and its queue behind a
                                    ComfyUI-compatible gateway on ADDR
                                    (default 127.0.0.1:8288); an address on the
                                    network needs STORYCORE_GATEWAY_TOKEN (sent
                                    as STORYCORE_GATEWAY_AUTH says: bearer,
                                    basic or header:<Name>)";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Desktop,
    Serve { gateway: SocketAddr },
    Help,
}

/// Reads the arguments after the program's name. Only `serve` and the help
/// flags are the app's own: anything else is left to the desktop app (a
/// second launch's arguments go to the running window).
pub fn parse(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => Ok(Mode::Help),
        Some("serve") => {
            let mut gateway: SocketAddr = DEFAULT_ADDR.parse().expect("a valid default");
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                let value = match a.as_str() {
                    "--gateway" => rest.next().cloned(),
                    s if s.starts_with("--gateway=") => Some(s["--gateway=".len()..].to_string()),
                    "-h" | "--help" => return Ok(Mode::Help),
                    other => return Err(format!("serve does not take '{other}'\n{USAGE}")),
                };
                let value = value.ok_or_else(|| {
                    format!("--gateway needs an address, such as 127.0.0.1:8288\n{USAGE}")
                })?;
                gateway = value.parse().map_err(|_| {
                    format!(
                        "--gateway '{value}' is not an address and port, such as 127.0.0.1:8288"
                    )
                })?;
            }
            Ok(Mode::Serve { gateway })
        }
        _ => Ok(Mode::Desktop),
    }
}

/// Runs until SIGTERM or SIGINT.
pub fn run(paths: AppPaths, env: EnvSettings, gateway: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(paths, env, gateway))
}

async fn serve(paths: AppPaths, env: EnvSettings, addr: SocketAddr) -> Result<(), String> {
    let (settings_store, notice) = SettingsStore::load(&paths.config_dir);
    let settings = settings_store.get();
    let mut options = ManagerOptions::new(&paths.config_dir);
    options.data_dir = paths.data_dir.clone();
    options.health = crate::shell::health_policy_of(&settings, &env);
    let (manager, report) = InstanceManager::open(options)
        .map_err(|e| format!("cannot open the instance files: {e}"))?;
    for n in notice.iter().chain(&report.notices) {
        tracing::warn!("{n}");
    }
    let (projects, notices, legacy) = storycore_core::projects::Projects::open(&paths.config_dir)
        .map_err(|e| format!("cannot open the projects file: {e}"))?;
    for n in notices
        .into_iter()
        .chain(projects.migrate(&manager, legacy).await)
    {
        tracing::warn!("{n}");
    }
    manager.set_keep_running(settings.keep_instances_running);
    let dispatch = DispatchOptions {
        retention: crate::shell::retention_of(&settings),
        policy: storycore_core::dispatch::Policy::from_setting(settings.placement),
        speculate: settings.copies_near_the_end,
        ..DispatchOptions::default()
    };
    let (queue, recovered) = JobQueue::open(manager.clone(), &paths.config_dir, dispatch)
        .map_err(|e| format!("cannot open the job queue: {e}"))?;
    for n in &recovered.notices {
        tracing::warn!("{n}");
    }
    let q = queue.clone();
    manager.set_load_source(std::sync::Arc::new(move || q.in_flight()));
    for n in manager.load_secrets().await {
        tracing::warn!("{n}");
    }
    let access = env.gateway_access.clone().unwrap_or_default();
    let gateway = match Gateway::start_with(queue.clone(), manager.clone(), addr, access).await {
        Ok(g) => g,
        Err(e) => {
            queue.shutdown().await;
            manager.shutdown().await;
            return Err(e.to_string());
        }
    };
    let kept = manager.reattach_local().await;
    if !kept.is_empty() {
        tracing::info!(?kept, "re-attached to instances left running");
    }
    for (id, e) in manager.start_auto().await {
        tracing::warn!(%id, "autoStart failed: {e}");
    }
    // Pools scale here too: a headless box is where bursts arrive.
    let pools = match storycore_core::pool::Pools::open(
        &paths.config_dir,
        manager.clone(),
        queue.clone(),
        std::sync::Arc::new(storycore_core::pool::memory::SystemMemory::default()),
        storycore_core::pool::PoolOptions::default(),
    ) {
        Ok((pools, notices)) => {
            for n in notices {
                tracing::warn!("{n}");
            }
            Some(pools)
        }
        Err(e) => {
            tracing::warn!("pools are off: pools.json could not be read: {e}");
            None
        }
    };
    tracing::info!(
        "serving: a ComfyUI-compatible gateway on http://{} for {} instance(s); SIGTERM or Ctrl+C stops",
        gateway.addr(),
        manager.list().len()
    );
    let signal = wait_for_stop().await;
    tracing::info!("{signal}: stopping");
    gateway.stop().await;
    if let Some(p) = pools {
        p.shutdown().await;
    }
    queue.shutdown().await;
    if settings_store.get().keep_instances_running {
        manager.detach_all().await;
    }
    manager.shutdown().await;
    Ok(())
}

async fn wait_for_stop() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl+C through tokio's own.
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_line() {
        assert_eq!(parse(&args(&[])), Ok(Mode::Desktop));
        assert_eq!(
            parse(&args(&["serve"])),
            Ok(Mode::Serve {
                gateway: "127.0.0.1:8288".parse().unwrap()
            })
        );
        assert_eq!(
            parse(&args(&["serve", "--gateway", "127.0.0.1:9000"])),
            Ok(Mode::Serve {
                gateway: "127.0.0.1:9000".parse().unwrap()
            })
        );
        assert_eq!(
            parse(&args(&["serve", "--gateway=[::1]:9000"])),
            Ok(Mode::Serve {
                gateway: "[::1]:9000".parse().unwrap()
            })
        );
        assert!(parse(&args(&["serve", "--gateway"]))
            .unwrap_err()
            .contains("needs an address"));
        assert!(parse(&args(&["serve", "--gateway", "here"]))
            .unwrap_err()
            .contains("not an address"));
        assert!(parse(&args(&["serve", "--bogus"]))
            .unwrap_err()
            .contains("'--bogus'"));
        assert_eq!(parse(&args(&["--help"])), Ok(Mode::Help));
    }
}
