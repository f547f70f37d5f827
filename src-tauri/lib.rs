//! StoryCore Engine's app: the command line (`headless`: `serve`, `tokens`),
//! the log, and `shell`, the thin Tauri layer. The parts, their settings
//! and the engine that wires them are in `storycore_core`.

pub mod headless;
pub mod logging;
pub mod shell;

use std::process::ExitCode;

/// Starts the desktop app (or, with `serve`, the headless server) and
/// blocks until it exits.
pub fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match headless::parse(&args) {
        Ok(headless::Mode::Help) => {
            println!("{}", headless::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(m) => m,
        Err(e) => {
            eprintln!("storycore-engine: {e}");
            return ExitCode::from(2);
        }
    };
    // Configs, environment values, jobs and logs are the user's alone: what
    // the app creates from here on is 0600 (folders 0700). ComfyUI gets the
    // user's own umask back when the supervisor starts it.
    storycore_core::privacy::restrict_umask();
    let paths = match storycore_core::paths::AppPaths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("storycore-engine: {e}");
            return ExitCode::from(2);
        }
    };
    // The gateway's named tokens: a quick command, no log, no runtime.
    if let headless::Mode::Tokens(cmd) = &mode {
        return match headless::tokens(cmd, &paths.config_dir) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("storycore-engine: {e}");
                ExitCode::from(2)
            }
        };
    }
    let _log_guard = match logging::init(&paths.log_dir) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("storycore-engine: {e}");
            return ExitCode::from(2);
        }
    };
    // Folders an earlier version made 0755: what is inside becomes private
    // whatever its own modes.
    for dir in [&paths.config_dir, &paths.data_dir, &paths.log_dir] {
        if let Err(e) = storycore_core::privacy::tighten_dir(dir) {
            tracing::warn!(dir = %dir.display(), "could not make the folder private: {e}");
        }
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config_dir = %paths.config_dir.display(),
        log_dir = %paths.log_dir.display(),
        "starting"
    );
    let settings = match storycore_core::settings::EnvSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("storycore-engine: {e}");
            return ExitCode::from(2);
        }
    };
    let ran = match mode {
        headless::Mode::Serve(args) => headless::run(paths, settings, args),
        _ => shell::run(paths, settings),
    };
    match ran {
        Ok(()) => {
            tracing::info!("exited");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("the app failed: {e}");
            eprintln!("storycore-engine: {e}");
            ExitCode::FAILURE
        }
    }
}
