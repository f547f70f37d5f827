//! Logs go to stderr and to a daily file `storycore-engine.log.YYYY-MM-DD` in the
//! log folder. The level comes from `STORYCORE_LOG` (same syntax as `RUST_LOG`).

use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

pub const LOG_ENV: &str = "STORYCORE_LOG";
pub const LOG_FILE_PREFIX: &str = "storycore-engine.log";

/// Installs the global subscriber. Keep the guard alive until exit: dropping it
/// flushes the file writer.
pub fn init(log_dir: &Path) -> Result<WorkerGuard, String> {
    std::fs::create_dir_all(log_dir)
        .map_err(|e| format!("cannot create the log folder {}: {e}", log_dir.display()))?;
    let filter = match std::env::var(LOG_ENV) {
        Ok(s) => EnvFilter::try_new(&s).map_err(|e| {
            format!("{LOG_ENV}={s:?} is not a valid filter ({e}); try {LOG_ENV}=info or {LOG_ENV}=storycore_engine=debug")
        })?,
        Err(_) => EnvFilter::new("info"),
    };
    let file = tracing_appender::rolling::daily(log_dir, LOG_FILE_PREFIX);
    let (file, guard) = tracing_appender::non_blocking(file);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr))
        .with(fmt::layer().with_ansi(false).with_writer(file))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(guard)
}
