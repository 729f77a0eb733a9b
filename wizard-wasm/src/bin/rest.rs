//! The rest of the page: the whole app (the wizard, deploy, the detail screen, teardown and
//! the Fly client). `cargo xtask dist` builds it beside the first part (`src/main.rs`), which
//! fetches it once the home screen is up and calls [`take_over`].

use wasm_bindgen::prelude::wasm_bindgen;

fn main() {}

/// Mounts the whole app, at the current route; the first part has unmounted itself.
/// `focused` is the id of the element that had focus there (`-` for one without an id, empty
/// for none): focus goes back to that control, or to the screen's heading where it is gone.
#[wasm_bindgen]
pub fn take_over(focused: String) {
    leptos::mount::mount_to_body(wizard_wasm::App);
    if focused.is_empty() {
        return;
    }
    // The screen is drawn once config.json has arrived: wait for its control or heading.
    leptos::task::spawn_local(async move {
        let document = leptos::prelude::document();
        for _ in 0..100 {
            let target = document
                .get_element_by_id(&focused)
                .or_else(|| document.query_selector("main h1").ok().flatten());
            if let Some(target) = target {
                if target.id() == focused {
                    if let Ok(control) =
                        wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(target)
                    {
                        let _ = control.focus();
                    }
                } else {
                    wizard_wasm::focus_heading();
                }
                return;
            }
            gloo_timers::future::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}
