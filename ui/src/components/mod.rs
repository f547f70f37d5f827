//! One component per file, named as in the design's component tree.

pub mod about_dialog;
pub mod active_instance_switcher;
pub mod alert_toasts;
pub mod confirm_delete_dialog;
pub mod gateway_people;
pub mod import_dialog;
pub mod instance_card;
pub mod instance_details;
pub mod instance_editor_dialog;
pub mod instance_grid;
pub mod instance_health_indicator;
pub mod instance_list_header;
pub mod instance_panel;
pub mod pool_card;
pub mod pool_dialog;
pub mod project_dialog;
pub mod settings_dialog;
pub mod sparkline;
pub mod status_line;
pub mod toolbar;
pub mod workflows_view;
