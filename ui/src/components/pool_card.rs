use super::instance_card::InstanceCard;
use super::sparkline::Sparkline;
use crate::api;
use crate::format::local_time;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use storycore_types::{PoolAction, PoolView};

/// Every pool's card, above the other instances.
#[component]
pub fn PoolSection() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    view! {
        <div class="pool-section" id="pool-section">
            <For each=move || fleet.pool_ids.get() key=|id| id.clone() children=move |id| {
                view! { <PoolCard id=id/> }
            }/>
        </div>
    }
}

fn action_label(a: PoolAction) -> &'static str {
    match a {
        PoolAction::Start => "started",
        PoolAction::Stop => "stopped",
        PoolAction::NotStarted => "not started",
        PoolAction::LimitLowered => "limit lowered",
        PoolAction::Measured => "measured",
    }
}

/// A pool: its members (as instance cards), its size and target and why,
/// the plot of its size over time, and its decisions with their reasons.
#[component]
pub fn PoolCard(id: String) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let key = id.clone();
    let pool = Memo::new(move |_| {
        fleet
            .pools
            .with(|l| l.iter().find(|p| p.config.id == key).cloned())
    });
    let get = move |f: fn(&PoolView) -> String| {
        move || pool.with(|p| p.as_ref().map(f).unwrap_or_default())
    };
    // Only members whose instance the window already has: a pool's update
    // can arrive before its new member's, and a card made for an id
    // without its instance stays empty for good (the card's `For` does not
    // make it again), so the member would never show.
    let members = Memo::new(move |_| {
        let known = fleet.ids.get();
        pool.with(|p| {
            p.as_ref()
                .map(|p| {
                    p.members
                        .iter()
                        .filter(|m| known.contains(m))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    let sizes = Signal::derive(move || {
        pool.with(|p| {
            p.as_ref()
                .map(|p| {
                    p.history
                        .iter()
                        .map(|h| f64::from(h.size))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    let (edit_id, del_id) = (id.clone(), id.clone());
    view! {
        <section class="pool-card" id=format!("pool-{id}") data-id=id.clone()
            data-size=move || pool.with(|p| p.as_ref().map_or(0, |p| p.size)).to_string()
            data-target=move || pool.with(|p| p.as_ref().map_or(0, |p| p.target)).to_string()>
            <header class="pool-header">
                <h2 class="pool-name">{get(|p| p.config.name.clone())}</h2>
                <span class="pool-size" title="Members starting or running, and what the pool aims at now">
                    {get(|p| format!("{} member(s) starting or running, target {} (min {}, max {})",
                        p.size, p.target, p.config.min_members, p.config.max_members))}
                </span>
                <span class="spacer"></span>
                <button class="pool-edit" on:click=move |_| fleet.pool_editor.set(Some(Some(edit_id.clone())))>"Settings\u{2026}"</button>
                <button class="pool-delete" title="Stop and delete the pool's members, then the pool"
                    on:click=move |_| {
                        let id = del_id.clone();
                        run_action(fleet, async move { api::delete_pool(&id).await })
                    }>"Delete"</button>
            </header>
            <p class="pool-why">
                <span class="muted">"Why: "</span>
                <span class="pool-why-text">{get(|p| p.why.clone())}</span>
            </p>
            <p class="pool-facts muted">
                {get(|p| {
                    let need = match (p.config.memory_need_mib, p.config.measured_need_mib) {
                        (Some(n), _) => format!("{n} MiB per member (set)"),
                        (None, Some(n)) => format!("{n} MiB per member (measured)"),
                        (None, None) => "memory per member not known yet".into(),
                    };
                    let limits = p.config.device_limits.iter()
                        .map(|(d, n)| format!("at most {n} on {}", if d == "cpu" { "the CPU".to_string() } else { format!("GPU {d}") }))
                        .collect::<Vec<_>>();
                    let limits = if limits.is_empty() { String::new() } else { format!(" · {}", limits.join(", ")) };
                    format!("Adds members when the expected wait passes {} s · stops them after {} s idle · {need}{limits}",
                        p.config.scale_up_wait_secs, p.config.idle_timeout_secs)
                })}
            </p>
            <div class="pool-plot" title="Members over time">
                <Sparkline values=sizes id="pool-plot"/>
            </div>
            <div class="instance-grid pool-members">
                <For each=move || members.get() key=|id| id.clone() children=move |id| {
                    view! { <InstanceCard id=id/> }
                }/>
                <Show when=move || members.with(Vec::is_empty)>
                    <p class="muted pool-empty">"No member: one starts when work waits."</p>
                </Show>
            </div>
            <details class="pool-decisions">
                <summary>{get(|p| format!("Decisions ({})", p.decisions.len()))}</summary>
                <ol class="pool-decision-list">
                    {move || pool.with(|p| p.as_ref().map(|p| p.decisions.iter().rev().map(|d| {
                        let member = d.member.clone().unwrap_or_default();
                        view! {
                            <li class="pool-decision" data-action=action_label(d.action)>
                                <span class="muted">{local_time(d.at)}</span>" "
                                <strong>{action_label(d.action)}</strong>" "
                                <span>{member}</span>" "
                                <span class="reason">{d.reason.clone()}</span>
                            </li>
                        }
                    }).collect_view()))}
                </ol>
            </details>
        </section>
    }
}
