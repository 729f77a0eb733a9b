//! The rest of the page: the whole app (the wizard, deploy, the detail screen, teardown and
//! the Fly client). `cargo xtask dist` builds it beside the first part (`src/main.rs`), which
//! fetches it once its first screen is up and calls [`take_over`].

use leptos::prelude::{StoredValue, provide_context};
use wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use wizard_wasm::front::{HandedOver, Handover};

fn main() {}

/// Mounts the whole app, at the current route; the first part has unmounted itself and hands
/// over what the user did there ([`Handover`]: the token typed, a check or an import that
/// waited, where the focus was).
#[wasm_bindgen]
pub fn take_over(handover: JsValue) {
    let handover = Handover::from_js(&handover);
    leptos::mount::mount_to_body(move || {
        provide_context(HandedOver(StoredValue::new(handover.clone())));
        wizard_wasm::App()
    });
}
