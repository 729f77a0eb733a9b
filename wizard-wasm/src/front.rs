//! The page's first part: the home screen alone (the remembered deployments and New
//! deployment), small enough to arrive quickly on a slow phone. `src/main.rs` mounts it, then
//! fetches the rest of the page ([`crate::App`], built as `src/bin/rest.rs`) and hands the
//! page over to it: this part unmounts and the rest mounts at the same route.
//!
//! Loading the rest goes through `textslashLoadRest`, a few lines of JavaScript in
//! `index.html` (a dynamic `import()` of the file its `<meta name="textslash-rest">` names),
//! so the Content-Security-Policy stays as strict: same-origin scripts and that inline
//! script's hash only.

use crate::pages::home::Home;
use crate::route::{self, Route};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

/// The bar at the top of every screen, in both parts.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="bar">
            <a class="brand" id="brand" href="#/">"textslash"</a>
        </header>
    }
}

/// "You are offline" while the browser says so.
#[component]
pub fn OfflineNotice() -> impl IntoView {
    let online = RwSignal::new(window().navigator().on_line());
    for (event, value) in [("online", true), ("offline", false)] {
        let handler = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || online.set(value));
        let _ = window().add_event_listener_with_callback(
            event,
            wasm_bindgen::JsCast::unchecked_ref(handler.as_ref()),
        );
        // The page lives as long as its listeners.
        handler.forget();
    }
    view! {
        <Show when=move || !online.get()>
            <p class="warning offline" role="status">"You are offline. The page works, but deploying and checking your apps need the network."</p>
        </Show>
    }
}

/// What the first part shows: the home screen, or, for a deep link to another screen, that it
/// is loading. `rest_loading` is set by a tap on New deployment that waits for the rest;
/// `failed` when the rest could not be loaded.
#[component]
pub fn Front(rest_loading: RwSignal<bool>, failed: RwSignal<bool>) -> impl IntoView {
    let route = route::use_route();
    view! {
        <Header/>
        <OfflineNotice/>
        <main>
            {move || match route.get() {
                Route::Home => view! { <Home rest_loading=rest_loading/> }.into_any(),
                _ => view! { <p class="muted" role="status" aria-busy="true">"Loading…"</p> }.into_any(),
            }}
            <Show when=move || failed.get()>
                <p class="error" role="alert">"The rest of this page did not load. Check your connection, then reload the page."</p>
            </Show>
        </main>
    }
}

/// Loads the rest of the page (`textslashLoadRest` in index.html): its module, initialised.
pub async fn load_rest() -> Result<JsValue, JsValue> {
    let load: js_sys::Function =
        js_sys::Reflect::get(&window(), &JsValue::from_str("textslashLoadRest"))?.dyn_into()?;
    let promise: js_sys::Promise = load.call0(&JsValue::NULL)?.dyn_into()?;
    wasm_bindgen_futures::JsFuture::from(promise).await
}

/// The rest's `take_over`, which mounts the whole app; called once this part has unmounted,
/// with whether to move focus to the new screen's heading (the focus was in this part, whose
/// elements are gone).
pub fn take_over(rest: &JsValue) -> Result<js_sys::Function, JsValue> {
    js_sys::Reflect::get(rest, &JsValue::from_str("take_over"))?.dyn_into()
}
