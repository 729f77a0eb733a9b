//! The page's first part (trunk builds this binary; index.html loads it): the home screen,
//! then the rest of the page fetched behind it ([`wizard_wasm::front`]), then the offline
//! cache. Panic messages go to the console in debug builds only.

use leptos::prelude::*;
use wizard_wasm::front;

fn main() {
    // The hook and its formatting cost several KB of the release wasm, which aborts on panic.
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    let rest_loading = RwSignal::new(false);
    let failed = RwSignal::new(false);
    let first = leptos::mount::mount_to(document().body().expect("a body"), move || {
        view! { <front::Front rest_loading=rest_loading failed=failed/> }
    });
    leptos::task::spawn_local(async move {
        // Once the home screen is in the document: the rest is fetched right behind it.
        gloo_timers::future::sleep(std::time::Duration::ZERO).await;
        let take_over = front::load_rest()
            .await
            .and_then(|rest| front::take_over(&rest));
        match take_over {
            Ok(take_over) => {
                if rest_loading.get_untracked() {
                    // The tap that waited: the rest opens the wizard.
                    let _ = window().location().set_hash("/new/1");
                }
                // Keyboard and screen-reader users keep their place: the rest puts focus back
                // on the control of the same id, or on its screen's heading.
                let focused = document()
                    .active_element()
                    .filter(|e| e.tag_name() != "BODY")
                    .map(|e| {
                        if e.id().is_empty() {
                            "-".into()
                        } else {
                            e.id()
                        }
                    })
                    .unwrap_or_default();
                drop(first);
                let _ = take_over.call1(&wasm_bindgen::JsValue::NULL, &focused.into());
            }
            Err(_) => failed.set(true),
        }
        // Only now: its first install fetches every file the page names, which would otherwise
        // compete with the rest's download (and outside the page's own connection).
        wizard_wasm::register_service_worker();
    });
}
