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

#[wasm_bindgen_test]
fn the_channel_step_names_the_field_that_is_wrong_never_its_value() {
    use wizard_wasm::wizard::Wizard;
    // The wizard saves its draft from an effect, which needs Leptos's task executor.
    let _ = any_spawner::Executor::init_wasm_bindgen();
    let owner = leptos::prelude::Owner::new();
    owner.with(|| {
        use leptos::prelude::*;
        let wizard = Wizard::new();
        wizard.draft.update(|d| {
            d.channel = "whatsapp".into();
            d.whatsapp_number = "+14155238886".into();
            d.whatsapp_owner = "+1 (555) 123-4567".into();
        });
        wizard
            .twilio_sid
            .set(format!("AC{}", "0123456789abcdef".repeat(2)));
        wizard.twilio_token.set("f".repeat(32));
        assert_eq!(wizard.channel_problem(), Ok(()));
        assert_eq!(
            Wizard::allowed_senders(&wizard.draft.get_untracked()),
            vec!["whatsapp:+15551234567".to_string()],
            "a number typed with spaces, dashes and brackets is tidied"
        );

        wizard.twilio_token.set("not-hex-secret".into());
        let said = wizard.explain(&wizard.channel_problem().unwrap_err());
        assert!(said.starts_with("Auth token:"), "{said}");
        assert!(!said.contains("not-hex-secret"), "{said}");
        wizard.twilio_token.set("f".repeat(32));

        wizard
            .draft
            .update(|d| d.whatsapp_owner = "my phone".into());
        let said = wizard.explain(&wizard.channel_problem().unwrap_err());
        assert!(said.starts_with("Your own WhatsApp number:"), "{said}");

        wizard.draft.update(|d| {
            d.channel = "telegram".into();
            d.telegram_owner = "@me".into();
        });
        wizard
            .telegram_token
            .set("123456:SIMbotTOKENforTheLocalDemo_0000000".into());
        let said = wizard.explain(&wizard.channel_problem().unwrap_err());
        assert!(said.starts_with("Your Telegram user id:"), "{said}");
        wizard.draft.update(|d| d.telegram_owner = "4242".into());
        assert_eq!(wizard.channel_problem(), Ok(()));
    });
    drop(owner);
    LocalStorage.remove(storage::DRAFT_KEY);
}

/// The pairing code is this tab's alone: the wizard's draft in localStorage (which every page
/// of a shared origin such as `<you>.github.io` can read) never holds it; sessionStorage does,
/// so a reload in the same tab still shows the code a resumed deploy sets.
#[wasm_bindgen_test]
fn the_pairing_code_never_lands_in_local_storage() {
    use leptos::prelude::GetUntracked;
    // The wizard keeps its draft with an Effect, which needs the browser's executor.
    let _ = any_spawner::Executor::init_wasm_bindgen();
    let owner = leptos::prelude::Owner::new();
    owner.with(|| {
        let wizard = wizard_wasm::wizard::Wizard::new();
        let code = wizard.draft.get_untracked().pairing_code;
        assert_eq!(code.len(), 16, "a code was made");
        let draft = serde_json::to_string(&wizard.draft.get_untracked()).unwrap();
        assert!(!draft.contains(&code), "the draft holds the code: {draft}");
        assert_eq!(
            wizard_wasm::storage::SessionStorage.get(wizard_wasm::storage::PAIRING_KEY),
            Some(code.clone()),
        );
        let again = wizard_wasm::wizard::Wizard::new();
        assert_eq!(
            again.draft.get_untracked().pairing_code,
            code,
            "kept across a reload"
        );
    });
}

/// The home screen reads the list with the browser's JSON parser, not serde_json: it must see
/// what `remember` (serde) wrote, and the export must import back as the same deployments.
#[wasm_bindgen_test]
fn the_home_list_and_the_export_read_what_remember_wrote() {
    LocalStorage.remove(DEPLOYMENTS_KEY);
    assert!(storage::bookmarks(&LocalStorage).is_empty());
    assert_eq!(storage::export(&LocalStorage), "[]");
    let deployment = |prefix: &str, region: &str| provision::Deployment {
        prefix: prefix.into(),
        region: region.into(),
        relay_app: format!("{prefix}-relay"),
        vm_app: format!("{prefix}-vm"),
        relay_url: format!("https://{prefix}-relay.fly.dev"),
        ..Default::default()
    };
    storage::remember(&LocalStorage, &deployment("older", "ams"));
    storage::remember(&LocalStorage, &deployment("newer", "fra"));
    assert_eq!(
        storage::bookmarks(&LocalStorage),
        [
            storage::Bookmark {
                prefix: "newer".into(),
                region: "fra".into(),
                relay_url: "https://newer-relay.fly.dev".into(),
            },
            storage::Bookmark {
                prefix: "older".into(),
                region: "ams".into(),
                relay_url: "https://older-relay.fly.dev".into(),
            },
        ]
    );
    let exported = storage::export(&LocalStorage);
    assert!(exported.contains("\n  {"), "indented: {exported}");
    let elsewhere = storage::MemoryStore::default();
    assert_eq!(storage::import(&elsewhere, &exported), Ok(2));
    assert_eq!(
        storage::deployments(&elsewhere),
        storage::deployments(&LocalStorage)
    );
    // Whatever else is stored there lists nothing, and exports an empty list.
    for stored in ["{", "{}", "[1, null, {\"region\": \"ams\"}]"] {
        LocalStorage.set(DEPLOYMENTS_KEY, stored);
        assert!(storage::bookmarks(&LocalStorage).is_empty(), "{stored}");
    }
    LocalStorage.set(DEPLOYMENTS_KEY, "{");
    assert_eq!(storage::export(&LocalStorage), "[]");
    LocalStorage.remove(DEPLOYMENTS_KEY);
}

/// What the page's first part hands the rest crosses as one JavaScript object.
#[wasm_bindgen_test]
fn a_handover_reads_back_as_it_was_written() {
    use wizard_wasm::front::Handover;
    let full = Handover {
        focused: "next".into(),
        fly_token: Some("FlyV1 typed".into()),
        check_token: Some(true),
        import: Some("[]".into()),
    };
    // `Handover` has no `Debug` (it holds the token), hence `assert!` rather than `assert_eq!`.
    assert!(Handover::from_js(&full.to_js()) == full);
    let bare = Handover::default();
    assert!(Handover::from_js(&bare.to_js()) == bare);
    // Anything else (nothing, or the wrong types) hands over nothing.
    assert!(Handover::from_js(&wasm_bindgen::JsValue::NULL) == Handover::default());
    let odd =
        js_sys::JSON::parse(r#"{"focused": 3, "fly_token": false, "check_token": "yes"}"#).unwrap();
    assert!(Handover::from_js(&odd) == Handover::default());
}
