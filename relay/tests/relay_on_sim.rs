//! The relay over real HTTP on loopback: the sim's fake Telegram and Twilio play the channels,
//! a small axum app plays the vm, and the relay runs in-process (or as its binary, for the
//! crash test).

use contract::protocol::{Callback, CallbackKind, Image};
use relay::config::Config;
use serde_json::json;
use sim::testing::eventually;

mod common;
use common::*;
use std::sync::Arc;
use std::time::Duration;

async fn wait_for_webhook(sim: &sim::SimHandle) {
    eventually(
        "the relay to register its Telegram webhook",
        Duration::from_secs(10),
        async || sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
    )
    .await;
}

#[tokio::test]
async fn telegram_messages_reach_the_vm_and_replies_come_back_split() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    wait_for_webhook(&sim).await;
    let (url, secret) = sim
        .sim
        .channels
        .telegram_webhook(sim::SIM_TELEGRAM_BOT)
        .unwrap();
    assert_eq!(url, format!("{}/webhook/telegram", relay.url));
    assert_eq!(secret, SECRET);

    assert_eq!(
        telegram_user_sends(&sim, 999, "let me in", false).await,
        200,
        "strangers get a 200 and nothing else"
    );
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "hello agent", false).await,
        200
    );
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "look at this", true).await,
        200
    );
    let received = eventually(
        "two messages at the vm",
        Duration::from_secs(10),
        async || {
            let r = vm.received();
            (r.len() >= 2).then_some(r)
        },
    )
    .await;
    assert_eq!(received[0].text, "hello agent");
    assert_eq!(received[0].conversation, format!("telegram:{OWNER}"));
    assert_eq!(
        received[1].images.len(),
        1,
        "the photo is downloaded and forwarded"
    );
    assert!(
        received.iter().all(|m| m.sender != "telegram:999"),
        "a stranger reaches nothing"
    );

    // The vm replies with a long text and a screenshot.
    let long = format!("{}\n\n{}", "a".repeat(3000), "b".repeat(3000));
    let callback = Callback {
        id: "cb-1".into(),
        conversation: format!("telegram:{OWNER}"),
        kind: CallbackKind::Message,
        text: long,
        images: vec![Image {
            content_type: "image/png".into(),
            data_base64: "iVBORw0KGgo=".into(),
        }],
        question: None,
        status: None,
    };
    let http = reqwest::Client::new();
    for _ in 0..2 {
        // The second post is the vm retrying: it must not send twice.
        let status = http
            .post(format!("{}/callback", relay.url))
            .bearer_auth(VM_TOKEN)
            .json(&callback)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let sent = eventually(
        "the reply in two parts and a photo",
        Duration::from_secs(10),
        async || {
            let sent: Vec<_> = sim
                .sim
                .channels
                .telegram_sent()
                .into_iter()
                .filter(|s| s.kind != "typing")
                .collect();
            (sent.len() >= 3).then_some(sent)
        },
    )
    .await;
    assert_eq!(sent[0].text, "a".repeat(3000));
    assert_eq!(sent[1].text, "b".repeat(3000));
    assert_eq!(sent[2].kind, "photo");
    // Once the outbox is empty every reply has been sent and recorded: nothing can follow.
    eventually("an empty outbox", Duration::from_secs(10), async || {
        let health: serde_json::Value = reqwest::get(format!("{}/health", relay.url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["journal"]["waiting_for_channel"] == 0).then_some(())
    })
    .await;
    assert_eq!(
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .filter(|s| s.kind != "typing")
            .count(),
        3,
        "no duplicates"
    );

    let typing = Callback {
        id: "t".into(),
        conversation: format!("telegram:{OWNER}"),
        kind: CallbackKind::Typing,
        text: String::new(),
        images: vec![],
        question: None,
        status: None,
    };
    assert_eq!(
        http.post(format!("{}/callback", relay.url))
            .bearer_auth(VM_TOKEN)
            .json(&typing)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    eventually("a typing indicator", Duration::from_secs(5), async || {
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .any(|s| s.kind == "typing")
            .then_some(())
    })
    .await;

    relay.shut_down().await;
}

#[tokio::test]
async fn bad_input_gets_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{}{path}", relay.url));
    let update = json!({"update_id": 1, "message": {"from": {"id": OWNER}, "chat": {"id": OWNER, "type": "private"}, "text": "x"}});

    assert_eq!(
        post("/webhook/telegram")
            .json(&update)
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "no secret"
    );
    assert_eq!(
        post("/webhook/telegram")
            .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
            .json(&update)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post("/webhook/telegram")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body("{not json")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let huge = "x".repeat(300 * 1024);
    assert_eq!(
        post("/webhook/telegram")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(huge)
            .send()
            .await
            .unwrap()
            .status(),
        413
    );

    let form = [("MessageSid", "SM1"), ("From", OWNER_WA), ("Body", "hi")];
    assert_eq!(
        post("/webhook/twilio")
            .form(&form)
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "unsigned"
    );
    assert_eq!(
        post("/webhook/twilio")
            .header("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .form(&form)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    assert_eq!(
        post("/callback")
            .json(&json!({"id": "x"}))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "no VM_TOKEN"
    );
    assert_eq!(
        post("/callback")
            .bearer_auth(VM_TOKEN)
            .body("[]")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let elsewhere =
        json!({"id": "x", "conversation": "discord:1", "kind": "message", "text": "hi"});
    assert_eq!(
        post("/callback")
            .bearer_auth(VM_TOKEN)
            .json(&elsewhere)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let bad_image = json!({"id": "y", "conversation": format!("telegram:{OWNER}"), "kind": "message", "images": [{"content_type": "image/png", "data_base64": "***"}]});
    assert_eq!(
        post("/callback")
            .bearer_auth(VM_TOKEN)
            .json(&bad_image)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // Bounded fuzz of the webhook over HTTP: any body, with the right secret, never a 5xx.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..200 {
        let len = (round * 7) % 300;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if round % 2 == 0 {
                    b"{}[]\":,0123456789abcdeupdate_idmessagechatfromtext "[(seed % 47) as usize]
                } else {
                    seed as u8
                }
            })
            .collect();
        let status = post("/webhook/telegram")
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status.is_success() || status.is_client_error(),
            "round {round}: {status}"
        );
    }

    let health: serde_json::Value = http
        .get(format!("{}/health", relay.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["journal"]["waiting_for_vm"], 0,
        "nothing was journaled: {health}"
    );
    assert!(vm.received().is_empty());
    relay.shut_down().await;
}

#[tokio::test]
async fn whatsapp_messages_are_verified_forwarded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    let http = reqwest::Client::new();
    let webhook = format!("{}/webhook/twilio", relay.url);
    let image = json!({"image": true});
    let answer = whatsapp_user_sends(&sim, &webhook, OWNER_WA, "hi from whatsapp", image).await;
    assert_eq!(answer["webhook_status"], 200);
    let answer = whatsapp_user_sends(
        &sim,
        &webhook,
        "whatsapp:+19990000000",
        "stranger",
        json!({}),
    )
    .await;
    assert_eq!(answer["webhook_status"], 200);
    let received = eventually(
        "the message at the vm",
        Duration::from_secs(10),
        async || vm.received().first().cloned(),
    )
    .await;
    assert_eq!(received.conversation, OWNER_WA);
    assert_eq!(
        received.images.len(),
        1,
        "media fetched with the account's credentials"
    );

    // The legacy path signs and works too.
    let legacy = format!("{}/webhook", relay.url);
    let answer = whatsapp_user_sends(&sim, &legacy, OWNER_WA, "second", json!({})).await;
    assert_eq!(answer["webhook_status"], 200);
    eventually("the second message", Duration::from_secs(10), async || {
        (vm.received().len() == 2).then_some(())
    })
    .await;

    // Emoji count twice against Twilio's 1,600, and a WhatsApp message carries one image.
    let image = Image {
        content_type: "image/png".into(),
        data_base64: "iVBORw0KGgo=".into(),
    };
    let reply = Callback {
        id: "wa-1".into(),
        conversation: OWNER_WA.into(),
        kind: CallbackKind::Message,
        text: "😀 ".repeat(1000),
        images: vec![image.clone(), image],
        question: None,
        status: None,
    };
    assert_eq!(
        http.post(format!("{}/callback", relay.url))
            .bearer_auth(VM_TOKEN)
            .json(&reply)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let sent = eventually(
        "two text parts and the two images",
        Duration::from_secs(10),
        async || {
            let sent = sim.sim.channels.twilio_sent();
            (sent.len() >= 4).then_some(sent)
        },
    )
    .await;
    let texts: String = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts.matches('😀').count(), 1000, "every part arrived");
    assert!(sent[0].text.encode_utf16().count() <= 1600);
    assert_eq!(sent[0].to, OWNER_WA);
    assert_eq!(
        sent.iter().filter(|s| s.media.len() == 1).count(),
        2,
        "one image per message: {sent:?}"
    );
    let media_url = &sent[2].media[0];
    assert!(media_url.starts_with(&format!("{}/media/", relay.url)));
    let image = http.get(media_url).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(
        http.get(format!(
            "{}/media/00000000000000000000000000000000.png",
            relay.url
        ))
        .send()
        .await
        .unwrap()
        .status(),
        404
    );
    relay.shut_down().await;
}

#[tokio::test]
async fn a_cold_vm_gets_exactly_one_waking_notice_then_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    *vm.first_answer_delay.lock().unwrap() = Some(Duration::from_secs(5));
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    wait_for_webhook(&sim).await;
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "wake up", false).await,
        200
    );
    let sent = eventually("the agent's reply", Duration::from_secs(20), async || {
        let sent: Vec<_> = sim
            .sim
            .channels
            .telegram_sent()
            .into_iter()
            .filter(|s| s.kind == "message")
            .collect();
        sent.iter()
            .any(|s| s.text == "echo: wake up")
            .then_some(sent)
    })
    .await;
    let texts: Vec<&str> = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, [relay::forward::WAKING_UP, "echo: wake up"]);
    relay.shut_down().await;
}

#[tokio::test]
async fn a_full_vm_disk_gives_each_sender_a_sentence_and_holds_nobody_up() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    vm.disk_full
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    wait_for_webhook(&sim).await;
    // Two messages while the disk is full: each sender hears why, neither waits on the other.
    for text in ["one", "two"] {
        assert_eq!(telegram_user_sends(&sim, OWNER, text, false).await, 200);
    }
    eventually(
        "two disk-full sentences",
        Duration::from_secs(20),
        async || {
            let told = sim
                .sim
                .channels
                .telegram_sent()
                .into_iter()
                .filter(|s| s.text == relay::forward::DISK_FULL)
                .count();
            (told == 2).then_some(())
        },
    )
    .await;
    // Room made: the next message goes through, and the two given up are not replayed.
    vm.disk_full
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(telegram_user_sends(&sim, OWNER, "three", false).await, 200);
    let received = eventually(
        "the next message at the vm",
        Duration::from_secs(20),
        async || {
            let r = vm.received();
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    let texts: Vec<&str> = received.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["three"]);
    relay.shut_down().await;
}

#[tokio::test]
async fn conversations_are_forwarded_in_parallel_each_in_its_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    // The vm sits on every Telegram message until released.
    vm.hold.send_replace(Some("telegram:".into()));
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    wait_for_webhook(&sim).await;
    for text in ["t1", "t2"] {
        assert_eq!(telegram_user_sends(&sim, OWNER, text, false).await, 200);
    }
    let webhook = format!("{}/webhook/twilio", relay.url);
    let answer = whatsapp_user_sends(&sim, &webhook, OWNER_WA, "w1", json!({})).await;
    assert_eq!(answer["webhook_status"], 200);
    let texts =
        |vm: &FakeVm| -> Vec<String> { vm.received().into_iter().map(|m| m.text).collect() };
    // WhatsApp's message is not stuck behind the held Telegram one…
    eventually(
        "the WhatsApp message at the vm",
        Duration::from_secs(20),
        async || {
            let posts = vm.posts.load(std::sync::atomic::Ordering::SeqCst);
            (texts(&vm) == ["w1"] && posts >= 2).then_some(())
        },
    )
    .await;
    assert_eq!(
        vm.posts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "t1 in flight, t2 waiting behind it"
    );
    // …and Telegram's come in their order once the vm answers.
    vm.hold.send_replace(None);
    eventually(
        "both Telegram messages, in order",
        Duration::from_secs(20),
        async || (texts(&vm) == ["w1", "t1", "t2"]).then_some(()),
    )
    .await;
    relay.shut_down().await;
}

#[tokio::test]
async fn a_killed_relay_loses_nothing_and_delivers_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    // Reserve a port for the vm, which is down for now.
    let vm_port = sim::testing::free_port();
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    let data_dir = dir.path().join("relay");
    let relay_port = sim::testing::free_port();
    let spawn = || {
        let mut env = base_env(&sim, &vm_url, &data_dir);
        env.insert("PORT".into(), relay_port.to_string());
        env.insert(
            "PUBLIC_URL".into(),
            format!("http://127.0.0.1:{relay_port}"),
        );
        std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .envs(env)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let mut first = spawn();
    let http = reqwest::Client::new();
    eventually("the relay to listen", Duration::from_secs(10), async || {
        std::net::TcpStream::connect(("127.0.0.1", relay_port)).ok()
    })
    .await;
    wait_for_webhook(&sim).await;
    for text in ["one", "two"] {
        assert_eq!(telegram_user_sends(&sim, OWNER, text, false).await, 200);
    }
    // Acknowledged, not yet forwarded (the vm is down): kill -9.
    first.kill().unwrap();
    first.wait().unwrap();

    let vm = FakeVm::default();
    vm.serve_on(
        tokio::net::TcpListener::bind(("127.0.0.1", vm_port))
            .await
            .unwrap(),
    )
    .await;
    let mut second = spawn();
    let received = eventually(
        "both messages after the restart",
        Duration::from_secs(20),
        async || {
            let r = vm.received();
            (r.len() == 2).then_some(r)
        },
    )
    .await;
    assert_eq!(
        received.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["one", "two"],
        "in order"
    );
    let health = eventually(
        "the journal to record both as delivered",
        Duration::from_secs(10),
        async || {
            let health: serde_json::Value = http
                .get(format!("http://127.0.0.1:{relay_port}/health"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (health["journal"]["waiting_for_vm"] == 0).then_some(health)
        },
    )
    .await;
    assert_eq!(health["channels"], json!(["telegram", "whatsapp"]));
    assert_eq!(
        vm.posts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "each message was posted to the vm once"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn a_message_that_could_not_be_saved_is_retried_or_the_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let data = dir.path().join("relay");
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &data)).await;
    wait_for_webhook(&sim).await;

    // Twilio does not repeat a webhook that got a 5xx: the relay answers 200 with a TwiML
    // reply asking the sender to send the message again.
    let lock = lock_journal(&data);
    let webhook = format!("{}/webhook/twilio", relay.url);
    let answer = whatsapp_user_sends(&sim, &webhook, OWNER_WA, "unsaved", json!({})).await;
    assert_eq!(answer["webhook_status"], 200, "{answer}");
    assert!(
        answer["twiml"]
            .as_str()
            .unwrap()
            .contains("<Message>Sorry, your message could not be saved"),
        "{answer}"
    );
    // …which Twilio sends to the sender, as a message on the phone.
    let told: Vec<_> = sim
        .sim
        .channels
        .twilio_sent()
        .into_iter()
        .filter(|s| s.to == OWNER_WA)
        .map(|s| s.text)
        .collect();
    assert_eq!(told, [relay::PLEASE_RESEND]);

    // Telegram repeats a webhook that failed: it arrives once the journal works again.
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "saved on the retry", false).await,
        503
    );
    drop(lock);
    let received = eventually(
        "the repeated update at the vm",
        Duration::from_secs(15),
        async || {
            let r = vm.received();
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].text, "saved on the retry");
    relay.shut_down().await;
}

#[tokio::test]
async fn a_screenshot_too_tall_for_a_photo_arrives_as_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    use base64::Engine;
    // A full-page screenshot: 1280 × 9000 (sides over 10,000 together).
    let mut tall = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    tall.extend(1280u32.to_be_bytes());
    tall.extend(9000u32.to_be_bytes());
    let callback = Callback {
        id: "tall-1".into(),
        conversation: format!("telegram:{OWNER}"),
        kind: CallbackKind::Message,
        text: "here it is".into(),
        images: vec![Image {
            content_type: "image/png".into(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(&tall),
        }],
        question: None,
        status: None,
    };
    let status = reqwest::Client::new()
        .post(format!("{}/callback", relay.url))
        .bearer_auth(VM_TOKEN)
        .json(&callback)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let sent = eventually(
        "the text and the document",
        Duration::from_secs(10),
        async || {
            let sent: Vec<_> = sim
                .sim
                .channels
                .telegram_sent()
                .into_iter()
                .filter(|s| s.kind != "typing")
                .collect();
            (sent.len() >= 2).then_some(sent)
        },
    )
    .await;
    assert_eq!(sent[0].text, "here it is");
    assert_eq!(sent[1].kind, "document", "{sent:?}");
    assert_eq!(sent[1].media, vec![tall.len().to_string()]);
    relay.shut_down().await;
}

#[tokio::test]
async fn the_webhook_is_registered_once_the_relay_s_host_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let http = reqwest::Client::new();
    let fly = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}/v1{path}", sim.base_url()))
            .bearer_auth("sim-token")
    };
    // The relay's app exists but has no public address yet, as right after its machine starts.
    let created = fly(reqwest::Method::POST, "/apps")
        .json(&json!({"name": "hook-relay", "org_slug": "personal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Fly shows a new app a moment after creating it (docs/fly-machines-api.md §11).
    eventually("the new app to show", Duration::from_secs(10), async || {
        let shown = fly(reqwest::Method::GET, "/apps/hook-relay")
            .send()
            .await
            .unwrap();
        (shown.status() == 200).then_some(())
    })
    .await;
    let mut env = base_env(&sim, &vm_url, &dir.path().join("relay"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", listener.local_addr().unwrap());
    env.insert(
        "PUBLIC_URL".into(),
        format!("{}/apps/hook-relay", sim.base_url()),
    );
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay::run(config, listener, async {
        let _ = stopped.await;
    }));
    let health = || async {
        http.get(format!("{relay_url}/health"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let retrying = eventually(
        "a retrying registration",
        Duration::from_secs(10),
        async || {
            let h = health().await;
            (h["telegram_webhook"]["state"] == "retrying").then_some(h)
        },
    )
    .await;
    assert!(
        retrying["telegram_webhook"]["since_ms"].as_i64().unwrap() > 0,
        "health says since when: {retrying}"
    );
    assert!(
        retrying["telegram_webhook"]["detail"]
            .as_str()
            .unwrap()
            .contains("Failed to resolve host"),
        "{retrying}"
    );
    assert!(!retrying.to_string().contains(sim::SIM_TELEGRAM_BOT));
    assert!(
        sim.sim
            .channels
            .telegram_webhook(sim::SIM_TELEGRAM_BOT)
            .is_none()
    );

    // The addresses arrive; the relay's next attempt registers the webhook.
    let ip = fly(reqwest::Method::POST, "/apps/hook-relay/ip_assignments")
        .json(&json!({"type": "v6", "org_slug": "personal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ip.status(), 200);
    eventually("the webhook", Duration::from_secs(20), async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    eventually("a registered webhook", Duration::from_secs(5), async || {
        (health().await["telegram_webhook"]["state"] == "registered").then_some(())
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unauthenticated_callback_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    // Announce 32 MiB and send none of it: the answer must not wait for the body.
    let mut stream = tokio::net::TcpStream::connect(relay.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /callback HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 33554432\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the relay waited for the body of an unauthenticated upload")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..read]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    relay.shut_down().await;
}

#[tokio::test]
async fn public_health_reports_the_relay_alone_and_never_wakes_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    // A "vm" that counts every connection made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vm_url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    for query in ["", "?deep=1", "?deep=true"] {
        let health: serde_json::Value = reqwest::get(format!("{}/health{query}", relay.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["ok"], true);
        assert!(health.get("vm").is_none(), "{health}");
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the health check reached the vm"
    );
    relay.shut_down().await;
}

#[tokio::test]
async fn strangers_are_logged_by_a_keyed_hash_never_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let port = sim::testing::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut env = base_env(&sim, &vm_url, &dir.path().join("relay"));
    env.insert("PORT".into(), port.to_string());
    env.insert("PUBLIC_URL".into(), url.clone());
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
        .envs(env)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_webhook(&sim).await;
    assert_eq!(telegram_user_sends(&sim, 987654321, "hi", false).await, 200);
    let webhook = format!("{url}/webhook/twilio");
    let answer =
        whatsapp_user_sends(&sim, &webhook, "whatsapp:+19995550123", "hi", json!({})).await;
    assert_eq!(answer["webhook_status"], 200);
    relay.kill().unwrap();
    let output = relay.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        log.matches("sender not in ALLOWED_SENDERS").count(),
        2,
        "{log}"
    );
    for number in ["987654321", "19995550123"] {
        assert!(
            !log.contains(number),
            "a stranger's id is in the log: {log}"
        );
    }
}

#[tokio::test]
async fn inbound_media_are_bounded_and_fetched_only_from_twilio() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    // Somewhere that is not Twilio, recording whether anything (credentials) arrives.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}/media.png", elsewhere.local_addr().unwrap());
    let contacted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = contacted.clone();
    tokio::spawn(async move {
        while let Ok(_conn) = elsewhere.accept().await {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let webhook = format!("{}/webhook/twilio", relay.url);
    // A 20 MB attachment (over WhatsApp's 16 MB), then one on a host that is not Twilio's.
    let big = json!({"image": true, "image_bytes": 20 * 1024 * 1024});
    whatsapp_user_sends(&sim, &webhook, OWNER_WA, "a video", big).await;
    let elsewhere = json!({"image": true, "media_url": elsewhere_url});
    whatsapp_user_sends(&sim, &webhook, OWNER_WA, "look here", elsewhere).await;
    let received = eventually(
        "both messages at the vm",
        Duration::from_secs(20),
        async || {
            let r = vm.received();
            (r.len() == 2).then_some(r)
        },
    )
    .await;
    assert!(received[0].images.is_empty());
    assert!(
        received[0].text.contains("larger than 16 MB"),
        "{}",
        received[0].text
    );
    assert!(received[1].images.is_empty());
    assert!(
        received[1].text.contains("not on Twilio's API host"),
        "{}",
        received[1].text
    );
    assert!(
        !contacted.load(std::sync::atomic::Ordering::SeqCst),
        "the relay connected to a host that is not Twilio's"
    );
    relay.shut_down().await;
}

/// A message with attachments that began forwarding five times and never finished (the relay
/// was killed in the middle, out of memory say) is set aside and its sender told, so it cannot
/// take the relay down again on every restart.
#[tokio::test]
async fn a_message_that_never_finished_forwarding_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let data = dir.path().join("relay");
    // A first run lays the journal out; then five crashed attempts are what it holds.
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &data)).await;
    relay.shut_down().await;
    let db = rusqlite::Connection::open(data.join("journal.db")).unwrap();
    db.execute(
        "INSERT INTO inbox (id, conversation, sender, text, media, received_ms, forward_attempts) VALUES ('telegram:77', ?1, ?1, 'heavy', ?2, 0, 5)",
        rusqlite::params![
            format!("telegram:{OWNER}"),
            r#"[{"kind":"telegram_file","file_id":"f1"}]"#
        ],
    )
    .unwrap();
    drop(db);

    let relay = RunningRelay::start(base_env(&sim, &vm_url, &data)).await;
    let told = eventually("the sender told", Duration::from_secs(20), async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.text == relay::forward::SET_ASIDE)
    })
    .await;
    assert_eq!(told.to, format!("telegram:{OWNER}"));
    assert!(
        vm.received().is_empty(),
        "the heavy message was not tried again"
    );
    relay.shut_down().await;
}
