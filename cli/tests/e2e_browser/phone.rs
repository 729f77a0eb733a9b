//! The person's messaging app (the sim's chat page in a browser of its own) and steering the agent from it.

use super::*;

/// The person's messaging app: the sim's chat page (the demo's phone) in a browser of its
/// own, beside the page that deployed.
pub struct Phone {
    pub browser: Browser,
    pub chat: Chat,
}

/// Who the phone's owner is, on which channel.
#[derive(Clone)]
pub enum Chat {
    Telegram(i64),
    /// The owner's number, and the relay's webhook that Twilio posts to.
    WhatsApp {
        webhook: String,
    },
    Discord(&'static str),
}

impl Phone {
    pub async fn open(world: &World, name: &str, chat: Chat) -> Phone {
        let browser = Browser::start(name).await;
        browser.go(&format!("{}/sim/chat", world.base_url())).await;
        let (channel, from) = match &chat {
            Chat::Telegram(id) => ("telegram", id.to_string()),
            Chat::WhatsApp { .. } => ("whatsapp", OWNER_WA.trim_start_matches("whatsapp:").into()),
            Chat::Discord(id) => ("discord", id.to_string()),
        };
        browser.select("#channel", channel).await;
        browser.fill("#from", &from).await;
        if let Chat::WhatsApp { webhook } = &chat {
            browser.fill("#webhook", webhook).await;
        }
        Phone { browser, chat }
    }

    /// Types `text` and taps Send.
    pub async fn send(&self, text: &str) {
        self.browser.fill("#text", text).await;
        self.browser.click("#composer button").await;
    }

    /// Where the Send button is on the screen.
    pub async fn composer_at(&self) -> Value {
        self.browser
            .eval(
                "const r = document.querySelector('#composer button').getBoundingClientRect(); return [r.x, r.y];",
                json!([]),
            )
            .await
    }

    /// Taps the button `label` under the agent's open question.
    pub async fn tap(&self, label: &str) {
        self.browser
            .click(&format!(".keys button[data-label='{label}']"))
            .await;
    }

    /// What the bot sent this phone's owner so far.
    pub fn received(&self, world: &World) -> Vec<sim::channels::Sent> {
        let (sent, to) = match &self.chat {
            Chat::Telegram(id) => (world.sim.channels.telegram_sent(), format!("telegram:{id}")),
            Chat::WhatsApp { .. } => (world.sim.channels.twilio_sent(), OWNER_WA.to_string()),
            Chat::Discord(id) => (world.sim.discord.sent(), format!("discord:{id}")),
        };
        sent.into_iter().filter(|s| s.to == to).collect()
    }
}

/// The command the sim's model runs for "look first, then run a command" (after a search).
pub const NOTE_A_RUN: &str = "sh -c 'echo ran >> ran.txt'";

/// Steering from the phone, on the sim's chat page: the owner asks for a job that searches
/// and then runs a command. The command waits for the owner, and meanwhile the job's status
/// line is edited in place (Telegram, Discord) or stays quiet (WhatsApp, a short job). The
/// owner taps Allow under the question (an inline key, a component, a quick reply): the
/// command runs exactly once, the reply ends with what changed, and /diff brings the change.
/// A stranger's tap (Telegram) and the same answer again (every channel) change nothing.
pub async fn steer_from_the_phone(world: &World, phone: &Phone) {
    let http = reqwest::Client::new();
    let received = || phone.received(world);
    let edits = !matches!(phone.chat, Chat::WhatsApp { .. });
    let composer_at = phone.composer_at().await;
    phone.send("look first, then run a command").await;
    let question = eventually("the question", Duration::from_secs(90), async || {
        received()
            .into_iter()
            .find(|s| s.text.contains(NOTE_A_RUN) && !s.buttons.is_empty())
    })
    .await;
    phone
        .browser
        .wait_for_text(NOTE_A_RUN, Duration::from_secs(10))
        .await;
    if edits {
        // The status line, first "Searching the files", is edited to the command it waits on.
        let running = format!("Running `{NOTE_A_RUN}`");
        eventually(
            "the status line edited",
            Duration::from_secs(30),
            async || {
                received()
                    .into_iter()
                    .find(|s| s.text.starts_with(&running) && s.edits > 0)
            },
        )
        .await;
        let page = phone
            .browser
            .wait_for_text(&running, Duration::from_secs(10))
            .await;
        assert!(page.contains("edited"), "{page}");
    } else {
        let statuses: Vec<_> = received()
            .into_iter()
            .filter(|s| {
                s.text.starts_with("Searching the files") || s.text.starts_with("Running `")
            })
            .collect();
        assert!(
            statuses.is_empty(),
            "a short job costs no status message on WhatsApp: {statuses:?}"
        );
    }
    phone.browser.shot("steer-1-question").await;
    let ran = || {
        received()
            .into_iter()
            .filter(|s| s.text.starts_with("Tool said:"))
            .collect::<Vec<_>>()
    };

    // A stranger's tap on Telegram is refused, and the command still waits.
    if let Chat::Telegram(owner) = phone.chat {
        let told = sim::testing::telegram_tap(
            world,
            json!({"from_id": 999, "chat_id": owner, "message_id": question.message_id, "label": "Allow"}),
        )
        .await;
        assert_eq!(told, relay::questions::NOT_AN_OWNER);
        assert!(ran().is_empty(), "a stranger's tap ran the command");
    }

    // The owner taps Allow on the phone.
    phone.tap("Allow").await;
    let reply = eventually("the reply", Duration::from_secs(60), async || {
        ran().into_iter().next()
    })
    .await;
    assert!(
        reply.text.contains("1 file changed, +1") && reply.text.ends_with("(/diff shows them)"),
        "{}",
        reply.text
    );
    phone
        .browser
        .wait_for_text("Tool said:", Duration::from_secs(10))
        .await;
    if edits {
        // The question says how it was answered, and its buttons are gone; the status line
        // ends as the job's summary.
        phone
            .browser
            .wait_for_text("Allowed ✓", Duration::from_secs(10))
            .await;
        phone
            .browser
            .wait_for_text("Done in", Duration::from_secs(10))
            .await;
        let buttons = phone
            .browser
            .eval(
                "return document.querySelectorAll('.keys button').length",
                json!([]),
            )
            .await;
        assert_eq!(buttons, json!(0));
    }
    if let Chat::Telegram(_) = phone.chat {
        phone
            .browser
            .wait_for_text("Telegram shows: Allowed", Duration::from_secs(10))
            .await;
    }
    phone.browser.shot("steer-2-allowed").await;

    // The same answer again (an old copy of the message, or WhatsApp's buttons, which stay)
    // changes nothing, and says so.
    let choice = question.buttons[0].data.clone();
    let again = "Already answered: Allowed.";
    match phone.chat {
        Chat::Telegram(owner) => {
            let told = sim::testing::telegram_tap(
                world,
                json!({"from_id": owner, "message_id": question.message_id, "label": "Allow", "data": choice}),
            )
            .await;
            assert_eq!(told, again);
        }
        Chat::Discord(owner) => {
            let clicked = http
                .post(format!("{}/sim/discord/click", world.base_url()))
                .json(&json!({"from_id": owner, "message_id": question.message_id, "label": "Allow", "custom_id": choice}))
                .send()
                .await
                .unwrap();
            assert!(clicked.status().is_success());
            eventually("the replay told", Duration::from_secs(10), async || {
                received()
                    .into_iter()
                    .find(|s| s.kind == "ephemeral" && s.text == again)
            })
            .await;
        }
        Chat::WhatsApp { .. } => {
            phone.tap("Allow").await;
            eventually("the second tap told", Duration::from_secs(10), async || {
                received().into_iter().find(|s| s.text == again)
            })
            .await;
        }
    }

    // What changed, on the phone: the command ran once.
    phone.send("/diff").await;
    let diff = if edits {
        let document = eventually("the diff", Duration::from_secs(30), async || {
            received()
                .into_iter()
                .find(|s| s.kind == "document" && s.file.is_some())
        })
        .await;
        phone
            .browser
            .wait_for_text("a document", Duration::from_secs(10))
            .await;
        http.get(format!("{}{}", world.base_url(), document.file.unwrap()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    } else {
        // WhatsApp takes no documents: the diff's start comes as text. Under a full test run
        // it can take longer than the other channels' (each message a signed webhook); what
        // had arrived is named if it never does.
        eventually_showing(
            "the diff",
            Duration::from_secs(60),
            Duration::from_millis(100),
            async || {
                received()
                    .into_iter()
                    .find(|s| s.text.lines().any(|line| line == "+ran"))
                    .map(|s| s.text)
            },
            async || {
                let texts: Vec<String> = received().into_iter().map(|s| s.text).collect();
                let shown = phone.browser.page_text().await;
                let unsent = phone
                    .browser
                    .eval("return document.querySelector('#text').value", json!([]))
                    .await;
                format!(
                    "the phone had {texts:#?}; it showed:\n{shown}\n(its composer holds {unsent})"
                )
            },
        )
        .await
    };
    assert!(diff.contains("ran.txt"), "{diff}");
    assert_eq!(diff.lines().filter(|l| *l == "+ran").count(), 1, "{diff}");
    assert_eq!(ran().len(), 1, "one reply: the command ran once");
    assert_eq!(
        phone.composer_at().await,
        composer_at,
        "Send moved as messages arrived (a tap can then miss it)"
    );
    phone.browser.shot("steer-3-diff").await;
}
