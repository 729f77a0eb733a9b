//! The wizard by keyboard alone, in screen order.

use super::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn the_wizard_works_from_the_keyboard_alone_in_screen_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = World::start(dir.path(), Host::Static).await;
    let browser = Browser::start("keyboard").await;
    browser.go(&format!("{}/", sim.page)).await;
    browser
        .wait_for_text("Your deployments", Duration::from_secs(30))
        .await;
    browser.tab_through(&["brand"]).await;
    // The home screen's own controls, then into the wizard.
    for _ in 0..5 {
        if browser.focused().await == "new-deployment" {
            break;
        }
        browser.press(TAB).await;
    }
    assert_eq!(browser.focused().await, "new-deployment");
    browser.press(ENTER).await;

    // Each new screen starts at its heading, and Tab follows the screen from top to bottom.
    browser
        .wait_for_text("Your Fly.io token", Duration::from_secs(10))
        .await;
    browser.wait_for_focus("H1 Your Fly.io token").await;
    // The dashboard route first; flyctl's command is folded away (a phone has no terminal).
    browser
        .tab_through(&[
            "fly-tokens",
            "SUMMARY At a computer with flyctl?",
            "fly-token",
        ])
        .await;
    browser.press("sim-token").await;
    // Show reveals what was typed (to check a paste by eye), Hide masks it again.
    browser.tab_through(&["fly-token-show"]).await;
    let field_type = async || {
        browser
            .eval(
                "return document.querySelector('#fly-token').type",
                json!([]),
            )
            .await
    };
    browser.press(ENTER).await;
    assert_eq!(field_type().await, "text");
    browser.press(ENTER).await;
    assert_eq!(field_type().await, "password");
    browser
        .tab_through(&["remember-token", "check-token"])
        .await;
    browser.press(ENTER).await;
    browser
        .wait_for_text("Token works for the org", Duration::from_secs(10))
        .await;
    browser.tab_through(&["back", "next"]).await;
    browser.press(ENTER).await;

    browser
        .wait_for_text("Name and place", Duration::from_secs(10))
        .await;
    browser.wait_for_focus("H1 Name and place").await;
    browser.tab_through(&["prefix"]).await;
    browser.press("kbd").await;
    browser.tab_through(&["check-names"]).await;
    browser.press(ENTER).await;
    browser
        .wait_for_text("Both names are free", Duration::from_secs(10))
        .await;
    browser
        .tab_through(&["region", "memory", "back", "next"])
        .await;
    browser.press(ENTER).await;

    browser
        .wait_for_text("Where you will chat", Duration::from_secs(10))
        .await;
    browser.wait_for_focus("H1 Where you will chat").await;
    browser
        .tab_through(&["channel-telegram", "A @BotFather", "telegram-token"])
        .await;
    browser.press(sim::SIM_TELEGRAM_BOT).await;
    browser
        .tab_through(&["telegram-token-show", "check-bot"])
        .await;
    browser.press(ENTER).await;
    browser
        .wait_for_text("is ready", Duration::from_secs(10))
        .await;
    browser.tab_through(&["telegram-owner"]).await;
    browser.press(&OWNER.to_string()).await;
    browser.tab_through(&["back", "next"]).await;
    browser.press(ENTER).await;

    browser
        .wait_for_text("Your Anthropic key", Duration::from_secs(10))
        .await;
    browser.wait_for_focus("H1 Your Anthropic key").await;
    browser
        .tab_through(&["A console.anthropic.com", "anthropic-key"])
        .await;
    browser.press(sim::SIM_ANTHROPIC_KEY).await;
    browser
        .tab_through(&["anthropic-key-show", "check-key"])
        .await;
    browser.press(ENTER).await;
    browser
        .wait_for_text("Anthropic accepts this key", Duration::from_secs(10))
        .await;
    browser
        .tab_through(&[
            "daily-cap",
            "ask-first",
            "github-token",
            "github-token-show",
            "back",
            "next",
        ])
        .await;
    browser.press(ENTER).await;

    let review = browser
        .wait_for_text("a month", Duration::from_secs(10))
        .await;
    assert!(review.contains("kbd-relay"), "{review}");
    assert!(
        review.contains("at most $10.00 a day"),
        "a new deployment shows its daily spend cap: {review}"
    );
    assert!(
        review.contains("Commands, the web and the browser: the agent asks you first"),
        "a new deployment asks first: {review}"
    );
    browser.wait_for_focus("H1 Review").await;
    browser.tab_through(&["back", "deploy"]).await;
    browser.press(ENTER).await;
    browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    browser.shot("kbd-7-done").await;
}
