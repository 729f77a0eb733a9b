//! Small pieces the screens share: a labelled field, a copy button, the step header.

use leptos::prelude::*;

/// A labelled text input bound to `value`. `secret` hides what is typed.
#[component]
pub fn Field(
    label: &'static str,
    value: RwSignal<String>,
    #[prop(optional)] secret: bool,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] id: &'static str,
    #[prop(optional)] hint: &'static str,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                id=id
                type=if secret { "password" } else { "text" }
                autocomplete="off"
                autocapitalize="off"
                spellcheck="false"
                placeholder=placeholder
                bind:value=value
            />
            <Show when=move || !hint.is_empty()>
                <small class="muted">{hint}</small>
            </Show>
        </label>
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

/// "Step n of 7" and a title.
#[component]
pub fn StepHeader(step: u8, title: &'static str) -> impl IntoView {
    view! {
        <p class="muted step">{format!("New deployment · step {step} of 7")}</p>
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
