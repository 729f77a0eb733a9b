//! Browser tests: run by `cargo xtask test` in headless Chromium through wasm-bindgen-test and
//! chromedriver, against the real DOM and the real localStorage.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;
use wasm_bindgen_test::*;
use wizard_wasm::storage::{self, DEPLOYMENTS_KEY, KeyValue, LocalStorage};

wasm_bindgen_test_configure!(run_in_browser);

fn body_text() -> String {
    web_sys::window()
        .unwrap()
        .document()
        .unwrap()
        .body()
        .unwrap()
        .inner_text()
}

async fn wait_for_text(needle: &str) -> String {
    for _ in 0..100 {
        let text = body_text();
        if text.contains(needle) {
            return text;
        }
        gloo_timers::future::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the page never showed {needle:?}; it shows {:?}",
        body_text()
    );
}

#[wasm_bindgen_test]
fn deployments_survive_in_real_local_storage() {
    LocalStorage.remove(DEPLOYMENTS_KEY);
    let deployment = provision::Deployment {
        prefix: "web-test".into(),
        region: "ams".into(),
        ..Default::default()
    };
    storage::remember(&LocalStorage, &deployment);
    let raw = web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .get_item(DEPLOYMENTS_KEY)
        .unwrap();
    assert!(raw.unwrap().contains("\"web-test\""));
    assert_eq!(storage::find(&LocalStorage, "web-test"), Some(deployment));
    storage::forget(&LocalStorage, "web-test");
    assert!(storage::find(&LocalStorage, "web-test").is_none());
}

#[wasm_bindgen_test]
async fn the_app_mounts_and_lists_remembered_deployments() {
    LocalStorage.remove(DEPLOYMENTS_KEY);
    storage::remember(
        &LocalStorage,
        &provision::Deployment {
            prefix: "listed-one".into(),
            region: "fra".into(),
            ..Default::default()
        },
    );
    web_sys::window()
        .unwrap()
        .location()
        .set_hash("#/")
        .unwrap();
    leptos::mount::mount_to_body(wizard_wasm::App);
    let text = wait_for_text("Your deployments").await;
    assert!(text.contains("listed-one"), "{text}");
    assert!(text.contains("New deployment"), "{text}");
    LocalStorage.remove(DEPLOYMENTS_KEY);
}
