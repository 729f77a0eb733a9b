//! The home screen: the deployments remembered on this device, each with its relay's live
//! health, plus export and import of that list. It is in the page's first part
//! ([`crate::front`]), so it needs nothing of the wizard, the deploy, the Fly client or
//! serde_json: what starts a deployment and what imports a file are given to it.

use crate::storage::{self, LocalStorage};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

/// `on_new` starts a new deployment (forgets the last draft) as New deployment opens the
/// wizard. `on_import` merges an export file's text in and says how many deployments it held,
/// or keeps it (`None`) for the rest of the page, which imports it once it has taken over.
/// `check_health` asks each relay how it is: the whole app does; the first part leaves it to
/// the rest, which takes over moments later (asking twice would only compete with the rest's
/// download on a slow link).
#[component]
pub fn Home(
    on_new: Callback<()>,
    on_import: Callback<String, Option<Result<usize, String>>>,
    check_health: bool,
) -> impl IntoView {
    let deployments = RwSignal::new(storage::bookmarks(&LocalStorage));
    let message = RwSignal::new(None::<String>);
    let import_text = move |text: String| {
        message.set(Some(match on_import.run(text) {
            Some(Ok(n)) => format!("Imported {n} deployment(s)."),
            Some(Err(e)) => e,
            None => "Importing once the page has loaded…".into(),
        }));
        deployments.set(storage::bookmarks(&LocalStorage));
    };
    // A file chosen in the page's first part, before the rest had arrived.
    if let Some(text) = crate::front::take_handed_over(|handover| handover.import.take()) {
        import_text(text);
    }
    let export = move |_| {
        let text = storage::export(&LocalStorage);
        let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(&text));
        let options = web_sys::BlobPropertyBag::new();
        options.set_type("application/json");
        if let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)
            && let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob)
            && let Some(anchor) = document()
                .create_element("a")
                .ok()
                .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok())
        {
            anchor.set_href(&url);
            anchor.set_download("textslash-deployments.json");
            anchor.click();
            let _ = web_sys::Url::revoke_object_url(&url);
        }
    };
    let import = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            import_text(text);
        });
    };
    view! {
        <h1>"Your deployments"</h1>
        <Show when=move || deployments.get().is_empty()>
            <p class="muted">"No deployments on this device yet."</p>
        </Show>
        <ul class="cards" id="deployments">
            {move || deployments.get().into_iter().map(|d| view! { <DeploymentCard deployment=d check_health=check_health/> }).collect_view()}
        </ul>
        <a class="button primary" id="new-deployment" href="#/new/1" on:click=move |_| on_new.run(())>"New deployment"</a>
        <div class="actions">
            <button class="button small" id="export" on:click=export>"Export"</button>
            <label class="button small">"Import" <input type="file" accept="application/json,.json" class="hidden" on:change=import/></label>
        </div>
        <Show when=move || message.get().is_some()>
            <p class="muted">{move || message.get().unwrap_or_default()}</p>
        </Show>
        // The version of this page, and of the images it deploys.
        <p class="muted" id="page-version">{concat!("textslash ", env!("CARGO_PKG_VERSION"))}</p>
    }
}

#[component]
fn DeploymentCard(deployment: storage::Bookmark, check_health: bool) -> impl IntoView {
    let health = RwSignal::new("checking…".to_string());
    let url = format!("{}/health", deployment.relay_url);
    if check_health {
        spawn_local(async move {
            // Plain fetch rather than gloo-net: this component is in the page's first part too.
            let answer = wasm_bindgen_futures::JsFuture::from(window().fetch_with_str(&url))
                .await
                .ok()
                .and_then(|r| r.dyn_into::<web_sys::Response>().ok());
            let text = match answer {
                // The relay reports itself only; the agent's state is on the detail screen, read
                // from Fly (asking the relay must never wake the agent).
                Some(r) if r.ok() => "relay up".to_string(),
                Some(r) => format!("relay answered {}", r.status()),
                None => "relay unreachable".into(),
            };
            health.set(text);
        });
    }
    view! {
        <li class="card">
            <a href=format!("#/d/{}", deployment.prefix)>
                <strong>{deployment.prefix.clone()}</strong>
                <span class="muted">{format!(" · {}", deployment.region)}</span>
                <span class="health">{move || health.get()}</span>
            </a>
        </li>
    }
}
