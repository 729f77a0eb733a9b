//! Step 6: the deploy with its live progress (Retry resumes, Tear down undoes), then on the
//! same screen Done with what to do on the channel (the webhook URL, or Discord's invite link) and the
//! relay's health.

use crate::browser::fly_client;
use crate::config::Config;
use crate::route::{Route, navigate};
use crate::storage::{self, LocalStorage};
use crate::ui::{CopyButton, StepHeader};
use crate::wizard::Wizard;
use leptos::prelude::*;
use leptos::task::spawn_local;
use provision::spec::ChannelKind;
use provision::{Event, StepId, StepState};

/// Runs (or resumes) the deploy; progress goes into the draft so a reload still shows it.
pub fn start_deploy(wizard: Wizard, config: Config) {
    if wizard.deploying.get_untracked() {
        return;
    }
    let spec = match wizard.spec(&config) {
        Ok(spec) => spec,
        Err(e) => {
            wizard.deploy_error.set(Some(format!(
                "{} Secrets are never stored, so after a reload enter them again (steps 1–4) and deploy resumes where it stopped.",
                wizard.explain(&e)
            )));
            return;
        }
    };
    wizard.deploying.set(true);
    wizard.deploy_error.set(None);
    wizard
        .draft
        .update(|d| d.deploy_started_ms = Some(js_sys::Date::now() as u64));
    spawn_local(async move {
        let fly = fly_client(&config, &wizard.fly.token.get_untracked());
        let progress = move |event: &Event| wizard.draft.update(|d| d.events.push(event.clone()));
        match provision::plan::deploy(&fly, &spec, &progress).await {
            Ok(deployment) => {
                storage::remember(&LocalStorage, &deployment);
                wizard.draft.update(|d| d.finished = true);
                wizard.deploying.set(false);
            }
            Err(e) => {
                wizard.deploy_error.set(Some(e.to_string()));
                wizard.deploying.set(false);
            }
        }
    });
}

fn latest_state(events: &[Event], step: StepId) -> Option<(StepState, String)> {
    events
        .iter()
        .rev()
        .find(|e| e.step == step)
        .map(|e| (e.state, e.message.clone()))
}

#[component]
pub fn DeployStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let now = RwSignal::new(js_sys::Date::now());
    let ticker = set_interval_with_handle(
        move || now.set(js_sys::Date::now()),
        std::time::Duration::from_millis(500),
    )
    .ok();
    on_cleanup(move || {
        if let Some(t) = ticker {
            t.clear();
        }
    });
    if wizard.draft.get_untracked().events.is_empty() {
        start_deploy(wizard, config.get_value());
    }
    let torn_down = RwSignal::new(None::<String>);
    let teardown = move |_| {
        let draft = wizard.draft.get_untracked();
        let fly = fly_client(&config.get_value(), &wizard.fly.token.get_untracked());
        wizard.deploying.set(true);
        spawn_local(async move {
            let apps = [
                format!("{}-relay", draft.prefix),
                format!("{}-vm", draft.prefix),
            ];
            let names: Vec<&str> = apps.iter().map(String::as_str).collect();
            let result = provision::ops::teardown(&fly, &names, &|_: &Event| {}).await;
            wizard.deploying.set(false);
            torn_down.set(Some(match result {
                Ok(left) if left.is_empty() => "Everything this deploy created is gone.".into(),
                Ok(left) => format!(
                    "Left over: {}",
                    left.iter()
                        .map(|l| format!("{} ({})", l.what, l.why))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                Err(e) => e.to_string(),
            }));
            storage::forget(&LocalStorage, &draft.prefix);
            wizard.draft.update(|d| d.events.clear());
        });
    };
    let finished = move || wizard.draft.get().finished;
    view! {
        {move || if finished() {
            view! { <StepHeader step=6 title="Done: say hello"/> }.into_any()
        } else {
            view! { <StepHeader step=6 title="Deploying"/> }.into_any()
        }}
        <p class="muted" id="elapsed">{move || {
            let started = wizard.draft.get().deploy_started_ms.unwrap_or(0) as f64;
            if started == 0.0 { String::new() } else { format!("{} s", ((now.get() - started) / 1000.0).max(0.0) as u64) }
        }}</p>
        <ol class="steps" id="steps">
            {StepId::ALL.into_iter().map(|step| {
                // A step left "running" by a run that ended (failed elsewhere) is just not done.
                let state = move || match latest_state(&wizard.draft.get().events, step) {
                    Some((StepState::Running, _)) if !wizard.deploying.get() => None,
                    other => other,
                };
                view! {
                    <li class=move || match state() {
                        Some((StepState::Done, _)) | Some((StepState::AlreadyDone, _)) => "done",
                        Some((StepState::Running, _)) => "running",
                        Some((StepState::Failed, _)) => "failed",
                        None => "pending",
                    }>
                        <span class="mark">{move || match state() {
                            Some((StepState::Done, _)) | Some((StepState::AlreadyDone, _)) => "✓",
                            Some((StepState::Running, _)) => "…",
                            Some((StepState::Failed, _)) => "✗",
                            None => "·",
                        }}</span>
                        <span class="title">{step.title()}</span>
                        <small class="muted">{move || state().map(|(_, m)| m).unwrap_or_default()}</small>
                    </li>
                }
            }).collect_view()}
        </ol>
        <Show when=move || wizard.deploy_error.get().is_some() && !wizard.deploying.get()>
            <p class="error" role="alert" id="deploy-error">{move || wizard.deploy_error.get().unwrap_or_default()}</p>
            <div class="nav">
                <button class="button primary" id="retry" on:click=move |_| start_deploy(wizard, config.get_value())>"Retry"</button>
                <button class="button danger" id="undo" on:click=teardown>"Tear down"</button>
            </div>
        </Show>
        <Show when=move || !wizard.deploying.get() && wizard.deploy_error.get().is_none() && !wizard.draft.get().events.is_empty() && !finished()>
            <p>"This deploy was interrupted (the page was reloaded). "
                <button class="button" id="resume" on:click=move |_| start_deploy(wizard, config.get_value())>"Resume"</button></p>
        </Show>
        <Show when=move || torn_down.get().is_some()>
            <p id="torn-down">{move || torn_down.get().unwrap_or_default()}</p>
            <a class="button" href="#/">"Back to your deployments"</a>
        </Show>
        <Show when=finished>
            <Done/>
        </Show>
    }
}

/// The end of the deploy screen, once it worked: what to do on the channel, pairing, and the
/// relay's health. (The progress stays above it: one screen from Deploy to "say hello".)
#[component]
fn Done() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let draft = wizard.draft.get_untracked();
    let Some(deployment) = storage::find(&LocalStorage, &draft.prefix) else {
        return view! { <p>"No finished deployment here. " <a href="#/">"Your deployments"</a></p> }.into_any();
    };
    let kind = deployment.channel.unwrap_or(ChannelKind::Telegram);
    let health = RwSignal::new(None::<String>);
    spawn_local(watch_relay(
        format!("{}/health", deployment.relay_url),
        kind,
        health,
    ));
    let finish = move |_| {
        wizard.reset();
        navigate(&Route::Home);
    };
    view! {
        <p class="ok" id="done" role="status">{format!("{} and {} are running.", deployment.relay_app, deployment.vm_app)}</p>
        {before_pairing(kind, deployment.webhook_url.clone(), draft.discord_app_id.clone())}
        {if Wizard::allowed_senders(&draft).is_empty() {
            pair(kind, &draft).into_any()
        } else {
            view! { <p id="owner-known">"You are its owner already (you gave your id), so there is nothing to pair: open your bot and write to it."</p> }.into_any()
        }}
        <p>"Then say hello: the first reply may take a few seconds while the agent wakes up."</p>
        <p id="relay-health">{move || health.get().unwrap_or_else(|| "Checking the relay…".into())}</p>
        <button class="button primary" id="finish" on:click=finish>"Back to your deployments"</button>
    }
    .into_any()
}

/// What only the user can do on their channel before pairing: Twilio's webhook field, or
/// adding the Discord bot to a server. Telegram needs nothing (the relay registers its webhook).
fn before_pairing(kind: ChannelKind, webhook: String, discord_app_id: String) -> impl IntoView {
    match kind {
        ChannelKind::Discord => {
            let invite = provision::spec::discord_invite_link(&discord_app_id);
            view! {
                <p>"Your relay connects to Discord itself. Add the bot to a server of yours (a private one will do), so that you can message it:"</p>
                <p><a class="button" id="discord-invite" href=invite rel="noopener noreferrer" target="_blank">"Add the bot to a server"</a></p>
            }
            .into_any()
        }
        ChannelKind::WhatsappTwilio => view! {
            <p>"Webhook URL:"</p>
            <p class="command"><code id="webhook-url">{webhook.clone()}</code> <CopyButton text=Signal::derive(move || webhook.clone()) id="copy-webhook"/></p>
            <p>"In the Twilio console, open your WhatsApp sender (or the Sandbox settings) and paste this URL into “When a message comes in” (method POST)."</p>
        }
        .into_any(),
        ChannelKind::Telegram => ().into_any(),
    }
}

/// The one tap (or, on Discord, one paste) that makes the user the owner: the code travels in
/// the link the channel's app opens (docs/channels.md: Telegram's `/start` deep link,
/// WhatsApp's prefilled text).
fn pair(kind: ChannelKind, draft: &crate::wizard::Draft) -> impl IntoView {
    let pairing = provision::spec::Pairing {
        code: provision::spec::Secret::new(draft.pairing_code.clone()),
        expires_ms: 0,
    };
    let code = draft.pairing_code.clone();
    let (target, label, how) = match kind {
        ChannelKind::Telegram => (
            provision::spec::PairingTarget::Telegram {
                bot_username: draft.telegram_bot.clone(),
            },
            "Open your bot in Telegram",
            "Telegram opens your bot; tap Start, and you are its owner: only you can talk to your agent.",
        ),
        ChannelKind::WhatsappTwilio => (
            provision::spec::PairingTarget::Whatsapp {
                number: provision::spec::normalise_phone(&draft.whatsapp_number)
                    .unwrap_or_default(),
            },
            "Open WhatsApp",
            "Then WhatsApp opens a chat with your Twilio number, the pairing code typed in; send it, and you are the owner: only you can talk to your agent.",
        ),
        ChannelKind::Discord => (
            provision::spec::PairingTarget::Discord {
                application_id: draft.discord_app_id.clone(),
            },
            "Open your bot's profile",
            "Then open the bot's profile, choose Message and send it the code below, and you are its owner: only you can talk to your agent.",
        ),
    };
    let href = pairing.link(&target);
    let show_code = kind == ChannelKind::Discord;
    view! {
        <p>{how}" The code works once, for an hour."</p>
        <p><a class="button primary" id="pair" href=href rel="noopener noreferrer" target="_blank">{label}</a></p>
        {show_code.then(|| view! {
            <p class="command"><code id="pairing-code">{code.clone()}</code> <CopyButton text=Signal::derive(move || code.clone()) id="copy-pairing-code"/></p>
        })}
    }
}

/// Asks the relay how it is; for Discord, until it says whether the bot is connected (the
/// relay connects to the Gateway right after it starts, and that is where a wrong token shows).
async fn watch_relay(url: String, kind: ChannelKind, said: RwSignal<Option<String>>) {
    for _ in 0..40 {
        let (text, settled) = match gloo_net::http::Request::get(&url).send().await {
            Ok(r) if r.ok() => match r.json::<serde_json::Value>().await {
                Ok(health) => relay_says(&health, kind),
                Err(_) => ("The relay answered something unexpected.".into(), true),
            },
            Ok(r) => (format!("The relay answered {}.", r.status()), false),
            Err(_) => (
                "The relay does not answer yet; give it a minute.".into(),
                false,
            ),
        };
        said.set(Some(text));
        if settled {
            return;
        }
        gloo_timers::future::sleep(std::time::Duration::from_millis(1500)).await;
    }
}

/// The relay's health in a sentence, and whether there is nothing more to wait for.
pub fn relay_says(health: &serde_json::Value, kind: ChannelKind) -> (String, bool) {
    if kind != ChannelKind::Discord {
        return ("✓ The relay answers.".into(), true);
    }
    let gateway = &health["discord_gateway"];
    match gateway["state"].as_str() {
        Some("connected") => (
            format!(
                "✓ Your bot {} is connected to Discord.",
                gateway["bot"].as_str().unwrap_or("")
            ),
            true,
        ),
        Some("refused") => {
            let reason = gateway["last_error"].as_str().unwrap_or_default();
            let text = if reason.contains("DISCORD_BOT_TOKEN") {
                "Discord refused the bot token. Reset it in the Developer Portal (Bot → Reset Token), tear this deployment down and deploy again with the new one.".to_string()
            } else {
                format!("Discord refused the bot: {reason}.")
            };
            (text, true)
        }
        _ => ("The relay is connecting to Discord…".into(), false),
    }
}
