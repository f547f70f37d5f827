use leptos::prelude::*;

/// A small SVG line of values (oldest first), scaled to its own maximum.
#[component]
pub fn Sparkline(
    #[prop(into)] values: Signal<Vec<f64>>,
    #[prop(optional)] id: &'static str,
) -> impl IntoView {
    const W: f64 = 300.0;
    const H: f64 = 48.0;
    let points = move || {
        let v = values.get();
        if v.len() < 2 {
            return String::new();
        }
        let max = v.iter().cloned().fold(f64::MIN, f64::max).max(1e-9);
        let step = W / (v.len() - 1) as f64;
        v.iter()
            .enumerate()
            .map(|(n, y)| {
                format!(
                    "{:.1},{:.1}",
                    n as f64 * step,
                    H - 2.0 - (y / max) * (H - 4.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    view! {
        <svg class="sparkline" id=id viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none"
            data-points=move || values.with(Vec::len)>
            <polyline points=points fill="none" stroke="currentColor" stroke-width="1.5"/>
        </svg>
    }
}
