//! The tray icon and its menu. The icon is the project's own (icons/tray.png).

use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::AppHandle;

const TRAY_ICON: &[u8] = include_bytes!("../../icons/tray.png");

pub fn install(app: &AppHandle) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show StoryCore Engine", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &quit])?;
    TrayIconBuilder::with_id("main")
        .icon(tauri::image::Image::from_bytes(TRAY_ICON)?)
        .tooltip("StoryCore Engine")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "show" => super::show_main_window(app),
            "quit" => {
                tracing::info!("quit from the tray");
                app.exit(0)
            }
            _ => {}
        })
        .build(app)?;
    Ok(())
}
