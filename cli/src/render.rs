//! How progress looks: live spinners on a terminal, one plain line per event otherwise, or
//! JSON lines with `--json`. Events never carry secrets, so all three may print them whole.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use provision::{Event, StepId, StepState};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

pub enum Renderer {
    Json,
    Plain,
    Live {
        bars: MultiProgress,
        running: RefCell<HashMap<StepId, ProgressBar>>,
    },
}

impl Renderer {
    pub fn new(json: bool) -> Renderer {
        if json {
            Renderer::Json
        } else if std::io::stderr().is_terminal() {
            Renderer::Live {
                bars: MultiProgress::new(),
                running: RefCell::new(HashMap::new()),
            }
        } else {
            Renderer::Plain
        }
    }

    pub fn event(&self, event: &Event) {
        match self {
            Renderer::Json => self.json(&serde_json::json!({ "event": event })),
            Renderer::Plain => eprintln!(
                "[{}] {}: {}",
                state_word(event.state),
                event.step.title(),
                event.message
            ),
            Renderer::Live { bars, running } => {
                let mut running = running.borrow_mut();
                match event.state {
                    // A step says what it waits for in a later `Running` event.
                    StepState::Running if running.contains_key(&event.step) => {
                        if let Some(bar) = running.get(&event.step) {
                            bar.set_message(format!("{} — {}", event.step.title(), event.message));
                        }
                    }
                    StepState::Running => {
                        let bar = bars.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                                .expect("template"),
                        );
                        bar.set_message(event.step.title());
                        bar.enable_steady_tick(Duration::from_millis(100));
                        running.insert(event.step, bar);
                    }
                    state => {
                        let mark = match state {
                            StepState::Failed => "✗",
                            StepState::AlreadyDone => "·",
                            _ => "✓",
                        };
                        let line = format!("{mark} {} — {}", event.step.title(), event.message);
                        match running.remove(&event.step) {
                            Some(bar) => bar.finish_with_message(line),
                            None => {
                                let _ = bars.println(line);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A result: JSON on stdout with `--json`, otherwise the human text on stdout.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        match self {
            Renderer::Json => self.json(value),
            _ => println!("{}", human()),
        }
    }

    fn json<T: Serialize>(&self, value: &T) {
        println!(
            "{}",
            serde_json::to_string(value).expect("events serialise")
        );
    }
}

fn state_word(state: StepState) -> &'static str {
    match state {
        StepState::Running => "....",
        StepState::Done => "done",
        StepState::AlreadyDone => "skip",
        StepState::Failed => "FAIL",
    }
}
