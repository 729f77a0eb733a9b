//! The page's screens as a person goes through them: the wizard filled in, the detail screen's teardown, and what the page may touch.

use super::*;

/// Steps 1, 2 and 4 of the wizard (token, names, key) around the channel step `channel`.
/// The choices (each named by its input) read as one column of equal controls at the phone's
/// width: each one's label as wide as the others, at the same left edge, below the one before.
pub async fn assert_one_column(browser: &Browser, inputs: &[&str]) {
    browser.find(inputs[0]).await;
    let boxes = browser
        .eval(
            "return arguments[0].map(css => { const r = document.querySelector(css).closest('label').getBoundingClientRect(); return [r.left, r.width, r.top, r.bottom]; })",
            json!([inputs]),
        )
        .await;
    let boxes: Vec<Vec<f64>> = serde_json::from_value(boxes).unwrap();
    for pair in boxes.windows(2) {
        let (above, below) = (&pair[0], &pair[1]);
        assert!(
            (above[0] - below[0]).abs() < 1.0 && (above[1] - below[1]).abs() < 1.0,
            "not one column of equal controls: {boxes:?}"
        );
        assert!(below[2] >= above[3], "not one below the other: {boxes:?}");
    }
}

pub async fn fill_wizard(
    browser: &Browser,
    world: &World,
    prefix: &str,
    channel: impl AsyncFnOnce(&Browser),
) {
    browser.go(&format!("{}/", world.page)).await;
    browser
        .wait_for_text("Your deployments", Duration::from_secs(30))
        .await;
    browser.shot(&format!("{prefix}-0-home")).await;
    browser.click("#new-deployment").await;
    browser.paste("#fly-token", "sim-token").await;
    browser.click("#check-token").await;
    browser
        .wait_for_text("Token works for the org", Duration::from_secs(10))
        .await;
    browser.shot(&format!("{prefix}-1-token")).await;
    browser.click("#next").await;
    browser.type_into("#prefix", prefix).await;
    browser.click("#check-names").await;
    browser
        .wait_for_text("Both names are free", Duration::from_secs(10))
        .await;
    browser.select("#region", "iad").await;
    browser.shot(&format!("{prefix}-2-names")).await;
    browser.click("#next").await;
    assert_one_column(
        browser,
        &["#channel-telegram", "#channel-whatsapp", "#channel-discord"],
    )
    .await;
    channel(browser).await;
    browser.shot(&format!("{prefix}-3-channel")).await;
    browser.click("#next").await;
    browser
        .paste("#anthropic-key", sim::SIM_ANTHROPIC_KEY)
        .await;
    browser.click("#check-key").await;
    browser
        .wait_for_text("Anthropic accepts this key", Duration::from_secs(10))
        .await;
    browser.shot(&format!("{prefix}-4-key")).await;
    browser.click("#next").await;
    browser
        .wait_for_text("a month", Duration::from_secs(10))
        .await;
    browser.shot(&format!("{prefix}-5-review")).await;
    browser.click("#deploy").await;
}

pub async fn telegram_channel(browser: &Browser) {
    browser.click("#channel-telegram").await;
    browser
        .type_into("#telegram-token", sim::SIM_TELEGRAM_BOT)
        .await;
    browser.click("#check-bot").await;
    browser
        .wait_for_text("@textslash_sim_bot is ready", Duration::from_secs(10))
        .await;
    browser
        .type_into("#telegram-owner", &OWNER.to_string())
        .await;
}

/// The wizard as a phone user goes through it in the fewest steps: secrets pasted, only the
/// prefix typed, every check run by Next, every default kept (nearest region, Telegram).
/// Screens it passes must not send the user to a terminal or a third-party bot.
pub async fn fill_wizard_fewest_taps(browser: &Browser, world: &World, prefix: &str) {
    let no_detours = |text: &str| {
        for detour in ["in a terminal", "@userinfobot", "user id: message"] {
            assert!(
                !text.contains(detour),
                "a screen asks for {detour:?}: {text}"
            );
        }
    };
    browser.go(&format!("{}/", world.page)).await;
    browser
        .wait_for_text("Your deployments", Duration::from_secs(30))
        .await;
    browser.click("#new-deployment").await;
    no_detours(
        &browser
            .wait_for_text("Your Fly.io token", Duration::from_secs(10))
            .await,
    );
    browser.paste("#fly-token", "sim-token").await;
    browser.click("#next").await;
    no_detours(
        &browser
            .wait_for_text("Name and place", Duration::from_secs(10))
            .await,
    );
    browser.type_into("#prefix", prefix).await;
    browser.click("#next").await;
    no_detours(
        &browser
            .wait_for_text("Where you will chat", Duration::from_secs(10))
            .await,
    );
    browser
        .paste("#telegram-token", sim::SIM_TELEGRAM_BOT)
        .await;
    browser.click("#next").await;
    no_detours(
        &browser
            .wait_for_text("Your Anthropic key", Duration::from_secs(10))
            .await,
    );
    browser
        .paste("#anthropic-key", sim::SIM_ANTHROPIC_KEY)
        .await;
    browser.click("#next").await;
    no_detours(
        &browser
            .wait_for_text("a month", Duration::from_secs(10))
            .await,
    );
    browser.click("#deploy").await;
}

/// The `href` of the element `css`.
pub async fn href(browser: &Browser, css: &str) -> String {
    browser
        .eval(
            "return document.querySelector(arguments[0]).href",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// Tears the deployment down on its detail screen; returns what the page says afterwards.
pub async fn tear_down_from_page(browser: &Browser, world: &World, prefix: &str) -> String {
    browser.go(&format!("{}/#/d/{prefix}", world.page)).await;
    // The detail screen reads the deployment's state from Fly (and the relay's health).
    let status = browser
        .wait_for_text("Relay health", Duration::from_secs(30))
        .await;
    assert!(
        status.contains("Agent:") && !status.contains("app not found"),
        "{status}"
    );
    // Each machine's version, and the deployment's against this page's (one version).
    let version = env!("CARGO_PKG_VERSION");
    let shown = browser
        .wait_for_text(
            &format!("Runs textslash {version}, the newest here."),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        shown.contains(&format!("textslash {version} (ghcr.io/")),
        "{shown}"
    );
    browser.type_into("#confirm-prefix", prefix).await;
    browser.shot(&format!("{prefix}-9-teardown")).await;
    browser.click("#teardown").await;
    browser
        .wait_for_text("nothing is left on Fly", Duration::from_secs(60))
        .await
}

/// The page called only its own origin and the endpoints its config.json names (all on the
/// sim), and no secret sits in a URL or in storage.
pub async fn assert_privacy(browser: &Browser, world: &World, secrets: &[&str]) {
    for url in browser.requested_urls().await {
        assert!(
            url.starts_with(&world.page) || url.starts_with(world.base_url()),
            "a request went somewhere config.json does not name: {url}"
        );
        let without_bot_api = url.replace(
            &format!("/telegram/bot{}/", sim::SIM_TELEGRAM_BOT),
            "/telegram/bot…/",
        );
        for secret in secrets {
            // The Bot API takes its token in the path by design (it goes only to Telegram).
            assert!(
                !without_bot_api.contains(secret),
                "a secret is in a URL: {url}"
            );
        }
    }
    let storage = browser.local_storage().await;
    for secret in secrets {
        assert!(!storage.contains(secret), "a secret is in localStorage");
    }
}
