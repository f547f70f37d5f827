use crate::format::{health_class, health_label, status_class};
use leptos::prelude::*;
use storycore_types::{HealthStatus, InstanceStatus};

/// Status and health as colour AND words (never colour alone).
#[component]
pub fn InstanceHealthIndicator(
    #[prop(into)] status: Signal<InstanceStatus>,
    #[prop(into)] health: Signal<HealthStatus>,
) -> impl IntoView {
    view! {
        <span class="health-indicator">
            <span class=move || format!("badge status-badge {}", status_class(status.get()))>
                {move || status.get().as_str()}
            </span>
            <span class=move || format!("badge health-badge {}", health_class(health.get()))>
                <span class="dot"></span>
                {move || health_label(health.get())}
            </span>
        </span>
    }
}
