//! The page's first part (the home screen and the wizard's first step) working before the rest
//! of the page has arrived, and the rest carrying on with what was done there.

use super::*;

/// What an export file holds (`storage::export`): one deployment.
const EXPORTED: &str = r#"[{"prefix":"carried","relay_app":"carried-relay","vm_app":"carried-vm","region":"ams","channel":"telegram","relay_url":"http://127.0.0.1:9"}]"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn what_is_done_before_the_rest_arrives_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(dir.path(), Host::RestHeld).await;
    let browser = Browser::start("first-part").await;
    browser.go(&format!("{}/", world.page)).await;
    browser
        .wait_for_text("No deployments on this device yet", Duration::from_secs(30))
        .await;
    // An export file chosen now (as the file picker gives it) is kept, and the page says so.
    browser
        .eval(
            "const input = document.querySelector('input[type=file]');
             const chosen = new DataTransfer();
             chosen.items.add(new File([arguments[0]], 'textslash-deployments.json', { type: 'application/json' }));
             input.files = chosen.files;
             input.dispatchEvent(new Event('change', { bubbles: true }));",
            json!([EXPORTED]),
        )
        .await;
    browser
        .wait_for_text(
            "Importing once the page has loaded",
            Duration::from_secs(10),
        )
        .await;
    // New deployment opens step 1 at once; typing works; its check waits for the rest.
    browser.click("#new-deployment").await;
    browser
        .wait_for_text("Your Fly.io token", Duration::from_secs(10))
        .await;
    browser.wait_for_focus("H1 Your Fly.io token").await;
    browser.type_into("#fly-token", "sim-token").await;
    browser.click("#next").await;
    browser
        .wait_for_text("Checking…", Duration::from_secs(10))
        .await;
    browser.shot("first-part-step-1").await;
    let rest_arrived = async || {
        browser
            .requested_urls()
            .await
            .iter()
            .any(|url| url.contains("/rest-") && url.ends_with(".wasm"))
    };
    assert!(
        !rest_arrived().await,
        "all of that before the rest of the page"
    );
    assert!(
        !browser
            .requested_urls()
            .await
            .iter()
            .any(|url| url.starts_with(world.base_url())),
        "nothing asked of Fly yet"
    );

    // The rest arrives, checks the token typed in the first part and moves on.
    world.release_rest();
    browser
        .wait_for_text("Name and place", Duration::from_secs(30))
        .await;
    assert!(rest_arrived().await);
    assert!(
        !browser.local_storage().await.contains("sim-token"),
        "the token was carried in memory, not stored"
    );
    // Back home, the file chosen there is imported.
    browser.click("#brand").await;
    browser
        .wait_for_text("Imported 1 deployment(s).", Duration::from_secs(10))
        .await;
    browser
        .wait_for_text("carried", Duration::from_secs(10))
        .await;
    assert!(browser.local_storage().await.contains("carried-relay"));
}
