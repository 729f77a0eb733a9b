//! One deployment: its status (machines, checks, volume, relay health), start/stop the vm,
//! its version against this page's, update to the images in `config.json` (saying from what
//! to what), and tear down after typing the prefix.

use crate::browser::fly_client;
use crate::config::Config;
use crate::route::{Route, navigate};
use crate::storage::{self, LocalStorage};
use crate::ui::{ErrorLine, Field};
use crate::wizard::Wizard;
use leptos::prelude::*;
use leptos::task::spawn_local;
use provision::Event;

#[component]
pub fn Detail(prefix: String) -> impl IntoView {
    let Some(deployment) = storage::find(&LocalStorage, &prefix) else {
        return view! {
            <h1>"Unknown deployment"</h1>
            <p>{format!("This device does not remember a deployment called {prefix}.")}</p>
            <a class="button" href="#/">"Your deployments"</a>
        }
        .into_any();
    };
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let stored = StoredValue::new(deployment.clone());
    let status = RwSignal::new(None::<provision::ops::Status>);
    let error = RwSignal::new(None::<String>);
    let note = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let confirm = RwSignal::new(String::new());

    let act = {
        move |action: Action| {
            let deployment = stored.get_value();
            let config = config.get_value();
            let token = wizard.fly.token.get_untracked();
            if token.trim().is_empty() {
                error.set(Some("Enter your Fly token first.".into()));
                return;
            }
            let fly = fly_client(&config, &token);
            let (relay, vm, relay_url, images) = (
                deployment.relay_app.clone(),
                deployment.vm_app.clone(),
                deployment.relay_url.clone(),
                config.images.clone(),
            );
            let prefix = deployment.prefix.clone();
            busy.set(true);
            error.set(None);
            spawn_local(async move {
                // A long action (an old relay moved onto its volume) says what it waits for.
                let progress = move |event: &Event| note.set(Some(event.message.clone()));
                let outcome =
                    perform(action, &fly, [&relay, &vm, &relay_url], &images, &progress).await;
                if action == Action::Teardown && outcome.is_ok() {
                    storage::forget(&LocalStorage, &prefix);
                }
                match outcome {
                    Ok(message) => note.set(message),
                    Err(e) => error.set(Some(e.to_string())),
                }
                if action != Action::Teardown {
                    match provision::ops::status(&fly, &relay, &vm, &relay_url).await {
                        Ok(s) => status.set(Some(s)),
                        Err(e) => error.set(Some(e.to_string())),
                    }
                }
                busy.set(false);
            });
        }
    };
    if !wizard.fly.token.get_untracked().trim().is_empty() {
        act(Action::Refresh);
    }
    let title = deployment.prefix.clone();
    let expected = deployment.prefix.clone();
    view! {
        <h1>{title}</h1>
        <p class="muted">{format!("{} · {} and {}", deployment.region, deployment.relay_app, deployment.vm_app)}</p>
        {(!deployment.webhook_url.is_empty()).then(|| view! { <p>"Webhook URL: " <code>{deployment.webhook_url.clone()}</code></p> })}
        <Show when=move || wizard.fly.token.get().trim().is_empty()>
            <Field label="Fly token (to manage this deployment)" value=wizard.fly.token secret=true id="detail-token"/>
        </Show>
        <div class="actions">
            <button class="button" id="refresh" disabled=move || busy.get() on:click=move |_| act(Action::Refresh)>"Check status"</button>
            <button class="button" id="stop-vm" disabled=move || busy.get() on:click=move |_| act(Action::Stop)>"Stop agent"</button>
            <button class="button" id="start-vm" disabled=move || busy.get() on:click=move |_| act(Action::Start)>"Start agent"</button>
            <button class="button" id="update" disabled=move || busy.get() on:click=move |_| act(Action::Update)>"Update"</button>
        </div>
        <ErrorLine error=error/>
        <Show when=move || note.get().is_some()>
            <p class="ok" id="note">{move || note.get().unwrap_or_default()}</p>
        </Show>
        <div id="status">{move || status.get().map(|s| view! {
            <ul class="review">
                {[("Relay", s.relay.clone()), ("Agent", s.vm.clone())].into_iter().map(|(label, app)| {
                    let machines = app.machines.iter().map(|m| format!("{} {}, {}", m.id, m.summary(), m.image_shown())).collect::<Vec<_>>().join("; ");
                    view! { <li><strong>{label}</strong>{format!(": {}", if app.exists { if machines.is_empty() { "no machine".to_string() } else { machines } } else { "app not found".into() })}</li> }
                }).collect_view()}
                <li><strong>"Relay health"</strong>{format!(": {}", match &s.relay_health {
                    Ok(health) => format!("answers (version {}, waiting for agent: {}{})", health["version"].as_str().unwrap_or("?"), health["journal"]["waiting_for_vm"],
                        health["discord_gateway"]["state"].as_str().map(|state| format!(", Discord: {state}")).unwrap_or_default()),
                    Err(e) => e.clone(),
                })}</li>
                {s.shares_org_network().then(|| view! { <li class="warning" id="shared-network">{provision::ops::SHARED_NETWORK}</li> })}
                {(s.relay.exists || s.vm.exists).then(|| view! {
                    <li id="version">{s.standing(&config.get_value().images).sentence("tap Update")}</li>
                })}
            </ul>
        })}</div>
        <h2>"Tear down"</h2>
        <p>"Deletes both apps, their machines, the volume (your agent's files) and the addresses. Type the prefix to confirm."</p>
        <Field label="Prefix" value=confirm id="confirm-prefix"/>
        <button class="button danger" id="teardown" disabled=move || busy.get() || confirm.get().trim() != expected
            on:click=move |_| act(Action::Teardown)>"Tear down"</button>
        <p><a href="#/" on:click=move |_| navigate(&Route::Home)>"Back to your deployments"</a></p>
    }
    .into_any()
}

/// What the detail screen's buttons do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Refresh,
    Stop,
    Start,
    Update,
    Teardown,
}

/// Carries out `action` on Fly; the sentence to show when it worked.
async fn perform<T: provision::transport::Transport, C: provision::transport::Clock>(
    action: Action,
    fly: &provision::fly::FlyClient<T, C>,
    [relay, vm, relay_url]: [&str; 3],
    images: &provision::spec::Images,
    progress: &dyn provision::plan::Progress,
) -> Result<Option<String>, provision::Error> {
    match action {
        Action::Refresh => Ok(None),
        Action::Stop => provision::ops::set_vm_running(fly, vm, false)
            .await
            .map(|_| Some("The agent machine is stopped.".into())),
        Action::Start => provision::ops::set_vm_running(fly, vm, true)
            .await
            .map(|_| Some("The agent machine is starting.".into())),
        // The page only offers its own images, so it never moves a deployment back.
        Action::Update => {
            provision::ops::update(fly, relay, vm, relay_url, images, false, progress)
                .await
                .map(|changed| Some(provision::version::describe_update(&changed, images)))
        }
        Action::Teardown => provision::ops::teardown(fly, &[relay, vm], progress)
            .await
            .map(|left| Some(teardown_note(&left))),
    }
}

/// What teardown left: on Fly (a failure), and outside it (a setting only the user can clear).
fn teardown_note(left: &[provision::ops::Leftover]) -> String {
    let list = |outside_fly: bool| {
        left.iter()
            .filter(|l| l.outside_fly == outside_fly)
            .map(|l| format!("{} ({})", l.what, l.why))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let on_fly = list(false);
    let mut text = if on_fly.is_empty() {
        "Torn down: nothing is left on Fly.".to_string()
    } else {
        format!("Left over: {on_fly}")
    };
    let for_you = list(true);
    if !for_you.is_empty() {
        text.push_str(&format!(" Still to do: {for_you}."));
    }
    text
}
