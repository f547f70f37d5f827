//! SIGTERM (logout, `kill`, a service manager), SIGINT (Ctrl-C in a terminal)
//! and SIGHUP (the terminal closed) quit the app exactly like Quit does: the
//! exit handler stops what the app launched (unless "keep instances
//! running"), leaves the job journal on disk and writes the health histories.
//! Without this, the default action would end the process on the spot and
//! leave every ComfyUI it launched to the guardian.

use tokio::signal::unix::{signal, SignalKind};

pub fn quit_on_signals(app: tauri::AppHandle) {
    tauri::async_runtime::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!(
                "cannot listen for SIGTERM/SIGINT/SIGHUP: they will end the app at once"
            );
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!("{name} received: quitting as if Quit was chosen");
        app.exit(0);
    });
}
