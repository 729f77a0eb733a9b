//! What the relay's integration tests share: a stand-in vm, the sim, the relay's environment
//! and the relay running in-process.
#![allow(dead_code)] // each test file uses its own part

use contract::protocol::{Callback, CallbackKind, VmMessage};
use relay::config::Config;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const VM_TOKEN: &str = "vm-token-for-tests";
pub const SECRET: &str = "telegram_secret-1";
pub const OWNER: i64 = 4242;
pub const OWNER_WA: &str = "whatsapp:+15551234567";
pub const BOT_WA: &str = "+14155238886";

/// A stand-in vm: records messages, answers 202, optionally slowly the first time, and can
/// answer each message with a callback like the real vm.
#[derive(Clone, Default)]
pub struct FakeVm {
    /// Each message once, as the real vm keeps them (it ignores a repeated id)…
    pub received: Arc<Mutex<Vec<VmMessage>>>,
    /// …and every POST, repeats included, so a test can tell "once" from "at least once".
    pub posts: Arc<std::sync::atomic::AtomicUsize>,
    pub first_answer_delay: Arc<Mutex<Option<Duration>>>,
    pub reply_to: Arc<Mutex<Option<String>>>,
    /// Answer 507, as the vm does when its volume is full.
    pub disk_full: Arc<std::sync::atomic::AtomicBool>,
    /// Messages whose conversation starts with this are held unanswered until it changes.
    pub hold: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl FakeVm {
    pub async fn serve_on(&self, listener: tokio::net::TcpListener) {
        let vm = self.clone();
        let app = axum::Router::new()
            .route(
                "/messages",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap,
                          axum::Json(message): axum::Json<VmMessage>| {
                        let vm = vm.clone();
                        async move {
                            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                            if !contract::protocol::bearer_matches(auth, VM_TOKEN) {
                                return axum::http::StatusCode::UNAUTHORIZED;
                            }
                            if vm.disk_full.load(std::sync::atomic::Ordering::SeqCst) {
                                return axum::http::StatusCode::INSUFFICIENT_STORAGE;
                            }
                            vm.posts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let mut hold = vm.hold.subscribe();
                            let _ = hold
                                .wait_for(|held| {
                                    !held
                                        .as_ref()
                                        .is_some_and(|h| message.conversation.starts_with(h))
                                })
                                .await;
                            let delay = vm.first_answer_delay.lock().unwrap().take();
                            if let Some(delay) = delay {
                                tokio::time::sleep(delay).await;
                            }
                            let duplicate = vm
                                .received
                                .lock()
                                .unwrap()
                                .iter()
                                .any(|m| m.id == message.id);
                            if !duplicate {
                                vm.received.lock().unwrap().push(message.clone());
                            }
                            let reply_to = vm.reply_to.lock().unwrap().clone();
                            if let Some(relay_url) = reply_to {
                                tokio::spawn(async move {
                                    let callback = Callback {
                                        id: format!("reply-{}", message.id),
                                        conversation: message.conversation.clone(),
                                        kind: CallbackKind::Message,
                                        text: format!("echo: {}", message.text),
                                        images: vec![],
                                        question: None,
                                        status: None,
                                    };
                                    let _ = reqwest::Client::new()
                                        .post(format!("{relay_url}/callback"))
                                        .bearer_auth(VM_TOKEN)
                                        .json(&callback)
                                        .send()
                                        .await;
                                });
                            }
                            axum::http::StatusCode::ACCEPTED
                        }
                    },
                ),
            )
            // The real vm's limit (vm/src/routes.rs).
            .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    /// The first message that reached this vm, once one has (20 s at most).
    pub async fn first_received(&self, what: &str) -> VmMessage {
        sim::testing::eventually(what, Duration::from_secs(20), async || {
            self.received().first().cloned()
        })
        .await
    }

    pub async fn start() -> (FakeVm, String) {
        let vm = FakeVm::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        vm.serve_on(listener).await;
        (vm, url)
    }

    pub fn received(&self) -> Vec<VmMessage> {
        self.received.lock().unwrap().clone()
    }
}

pub async fn start_sim(dir: &std::path::Path) -> sim::SimHandle {
    start_sim_with(dir, |_| {}).await
}

/// The sim with its configuration adjusted by `adjust`.
pub async fn start_sim_with(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut sim::SimConfig),
) -> sim::SimHandle {
    let mut config = sim::SimConfig::new(dir.join("sim"));
    adjust(&mut config);
    sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// What every relay needs beside its channels: the vm, the shared token, a data folder.
pub fn service_env(vm_url: &str, data_dir: &std::path::Path) -> HashMap<String, String> {
    HashMap::from([
        ("VM_URL".to_string(), vm_url.to_string()),
        ("VM_TOKEN".into(), VM_TOKEN.into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
    ])
}

/// A relay on Telegram and WhatsApp (the sim's bot and account), owner on both.
pub fn base_env(
    sim: &sim::SimHandle,
    vm_url: &str,
    data_dir: &std::path::Path,
) -> HashMap<String, String> {
    let mut env = service_env(vm_url, data_dir);
    env.extend([
        (
            "ALLOWED_SENDERS".into(),
            format!("telegram:{OWNER},{OWNER_WA}"),
        ),
        ("TELEGRAM_BOT_TOKEN".into(), sim::SIM_TELEGRAM_BOT.into()),
        ("TELEGRAM_WEBHOOK_SECRET".into(), SECRET.into()),
        (
            "TELEGRAM_API_BASE".into(),
            format!("{}/telegram", sim.base_url()),
        ),
        ("TWILIO_ACCOUNT_SID".into(), sim::SIM_TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), sim::SIM_TWILIO_TOKEN.into()),
        ("TWILIO_WHATSAPP_NUMBER".into(), BOT_WA.into()),
        (
            "TWILIO_API_BASE".into(),
            format!("{}/twilio", sim.base_url()),
        ),
        (
            "TWILIO_CONTENT_API_BASE".into(),
            format!("{}/twilio-content", sim.base_url()),
        ),
        // The sim's Twilio CDN is this port under `localhost`.
        ("TWILIO_MEDIA_HOSTS".into(), "localhost".into()),
    ]);
    env
}

pub struct RunningRelay {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), relay::StartError>>,
}

impl RunningRelay {
    pub async fn start(mut env: HashMap<String, String>) -> RunningRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        env.insert("PUBLIC_URL".into(), url.clone());
        let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay::run(config, listener, async {
            let _ = stopped.await;
        }));
        RunningRelay {
            url,
            stop: Some(stop),
            task,
        }
    }

    pub async fn shut_down(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("graceful shutdown")
            .unwrap()
            .unwrap();
    }
}

/// A Telegram user sends a message (or, with `photo`, a picture); the status the relay's
/// webhook answered.
pub async fn telegram_user_sends(
    sim: &sim::SimHandle,
    from_id: i64,
    text: &str,
    photo: bool,
) -> u16 {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/sim/telegram/send", sim.base_url()))
        .json(&serde_json::json!({"from_id": from_id, "text": text, "photo": photo}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["webhook_status"].as_u64().unwrap() as u16
}

/// Holds the relay's journal locked for writing, as a full disk or a stuck writer would.
pub fn lock_journal(data_dir: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(data_dir.join("journal.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    db
}

/// A WhatsApp user writes to the relay at `webhook` (Twilio signs it); `extra` adds fields of
/// the sim's control (`image`, `image_bytes`, `media_url`). Returns the sim's report
/// (`webhook_status`, `twiml`).
pub async fn whatsapp_user_sends(
    sim: &sim::SimHandle,
    webhook: &str,
    from: &str,
    body: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut message = serde_json::json!({"url": webhook, "from": from, "to": format!("whatsapp:{BOT_WA}"), "body": body});
    if let Some(extra) = extra.as_object() {
        message.as_object_mut().unwrap().extend(extra.clone());
    }
    reqwest::Client::new()
        .post(format!("{}/sim/twilio/send", sim.base_url()))
        .json(&message)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The vm's side of the contract: posts `callback` to the relay with the shared token; the
/// status the relay answered.
pub async fn post_callback(relay: &RunningRelay, callback: &impl serde::Serialize) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/callback", relay.url))
        .bearer_auth(VM_TOKEN)
        .json(callback)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
