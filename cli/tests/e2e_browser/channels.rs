//! Deploy, chat and tear down from the page on each channel: Telegram, WhatsApp and Discord.

use super::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn telegram_deploy_chat_retry_and_teardown_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let sim = World::start(dir.path(), Host::Static).await;
    let browser = Browser::start("telegram").await;

    // 1. The wizard in the fewest taps (no owner id typed), then the deploy to Done.
    let opened = Instant::now();
    fill_wizard_fewest_taps(&browser, &sim, "e2e").await;
    browser
        .wait_for_text("Check the relay answers", Duration::from_secs(10))
        .await;
    browser.shot("e2e-6-deploying").await;
    browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    let done = browser
        .wait_for_text("The relay answers", Duration::from_secs(30))
        .await;
    assert!(done.contains("Open your bot in Telegram"), "{done}");
    browser.shot("e2e-7-done").await;

    // Pairing: the button opens the bot with the code; Telegram then sends `/start <code>`.
    let pair = href(&browser, "#pair").await;
    let code = pair
        .strip_prefix("https://t.me/textslash_sim_bot?start=")
        .unwrap_or_else(|| panic!("{pair}"))
        .to_string();
    eventually("the relay's webhook", Duration::from_secs(20), async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    assert_eq!(
        telegram_user_sends(&sim, OWNER, &format!("/start {code}")).await,
        200
    );
    eventually("the welcome", Duration::from_secs(20), async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.text == relay::pairing::WELCOME)
    })
    .await;
    // Onboarding ends here: the Pair button and Telegram's Start are two more taps.
    let onboarding = browser.effort();
    let (taps, pastes, typed) = (onboarding.taps + 2, onboarding.pastes, onboarding.typed);

    // 2. A message from the owner wakes the sleeping vm; a stranger gets nothing.
    eventually("the relay's webhook", Duration::from_secs(20), async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    let sleeping = Instant::now();
    eventually("the idle vm to stop", Duration::from_secs(30), async || {
        (vm_state(&sim, "e2e-vm").await == "stopped").then_some(())
    })
    .await;
    // The test waits for the vm to sleep, so the first reply is a cold start; a user would not.
    let test_wait = sleeping.elapsed();
    for (from, text) in [(999, "let me in"), (OWNER, "hello from the e2e test")] {
        assert_eq!(telegram_user_sends(&sim, from, text).await, 200);
    }
    let texts = eventually("the agent's reply", Duration::from_secs(30), async || {
        let texts: Vec<String> = sim
            .sim
            .channels
            .telegram_sent()
            .into_iter()
            .filter(|s| s.kind == "message" && s.text != relay::pairing::WELCOME)
            .map(|s| s.text)
            .collect();
        texts
            .iter()
            .any(|t| t.contains("You said: hello from the e2e test"))
            .then_some(texts)
    })
    .await;
    let to_first_reply = opened.elapsed() - test_wait;
    let figures = format!(
        "onboarding (Telegram, 360x640, sim with a 2.5 s cold start): {taps} taps, {pastes} pastes, {typed} characters typed (the prefix), {:.1} s from opening the page to the first agent reply",
        to_first_reply.as_secs_f64()
    );
    println!("{figures}");
    // `cargo xtask test` prints this file after the end-to-end step.
    std::fs::create_dir_all(workspace().join("screenshots")).unwrap();
    std::fs::write(workspace().join("screenshots/onboarding.txt"), &figures).unwrap();
    assert!(taps <= 15, "{taps} taps (goal: 15 at most)");
    assert!(pastes <= 3, "{pastes} pastes (goal: 3 at most)");
    assert_eq!(typed, "e2e".len(), "nothing typed but the prefix");
    assert_eq!(texts[0], relay::forward::WAKING_UP, "{texts:?}");
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.as_str() == relay::forward::WAKING_UP)
            .count(),
        1
    );
    assert!(
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .all(|s| s.to == format!("telegram:{OWNER}")),
        "the stranger got nothing"
    );

    // The deployment asks first (the wizard's default): steered from the phone.
    let phone = Phone::open(&sim, "telegram-phone", Chat::Telegram(OWNER)).await;
    steer_from_the_phone(&sim, &phone).await;
    drop(phone);

    // 3. A reload lists the deployment with its live health.
    browser.click("#finish").await;
    browser.go(&format!("{}/", sim.page)).await;
    let home = browser
        .wait_for_text("relay up", Duration::from_secs(20))
        .await;
    assert!(home.contains("e2e"), "{home}");
    browser.shot("e2e-8-home").await;

    // 4. A second deployment fails midway (Fly refuses the vm machine once), then Retry completes it.
    sim.set_faults(vec![sim::faults::FaultRule::fail(
        "POST",
        "/v1/apps/second-vm/machines",
        1,
        403,
    )]);
    fill_wizard(&browser, &sim, "second", telegram_channel).await;
    let failed = browser
        .wait_for_text("Retry", Duration::from_secs(60))
        .await;
    assert!(failed.contains("✗"), "{failed}");
    browser.shot("second-6-failed").await;
    browser.click("#retry").await;
    browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    let state = sim_state(&sim).await;
    for app in state["apps"].as_array().unwrap() {
        assert_eq!(
            app["machines"].as_array().unwrap().len(),
            1,
            "no duplicate machines: {app}"
        );
        assert!(
            app["volumes"].as_array().unwrap().len() <= 1,
            "no duplicate volumes: {app}"
        );
    }
    browser.click("#finish").await;

    // 5. Tear both down from the page; nothing is left, not even the bot's webhook.
    let torn_down = tear_down_from_page(&browser, &sim, "e2e").await;
    assert!(!torn_down.contains("Still to do"), "{torn_down}");
    tear_down_from_page(&browser, &sim, "second").await;
    assert_eq!(sim_state(&sim).await["apps"], json!([]));
    assert_eq!(
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
        None
    );

    // 6. Only the page's own origin was contacted, and no secret leaked into URLs or storage.
    assert_privacy(
        &browser,
        &sim,
        &["sim-token", sim::SIM_TELEGRAM_BOT, sim::SIM_ANTHROPIC_KEY],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn whatsapp_deploy_chat_and_teardown_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let sim = World::start(dir.path(), Host::Static).await;
    let browser = Browser::start("whatsapp").await;
    fill_wizard(&browser, &sim, "wa", async |browser: &Browser| {
        browser.click("#channel-whatsapp").await;
        // A mistyped SID is named on Next, and the step stays put.
        browser.type_into("#twilio-sid", "AC123").await;
        browser
            .type_into("#twilio-token", sim::SIM_TWILIO_TOKEN)
            .await;
        // Typed as people write it; the page tidies it to +14155238886 (the owner pairs).
        browser
            .type_into("#whatsapp-number", "+1 415-523 8886")
            .await;
        browser.click("#next").await;
        let step = browser
            .wait_for_text("Account SID: starts with AC", Duration::from_secs(10))
            .await;
        assert!(step.contains("Where you will chat"), "{step}");
        assert!(
            !step.contains("AC123"),
            "the error repeats the value: {step}"
        );
        browser.shot("wa-3-channel-error").await;
        browser.type_into("#twilio-sid", sim::SIM_TWILIO_SID).await;
    })
    .await;
    browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    let done = browser
        .wait_for_text("When a message comes in", Duration::from_secs(10))
        .await;
    browser.shot("wa-7-done").await;
    let webhook = browser
        .eval(
            "return document.querySelector('#webhook-url').innerText",
            json!([]),
        )
        .await;
    let webhook = webhook.as_str().unwrap().to_string();
    assert!(webhook.ends_with("/apps/wa-relay/webhook/twilio"), "{done}");
    let pair = href(&browser, "#pair").await;
    let code = pair
        .strip_prefix("https://wa.me/14155238886?text=")
        .unwrap_or_else(|| panic!("{pair}"))
        .to_string();

    // The owner sends the prefilled message, then writes (Twilio signs each webhook).
    let whatsapp = async |body: &str| -> Value {
        reqwest::Client::new()
            .post(format!("{}/sim/twilio/send", sim.base_url()))
            .json(&json!({"url": webhook, "from": OWNER_WA, "to": format!("whatsapp:{BOT_WA}"), "body": body}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(whatsapp(&code).await["webhook_status"], 200);
    eventually("the welcome", Duration::from_secs(20), async || {
        sim.sim
            .channels
            .twilio_sent()
            .into_iter()
            .find(|s| s.to == OWNER_WA && s.text == relay::pairing::WELCOME)
    })
    .await;
    assert_eq!(whatsapp("hi on whatsapp").await["webhook_status"], 200);
    eventually(
        "the agent's WhatsApp reply",
        Duration::from_secs(30),
        async || {
            sim.sim
                .channels
                .twilio_sent()
                .into_iter()
                .find(|s| s.to == OWNER_WA && s.text.contains("You said: hi on whatsapp"))
        },
    )
    .await;
    let phone = Phone::open(
        &sim,
        "whatsapp-phone",
        Chat::WhatsApp {
            webhook: webhook.clone(),
        },
    )
    .await;
    steer_from_the_phone(&sim, &phone).await;
    drop(phone);

    browser.click("#finish").await;
    let torn_down = tear_down_from_page(&browser, &sim, "wa").await;
    // Twilio's webhook is the user's to clear, and the page says where.
    assert!(
        torn_down.contains("Still to do: the WhatsApp webhook in Twilio")
            && torn_down.contains("When a message comes in"),
        "{torn_down}"
    );
    assert_eq!(sim_state(&sim).await["apps"], json!([]));
    assert_privacy(
        &browser,
        &sim,
        &["sim-token", sim::SIM_TWILIO_TOKEN, sim::SIM_ANTHROPIC_KEY],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn discord_deploy_chat_reconnect_restart_and_teardown_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let sim = World::start(dir.path(), Host::Static).await;
    let browser = Browser::start("discord").await;

    // Step 1 tells the token's kind: a deploy token is refused in one sentence, a personal
    // token works with a warning.
    browser.go(&format!("{}/", sim.page)).await;
    browser.click("#new-deployment").await;
    browser.type_into("#fly-token", "sim-deploy-token").await;
    browser.click("#check-token").await;
    let said = browser
        .wait_for_text(
            "This is a deploy token for someone-app",
            Duration::from_secs(10),
        )
        .await;
    assert!(!said.contains("Token works"), "{said}");
    browser.shot("dc-1-deploy-token").await;
    browser.type_into("#fly-token", "sim-personal-token").await;
    browser.click("#check-token").await;
    browser
        .wait_for_text("This is your personal token", Duration::from_secs(10))
        .await;

    fill_wizard(&browser, &sim, "dc", async |browser: &Browser| {
        browser.click("#channel-discord").await;
        // An application's client secret (one part) is the usual wrong paste: named on Next.
        browser
            .type_into("#discord-token", "a-client-secret-not-a-token")
            .await;
        browser.click("#next").await;
        let step = browser
            .wait_for_text("Bot token: paste the bot's token", Duration::from_secs(10))
            .await;
        assert!(
            !step.contains("a-client-secret"),
            "the error repeats the value"
        );
        browser.shot("dc-3-channel-error").await;
        browser
            .type_into("#discord-token", sim::SIM_DISCORD_BOT)
            .await;
    })
    .await;
    browser
        .wait_for_text("are running", Duration::from_secs(90))
        .await;
    // The Done screen asks the relay until the bot is connected, and offers the invite link.
    let done = browser
        .wait_for_text("is connected to Discord", Duration::from_secs(30))
        .await;
    assert!(!done.contains("Webhook URL"), "{done}");
    let invite = browser
        .eval(
            "return document.querySelector('#discord-invite').href",
            json!([]),
        )
        .await;
    assert_eq!(
        invite.as_str().unwrap(),
        format!(
            "https://discord.com/oauth2/authorize?client_id={}&scope=bot&permissions=0",
            sim::SIM_DISCORD_BOT_ID
        )
    );
    browser.shot("dc-7-done").await;

    // Pairing: the owner sends the bot the code shown on the Done screen.
    assert_eq!(
        href(&browser, "#pair").await,
        format!("https://discord.com/users/{}", sim::SIM_DISCORD_BOT_ID)
    );
    let code = browser
        .eval(
            "return document.querySelector('#pairing-code').innerText",
            json!([]),
        )
        .await;
    discord_user_sends(&sim, DISCORD_OWNER, code.as_str().unwrap()).await;
    eventually("the welcome", Duration::from_secs(20), async || {
        sim.sim
            .discord
            .sent()
            .into_iter()
            .find(|s| s.text == relay::pairing::WELCOME)
    })
    .await;

    // A DM to the stopped vm: exactly one "Waking up…", then the reply; a stranger gets nothing.
    eventually("the idle vm to stop", Duration::from_secs(30), async || {
        (vm_state(&sim, "dc-vm").await == "stopped").then_some(())
    })
    .await;
    discord_user_sends(&sim, "80351110224678913", "let me in").await;
    discord_user_sends(&sim, DISCORD_OWNER, "hello from discord").await;
    let owner = format!("discord:{DISCORD_OWNER}");
    let texts = |sim: &World| -> Vec<String> {
        sim.sim
            .discord
            .sent()
            .into_iter()
            .filter(|s| s.kind == "message" && s.text != relay::pairing::WELCOME)
            .map(|s| s.text)
            .collect()
    };
    let said = eventually("the agent's reply", Duration::from_secs(30), async || {
        let said = texts(&sim);
        said.iter()
            .any(|t| t.contains("You said: hello from discord"))
            .then_some(said)
    })
    .await;
    assert_eq!(said[0], relay::forward::WAKING_UP, "{said:?}");
    assert_eq!(
        said.iter()
            .filter(|t| t.as_str() == relay::forward::WAKING_UP)
            .count(),
        1
    );

    let phone = Phone::open(&sim, "discord-phone", Chat::Discord(DISCORD_OWNER)).await;
    steer_from_the_phone(&sim, &phone).await;
    drop(phone);

    // A screenshot (the real Playwright MCP and Chromium) arrives as an attachment.
    // The deployment asks first: the owner allows each browser call with its button.
    discord_user_sends(&sim, DISCORD_OWNER, "take a screenshot").await;
    allow_until(
        &sim,
        Owner::Discord(DISCORD_OWNER),
        Duration::from_secs(90),
        async || {
            sim.sim
                .discord
                .sent()
                .into_iter()
                .find(|s| s.kind == "photo" && s.to == owner)
        },
    )
    .await;

    // Discord forces a reconnect; a DM meanwhile is not lost.
    let forced = reqwest::Client::new()
        .post(format!("{}/sim/discord/reconnect", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 204);
    discord_user_sends(&sim, DISCORD_OWNER, "after a reconnect").await;
    eventually(
        "the reply after the reconnect",
        Duration::from_secs(30),
        async || {
            texts(&sim)
                .iter()
                .any(|t| t.contains("You said: after a reconnect"))
                .then_some(())
        },
    )
    .await;

    // The relay machine stops; a DM sent meanwhile arrives once it is back (it resumes the
    // Gateway session kept on its volume, and Discord replays the DM).
    machine_action(&sim, "dc-relay", "stop").await;
    eventually("the bot offline", Duration::from_secs(30), async || {
        (!sim.sim.discord.connected(sim::SIM_DISCORD_BOT)).then_some(())
    })
    .await;
    let answer = discord_user_sends(&sim, DISCORD_OWNER, "while the relay was down").await;
    assert_eq!(answer["delivered_live"], false);
    machine_action(&sim, "dc-relay", "start").await;
    eventually(
        "the reply after the restart",
        Duration::from_secs(60),
        async || {
            texts(&sim)
                .iter()
                .any(|t| t.contains("You said: while the relay was down"))
                .then_some(())
        },
    )
    .await;
    let stats = sim.sim.discord.stats();
    assert_eq!(stats.identifies, 1, "every reconnect resumed: {stats:?}");
    assert!(
        sim.sim.discord.sent().iter().all(|s| s.to == owner),
        "the stranger got nothing"
    );

    browser.click("#finish").await;
    let torn_down = tear_down_from_page(&browser, &sim, "dc").await;
    assert!(!torn_down.contains("Still to do"), "{torn_down}");
    assert_eq!(sim_state(&sim).await["apps"], json!([]));
    assert_privacy(
        &browser,
        &sim,
        &["sim-token", sim::SIM_DISCORD_BOT, sim::SIM_ANTHROPIC_KEY],
    )
    .await;
}
