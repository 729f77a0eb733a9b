//! The textslash page: a Leptos CSR app that deploys and manages a textslash stack on the
//! user's own Fly.io account, straight from the browser.
//!
//! # Layout
//! - [`front`]: the page's first part, the home screen and the wizard's first step; the rest
//!   ([`App`]) is fetched behind it and takes over (`src/main.rs`, `src/bin/rest.rs`).
//! - [`route`]: hash routing (`#/`, `#/new/<step>`, `#/d/<prefix>`).
//! - [`config`]: `config.json` beside the page (API base, app URL, images).
//! - [`browser`]: `provision`'s transport and clock for the browser.
//! - [`storage`]: what the page remembers (never secrets unless the user opts in).
//! - [`pages`]: one module per screen; [`ui`] the pieces they share.
//! - [`wizard`]: the new-deployment state (secrets in memory, the rest in a saved draft).
//! - [`checks`]: Telegram and Anthropic credential checks from the browser.
//!
//! Secrets live in memory (signals) only; nothing here logs them.

pub mod browser;
pub mod checks;
pub mod config;
pub mod front;
pub mod pages;
pub mod route;
pub mod storage;
pub mod ui;
pub mod wizard;

use leptos::prelude::*;
use route::Route;

/// Registers `sw.js`, which keeps the page's own files so a revisit loads offline.
pub fn register_service_worker() {
    if let Some(window) = web_sys::window() {
        let container = window.navigator().service_worker();
        // Not available on plain-http origins other than localhost; the page works without it.
        let _ = container.register("sw.js");
    }
}

/// On every move to another screen (not the first), focus goes to its heading.
fn focus_heading_on_new_screen(route: ReadSignal<Route>) {
    Effect::new(move |previous: Option<Route>| {
        let current = route.get();
        if previous.is_some_and(|previous| previous != current) {
            // After the new screen is in the DOM.
            request_animation_frame(focus_heading);
        }
        current
    });
}

/// Moves focus to the new screen's heading, so keyboard and screen-reader users start each
/// screen at its top instead of wherever the last screen's button was.
fn focus_heading() {
    let heading = document()
        .query_selector("main h1")
        .ok()
        .flatten()
        .and_then(|h| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(h).ok());
    if let Some(heading) = heading {
        // -1: focusable from code, but not a stop when tabbing.
        let _ = heading.set_attribute("tabindex", "-1");
        let _ = heading.focus();
    }
}

/// Said once the browser refused a direct Fly call and the page switched to its host's
/// forwarder (see [`browser`]).
#[component]
fn ForwardingNotice() -> impl IntoView {
    let forwarding = browser::forwarding();
    view! {
        <Show when=move || forwarding.get()>
            <p class="notice" role="status">"Your browser would not let this page call Fly's API directly, so for this visit its Fly calls go through the server this page came from, which passes them on without keeping them."</p>
        </Show>
    }
}

/// Focus on the control `id`, or on the screen's heading where there is none.
fn focus_again(id: &str) {
    let control = document()
        .get_element_by_id(id)
        .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok());
    match control {
        Some(control) => {
            let _ = control.focus();
        }
        None => focus_heading(),
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let route = route::use_route();
    // A plain signal filled once, rather than a resource under Suspense: the same behaviour
    // for one fetch, and several KB less wasm.
    let config = RwSignal::new(None::<config::Config>);
    leptos::task::spawn_local(async move { config.set(Some(config::Config::load().await)) });
    // Handed over by the page's first part with focus in it: focus goes back to the control
    // of the same id as soon as it is drawn (the header's at once), or to the screen's heading
    // where it is gone.
    if let Some(focused) =
        front::take_handed_over(|handover| Some(std::mem::take(&mut handover.focused)))
            .filter(|focused| !focused.is_empty())
    {
        // The screen is drawn once config.json is here; the header before it.
        Effect::new(move |done: Option<bool>| {
            let drawn =
                config.with(Option::is_some) || document().get_element_by_id(&focused).is_some();
            if done == Some(true) || !drawn {
                return done.unwrap_or(false);
            }
            let focused = focused.clone();
            request_animation_frame(move || focus_again(&focused));
            true
        });
    }
    let wizard = wizard::Wizard::new();
    provide_context(wizard);
    focus_heading_on_new_screen(route);
    view! {
        <front::Header/>
        <front::OfflineNotice/>
        <ForwardingNotice/>
        <main>
            {move || match config.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(config) => {
                    provide_context(config);
                    match route.get() {
                        Route::Home => view! {
                            <pages::home::Home on_new=Callback::new(move |()| wizard.reset()) check_health=true
                                on_import=Callback::new(|text: String| Some(storage::import(&storage::LocalStorage, &text)))/>
                        }.into_any(),
                        Route::New(step @ 1..=5) => view! { <pages::new::NewStep step=step/> }.into_any(),
                        // 7 was Done's own screen; a bookmark of it lands on the deploy screen.
                        Route::New(_) => pages::deploy::DeployStep().into_any(),
                        Route::Detail(prefix) => view! { <pages::detail::Detail prefix=prefix/> }.into_any(),
                        Route::NotFound(path) => view! {
                            <h1>"Nothing here"</h1>
                            <p>"There is no page at " <code>{path}</code> "."</p>
                            <a href="#/">"Back to your deployments"</a>
                        }.into_any(),
                    }
                }
            }}
        </main>
    }
}
