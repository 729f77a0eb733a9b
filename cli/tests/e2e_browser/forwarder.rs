//! When Fly's API refuses the browser: through `textslash serve`'s forwarder, and from a static host that cannot forward.

use super::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn a_browser_refused_by_fly_deploys_chats_and_tears_down_through_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(dir.path(), Host::Forwarding).await;
    let browser = Browser::start("forwarding").await;

    // The first Fly call is refused by the browser (no CORS); the page switches to the
    // forwarder of the host it came from and says so, once.
    fill_wizard(&browser, &world, "fwd", telegram_channel).await;
    let deploying = browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    let notice = "go through the server this page came from";
    assert_eq!(deploying.matches(notice).count(), 1, "{deploying}");
    browser
        .wait_for_text("The relay answers", Duration::from_secs(30))
        .await;
    browser.shot("fwd-7-done").await;

    // Chat works as anywhere else.
    eventually("the relay's webhook", Duration::from_secs(20), async || {
        world.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    assert_eq!(
        telegram_user_sends(&world, OWNER, "hello through the forwarder").await,
        200
    );
    eventually("the agent's reply", Duration::from_secs(30), async || {
        world
            .sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.text.contains("You said: hello through the forwarder"))
    })
    .await;

    // Status (on the detail screen) and teardown read and change Fly through the forwarder.
    browser.click("#finish").await;
    tear_down_from_page(&browser, &world, "fwd").await;
    assert_eq!(sim_state(&world).await["apps"], json!([]));
    assert_privacy(
        &browser,
        &world,
        &["sim-token", sim::SIM_TELEGRAM_BOT, sim::SIM_ANTHROPIC_KEY],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn a_static_page_refused_by_fly_says_where_to_open_it_instead() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(dir.path(), Host::StaticRefused).await;
    let browser = Browser::start("refused").await;
    browser.go(&format!("{}/", world.page)).await;
    browser.click("#new-deployment").await;
    browser.paste("#fly-token", "sim-token").await;
    browser.click("#check-token").await;
    let said = browser
        .wait_for_text("textslash serve", Duration::from_secs(20))
        .await;
    assert!(said.contains("refused"), "{said}");
    assert!(said.contains("CLI"), "{said}");
    assert!(
        !said.contains("go through the server"),
        "no forwarder here: {said}"
    );
    browser.shot("refused-1-token").await;
    // One sentence, no retry loop: nothing else was asked of Fly.
    assert_eq!(sim_state(&world).await["apps"], json!([]));
}
