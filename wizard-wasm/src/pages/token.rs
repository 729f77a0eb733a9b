//! The wizard's first step, the Fly token: one form for both parts of the page. A tap on New
//! deployment opens it at once, before the rest of the page has arrived, so the form needs
//! nothing of the Fly client: what checks the token is given to it. The whole app checks with
//! Fly ([`crate::pages::new`]); the first part alone keeps the tap for the rest, which checks
//! once it has taken over ([`crate::front`]).

use crate::storage::{KeyValue, LocalStorage, TOKEN_KEY};
use crate::ui::{CopyButton, ErrorLine, Field, Nav, StepHeader};
use leptos::prelude::*;

/// The Fly token as typed, whether to remember it, and the org a check found it works for.
#[derive(Clone, Copy)]
pub struct FlyToken {
    pub token: RwSignal<String>,
    pub remember: RwSignal<bool>,
    /// Set by a passing check; forgotten when the token changes.
    pub org: RwSignal<Option<String>>,
}

impl FlyToken {
    /// The token this device remembers, if the user chose that; else empty.
    pub fn remembered() -> FlyToken {
        let remembered = LocalStorage.get(TOKEN_KEY);
        FlyToken {
            remember: RwSignal::new(remembered.is_some()),
            token: RwSignal::new(remembered.unwrap_or_default()),
            org: RwSignal::new(None),
        }
    }

    /// Stores or forgets the token on this device, as the user chose.
    pub fn apply_choice(&self) {
        if self.remember.get_untracked() {
            LocalStorage.set(TOKEN_KEY, self.token.get_untracked().trim());
        } else {
            LocalStorage.remove(TOKEN_KEY);
        }
    }
}

/// A check under way and what the last one said.
#[derive(Clone, Copy)]
pub struct TokenCheck {
    pub checking: RwSignal<bool>,
    pub error: RwSignal<Option<String>>,
    /// The token is the user's personal one (it works, but an org token is safer).
    pub personal: RwSignal<bool>,
    pub note: RwSignal<Option<&'static str>>,
}

impl TokenCheck {
    pub fn new() -> TokenCheck {
        TokenCheck {
            checking: RwSignal::new(false),
            error: RwSignal::new(None),
            personal: RwSignal::new(false),
            note: RwSignal::new(None),
        }
    }
}

impl Default for TokenCheck {
    fn default() -> Self {
        TokenCheck::new()
    }
}

/// Step 1's screen. `on_check(and_next)` checks the token (it is not empty), then moves on
/// when `and_next` and the check passed: Check token and Next share it, one tap less.
#[component]
pub fn TokenForm(fly: FlyToken, check: TokenCheck, on_check: Callback<bool>) -> impl IntoView {
    let TokenCheck {
        checking,
        error,
        personal,
        note,
    } = check;
    crate::ui::forget_when_changed(fly.token, move || fly.org.set(None));
    let forwarding = crate::browser::forwarding();
    let location = window().location();
    let host = location.host().unwrap_or_default();
    let shared_origin =
        crate::storage::origin_is_shared(&host, &location.pathname().unwrap_or_default());
    let shared_warning = StoredValue::new(format!(
        "Other pages at {host} can read what this page stores, a remembered token included. Do not remember it here unless you trust every page there, or host this page at an address of its own."
    ));
    let command = Signal::derive(|| "fly tokens create org --expiry 720h".to_string());
    let run_check = move |and_next: bool| {
        if fly.token.get_untracked().trim().is_empty() {
            error.set(Some("Paste your Fly token first.".into()));
            return;
        }
        error.set(None);
        on_check.run(and_next);
    };
    view! {
        <StepHeader step=1 title="Your Fly.io token"/>
        <p>"textslash runs on your own Fly.io account. It needs a token that may create apps in one organization:"</p>
        <ol class="howto">
            <li>"Sign in to Fly.io and open your organization's " <a href="https://fly.io/dashboard/personal/tokens" id="fly-tokens" rel="noopener noreferrer" target="_blank">"Tokens page"</a> " (Dashboard → your organization → Tokens)."</li>
            <li>"Create an " <strong>"org token"</strong> ", not a deploy token: a deploy token manages one app, and textslash makes two. An expiry of 30 days is plenty; make a new one whenever you need it."</li>
            <li>"Copy the whole value (it starts with FlyV1) and paste it here."</li>
        </ol>
        <details>
            <summary>"At a computer with flyctl?"</summary>
            <p class="command"><code>"fly tokens create org --expiry 720h"</code> <CopyButton text=command id="copy-command"/></p>
        </details>
        <p class="muted">{move || if forwarding.get() {
            "The token goes from this page to Fly's API through the server this page came from, which passes it on without keeping it. It is sent nowhere else."
        } else {
            "The token goes from this page straight to Fly's API. It is never sent anywhere else."
        }}</p>
        <Field label="Fly token" value=fly.token secret=true id="fly-token" placeholder="FlyV1 fm2_…"/>
        <label class="check">
            <input type="checkbox" id="remember-token" bind:checked=fly.remember on:change=move |_| fly.apply_choice()/>
            " Remember my Fly token on this device"
        </label>
        <Show when=move || fly.remember.get()>
            <p class="warning">"Anyone who can use this browser can then manage your Fly apps. Untick to remove it."</p>
            <Show when=move || shared_origin>
                <p class="warning" id="shared-origin">{move || shared_warning.get_value()}</p>
            </Show>
        </Show>
        <button class="button" id="check-token" on:click=move |_| run_check(false) disabled=move || checking.get()>
            {move || if checking.get() { "Checking…" } else { "Check token" }}
        </button>
        <Show when=move || fly.org.get().is_some()>
            <p class="ok" id="token-ok">{move || format!("✓ Token works for the org “{}”.", fly.org.get().unwrap_or_default())}</p>
        </Show>
        <Show when=move || fly.org.get().is_some() && note.get().is_some()>
            <p class="muted" id="token-note">{move || note.get().unwrap_or_default()}</p>
        </Show>
        <Show when=move || fly.org.get().is_some() && personal.get()>
            <p class="warning" id="token-personal">"This is your personal token: it can manage every organization you are in and it expires soon. It works, but an org token is safer."</p>
        </Show>
        <ErrorLine error=error/>
        <Nav step=1 ready=Signal::derive(move || !fly.token.get().trim().is_empty() && !checking.get())
            on_next=Callback::new(move |_| if fly.org.get_untracked().is_some() { crate::ui::next(1) } else { run_check(true) })/>
    }
}
