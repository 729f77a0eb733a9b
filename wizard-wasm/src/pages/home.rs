//! The home screen: the deployments remembered on this device.

use crate::storage::{self, LocalStorage};
use leptos::prelude::*;

#[component]
pub fn Home() -> impl IntoView {
    let deployments = storage::deployments(&LocalStorage);
    let empty = deployments.is_empty();
    view! {
        <h1>"Your deployments"</h1>
        <Show when=move || empty>
            <p class="muted">"No deployments on this device yet."</p>
        </Show>
        <ul class="cards">
            {deployments.into_iter().map(|d| view! {
                <li class="card">
                    <a href=format!("#/d/{}", d.prefix)>
                        <strong>{d.prefix.clone()}</strong>
                        <span class="muted">{format!(" · {}", d.region)}</span>
                    </a>
                </li>
            }).collect_view()}
        </ul>
        <a class="button primary" href="#/new/1">"New deployment"</a>
    }
}
