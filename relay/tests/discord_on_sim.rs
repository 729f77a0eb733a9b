//! Discord through the relay, over real websockets and HTTP on loopback: the sim's fake
//! Gateway and REST API play Discord, a stand-in vm answers, the relay runs in-process.

use serde_json::{Value, json};
use sim::testing::eventually;
use std::collections::HashMap;
use std::time::Duration;

mod common;
use common::*;

const OWNER: &str = "80351110224678912";
const STRANGER: &str = "80351110224678913";
const WAIT: Duration = Duration::from_secs(20);

async fn start_sim(dir: &std::path::Path, heartbeat: Duration) -> sim::SimHandle {
    start_sim_with(dir, |config| config.discord_heartbeat = heartbeat).await
}

fn discord_env(
    sim: &sim::SimHandle,
    vm_url: &str,
    data_dir: &std::path::Path,
) -> HashMap<String, String> {
    let mut env = service_env(vm_url, data_dir);
    env.extend([
        ("ALLOWED_SENDERS".to_string(), format!("discord:{OWNER}")),
        ("DISCORD_BOT_TOKEN".into(), sim::SIM_DISCORD_BOT.into()),
        (
            "DISCORD_API_BASE".into(),
            format!("{}/discord", sim.base_url()),
        ),
        (
            "DISCORD_GATEWAY_URL".into(),
            format!(
                "{}/discord/gateway",
                sim.base_url().replace("http://", "ws://")
            ),
        ),
        ("DISCORD_MEDIA_HOSTS".into(), "localhost".into()),
    ]);
    env
}

async fn post(sim: &sim::SimHandle, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A user DMs the bot; the sim's answer (`channel_id`, `delivered_live`).
async fn dm(sim: &sim::SimHandle, from: &str, text: &str, image: bool) -> Value {
    let response = post(
        sim,
        "/sim/discord/dm",
        json!({"from_id": from, "text": text, "image": image}),
    )
    .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

async fn health(relay: &RunningRelay) -> Value {
    reqwest::get(format!("{}/health", relay.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn connected(sim: &sim::SimHandle, relay: &RunningRelay) {
    eventually("the relay's Gateway connection", WAIT, async || {
        let h = health(relay).await;
        (h["discord_gateway"]["state"] == "connected"
            && sim.sim.discord.connected(sim::SIM_DISCORD_BOT))
        .then_some(())
    })
    .await;
}

/// A relay connected to the sim's Discord Gateway, with a stand-in vm that echoes back.
struct Connected {
    _dir: tempfile::TempDir,
    sim: sim::SimHandle,
    vm: FakeVm,
    vm_url: String,
    relay_dir: std::path::PathBuf,
    relay: RunningRelay,
}

async fn connected_relay() -> Connected {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), Duration::from_secs(40)).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay_dir = dir.path().join("relay");
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &relay_dir)).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    connected(&sim, &relay).await;
    Connected {
        _dir: dir,
        sim,
        vm,
        vm_url,
        relay_dir,
        relay,
    }
}

fn sent_to(sim: &sim::SimHandle, user: &str, kind: &str) -> Vec<sim::channels::Sent> {
    sim.sim
        .discord
        .sent()
        .into_iter()
        .filter(|s| s.to == format!("discord:{user}") && s.kind == kind)
        .collect()
}

#[tokio::test]
async fn a_dm_reaches_the_vm_and_the_reply_comes_back_in_discord_s_limits() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), Duration::from_millis(200)).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    connected(&sim, &relay).await;

    // Identified with the direct-messages intent only (no privileged intent to enable).
    let stats = sim.sim.discord.stats();
    assert_eq!(stats.intents, 1 << 12);
    assert_eq!(
        health(&relay).await["discord_gateway"]["bot"],
        "textslash-sim-bot"
    );
    // Heartbeats go out and are acknowledged (the sim closes nothing, but counts them).
    eventually("two heartbeats", WAIT, async || {
        (sim.sim.discord.stats().heartbeats >= 2).then_some(())
    })
    .await;

    let answer = dm(&sim, OWNER, "hello from discord", true).await;
    let channel = answer["channel_id"].as_str().unwrap().to_string();
    let received = vm.first_received("the message at the vm").await;
    assert_eq!(received.conversation, format!("discord:{channel}"));
    assert_eq!(received.sender, format!("discord:{OWNER}"));
    assert_eq!(received.text, "hello from discord");
    assert_eq!(received.images.len(), 1, "the attachment came from the CDN");
    assert_eq!(received.images[0].content_type, "image/png");
    let reply = eventually("the echo in Discord", WAIT, async || {
        sent_to(&sim, OWNER, "message").into_iter().next()
    })
    .await;
    assert_eq!(reply.text, "echo: hello from discord");

    // A long reply with a picture: split at 2,000 characters, the image as an attachment.
    let long = "word ".repeat(900);
    let callback = json!({"id": "long-1", "conversation": format!("discord:{channel}"), "kind": "message",
        "text": long, "images": [{"content_type": "image/png", "data_base64": base64_png()}]});
    let response = reqwest::Client::new()
        .post(format!("{}/callback", relay.url))
        .bearer_auth(VM_TOKEN)
        .json(&callback)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let photo = eventually("the picture", WAIT, async || {
        sent_to(&sim, OWNER, "photo").into_iter().next()
    })
    .await;
    assert_eq!(photo.media, vec![sim::channels::TINY_PNG.len().to_string()]);
    let parts: Vec<_> = sent_to(&sim, OWNER, "message")
        .into_iter()
        .skip(1)
        .collect();
    assert_eq!(parts.len(), 3, "4,500 characters in three messages");
    assert!(parts.iter().all(|p| p.text.chars().count() <= 2000));
    let words: usize = parts
        .iter()
        .map(|p| p.text.split_whitespace().count())
        .sum();
    assert_eq!(words, 900, "no word lost or cut at the seams");

    relay.shut_down().await;
}

fn base64_png() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sim::channels::TINY_PNG)
}

#[tokio::test]
async fn a_stranger_gets_nothing_and_a_rate_limit_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), Duration::from_secs(40)).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    connected(&sim, &relay).await;

    // Discord answers the first reply with 429 and `retry_after`; the relay waits and resends.
    sim.set_faults(vec![sim::faults::FaultRule::answer_with(
        "POST",
        "/messages",
        1,
        429,
        json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false}),
    )]);
    dm(&sim, STRANGER, "let me in", false).await;
    dm(&sim, OWNER, "after the stranger", false).await;
    let received = vm.first_received("the owner's message at the vm").await;
    assert_eq!(received.text, "after the stranger");
    let reply = eventually("the reply after the rate limit", WAIT, async || {
        sent_to(&sim, OWNER, "message").into_iter().next()
    })
    .await;
    assert_eq!(reply.text, "echo: after the stranger");
    assert_eq!(sim.fired_faults().len(), 1, "the 429 was answered");
    assert_eq!(
        vm.received().len(),
        1,
        "the stranger's message never reached the vm"
    );
    assert!(
        sent_to(&sim, STRANGER, "message").is_empty()
            && sent_to(&sim, STRANGER, "typing").is_empty()
    );

    relay.shut_down().await;
}

#[tokio::test]
async fn a_forced_reconnect_an_invalid_session_and_a_restart_lose_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), Duration::from_secs(40)).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay_dir = dir.path().join("relay");
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &relay_dir)).await;
    connected(&sim, &relay).await;
    let texts = |vm: &FakeVm| {
        vm.received()
            .into_iter()
            .map(|m| m.text)
            .collect::<Vec<_>>()
    };

    // Discord asks for a reconnect (op 7); a DM sent before the relay is back is replayed on
    // resume, through the READY's resume URL.
    let response = post(&sim, "/sim/discord/reconnect", json!({})).await;
    assert_eq!(response.status(), 204);
    dm(&sim, OWNER, "during the reconnect", false).await;
    eventually("the replayed DM at the vm", WAIT, async || {
        (texts(&vm) == ["during the reconnect"]).then_some(())
    })
    .await;
    eventually("a resume on the resume URL", WAIT, async || {
        let stats = sim.sim.discord.stats();
        (stats.resumes == 1
            && stats.connections.last().map(String::as_str) == Some("/discord/resume/"))
        .then_some(())
    })
    .await;
    assert_eq!(
        sim.sim.discord.stats().identifies,
        1,
        "resumed, not identified anew"
    );

    // The relay stops; a DM arrives while it is down; the restarted relay resumes the session
    // it saved in its journal, and Discord replays the DM.
    relay.shut_down().await;
    eventually("the bot offline", WAIT, async || {
        (!sim.sim.discord.connected(sim::SIM_DISCORD_BOT)).then_some(())
    })
    .await;
    let answer = dm(&sim, OWNER, "while the relay was down", false).await;
    assert_eq!(answer["delivered_live"], false);
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &relay_dir)).await;
    eventually("the DM sent while down, at the vm", WAIT, async || {
        (texts(&vm) == ["during the reconnect", "while the relay was down"]).then_some(())
    })
    .await;
    assert_eq!(sim.sim.discord.stats().resumes, 2);
    assert_eq!(sim.sim.discord.stats().identifies, 1);

    // Discord ends the session (op 9, not resumable): the relay identifies anew and goes on.
    let response = post(&sim, "/sim/discord/invalidate", json!({})).await;
    assert_eq!(response.status(), 204);
    eventually("a new session", WAIT, async || {
        (sim.sim.discord.stats().identifies == 2 && sim.sim.discord.connected(sim::SIM_DISCORD_BOT))
            .then_some(())
    })
    .await;
    dm(&sim, OWNER, "in the new session", false).await;
    eventually("the DM in the new session", WAIT, async || {
        (texts(&vm).len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        vm.posts.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "each message reached the vm once: replays were not forwarded twice"
    );
    relay.shut_down().await;
}

#[tokio::test]
async fn a_wrong_bot_token_is_reported_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), Duration::from_secs(40)).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let mut env = discord_env(&sim, &vm_url, &dir.path().join("relay"));
    env.insert(
        "DISCORD_BOT_TOKEN".into(),
        "OTk5OTk5OTk5OTk5OTk5OTk5.GwRong.d3JvbmctdG9rZW4tZm9yLXRlc3Rz".into(),
    );
    let relay = RunningRelay::start(env).await;
    let status = eventually("the refusal in /health", WAIT, async || {
        let h = health(&relay).await;
        (h["discord_gateway"]["state"] == "refused").then_some(h["discord_gateway"].clone())
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("DISCORD_BOT_TOKEN"), "{error}");
    assert!(
        !error.contains("d3JvbmctdG9rZW4"),
        "no secret in health: {error}"
    );
    assert_eq!(
        sim.sim.discord.stats().connections.len(),
        1,
        "a refused token is not retried"
    );
    relay.shut_down().await;
}

/// An event twilight cannot read carries a user's message whole, and twilight's own error
/// text repeats it: the public `/health` (and the log) name only the kind of error.
#[tokio::test]
async fn an_unreadable_event_never_shows_its_text_on_health() {
    let Connected {
        _dir,
        sim,
        vm,
        relay,
        ..
    } = connected_relay().await;

    let sent = post(
        &sim,
        "/sim/discord/dm",
        json!({"from_id": OWNER, "text": "my private words", "unreadable": true}),
    )
    .await;
    assert!(sent.status().is_success());
    let reported = eventually("the unreadable event on /health", WAIT, async || {
        let h = health(&relay).await;
        h["discord_gateway"]["last_error"].is_string().then_some(h)
    })
    .await;
    let shown = reported.to_string();
    assert!(!shown.contains("my private words"), "{shown}");
    assert!(shown.contains("could not be read"), "{shown}");

    // The connection goes on: the next message arrives.
    dm(&sim, OWNER, "still here", false).await;
    let received = vm.first_received("the next message at the vm").await;
    assert_eq!(received.text, "still here");
    relay.shut_down().await;
}

/// A DM the journal cannot take is offered again, then its sender is asked through REST to
/// send it again; the relay goes on with the next one.
#[tokio::test]
async fn an_unsaved_dm_s_sender_is_asked_to_resend_it() {
    let Connected {
        _dir,
        sim,
        vm,
        relay_dir,
        relay,
        ..
    } = connected_relay().await;

    let lock = lock_journal(&relay_dir);
    dm(&sim, OWNER, "lost in the crowd", false).await;
    let asked = eventually(
        "the request to resend",
        Duration::from_secs(40),
        async || sent_to(&sim, OWNER, "message").into_iter().next(),
    )
    .await;
    assert_eq!(asked.text, relay::PLEASE_RESEND);
    drop(lock);
    dm(&sim, OWNER, "sent again", false).await;
    let received = vm.first_received("the resent DM at the vm").await;
    assert_eq!(received.text, "sent again");
    relay.shut_down().await;
}

/// If the DM can be neither saved nor its sender told, nobody knows of it: the saved session
/// stays before it, so after a restart Discord replays it and it arrives, once.
#[tokio::test]
async fn a_dm_nobody_knows_of_is_replayed_after_a_restart() {
    let Connected {
        _dir,
        sim,
        vm,
        vm_url,
        relay_dir,
        relay,
    } = connected_relay().await;

    let lock = lock_journal(&relay_dir);
    sim.set_faults(vec![sim::faults::FaultRule::fail(
        "POST",
        "/messages",
        1,
        500,
    )]);
    dm(&sim, OWNER, "nobody knows of me", false).await;
    eventually(
        "the failed request to resend",
        Duration::from_secs(40),
        async || (sim.fired_faults().len() == 1).then_some(()),
    )
    .await;
    drop(lock);
    dm(&sim, OWNER, "the next one", false).await;
    eventually("the next DM at the vm", WAIT, async || {
        (vm.received().len() == 1).then_some(())
    })
    .await;

    relay.shut_down().await;
    let relay = RunningRelay::start(discord_env(&sim, &vm_url, &relay_dir)).await;
    let texts = eventually("the replayed DM at the vm", WAIT, async || {
        let texts: Vec<String> = vm.received().into_iter().map(|m| m.text).collect();
        (texts.len() == 2).then_some(texts)
    })
    .await;
    assert_eq!(texts, ["the next one", "nobody knows of me"]);
    assert_eq!(
        vm.posts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the replayed journaled DM was not forwarded twice"
    );
    relay.shut_down().await;
}

/// A DM's attachments together stay within one message's budget (20 MB): of three 9 MB
/// images the third is left out before it is fetched (Discord declares its size), the agent
/// is told, and so is the sender.
#[tokio::test]
async fn a_dm_s_attachments_stay_within_one_message_s_budget() {
    let Connected {
        _dir,
        sim,
        vm,
        relay,
        ..
    } = connected_relay().await;
    let sent = post(
        &sim,
        "/sim/discord/dm",
        json!({"from_id": OWNER, "text": "three big ones", "images": 3, "image_bytes": 9 * 1024 * 1024}),
    )
    .await;
    assert!(sent.status().is_success());
    let received = vm.first_received("the message at the vm").await;
    assert_eq!(received.images.len(), 2, "two fit in 20 MB");
    assert!(received.text.contains("left out"), "{}", received.text);
    let told = eventually("the sender told", WAIT, async || {
        sent_to(&sim, OWNER, "message")
            .into_iter()
            .find(|m| m.text == relay::forward::LEFT_OUT)
    })
    .await;
    assert_eq!(told.to, format!("discord:{OWNER}"));
    relay.shut_down().await;
}

/// A question on Discord: buttons (message components); a click is an interaction the relay
/// answers within Discord's 3 seconds, and only once.
#[tokio::test]
async fn a_question_s_button_click_is_answered_once_within_three_seconds() {
    let Connected { sim, vm, relay, .. } = connected_relay().await;
    let channel = dm(&sim, OWNER, "hello", false).await["channel_id"]
        .as_str()
        .unwrap()
        .to_string();
    vm.first_received("the first message").await;
    let question = json!({"id": "question:d1q", "conversation": format!("discord:{channel}"), "kind": "question",
        "text": "The agent asks to run `ls`.", "question": {"id": "d1q", "choices": ["allow", "always_allow", "deny"]}});
    assert_eq!(post_callback(&relay, &question).await, 200);
    let asked = eventually("the question with its buttons", WAIT, async || {
        sent_to(&sim, OWNER, "message")
            .into_iter()
            .find(|s| !s.buttons.is_empty())
    })
    .await;
    let labels: Vec<(&str, &str)> = asked
        .buttons
        .iter()
        .map(|b| (b.text.as_str(), b.data.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("Allow", "q:d1q:a"),
            ("Always allow", "q:d1q:A"),
            ("Deny", "q:d1q:d")
        ]
    );
    let click = async |label: &str, custom_id: Option<&str>| -> Value {
        let response = post(
            &sim,
            "/sim/discord/click",
            json!({"from_id": OWNER, "message_id": asked.message_id, "label": label, "custom_id": custom_id}),
        )
        .await;
        assert!(response.status().is_success());
        let id = response.json::<Value>().await.unwrap()["interaction_id"]
            .as_str()
            .unwrap()
            .to_string();
        eventually("the interaction answered in time", WAIT, async || {
            sim.sim.discord.interaction_answer(&id)
        })
        .await
    };

    // A forged click: a question that is not this conversation's. A word only the clicker sees.
    let forged = click("Allow", Some("q:zzzz:a")).await;
    assert_eq!(forged["type"], 4);
    assert_eq!(forged["data"]["flags"], 64);
    assert_eq!(forged["data"]["content"], relay::questions::NOT_OURS);

    // Allow: the answer reaches the vm; the message says so and loses its buttons.
    let allowed = click("Allow", None).await;
    assert_eq!(allowed["type"], 7, "{allowed}");
    let answer = eventually("the answer at the vm", WAIT, async || {
        vm.received().into_iter().find(|m| m.answer.is_some())
    })
    .await;
    assert_eq!(answer.id, "answer:d1q");
    assert_eq!(answer.sender, format!("discord:{OWNER}"));
    let marked = sent_to(&sim, OWNER, "message")
        .into_iter()
        .find(|s| s.message_id == asked.message_id)
        .unwrap();
    assert_eq!(marked.text, "The agent asks to run `ls`.\n\nAllowed ✓");
    assert!(marked.buttons.is_empty());
    assert_eq!(marked.edits, 1);

    // A second click (a client that still showed the buttons): already answered.
    let again = click("Deny", Some("q:d1q:d")).await;
    assert_eq!(again["data"]["content"], "Already answered: Allowed.");
    assert_eq!(
        vm.received().iter().filter(|m| m.answer.is_some()).count(),
        1
    );
    relay.shut_down().await;
}
