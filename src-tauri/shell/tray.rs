//! The tray: its icon and tooltip follow the worst health in the fleet; its
//! menu lists the instances (the active one checked; choosing one makes it
//! active), then start all, stop all, show window, quit. It is rebuilt from the
//! manager's events, never polled.

use std::sync::Mutex;
use std::time::Duration;
use storycore_core::manager::InstanceManager;
use storycore_types::{AppEvent, HealthStatus, Instance, InstanceStatus, TrayItem};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, MenuItemKind, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};
use tokio::sync::broadcast::error::RecvError;

const TRAY_ID: &str = "main";
const INSTANCE_PREFIX: &str = "instance:";

/// The menu as last built, so the UI and tests can read it back, and the
/// picture it was built from, so an unchanged picture is not rebuilt.
#[derive(Default)]
pub struct TrayMenu(Mutex<Option<Menu<Wry>>>, Mutex<Option<Picture>>);

/// What the tray shows, computed once per change from one snapshot of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    look: Look,
    tooltip: String,
    /// (id, text, checked) of each instance entry.
    entries: Vec<(String, String, bool)>,
}

fn picture(manager: &InstanceManager) -> Picture {
    let fleet = manager.list();
    let active = manager.active_instance().map(|i| i.id);
    let look = look(&fleet);
    Picture {
        look,
        tooltip: tooltip(&fleet, look),
        entries: fleet
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    format!(
                        "{} ({}, {})",
                        i.name,
                        i.status.as_str(),
                        crate_health(i.health.status)
                    ),
                    active.as_deref() == Some(i.id.as_str()),
                )
            })
            .collect(),
    }
}

/// The fleet's overall look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Look {
    Idle,
    Healthy,
    Degraded,
    Unhealthy,
}

fn look(fleet: &[Instance]) -> Look {
    fleet
        .iter()
        .filter(|i| i.status != InstanceStatus::Stopped)
        .map(|i| match (i.status, i.health.status) {
            (InstanceStatus::Error, _) | (_, HealthStatus::Unhealthy) => Look::Unhealthy,
            (_, HealthStatus::Degraded) => Look::Degraded,
            (_, HealthStatus::Healthy) => Look::Healthy,
            _ => Look::Idle,
        })
        .max()
        .unwrap_or(Look::Idle)
}

fn icon(look: Look) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match look {
        Look::Idle => include_bytes!("../../icons/tray-idle.png").as_slice(),
        Look::Healthy => include_bytes!("../../icons/tray-healthy.png").as_slice(),
        Look::Degraded => include_bytes!("../../icons/tray-degraded.png").as_slice(),
        Look::Unhealthy => include_bytes!("../../icons/tray-unhealthy.png").as_slice(),
    })
}

fn tooltip(fleet: &[Instance], look: Look) -> String {
    let running = fleet
        .iter()
        .filter(|i| i.status == InstanceStatus::Running)
        .count();
    let state = match look {
        Look::Idle => "nothing running",
        Look::Healthy => "all healthy",
        Look::Degraded => "degraded",
        Look::Unhealthy => "an instance is unhealthy",
    };
    format!(
        "StoryCore Engine: {running} of {} running, {state}",
        fleet.len()
    )
}

fn build_menu(app: &AppHandle, pic: &Picture) -> tauri::Result<Menu<Wry>> {
    let menu = Menu::new(app)?;
    for (id, text, checked) in &pic.entries {
        let item = CheckMenuItem::with_id(
            app,
            format!("{INSTANCE_PREFIX}{id}"),
            text,
            true,
            *checked,
            None::<&str>,
        )?;
        menu.append(&item)?;
    }
    let any = !pic.entries.is_empty();
    if any {
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    let items: [&dyn IsMenuItem<Wry>; 4] = [
        &MenuItem::with_id(app, "start-all", "Start all", any, None::<&str>)?,
        &MenuItem::with_id(app, "stop-all", "Stop all", any, None::<&str>)?,
        &MenuItem::with_id(app, "show", "Show StoryCore Engine", true, None::<&str>)?,
        &MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?,
    ];
    menu.append_items(&items)?;
    Ok(menu)
}

fn crate_health(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Unknown => "not checked",
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

/// Rebuilds menu, icon and tooltip when the picture changed (health figures
/// such as response times stream in often and do not change the tray).
fn refresh(app: &AppHandle, pic: Picture) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return Ok(());
    };
    let state = app.state::<TrayMenu>();
    if state.1.lock().unwrap().as_ref() == Some(&pic) {
        return Ok(());
    }
    let menu = build_menu(app, &pic)?;
    tray.set_menu(Some(menu.clone()))?;
    tray.set_icon(Some(icon(pic.look)?))?;
    tray.set_tooltip(Some(pic.tooltip.clone()))?;
    *state.0.lock().unwrap() = Some(menu);
    *state.1.lock().unwrap() = Some(pic);
    Ok(())
}

pub fn install(app: &AppHandle, manager: InstanceManager) -> tauri::Result<()> {
    app.manage(TrayMenu::default());
    let pic = picture(&manager);
    let menu = build_menu(app, &pic)?;
    let m = manager.clone();
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(pic.look)?)
        .tooltip(&pic.tooltip)
        .menu(&menu)
        .on_menu_event(move |app, event| on_menu(app, &m, event.id().as_ref()))
        .build(app)?;
    let state = app.state::<TrayMenu>();
    *state.0.lock().unwrap() = Some(menu);
    *state.1.lock().unwrap() = Some(pic);

    let app = app.clone();
    let mut rx = manager.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(
                    AppEvent::InstanceUpdated(_)
                    | AppEvent::InstanceRemoved { .. }
                    | AppEvent::ActiveInstanceChanged { .. }
                    | AppEvent::HealthChanged { .. },
                )
                | Err(RecvError::Lagged(_)) => {
                    // Coalesce a burst of events into one rebuild.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                    // Compared here: the main thread (which also runs the
                    // window) is woken only when the tray must change.
                    let pic = picture(&manager);
                    let state = app.state::<TrayMenu>();
                    if state.1.lock().unwrap().as_ref() == Some(&pic) {
                        continue;
                    }
                    let a = app.clone();
                    let _ = app.run_on_main_thread(move || {
                        if let Err(e) = refresh(&a, pic) {
                            tracing::warn!("could not update the tray: {e}");
                        }
                    });
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });
    Ok(())
}

fn on_menu(app: &AppHandle, manager: &InstanceManager, id: &str) {
    let m = manager.clone();
    if let Some(instance) = id.strip_prefix(INSTANCE_PREFIX) {
        let instance = instance.to_string();
        tauri::async_runtime::spawn(async move {
            if let Err(e) = m.set_active(Some(&instance)).await {
                tracing::warn!("tray: {e}");
            }
        });
        return;
    }
    match id {
        "start-all" | "stop-all" => {
            let start = id == "start-all";
            tauri::async_runtime::spawn(async move {
                for i in m.list() {
                    let r = if start && i.status == InstanceStatus::Stopped {
                        m.start(&i.id).await.map(|_| ())
                    } else if !start
                        && matches!(
                            i.status,
                            InstanceStatus::Running
                                | InstanceStatus::Paused
                                | InstanceStatus::Starting
                        )
                    {
                        m.stop(&i.id).await.map(|_| ())
                    } else {
                        Ok(())
                    };
                    if let Err(e) = r {
                        tracing::warn!("tray: {e}");
                    }
                }
            });
        }
        "show" => super::window::show_main_window(app),
        "quit" => {
            tracing::info!("quit from the tray");
            app.exit(0)
        }
        _ => {}
    }
}

/// The tray menu as built: for the UI and the tests.
#[tauri::command]
pub fn tray_menu(state: tauri::State<'_, TrayMenu>) -> Vec<TrayItem> {
    let guard = state.0.lock().unwrap();
    let Some(menu) = guard.as_ref() else {
        return Vec::new();
    };
    menu.items()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| match item {
            MenuItemKind::Check(c) => Some(TrayItem {
                id: c.id().0.clone(),
                text: c.text().unwrap_or_default(),
                checked: c.is_checked().ok(),
            }),
            MenuItemKind::MenuItem(i) => Some(TrayItem {
                id: i.id().0.clone(),
                text: i.text().unwrap_or_default(),
                checked: None,
            }),
            _ => None,
        })
        .collect()
}
