//! The wizard's first five steps: Fly token, names and region, channel, Anthropic key, review.
//! Each step checks what it can before Next.

use crate::browser::fly_client;
use crate::checks;
use crate::config::Config;
use crate::pages::token::{TokenCheck, TokenForm};
use crate::route::{Route, navigate};
use crate::ui::{ErrorLine, Field, Nav, StepHeader, forget_when_changed, next};
use crate::wizard::Wizard;
use leptos::prelude::*;
use leptos::task::spawn_local;
use provision::cost::dollars;
use provision::fly::AppName;

/// Steps 1 to 5, by number.
#[component]
pub fn NewStep(step: u8) -> impl IntoView {
    match step {
        1 => TokenStep().into_any(),
        2 => NamesStep().into_any(),
        3 => ChannelStep().into_any(),
        4 => KeyStep().into_any(),
        _ => ReviewStep().into_any(),
    }
}

/// Step 1 in the whole app: the token is checked with Fly.
#[component]
fn TokenStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let fly = wizard.fly;
    let state = TokenCheck::new();
    let check = Callback::new(move |and_next: bool| {
        let token = fly.token.get_untracked();
        state.checking.set(true);
        let api = config.get_value();
        spawn_local(async move {
            match provision::token::check(&fly_client(&api, &token)).await {
                Ok(checked) => {
                    let org = checked.org.unwrap_or_else(|| "personal".into());
                    state
                        .personal
                        .set(checked.kind == provision::fly::TokenKind::Personal);
                    state.note.set(checked.note);
                    fly.org.set(Some(org));
                    fly.apply_choice();
                    if and_next {
                        next(1);
                    }
                }
                Err(e) => {
                    fly.org.set(None);
                    state.error.set(Some(e.to_string()));
                }
            }
            state.checking.set(false);
        });
    });
    // A check tapped in the page's first part, before this part had arrived.
    if let Some(and_next) = crate::front::take_handed_over(|handover| handover.check_token.take()) {
        check.run(and_next);
    }
    view! { <TokenForm fly=fly check=state on_check=check/> }
}

#[component]
fn NamesStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let prefix = RwSignal::new(wizard.draft.get_untracked().prefix);
    let error = RwSignal::new(None::<String>);
    let available = RwSignal::new(None::<String>);
    let regions = RwSignal::new(Vec::<(String, String)>::new());
    let region = RwSignal::new(wizard.draft.get_untracked().region);
    let memory = RwSignal::new(wizard.draft.get_untracked().vm_memory_mb.to_string());
    Effect::new(move |_| {
        let p = prefix.get();
        wizard
            .draft
            .update(|d| d.prefix = p.trim().to_ascii_lowercase());
        // A new name needs a new availability check.
        available.set(None);
    });
    Effect::new(move |_| {
        let (r, m) = (region.get(), memory.get());
        wizard.draft.update(|d| {
            d.region = r;
            d.vm_memory_mb = m.parse().unwrap_or(2048);
        });
    });
    {
        let api = config.get_value();
        let token = wizard.fly.token.get_untracked();
        spawn_local(async move {
            let list = region_choices(&api, &token).await;
            if region.get_untracked().is_empty() {
                region.set(list[0].0.clone());
            }
            regions.set(list);
        });
    }
    let check = move |and_next: bool| {
        let draft = wizard.draft.get_untracked();
        if let Err(e) = provision::spec::validate_prefix(&draft.prefix) {
            error.set(Some(wizard.explain(&e)));
            return;
        }
        error.set(None);
        let api = config.get_value();
        let token = wizard.fly.token.get_untracked();
        spawn_local(async move {
            match name_availability(&api, &token, &draft.prefix).await {
                Ok(note) => {
                    available.set(Some(note));
                    if and_next {
                        next(2);
                    }
                }
                Err(problem) => error.set(Some(problem)),
            }
        });
    };
    view! {
        <StepHeader step=2 title="Name and place"/>
        <Field label="Name prefix" value=prefix id="prefix" placeholder="my-agent"
            hint="Your apps will be called <prefix>-relay and <prefix>-vm. Lowercase letters, digits and hyphens."/>
        <button class="button" id="check-names" on:click=move |_| check(false)>"Check availability"</button>
        <Show when=move || available.get().is_some()>
            <p class="ok" id="names-ok">{move || available.get().unwrap_or_default()}</p>
        </Show>
        <ErrorLine error=error/>
        <label class="field">
            <span>"Region"</span>
            <select id="region" on:change=move |ev| region.set(event_target_value(&ev)) prop:value=move || region.get()>
                {move || regions.get().into_iter().map(|(code, name)| {
                    let selected = code == region.get_untracked();
                    view! { <option value=code.clone() selected=selected>{format!("{name} ({code})")}</option> }
                }).collect_view()}
            </select>
        </label>
        <label class="field">
            <span>"Agent machine memory"</span>
            <select id="memory" on:change=move |ev| memory.set(event_target_value(&ev)) prop:value=move || memory.get()>
                <option value="2048">"2 GB (recommended)"</option>
                <option value="4096">"4 GB (large projects)"</option>
            </select>
            <small class="muted">"The relay always uses the smallest machine (256 MB)."</small>
        </label>
        <Nav step=2 ready=Signal::derive(move || !prefix.get().trim().is_empty() && !region.get().is_empty())
            on_next=Callback::new(move |_| if available.get_untracked().is_some() { next(2) } else { check(true) })/>
    }
}

/// The regions a deployment can use, the nearest first (Ashburn when Fly's list is
/// unavailable, so the step still works).
async fn region_choices(api: &Config, token: &str) -> Vec<(String, String)> {
    let (list, nearest) = match fly_client(api, token).regions().await {
        Ok(r) => (
            r.regions
                .into_iter()
                .filter(|r| !r.deprecated && !r.requires_paid_plan)
                .map(|r| (r.code, r.name))
                .collect::<Vec<_>>(),
            r.nearest,
        ),
        Err(_) => (Vec::new(), None),
    };
    let mut list = if list.is_empty() {
        vec![("iad".to_string(), "Ashburn, Virginia (US)".to_string())]
    } else {
        list
    };
    if let Some(nearest) = nearest
        && let Some(i) = list.iter().position(|(code, _)| *code == nearest)
    {
        let item = list.remove(i);
        list.insert(0, item);
    }
    list
}

/// Whether `<prefix>-relay` and `<prefix>-vm` can be had: a line to show, or the problem.
async fn name_availability(api: &Config, token: &str, prefix: &str) -> Result<String, String> {
    let fly = fly_client(api, token);
    let mut notes = Vec::new();
    for app in [format!("{prefix}-relay"), format!("{prefix}-vm")] {
        match fly.app_name(&app).await {
            Ok(AppName::Free) => {}
            Ok(AppName::Ours(_)) => notes.push(format!(
                "{app} already exists in your org and will be reused"
            )),
            Ok(AppName::TakenElsewhere) => {
                return Err(format!(
                    "{app} is taken by someone else on Fly. Pick another prefix."
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(if notes.is_empty() {
        "✓ Both names are free.".into()
    } else {
        format!("✓ {}.", notes.join("; "))
    })
}

#[component]
fn ChannelStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let draft = wizard.draft;
    let channel = RwSignal::new(draft.get_untracked().channel);
    let telegram_owner = RwSignal::new(draft.get_untracked().telegram_owner);
    let whatsapp_number = RwSignal::new(draft.get_untracked().whatsapp_number);
    let whatsapp_owner = RwSignal::new(draft.get_untracked().whatsapp_owner);
    let discord_owner = RwSignal::new(draft.get_untracked().discord_owner);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let (c, t, n, o, d_owner) = (
            channel.get(),
            telegram_owner.get(),
            whatsapp_number.get(),
            whatsapp_owner.get(),
            discord_owner.get(),
        );
        let app_id = provision::spec::discord_application_id(&provision::spec::Secret::new(
            wizard.discord_token.get().trim(),
        ))
        .unwrap_or_default();
        draft.update(|d| {
            d.channel = c;
            d.telegram_owner = t;
            d.whatsapp_number = n;
            d.whatsapp_owner = o;
            d.discord_owner = d_owner;
            d.discord_app_id = app_id;
        });
    });
    // What Next does once the bot (if any) is known: the fields checked with provision's rules.
    let validate_and_next = Callback::new(move |_| match wizard.channel_problem() {
        Ok(()) => {
            error.set(None);
            next(3);
        }
        Err(e) => error.set(Some(wizard.explain(&e))),
    });
    let check_bot = move |and_next: bool| {
        let api = config.with_value(|c| c.telegram_api.clone());
        let token = wizard.telegram_token.get_untracked();
        error.set(None);
        spawn_local(async move {
            match checks::telegram_bot(&api, &token).await {
                Ok(name) => {
                    draft.update(|d| d.telegram_bot = name.clone());
                    wizard.bot_name.set(Some(name));
                    if and_next {
                        validate_and_next.run(());
                    }
                }
                Err(e) => {
                    wizard.bot_name.set(None);
                    error.set(Some(e));
                }
            }
        });
    };
    forget_when_changed(wizard.telegram_token, move || wizard.bot_name.set(None));
    // Telegram's bot is asked for its name on Next if the user did not press Check bot.
    let on_next = Callback::new(move |_| {
        if channel.get_untracked() == "telegram" && wizard.bot_name.get_untracked().is_none() {
            check_bot(true);
        } else {
            validate_and_next.run(());
        }
    });
    // Next is offered once every field has something in it; what is in them is checked on Next,
    // so a mistake gets a sentence naming the field rather than a silently disabled button.
    let ready = Signal::derive(move || {
        let filled = |fields: &[String]| fields.iter().all(|field| !field.trim().is_empty());
        match channel.get().as_str() {
            "whatsapp" => filled(&[
                wizard.twilio_sid.get(),
                wizard.twilio_token.get(),
                whatsapp_number.get(),
            ]),
            "discord" => filled(&[wizard.discord_token.get()]),
            _ => filled(&[wizard.telegram_token.get()]),
        }
    });
    view! {
        <StepHeader step=3 title="Where you will chat"/>
        <div class="choices">
            <label class="check"><input type="radio" name="channel" id="channel-telegram" value="telegram"
                prop:checked=move || channel.get() == "telegram" on:change=move |_| channel.set("telegram".into())/>" Telegram"</label>
            <label class="check"><input type="radio" name="channel" id="channel-whatsapp" value="whatsapp"
                prop:checked=move || channel.get() == "whatsapp" on:change=move |_| channel.set("whatsapp".into())/>" WhatsApp (via Twilio)"</label>
            <label class="check"><input type="radio" name="channel" id="channel-discord" value="discord"
                prop:checked=move || channel.get() == "discord" on:change=move |_| channel.set("discord".into())/>" Discord"</label>
        </div>
        <Show when=move || channel.get() == "telegram">
            <ol class="howto">
                <li>"In Telegram, open " <a href="https://t.me/BotFather" rel="noopener noreferrer" target="_blank">"@BotFather"</a> ", send /newbot and follow the prompts."</li>
                <li>"Paste the token it gives you here."</li>
                <li>"After the deploy, one tap on “Pair” makes you the bot's owner: only you can talk to your agent."</li>
            </ol>
            <Field label="Bot token" value=wizard.telegram_token secret=true id="telegram-token" placeholder="123456789:AA…"/>
            <button class="button" id="check-bot" on:click=move |_| check_bot(false)>"Check bot"</button>
            <Show when=move || wizard.bot_name.get().is_some()>
                <p class="ok" id="bot-ok">{move || format!("✓ Bot {} is ready.", wizard.bot_name.get().unwrap_or_default())}</p>
            </Show>
            <Field label="Your Telegram user id (optional)" value=telegram_owner id="telegram-owner" placeholder="123456789"
                hint="Only if you know it: pairing after the deploy does the same."/>
        </Show>
        <Show when=move || channel.get() == "whatsapp">
            <ol class="howto">
                <li>"In the " <a href="https://console.twilio.com" rel="noopener noreferrer" target="_blank">"Twilio console"</a> ", copy the Account SID and Auth Token from the dashboard."</li>
                <li>"Under Messaging → Senders → WhatsApp senders (or the Sandbox), note the WhatsApp number."</li>
                <li>"After deploying, this page gives you the webhook URL to paste into that sender."</li>
            </ol>
            <Field label="Account SID" value=wizard.twilio_sid secret=true id="twilio-sid" placeholder="AC…"/>
            <Field label="Auth token" value=wizard.twilio_token secret=true id="twilio-token"/>
            <Field label="Twilio WhatsApp number" value=whatsapp_number id="whatsapp-number" placeholder="+14155238886"/>
            <Field label="Your own WhatsApp number (optional)" value=whatsapp_owner id="whatsapp-owner" placeholder="+15551234567"
                hint="Only this number may talk to your agent; leave it empty to pair with one tap after the deploy. Twilio is checked by your relay after deploy (Twilio does not accept calls from browsers)."/>
        </Show>
        <Show when=move || channel.get() == "discord">
            <DiscordFields owner=discord_owner/>
        </Show>
        <ErrorLine error=error/>
        <Nav step=3 ready=ready on_next=on_next/>
    }
}

/// Discord's part of the channel step. The token's shape is checked on Next (Discord's API is
/// not called from the browser); whether Discord takes it, the Done screen shows from the
/// relay, which connects right after the deploy.
#[component]
fn DiscordFields(owner: RwSignal<String>) -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    view! {
        <ol class="howto">
            <li>"In the " <a href="https://discord.com/developers/applications" rel="noopener noreferrer" target="_blank">"Discord Developer Portal"</a> ", create a New Application and give it a name."</li>
            <li>"Open Bot, press Reset Token and paste the token here."</li>
            <li>"After the deploy, sending the bot the pairing code makes you its owner: only you can talk to your agent."</li>
        </ol>
        <Field label="Bot token" value=wizard.discord_token secret=true id="discord-token" placeholder="MTIz….Gh….…"/>
        <Field label="Your Discord user id (optional)" value=owner id="discord-owner" placeholder="80351110224678912"
            hint="Only if you know it (Developer Mode → Copy User ID): pairing does the same."/>
    }
}

#[component]
fn KeyStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let error = RwSignal::new(None::<String>);
    let cap = RwSignal::new(wizard.draft.get_untracked().daily_cap_usd);
    Effect::new(move |_| {
        let typed = cap.get();
        wizard.draft.update(|d| d.daily_cap_usd = typed);
    });
    let ask_first = RwSignal::new(wizard.draft.get_untracked().ask_first);
    Effect::new(move |_| {
        let ticked = ask_first.get();
        wizard.draft.update(|d| d.ask_first = ticked);
    });
    forget_when_changed(wizard.anthropic_key, move || wizard.key_checked.set(false));
    let check = move |and_next: bool| {
        let api = config.with_value(|c| c.anthropic_api.clone());
        let key = wizard.anthropic_key.get_untracked();
        error.set(None);
        spawn_local(async move {
            match checks::anthropic_key(&api, &key).await {
                Ok(()) => {
                    wizard.key_checked.set(true);
                    if and_next {
                        next(4);
                    }
                }
                Err(e) => {
                    wizard.key_checked.set(false);
                    error.set(Some(e));
                }
            }
        });
    };
    view! {
        <StepHeader step=4 title="Your Anthropic key"/>
        <p>"Claude Code runs with your own key. Create one at "
            <a href="https://console.anthropic.com/settings/keys" rel="noopener noreferrer" target="_blank">"console.anthropic.com"</a>"."</p>
        <Field label="Anthropic API key" value=wizard.anthropic_key secret=true id="anthropic-key" placeholder="sk-ant-…"/>
        <button class="button" id="check-key" on:click=move |_| check(false)>"Check key"</button>
        <Show when=move || wizard.key_checked.get()>
            <p class="ok" id="key-ok">"✓ Anthropic accepts this key."</p>
        </Show>
        <ErrorLine error=error/>
        <Field label="Daily spend cap (US dollars)" value=cap id="daily-cap"
            hint="The agent takes no new job once it has spent this much on your key in a day (UTC); /status shows where today stands. Leave it empty for no cap."/>
        <label class="check">
            <input type="checkbox" id="ask-first" bind:checked=ask_first/>
            " Ask me before the agent runs a command, fetches from the web or uses the browser"
        </label>
        <small class="muted">"You answer with Allow, Always allow or Deny in the chat; /mode switches a conversation later."</small>
        <Field label="GitHub token (optional)" value=wizard.github_token secret=true id="github-token"
            hint="Lets the agent clone and push your repositories over HTTPS."/>
        <Nav step=4 ready=Signal::derive(move || !wizard.anthropic_key.get().trim().is_empty())
            on_next=Callback::new(move |_| if wizard.key_checked.get_untracked() { next(4) } else { check(true) })/>
    }
}

#[component]
fn ReviewStep() -> impl IntoView {
    let wizard = expect_context::<Wizard>();
    let config = StoredValue::new(expect_context::<Config>());
    let spec = config.with_value(|c| wizard.spec(c));
    let error = RwSignal::new(spec.as_ref().err().map(|e| wizard.explain(e)));
    let summary = spec.ok().map(|spec| {
        let estimate = provision::cost::estimate(&spec, 2.0);
        let channel = spec.channel.kind();
        let channel_secrets = match channel {
            provision::spec::ChannelKind::Telegram => "the Telegram bot token",
            provision::spec::ChannelKind::WhatsappTwilio => "the Twilio Account SID and auth token",
            provision::spec::ChannelKind::Discord => "the Discord bot token",
        };
        view! {
            <ul class="review">
                <li><strong>{spec.relay_app()}</strong>{format!(": the relay, always on, 256 MB, public HTTPS, in {}", spec.region)}</li>
                <li><strong>{spec.vm_app()}</strong>{format!(": the agent, {} MB, private (Flycast), sleeps when idle, with a {} GB volume", spec.vm_guest.memory_mb, spec.volume_gb)}</li>
                <li>{if spec.allowed_senders.is_empty() {
                    "Allowed to chat: you, once you pair on the last screen (the code works once, for an hour)".to_string()
                } else {
                    format!("Allowed to chat: {}, and whoever pairs first on the last screen", spec.allowed_senders.join(", "))
                }}</li>
                <li id="review-cap">{match spec.max_daily_usd {
                    Some(cap) => format!("Spend on your Anthropic key: at most ${} a day (UTC)", dollars(cap)),
                    None => "Spend on your Anthropic key: no daily cap".to_string(),
                }}</li>
                <li id="review-approvals">{match spec.approvals {
                    provision::spec::Approvals::Ask => "Commands, the web and the browser: the agent asks you first",
                    provision::spec::Approvals::Auto => "Commands, the web and the browser: the agent uses them without asking",
                }}</li>
            </ul>
            <h2>"Where your secrets go"</h2>
            <ul class="review">
                <li>{format!("The relay app's Fly secrets: {channel_secrets}, a random relay↔agent token and the one-time pairing code.")}</li>
                <li>"The agent app's Fly secrets: your Anthropic key, the GitHub token if given, the same relay↔agent token."</li>
                <li>"Your Fly token: used by this page only, sent only to Fly's API."</li>
            </ul>
            <h2>"Cost"</h2>
            <p id="cost">{format!("About ${} a month at 2 hours of agent work a day: relay ${}, agent ${} while running and ${} stopped, volume ${}. Claude usage is billed by Anthropic.",
                dollars(estimate.total), dollars(estimate.relay), dollars(estimate.vm_running), dollars(estimate.vm_stopped), dollars(estimate.volume))}</p>
        }
    });
    view! {
        <StepHeader step=5 title="Review"/>
        {summary}
        <ErrorLine error=error/>
        <div class="nav">
            <a class="button" id="back" href="#/new/4">"Back"</a>
            <button class="button primary" id="deploy" disabled=move || error.get().is_some() on:click=move |_| {
                wizard.draft.update(|d| d.events.clear());
                wizard.deploy_error.set(None);
                navigate(&Route::New(6));
            }>"Deploy"</button>
        </div>
    }
}
