//! The rest of the page: the whole app (the wizard, deploy, the detail screen, teardown and
//! the Fly client). `cargo xtask dist` builds it beside the first part (`src/main.rs`), which
//! fetches it once the home screen is up and calls [`take_over`].

use wasm_bindgen::prelude::wasm_bindgen;

fn main() {}

/// Mounts the whole app, at the current route; the first part has unmounted itself.
/// `focused` is the id of the element that had focus there (`-` for one without an id, empty
/// for none): see [`wizard_wasm::HandedOver`].
#[wasm_bindgen]
pub fn take_over(focused: String) {
    leptos::mount::mount_to_body(move || {
        if !focused.is_empty() {
            leptos::prelude::provide_context(wizard_wasm::HandedOver {
                focused: focused.clone(),
            });
        }
        wizard_wasm::App()
    });
}
