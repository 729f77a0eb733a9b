//! The page's first part (index.html carries it inline): the home screen and the wizard's
//! first step, then the rest of the page fetched behind them and handed the page
//! ([`wizard_wasm::front`]), then the offline cache. Panic messages go to the console in debug
//! builds only.

use leptos::prelude::*;
use wizard_wasm::front;

fn main() {
    // The hook and its formatting cost several KB of the release wasm, which aborts on panic.
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    let carried = front::Carried::new();
    let route = wizard_wasm::route::use_route();
    let first = leptos::mount::mount_to(document().body().expect("a body"), move || {
        view! { <front::Front carried=carried route=route/> }
    });
    leptos::task::spawn_local(async move {
        // Once the first screen is in the document: the rest is fetched right behind it.
        gloo_timers::future::sleep(std::time::Duration::ZERO).await;
        let take_over = front::load_rest()
            .await
            .and_then(|rest| front::take_over(&rest));
        match take_over {
            Ok(take_over) => {
                front::free_to_hand_over(carried, route).await;
                // Taken before this part's elements go: the focus among them.
                let handover = carried.handover();
                drop(first);
                let _ = take_over.call1(&wasm_bindgen::JsValue::NULL, &handover.to_js());
            }
            Err(_) => carried.failed.set(true),
        }
        // Only now: its first install fetches every file the page names, which would otherwise
        // compete with the rest's download (and outside the page's own connection).
        wizard_wasm::register_service_worker();
    });
}
