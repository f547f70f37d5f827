// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    // WebKitGTK's accelerated compositing draws every frame through OpenGL;
    // without a GPU driver for the display (Xvfb, a VM, a remote desktop) that
    // is Mesa's software renderer, and the window cost 45% of a core with 50
    // instances updating once a second, against 5% without it (README,
    // "Window cost"). This page has no animations or 3D to gain from it.
    // Set before any thread starts, so WebKit reads it at start; a user who
    // wants compositing sets WEBKIT_DISABLE_COMPOSITING_MODE=0.
    #[cfg(target_os = "linux")]
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    storycore_engine::run()
}
