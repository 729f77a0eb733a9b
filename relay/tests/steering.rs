//! Steering through the relay, with the sim's fake Telegram and Twilio playing the owner's
//! phone and a stand-in vm: the agent's questions (buttons on Telegram, quick replies or
//! numbered replies on WhatsApp, and every way a choice must change nothing: a stranger's
//! tap, a forged or replayed one, a second one), and status lines kept within each channel's
//! limits.

use contract::protocol::{Callback, CallbackKind, Decision, Question, Status, VmMessage};
use serde_json::{Value, json};
use sim::testing::eventually;
use std::time::Duration;

mod common;
use common::*;

const WAIT: Duration = Duration::from_secs(10);

async fn ask(relay: &RunningRelay, conversation: &str, id: &str, text: &str) {
    ask_with(
        relay,
        conversation,
        id,
        text,
        &[Decision::Allow, Decision::AlwaysAllow, Decision::Deny],
    )
    .await;
}

async fn ask_with(
    relay: &RunningRelay,
    conversation: &str,
    id: &str,
    text: &str,
    choices: &[Decision],
) {
    let question = Callback {
        id: format!("question:{id}"),
        conversation: conversation.into(),
        kind: CallbackKind::Question,
        text: text.into(),
        images: vec![],
        question: Some(Question {
            id: id.into(),
            choices: choices.to_vec(),
        }),
        status: None,
    };
    assert_eq!(post_callback(relay, &question).await, 200);
}

/// `from` taps `label` under the owner's message; what the relay told them.
async fn tap(sim: &sim::SimHandle, from: i64, message_id: u64, label: &str) -> String {
    sim::testing::telegram_tap(
        sim,
        json!({"from_id": from, "chat_id": OWNER, "message_id": message_id, "label": label}),
    )
    .await
}

fn answers(vm: &FakeVm) -> Vec<VmMessage> {
    vm.received()
        .into_iter()
        .filter(|m| m.answer.is_some())
        .collect()
}

#[tokio::test]
async fn a_telegram_question_is_answered_by_its_owner_s_tap_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    let (webhook, secret) = eventually("the webhook", WAIT, async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    let chat = format!("telegram:{OWNER}");
    ask(&relay, &chat, "q1abc", "The agent asks to run `ls`.").await;
    let message = eventually("the question with its buttons", WAIT, async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| !s.buttons.is_empty())
    })
    .await;
    assert_eq!(message.text, "The agent asks to run `ls`.");
    let labels: Vec<(&str, &str)> = message
        .buttons
        .iter()
        .map(|b| (b.text.as_str(), b.data.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("Allow", "q:q1abc:a"),
            ("Always allow", "q:q1abc:A"),
            ("Deny", "q:q1abc:d")
        ]
    );

    // Someone else in the chat taps: only an owner can answer.
    assert_eq!(
        tap(&sim, 999, message.message_id, "Allow").await,
        relay::questions::NOT_AN_OWNER
    );

    // A forged tap, posted raw: a question that is not this chat's.
    let forged = |data: &str, update_id: i64| {
        json!({"update_id": update_id, "callback_query": {"id": "forged", "from": {"id": OWNER},
            "message": {"message_id": message.message_id, "chat": {"id": OWNER, "type": "private"}, "text": "x"},
            "chat_instance": "c", "data": data}})
    };
    let post_raw = async |update: &Value| {
        reqwest::Client::new()
            .post(&webhook)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .json(update)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(post_raw(&forged("q:zzzz:a", 9001)).await, 200);
    assert_eq!(post_raw(&forged("not a token", 9002)).await, 200);
    assert_eq!(
        post_raw(&json!({"update_id": 9003, "callback_query": {"id": 5}})).await,
        400
    );

    // The owner taps Allow: the answer reaches the vm, the question says so, buttons go.
    assert_eq!(
        tap(&sim, OWNER, message.message_id, "Allow").await,
        "Allowed"
    );
    let answered = eventually("the answer at the vm", WAIT, async || {
        answers(&vm).first().cloned()
    })
    .await;
    assert_eq!(answered.id, "answer:q1abc");
    assert_eq!(answered.conversation, chat);
    assert_eq!(answered.sender, chat);
    let answer = answered.answer.unwrap();
    assert_eq!(
        (answer.question.as_str(), answer.decision),
        ("q1abc", Decision::Allow)
    );
    let marked = eventually("the question marked", WAIT, async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.message_id == message.message_id && s.edits == 1)
    })
    .await;
    assert_eq!(marked.text, "The agent asks to run `ls`.\n\nAllowed ✓");
    assert!(marked.buttons.is_empty());

    // The same tap replayed, and a second answer to the question: nothing changes.
    let replay = |update_id: i64, data: &str| {
        json!({"update_id": update_id, "callback_query": {"id": "again", "from": {"id": OWNER},
            "message": {"message_id": message.message_id, "chat": {"id": OWNER, "type": "private"}, "text": "x"},
            "chat_instance": "c", "data": data}})
    };
    assert_eq!(post_raw(&replay(9004, "q:q1abc:a")).await, 200);
    assert_eq!(post_raw(&replay(9005, "q:q1abc:d")).await, 200);
    // A later message still goes through, after whatever the taps could have queued.
    assert_eq!(telegram_user_sends(&sim, OWNER, "after", false).await, 200);
    eventually("the later message", WAIT, async || {
        vm.received()
            .iter()
            .any(|m| m.text == "after")
            .then_some(())
    })
    .await;
    assert_eq!(answers(&vm).len(), 1, "one answer, once");
}

/// The owner taps a quick reply under the bot's WhatsApp message `message_id`; `payload`
/// overrides the button's id (a forgery).
async fn quick_reply(
    sim: &sim::SimHandle,
    webhook: &str,
    message_id: u64,
    label: &str,
    payload: Option<&str>,
) -> Value {
    whatsapp_user_sends(
        sim,
        webhook,
        OWNER_WA,
        "",
        json!({"tap": {"message_id": message_id, "label": label, "payload": payload}}),
    )
    .await
}

#[tokio::test]
async fn a_whatsapp_question_comes_with_quick_replies_and_a_tap_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (vm, vm_url) = FakeVm::start().await;
    let env = base_env(&sim, &vm_url, &dir.path().join("relay"));
    let relay = RunningRelay::start(env.clone()).await;
    let webhook = format!("{}/webhook/twilio", relay.url);
    let question = "The agent asks to open https://example.com.";
    ask(&relay, OWNER_WA, "q3abc", question).await;
    let sent = eventually("the question", WAIT, async || {
        sim.sim.channels.twilio_sent().into_iter().next()
    })
    .await;
    // The buttons replace the numbers; the template is made once, in the owner's account.
    assert_eq!(sent.text, question);
    let labels: Vec<&str> = sent.buttons.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(labels, ["Allow", "Always allow", "Deny"]);
    assert_eq!(sent.buttons[2].data, "q:q3abc:d");
    assert_eq!(sim.sim.content.templates(sim::SIM_TWILIO_SID).len(), 1);

    // A forged id names no question of this conversation: nothing changes, and it is said.
    quick_reply(&sim, &webhook, sent.message_id, "Allow", Some("q:nope:a")).await;
    eventually("the forgery refused", WAIT, async || {
        sim.sim
            .channels
            .twilio_sent()
            .into_iter()
            .find(|s| s.text == relay::questions::NOT_OURS)
    })
    .await;
    assert!(answers(&vm).is_empty());

    let tapped = quick_reply(&sim, &webhook, sent.message_id, "Deny", None).await;
    assert_eq!(tapped["webhook_status"], 200);
    let answered = eventually("the answer at the vm", WAIT, async || {
        answers(&vm).first().cloned()
    })
    .await;
    assert_eq!(answered.answer.unwrap().decision, Decision::Deny);
    // The buttons stay on WhatsApp: a second tap is told the question was answered.
    quick_reply(&sim, &webhook, sent.message_id, "Allow", None).await;
    eventually("the second tap told", WAIT, async || {
        sim.sim
            .channels
            .twilio_sent()
            .into_iter()
            .find(|s| s.text == "Already answered: Denied.")
    })
    .await;
    assert_eq!(answers(&vm).len(), 1, "one answer, once");

    // After a restart the relay finds its templates by name; other choices get their own.
    relay.shut_down().await;
    let relay = RunningRelay::start(env).await;
    ask(&relay, OWNER_WA, "q4abc", question).await;
    ask_with(
        &relay,
        OWNER_WA,
        "q5abc",
        question,
        &[Decision::Allow, Decision::Deny],
    )
    .await;
    let asked = eventually("both questions", WAIT, async || {
        let asked: Vec<_> = sim
            .sim
            .channels
            .twilio_sent()
            .into_iter()
            .filter(|s| !s.buttons.is_empty())
            .collect();
        (asked.len() == 3).then_some(asked)
    })
    .await;
    assert_eq!(asked[2].buttons.len(), 2, "{asked:?}");
    assert_eq!(sim.sim.content.templates(sim::SIM_TWILIO_SID).len(), 2);

    // The owner deletes the templates in the Console: the next question goes numbered, and
    // the one after has its buttons again, from a template made anew.
    let http = reqwest::Client::new();
    for sid in sim.sim.content.templates(sim::SIM_TWILIO_SID) {
        let deleted = http
            .delete(format!(
                "{}/twilio-content/v1/Content/{sid}",
                sim.base_url()
            ))
            .basic_auth(sim::SIM_TWILIO_SID, Some(sim::SIM_TWILIO_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
    }
    ask(&relay, OWNER_WA, "q6abc", question).await;
    let numbered = eventually("the numbered question", WAIT, async || {
        sim.sim.channels.twilio_sent().into_iter().find(|s| {
            s.text
                .ends_with("Reply 1 to allow, 2 to always allow, 3 to deny.")
        })
    })
    .await;
    assert!(numbered.buttons.is_empty());
    ask(&relay, OWNER_WA, "q7abc", question).await;
    eventually("buttons again", WAIT, async || {
        let asked = sim
            .sim
            .channels
            .twilio_sent()
            .into_iter()
            .filter(|s| !s.buttons.is_empty())
            .count();
        (asked == 4).then_some(())
    })
    .await;
    assert_eq!(sim.sim.content.templates(sim::SIM_TWILIO_SID).len(), 1);
}

#[tokio::test]
async fn a_whatsapp_question_is_answered_with_a_number_where_quick_replies_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    // The account's Content API refuses (a restricted API key, say): numbers instead.
    sim.set_faults(vec![sim::faults::FaultRule::fail(
        "GET",
        "/twilio-content/v1/Content",
        1,
        403,
    )]);
    let (vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    let webhook = format!("{}/webhook/twilio", relay.url);
    ask(
        &relay,
        OWNER_WA,
        "q2abc",
        "The agent asks to open https://example.com.",
    )
    .await;
    let sent = eventually("the numbered question", WAIT, async || {
        sim.sim.channels.twilio_sent().into_iter().next()
    })
    .await;
    assert_eq!(
        sent.text,
        "The agent asks to open https://example.com.\n\nReply 1 to allow, 2 to always allow, 3 to deny."
    );
    // A stranger's "1" is a stranger's message: dropped.
    whatsapp_user_sends(&sim, &webhook, "whatsapp:+19990000000", "1", json!({})).await;
    let answer = whatsapp_user_sends(&sim, &webhook, OWNER_WA, "3", json!({})).await;
    assert_eq!(answer["webhook_status"], 200);
    let answered = eventually("the answer at the vm", WAIT, async || {
        answers(&vm).first().cloned()
    })
    .await;
    assert_eq!(answered.answer.unwrap().decision, Decision::Deny);
    // With no question open, a number is just a message.
    whatsapp_user_sends(&sim, &webhook, OWNER_WA, "1", json!({})).await;
    eventually("the plain message", WAIT, async || {
        vm.received()
            .iter()
            .any(|m| m.text == "1" && m.answer.is_none())
            .then_some(())
    })
    .await;
    assert_eq!(answers(&vm).len(), 1);
}

async fn status(
    relay: &RunningRelay,
    conversation: &str,
    line: &str,
    elapsed_secs: u64,
    finished: bool,
) {
    let callback = Callback {
        id: format!("status:{elapsed_secs}:{line}"),
        conversation: conversation.into(),
        kind: CallbackKind::Status,
        text: String::new(),
        images: vec![],
        question: None,
        status: Some(Status {
            job: "job-1".into(),
            line: line.into(),
            finished,
            elapsed_secs,
        }),
    };
    assert_eq!(post_callback(relay, &callback).await, 200);
}

#[tokio::test]
async fn a_status_line_is_one_telegram_message_edited_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    let chat = format!("telegram:{OWNER}");
    let started = std::time::Instant::now();
    status(&relay, &chat, "Running `ls` · 0:01", 1, false).await;
    let line = eventually("the status line", WAIT, async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.text.starts_with("Running"))
    })
    .await;
    // A burst of updates: only the newest is shown, one edit a second at most.
    for n in 2..12 {
        status(
            &relay,
            &chat,
            &format!("Editing src/f{n}.rs · 0:{n:02}"),
            n,
            false,
        )
        .await;
    }
    status(
        &relay,
        &chat,
        "Done in 0:12 · 11 tool calls · $0.0100",
        12,
        true,
    )
    .await;
    let done = eventually("the summary", WAIT, async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.message_id == line.message_id && s.text.starts_with("Done"))
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        f64::from(done.edits) <= seconds.ceil() + 1.0,
        "{} edits in {seconds:.1} s",
        done.edits
    );
    assert!(done.edits < 11, "updates were merged: {} edits", done.edits);
    let lines = sim
        .sim
        .channels
        .telegram_sent()
        .into_iter()
        .filter(|s| s.kind == "message")
        .count();
    assert_eq!(lines, 1, "one message for the whole job");
}

#[tokio::test]
async fn whatsapp_hears_of_a_long_job_rarely_and_of_a_short_one_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path()).await;
    let (_vm, vm_url) = FakeVm::start().await;
    let relay = RunningRelay::start(base_env(&sim, &vm_url, &dir.path().join("relay"))).await;
    for n in 0..10 {
        status(
            &relay,
            OWNER_WA,
            &format!("Running step {n} · 0:{n:02}"),
            n,
            false,
        )
        .await;
    }
    status(&relay, OWNER_WA, "Running the long step · 1:40", 100, false).await;
    let first = eventually("one message for a long job", WAIT, async || {
        sim.sim.channels.twilio_sent().into_iter().next()
    })
    .await;
    assert_eq!(first.text, "Running the long step · 1:40");
    status(
        &relay,
        OWNER_WA,
        "Running the longer step · 2:00",
        120,
        false,
    )
    .await;
    status(&relay, OWNER_WA, "Done in 2:01 · 12 tool calls", 121, true).await;
    // The summary is the last update: once the relay has forgotten the line, it is done.
    eventually("the line forgotten", WAIT, async || {
        let health: Value = reqwest::get(format!("{}/health", relay.url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["status_lines"] == 0).then_some(())
    })
    .await;
    assert_eq!(sim.sim.channels.twilio_sent().len(), 1, "no more messages");
}
