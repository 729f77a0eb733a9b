//! A revisit with the server gone and the browser offline.

use super::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn a_revisit_loads_offline_and_says_what_needs_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let sim = World::start(dir.path(), Host::Static).await;
    let base = sim.page.clone();
    let browser = Browser::start("offline").await;
    browser.go(&format!("{base}/")).await;
    browser
        .wait_for_text("Your deployments", Duration::from_secs(30))
        .await;
    // The service worker keeps the first visit's files once it is active.
    let cached = eventually("the page's files in the cache", Duration::from_secs(20), async || {
        let urls = browser
            .eval(
                "return navigator.serviceWorker.getRegistration().then(r => r && r.active && r.active.state === 'activated')
                   .then(active => active ? caches.keys() : [])
                   .then(names => Promise.all(names.map(n => caches.open(n).then(c => c.keys()))))
                   .then(lists => lists.flat().map(r => r.url))",
                json!([]),
            )
            .await;
        let urls: Vec<String> = serde_json::from_value(urls).unwrap_or_default();
        (urls.iter().any(|u| u.ends_with(".wasm")) && urls.contains(&format!("{base}/")))
            .then_some(urls)
    })
    .await;
    assert!(
        cached
            .iter()
            .all(|u| u.starts_with(&base) && !u.contains("/v1/")),
        "only the page's own files are cached: {cached:?}"
    );

    // The server goes away and the browser goes offline; a reload still shows the page.
    drop(sim);
    eventually("the server to stop", Duration::from_secs(10), async || {
        reqwest::get(format!("{base}/"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    browser.set_offline(true).await;
    browser.refresh().await;
    let home = browser
        .wait_for_text("Your deployments", Duration::from_secs(30))
        .await;
    assert!(home.contains("You are offline"), "{home}");
    browser.shot("offline-home").await;

    // A Fly call made offline ends in a sentence about the connection, not a CORS hint.
    browser.click("#new-deployment").await;
    browser.paste("#fly-token", "sim-token").await;
    browser.click("#check-token").await;
    let step = browser
        .wait_for_text("Check the connection", Duration::from_secs(60))
        .await;
    assert!(step.contains("this device is offline"), "{step}");
    browser.shot("offline-token").await;
}
