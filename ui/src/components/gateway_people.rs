//! Settings → Gateway → People: one named token per person. A token is
//! shown once, when it is made; the list shows names and roles only.

use crate::api;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use storycore_types::GatewayTokenInfo;

#[component]
pub fn GatewayPeople() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let people = RwSignal::new(Vec::<GatewayTokenInfo>::new());
    // The token just made, shown until the dialog closes.
    let made = RwSignal::new(None::<(String, String)>);
    let name = RwSignal::new(String::new());
    let admin = RwSignal::new(false);
    let reload = move || {
        run_action(fleet, async move {
            people.set(api::list_gateway_tokens().await?);
            Ok(())
        })
    };
    reload();
    let create = move |_| {
        let (n, a) = (name.get_untracked(), admin.get_untracked());
        run_action(fleet, async move {
            let token = api::create_gateway_token(&n, a).await?;
            made.set(Some((n.trim().to_string(), token)));
            name.set(String::new());
            people.set(api::list_gateway_tokens().await?);
            Ok(())
        });
    };
    view! {
        <div class="gateway-people" id="gateway-people">
            <span>"People (a token each: each sees and touches only their own prompts and files)"</span>
            <ul id="gateway-people-list">
                <For each=move || people.get() key=|p| p.name.clone() let:p>
                    {
                        let who = p.name.clone();
                        view! {
                            <li class="gateway-person" data-name=p.name.clone()>
                                <strong>{p.name.clone()}</strong>
                                {p.admin.then(|| view! { <span class="badge">"admin: sees everyone's"</span> })}
                                <span class="muted">{format!(" made {}", p.created_at)}</span>
                                <button class="gateway-revoke" on:click=move |_| {
                                    let who = who.clone();
                                    run_action(fleet, async move {
                                        api::revoke_gateway_token(&who).await?;
                                        people.set(api::list_gateway_tokens().await?);
                                        Ok(())
                                    });
                                }>"Revoke"</button>
                            </li>
                        }
                    }
                </For>
            </ul>
            <div class="gateway-person-new">
                <input id="gateway-person-name" placeholder="name, such as alice"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))/>
                <label class="check">
                    <input id="gateway-person-admin" type="checkbox"
                        prop:checked=move || admin.get()
                        on:change=move |ev| admin.set(event_target_checked(&ev))/>
                    "admin"
                </label>
                <button id="gateway-person-create" on:click=create>"Make a token"</button>
            </div>
            <Show when=move || made.with(Option::is_some)>
                <p class="gateway-new-token">
                    {move || made.with(|m| m.as_ref().map(|(n, _)| format!("The token of {n}, shown only now: give it to them.")))}
                    " "
                    <code id="gateway-new-token">{move || made.with(|m| m.as_ref().map(|(_, t)| t.clone()))}</code>
                </p>
            </Show>
        </div>
    }
}
