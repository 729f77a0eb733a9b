//! Small pieces the screens share: a labelled field, a copy button, the step header.

use crate::route::{Route, navigate};
use leptos::prelude::*;

/// A labelled text input bound to `value`. `secret` hides what is typed, with a Show button
/// beside it so a pasted token can be checked by eye on a phone.
#[component]
pub fn Field(
    label: &'static str,
    value: RwSignal<String>,
    id: &'static str,
    #[prop(optional)] secret: bool,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] hint: &'static str,
) -> impl IntoView {
    let shown = RwSignal::new(false);
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <div class="input-row">
                <input
                    id=id
                    type=move || if secret && !shown.get() { "password" } else { "text" }
                    autocomplete="off"
                    autocapitalize="off"
                    spellcheck="false"
                    placeholder=placeholder
                    bind:value=value
                />
                <Show when=move || secret>
                    <button class="button small" type="button" id=format!("{id}-show")
                        aria-controls=id aria-pressed=move || shown.get().to_string()
                        on:click=move |_| shown.update(|s| *s = !*s)>
                        {move || if shown.get() { "Hide" } else { "Show" }}
                    </button>
                </Show>
            </div>
            <Show when=move || !hint.is_empty()>
                <small class="muted">{hint}</small>
            </Show>
        </div>
    }
}

/// Copies `text` to the clipboard and says so.
#[component]
pub fn CopyButton(text: Signal<String>, #[prop(optional)] id: &'static str) -> impl IntoView {
    let (copied, set_copied) = signal(false);
    view! {
        <button class="button small" id=id type="button" on:click=move |_| {
            if let Some(window) = web_sys::window() {
                let _ = window.navigator().clipboard().write_text(&text.get_untracked());
                set_copied.set(true);
            }
        }>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
    }
}

/// How many screens a new deployment takes: token, names, channel, key, review, deploy.
pub const STEPS: u8 = 6;

/// "Step n of 6" and a title.
#[component]
pub fn StepHeader(step: u8, title: &'static str) -> impl IntoView {
    view! {
        <p class="muted step">{format!("New deployment · step {step} of {STEPS}")}</p>
        <h1>{title}</h1>
    }
}

/// An error sentence, when there is one.
#[component]
pub fn ErrorLine(error: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <Show when=move || error.get().is_some()>
            <p class="error" role="alert">{move || error.get().unwrap_or_default()}</p>
        </Show>
    }
}

/// Moves on to the step after `step`.
pub fn next(step: u8) {
    navigate(&Route::New(step + 1));
}

/// Runs `forget` whenever `value` changes after the screen was drawn: a check's result
/// belongs to the value that was checked (Next runs the check again for a new one).
pub fn forget_when_changed(value: RwSignal<String>, forget: impl Fn() + 'static) {
    Effect::new(move |previous: Option<String>| {
        let now = value.get();
        if previous.is_some_and(|p| p != now) {
            forget();
        }
        now
    });
}

/// Back and Next; Next runs `check` and moves on only if it says yes.
#[component]
pub fn Nav(step: u8, #[prop(into)] ready: Signal<bool>, on_next: Callback<()>) -> impl IntoView {
    view! {
        <div class="nav">
            <a class="button" id="back" href=if step == 1 { "#/".to_string() } else { format!("#/new/{}", step - 1) }>"Back"</a>
            <button class="button primary" id="next" disabled=move || !ready.get() on:click=move |_| on_next.run(())>
                "Next"
            </button>
        </div>
    }
}
