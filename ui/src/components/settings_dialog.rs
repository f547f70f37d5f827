use crate::api;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::{AppSettings, GatewaySettings, NotificationSettings, PlacementPolicy};

type Flag = fn(&mut NotificationSettings) -> &mut bool;

const PLACEMENTS: [(PlacementPolicy, &str, &str); 5] = [
    (
        PlacementPolicy::EarliestFinish,
        "earliestFinish",
        "Earliest expected finish (measured speed and load)",
    ),
    (
        PlacementPolicy::FewestInFlight,
        "fewestInFlight",
        "Fewest jobs in flight",
    ),
    (
        PlacementPolicy::ShortestQueue,
        "shortestQueue",
        "Shortest queue, as the instance reports it",
    ),
    (PlacementPolicy::RoundRobin, "roundRobin", "Round-robin"),
    (
        PlacementPolicy::IdleFirst,
        "idleFirst",
        "Only idle instances",
    ),
];

/// Which alerts become OS notifications; saved at once to settings.json.
#[component]
pub fn SettingsDialog(on_close: Callback<()>) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let settings = RwSignal::new(None::<AppSettings>);
    // Where the gateway listens, read again after each change.
    let listening = RwSignal::new(None::<storycore_types::GatewayStatus>);
    let refresh = move || {
        spawn_local(async move {
            listening.set(api::gateway_status().await.ok().flatten());
        })
    };
    refresh();
    // Every change is saved through `save`, one save at a time, each sending
    // the settings as they are when it leaves: a change made while a save is
    // on its way goes out right after it. Saves sent side by side could land
    // in either order, the older then undoing the newer (seen: the gateway's
    // address changed and the gateway switched on at once, left it off while
    // the box showed it on). A refused save shows why; with `show_in_force`
    // (the number fields) the fields show again what is in force, otherwise
    // they keep what was typed, to be corrected.
    let saving = StoredValue::new(false);
    let again = StoredValue::new(false);
    let reload = StoredValue::new(false);
    let save = move |edit: &dyn Fn(&mut AppSettings), show_in_force: bool| {
        let Some(mut s) = settings.get_untracked() else {
            return;
        };
        edit(&mut s);
        settings.set(Some(s));
        reload.set_value(show_in_force);
        if saving.get_value() {
            again.set_value(true);
            return;
        }
        saving.set_value(true);
        run_action(fleet, async move {
            loop {
                again.set_value(false);
                let Some(s) = settings.get_untracked() else {
                    saving.set_value(false);
                    break Ok(());
                };
                let r = api::set_settings(&s).await;
                if again.get_value() {
                    continue;
                }
                saving.set_value(false);
                if r.is_err() && reload.get_value() {
                    if let Ok(now) = api::get_settings().await {
                        settings.set(Some(now));
                    }
                }
                // Where the gateway listens, after a change of its settings.
                refresh();
                break r;
            }
        });
    };
    // One gateway field changed.
    let save_gateway = move |edit: &dyn Fn(&mut GatewaySettings, String), value: String| {
        save(
            &|s: &mut AppSettings| edit(&mut s.gateway, value.clone()),
            false,
        );
    };
    // A gateway address other programs of the network can reach.
    let on_network = move || {
        settings.with(|s| {
            s.as_ref().is_some_and(|s| {
                s.gateway
                    .address
                    .trim()
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| !a.ip().is_loopback())
            })
        })
    };
    spawn_local(async move {
        match api::get_settings().await {
            Ok(s) => settings.set(Some(s)),
            Err(e) => fleet.error.set(Some(e.message)),
        }
    });
    let rows: [(&'static str, &'static str, Flag); 8] = [
        (
            "notify-became-unhealthy",
            "An instance became unhealthy",
            |n| &mut n.became_unhealthy,
        ),
        ("notify-recovered", "An instance recovered", |n| {
            &mut n.recovered
        }),
        ("notify-crashed", "A local ComfyUI crashed", |n| {
            &mut n.crashed
        }),
        (
            "notify-gave-up",
            "A local ComfyUI keeps crashing (no more restarts)",
            |n| &mut n.gave_up,
        ),
        ("notify-error-rate", "Many errors within a minute", |n| {
            &mut n.high_error_rate
        }),
        ("notify-resource", "A resource above 90%", |n| {
            &mut n.resource_high
        }),
        ("notify-no-answer", "No answer for over 30 s", |n| {
            &mut n.no_answer
        }),
        (
            "notify-start-timed-out",
            "An instance did not start in time",
            |n| &mut n.start_timed_out,
        ),
    ];
    let number_field = move |id: &'static str,
                             label: &'static str,
                             get: fn(&AppSettings) -> u32,
                             set: fn(&mut AppSettings, u32)| {
        view! {
            <label class="field">
                <span>{label}</span>
                <input id=id type="number" min="1"
                    prop:value=move || settings.with(|s| s.as_ref().map(|s| get(s).to_string()).unwrap_or_default())
                    on:change=move |ev| {
                        match event_target_value(&ev).trim().parse::<u32>() {
                            // Refused (out of range): the error shows, and what is in force.
                            Ok(v) => save(&|s: &mut AppSettings| set(s, v), true),
                            Err(_) => fleet.error.set(Some(format!("{label}: enter a whole number"))),
                        }
                    }/>
            </label>
        }
    };
    view! {
        <div class="dialog about" id="settings-dialog" role="dialog">
            <h2>"Notifications"</h2>
            <p class="muted">"Shown at most once a minute per instance and kind."</p>
            <Show when=move || settings.with(Option::is_some)>
                {rows.into_iter().map(|(id, label, flag)| view! {
                    <label class="check">
                        <input id=id type="checkbox"
                            prop:checked=move || settings.with(|s| s.clone().map(|mut s| *flag(&mut s.notifications)).unwrap_or(true))
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                save(&|s: &mut AppSettings| *flag(&mut s.notifications) = on, false);
                            }/>
                        {label}
                    </label>
                }).collect_view()}
            </Show>
            <h2>"On exit"</h2>
            <Show when=move || settings.with(Option::is_some)>
                <label class="check">
                    <input id="keep-running" type="checkbox"
                        prop:checked=move || settings.with(|s| s.as_ref().map(|s| s.keep_instances_running).unwrap_or(false))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            save(&|s: &mut AppSettings| s.keep_instances_running = on, false);
                        }/>
                    "Keep local ComfyUI servers running when the app quits (the next launch re-attaches)"
                </label>
            </Show>
            <h2>"History"</h2>
            <p class="muted">"Finished jobs and their output copies are deleted when older than this, or beyond this count (oldest first); checked at start and daily."</p>
            <Show when=move || settings.with(Option::is_some)>
                {number_field("retention-days", "Keep finished jobs for (days)", |s| s.job_retention_days, |s, v| s.job_retention_days = v)}
                {number_field("retention-count", "Keep at most (finished jobs)", |s| s.max_finished_jobs, |s, v| s.max_finished_jobs = v)}
            </Show>
            <h2>"Health checks"</h2>
            <p class="muted">"For every instance, from its next probe on. A starting instance is probed every second until it answers."</p>
            <Show when=move || settings.with(Option::is_some)>
                {number_field("settings-health-interval", "Probe every (ms)", |s| s.health.interval_ms, |s, v| s.health.interval_ms = v)}
                {number_field("settings-health-timeout", "A probe fails after (ms)", |s| s.health.probe_timeout_ms, |s, v| s.health.probe_timeout_ms = v)}
                {number_field("settings-health-degraded", "Degraded when slower than (ms)", |s| s.health.degraded_response_ms, |s, v| s.health.degraded_response_ms = v)}
                {number_field("settings-health-failures", "Unhealthy after failed probes in a row", |s| s.health.failure_threshold, |s, v| s.health.failure_threshold = v)}
                {number_field("settings-health-successes", "Healthy again after answers in a row", |s| s.health.success_threshold, |s, v| s.health.success_threshold = v)}
                {number_field("settings-health-resource", "Alert when RAM or VRAM use is above (%)", |s| s.health.resource_high_percent, |s, v| s.health.resource_high_percent = v)}
            </Show>
            <h2>"Placement"</h2>
            <p class="muted">"Where a job goes when it may run anywhere. Jobs already sent stay where they are."</p>
            <Show when=move || settings.with(Option::is_some)>
                <label class="field">
                    <span>"Policy"</span>
                    <select id="settings-placement" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        let Some((p, _, _)) = PLACEMENTS.iter().find(|(_, k, _)| *k == v) else { return };
                        save(&|s: &mut AppSettings| s.placement = *p, false);
                    }>
                        {PLACEMENTS.iter().map(|(p, key, label)| {
                            let selected = settings.with_untracked(|s| s.as_ref().map(|s| s.placement) == Some(*p));
                            view! { <option value=*key selected=selected>{*label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label class="check">
                    <input id="settings-copies" type="checkbox"
                        prop:checked=move || settings.with(|s| s.as_ref().map(|s| s.copies_near_the_end).unwrap_or(true))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            save(&|s: &mut AppSettings| s.copies_near_the_end = on, false);
                        }/>
                    "Copy a long job to an idle, faster instance near its end (earliest finish only)"
                </label>
            </Show>
            <h2>"Gateway"</h2>
            <p class="muted">"One ComfyUI address for the whole fleet: ComfyUI's scripts and clients pointed at it run on the best instance, with the queue's failover."</p>
            <Show when=move || settings.with(Option::is_some)>
                <label class="check">
                    <input id="settings-gateway" type="checkbox"
                        prop:checked=move || settings.with(|s| s.as_ref().map(|s| s.gateway.enabled).unwrap_or(true))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            save_gateway(&move |g, _| g.enabled = on, String::new());
                        }/>
                    "Serve the fleet as one ComfyUI server"
                </label>
                <label class="field">
                    <span>"Address"</span>
                    <input id="settings-gateway-address"
                        prop:value=move || settings.with(|s| s.as_ref().map(|s| s.gateway.address.clone()).unwrap_or_default())
                        on:change=move |ev| save_gateway(&|g, v| g.address = v.trim().to_string(), event_target_value(&ev))/>
                </label>
                <Show when=on_network>
                    <p class="gateway-warning" id="settings-gateway-warning">
                        "This address is on the network: whoever reaches it with the token can run prompts on every instance of the fleet and read their outputs. Use a long random token, and a firewall that admits only the machines that need it."
                    </p>
                </Show>
                <label class="field">
                    <span>"Token (needed on the network; kept in the OS keyring)"</span>
                    <input id="settings-gateway-token" type="password" autocomplete="new-password"
                        placeholder=move || if settings.with(|s| s.as_ref().is_some_and(|s| s.gateway.token_ref.is_some())) {
                            "set: type a new one to replace it, or clear to remove it"
                        } else {
                            "none: at least 16 characters"
                        }
                        on:change=move |ev| {
                            let v = event_target_value(&ev);
                            let token = (!v.trim().is_empty()).then(|| v.trim().to_string());
                            run_action(fleet, async move {
                                let r = api::set_gateway_token(token).await;
                                if let Ok(s) = api::get_settings().await {
                                    settings.set(Some(s));
                                }
                                refresh();
                                r
                            });
                        }/>
                </label>
                <crate::components::gateway_people::GatewayPeople/>
                <label class="field">
                    <span>"Most prompts one person may have waiting (empty: no limit)"</span>
                    <input id="settings-gateway-max-waiting" type="number" min="1"
                        prop:value=move || settings.with(|s| s.as_ref().and_then(|s| s.gateway.max_waiting_per_person).map(|n| n.to_string()).unwrap_or_default())
                        on:change=move |ev| save_gateway(
                            &|g, v| g.max_waiting_per_person = v.trim().parse().ok().filter(|n| *n > 0),
                            event_target_value(&ev),
                        )/>
                </label>
                <label class="field">
                    <span>"Clients send the token as"</span>
                    <input id="settings-gateway-token-auth" placeholder="bearer, basic (user:password) or header:X-API-Key"
                        prop:value=move || settings.with(|s| s.as_ref().and_then(|s| s.gateway.token_auth.clone()).unwrap_or_default())
                        on:change=move |ev| save_gateway(
                            &|g, v| g.token_auth = (!v.trim().is_empty()).then(|| v.trim().to_string()),
                            event_target_value(&ev),
                        )/>
                </label>
                <label class="field">
                    <span>"Other names clients use for this machine (comma-separated; requests to any other name are refused)"</span>
                    <input id="settings-gateway-hosts" placeholder="studio-box.lan"
                        prop:value=move || settings.with(|s| s.as_ref().map(|s| s.gateway.allowed_hosts.join(", ")).unwrap_or_default())
                        on:change=move |ev| save_gateway(
                            &|g, v| g.allowed_hosts = v.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect(),
                            event_target_value(&ev),
                        )/>
                </label>
                <p class="muted" id="settings-gateway-status">{move || match listening.get() {
                    Some(g) => format!("Listening on {}", g.url),
                    None => "Not listening".to_string(),
                }}</p>
                <Show when=move || listening.with(|g| g.as_ref().is_some_and(|g| g.fingerprint.is_some()))>
                    <p class="muted" id="settings-gateway-tls">{move || listening.with(|g| match g {
                        Some(storycore_types::GatewayStatus { fingerprint: Some(f), trust_file, .. }) => format!(
                            "HTTPS certificate SHA-256 {f}. Clients trust {} or pin this fingerprint.",
                            trust_file.clone().unwrap_or_default()
                        ),
                        _ => String::new(),
                    })}</p>
                </Show>
                <label class="field">
                    <span>"HTTPS certificate and key on the network (PEM files; empty: the app makes one)"</span>
                    <input id="settings-gateway-tls-cert" placeholder="/etc/ssl/studio/gateway.pem"
                        prop:value=move || settings.with(|s| s.as_ref().and_then(|s| s.gateway.tls_cert.clone()).unwrap_or_default())
                        on:change=move |ev| save_gateway(
                            &|g, v| g.tls_cert = (!v.trim().is_empty()).then(|| v.trim().to_string()),
                            event_target_value(&ev),
                        )/>
                    <input id="settings-gateway-tls-key" placeholder="/etc/ssl/studio/gateway.key"
                        prop:value=move || settings.with(|s| s.as_ref().and_then(|s| s.gateway.tls_key.clone()).unwrap_or_default())
                        on:change=move |ev| save_gateway(
                            &|g, v| g.tls_key = (!v.trim().is_empty()).then(|| v.trim().to_string()),
                            event_target_value(&ev),
                        )/>
                </label>
                <label class="check">
                    <input id="settings-gateway-plain-http" type="checkbox"
                        prop:checked=move || settings.with(|s| s.as_ref().is_some_and(|s| s.gateway.plain_http))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            save_gateway(&move |g, _| g.plain_http = on, String::new());
                        }/>
                    "Plain HTTP on the network (not recommended: tokens and prompts travel in clear)"
                </label>
            </Show>
            <button id="settings-close" on:click=move |_| on_close.run(())>"Close"</button>
        </div>
    }
}
