//! StoryCore Engine's UI. Components render what the backend's commands answer and
//! what its events say; all calls to the backend go through [`api`].

pub mod api;
mod app;
mod components;
mod format;
mod state;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point, called by the generated JS once the WASM is loaded.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
