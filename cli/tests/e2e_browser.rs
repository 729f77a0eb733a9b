//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! opens the built page (`dist/`) served by the sim, fills every wizard step, deploys the real
//! relay and vm as sim machines, chats through the fake channel, retries a deploy that failed
//! midway, and tears everything down from the page.
//!
//! Needs the page built and chromedriver installed, so `cargo xtask test` runs it after the
//! page build (`cargo test -p textslash --test e2e_browser -- --ignored`). Screenshots of each screen
//! go to `screenshots/` (git ignores it).
//!
//! One file per world the tests run in (`e2e_browser/`): the browser and what it drives
//! (`browser`, `wizard`, `phone`), the sim they deploy to (`world`), and the tests, by what
//! they prove (`channels`, `first_part`, `keyboard`, `offline`, `forwarder`, `page_load`).

mod common;

use common::{
    Owner, allow_until, claude_bin, discord_user_sends, eventually, eventually_showing,
    machine_action, machine_binaries, telegram_user_sends, vm_state, workspace,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "e2e_browser/browser.rs"]
mod browser;
#[path = "e2e_browser/channels.rs"]
mod channels;
#[path = "e2e_browser/first_part.rs"]
mod first_part;
#[path = "e2e_browser/forwarder.rs"]
mod forwarder;
#[path = "e2e_browser/keyboard.rs"]
mod keyboard;
#[path = "e2e_browser/offline.rs"]
mod offline;
#[path = "e2e_browser/page_load.rs"]
mod page_load;
#[path = "e2e_browser/phone.rs"]
mod phone;
#[path = "e2e_browser/wizard.rs"]
mod wizard;
#[path = "e2e_browser/world.rs"]
mod world;

use browser::*;
use phone::*;
use wizard::*;
use world::*;

const OWNER: i64 = 4242;
const OWNER_WA: &str = "whatsapp:+15551234567";
const BOT_WA: &str = "+14155238886";
const DISCORD_OWNER: &str = "80351110224678912";
