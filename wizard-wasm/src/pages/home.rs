//! The home screen: the deployments remembered on this device, each with its relay's live
//! health, plus export and import of that list.

use crate::storage::{self, LocalStorage};
use crate::wizard::Wizard;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

#[component]
pub fn Home() -> impl IntoView {
    let deployments = RwSignal::new(storage::deployments(&LocalStorage));
    let message = RwSignal::new(None::<String>);
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
            match storage::import(&LocalStorage, &text) {
                Ok(n) => message.set(Some(format!("Imported {n} deployment(s)."))),
                Err(e) => message.set(Some(e)),
            }
            deployments.set(storage::deployments(&LocalStorage));
        });
    };
    let wizard = expect_context::<Wizard>();
    view! {
        <h1>"Your deployments"</h1>
        <Show when=move || deployments.get().is_empty()>
            <p class="muted">"No deployments on this device yet."</p>
        </Show>
        <ul class="cards" id="deployments">
            {move || deployments.get().into_iter().map(|d| view! { <DeploymentCard deployment=d/> }).collect_view()}
        </ul>
        <a class="button primary" id="new-deployment" href="#/new/1" on:click=move |_| wizard.reset()>"New deployment"</a>
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
fn DeploymentCard(deployment: provision::Deployment) -> impl IntoView {
    let health = RwSignal::new("checking…".to_string());
    let url = format!("{}/health", deployment.relay_url);
    spawn_local(async move {
        let text = match gloo_net::http::Request::get(&url).send().await {
            // The relay reports itself only; the agent's state is on the detail screen, read
            // from Fly (asking the relay must never wake the agent).
            Ok(r) if r.ok() => "relay up".to_string(),
            Ok(r) => format!("relay answered {}", r.status()),
            Err(_) => "relay unreachable".into(),
        };
        health.set(text);
    });
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
