//! One component per file.

pub mod about_dialog;
pub mod main_panel;
pub mod status_line;
pub mod toolbar;
