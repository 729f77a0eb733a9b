//! `textslash setup`: `deploy`, asked for on a terminal, as the design's `npx textslash setup`
//! promises. What `deploy` takes as flags and was not given (the name, the region, the channel,
//! WhatsApp's number, whether the agent asks first) is asked for in the page wizard's order,
//! with the same checks (`provision::spec`); a wrong answer is named and asked again. The
//! secrets are asked for afterwards, hidden, as `deploy` asks for them (`secrets`), and the
//! bot token and the Anthropic key are tried with their services before anything is created
//! (`--check-credentials`, `provision::checks`), as the page tries them. Off a terminal, or
//! with `--help`, `setup` is `deploy` and nothing is asked.

use crate::Failure;
use std::ffi::OsString;
use std::io::{BufRead, Write};

/// Where the questions go and the answers come from.
pub trait Ask {
    /// Shows `prompt` and reads one line; `None` at the end of input.
    fn line(&mut self, prompt: &str) -> Option<String>;
    /// Shows a sentence.
    fn say(&mut self, text: &str);
}

/// The terminal: questions on stderr (stdout stays the command's output), answers on stdin.
pub struct Terminal;

impl Ask for Terminal {
    fn line(&mut self, prompt: &str) -> Option<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        match std::io::stdin().lock().read_line(&mut answer) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(answer.trim().to_string()),
        }
    }

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// The arguments `deploy` runs with: `setup` becomes `deploy`, and on a terminal what was not
/// given is asked for and added as flags. Other commands pass through unchanged.
pub fn complete(
    mut args: Vec<OsString>,
    terminal: bool,
    ask: &mut impl Ask,
) -> Result<Vec<OsString>, Failure> {
    if args.get(1).is_none_or(|command| command != "setup") {
        return Ok(args);
    }
    args[1] = "deploy".into();
    let given = |flag: &str| {
        args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        })
    };
    if !terminal || given("--help") || given("-h") {
        return Ok(args);
    }
    let mut added: Vec<String> = Vec::new();
    ask.say(
        "Deploy your own coding agent to Fly.io. Press Enter to take the answer in [brackets].",
    );
    if !given("--prefix") {
        let prefix = until_valid(
            ask,
            "Name for this deployment (its apps are <name>-relay and <name>-vm): ",
            None,
            |answer| provision::spec::validate_prefix(answer).map(|()| answer.to_string()),
        )?;
        added.extend(["--prefix".into(), prefix]);
    }
    if !given("--region") {
        let region = until_valid(ask, "Fly region [iad]: ", Some("iad"), |answer| {
            provision::spec::validate_region(answer).map(|()| answer.to_string())
        })?;
        added.extend(["--region".into(), region]);
    }
    let channel = if given("--channel") {
        None
    } else {
        let channel = until_valid(
            ask,
            "Where will you chat with it: telegram, whatsapp or discord? [telegram]: ",
            Some("telegram"),
            |answer| match answer.to_ascii_lowercase().as_str() {
                name @ ("telegram" | "whatsapp" | "discord") => Ok(name.to_string()),
                _ => Err(provision::Error::InvalidSpec {
                    field: "channel",
                    problem: "telegram, whatsapp or discord".into(),
                }),
            },
        )?;
        added.extend(["--channel".into(), channel.clone()]);
        Some(channel)
    };
    if channel.as_deref() == Some("whatsapp")
        && !given("--whatsapp-number")
        && std::env::var_os("TWILIO_WHATSAPP_NUMBER").is_none()
    {
        let number = until_valid(
            ask,
            "Your Twilio WhatsApp number, such as +14155238886: ",
            None,
            |answer| {
                provision::spec::normalise_phone(answer).ok_or(provision::Error::InvalidSpec {
                    field: "whatsapp_number",
                    problem: "an international number such as +14155238886".into(),
                })
            },
        )?;
        added.extend(["--whatsapp-number".into(), number]);
    }
    if !given("--approvals") {
        let approvals = until_valid(
            ask,
            "Should the agent ask you before it runs a command, uses the web or the browser? [Y/n]: ",
            Some("y"),
            |answer| match answer.to_ascii_lowercase().as_str() {
                "y" | "yes" => Ok("ask".to_string()),
                "n" | "no" => Ok("auto".to_string()),
                _ => Err(provision::Error::InvalidSpec {
                    field: "approvals",
                    problem: "y or n".into(),
                }),
            },
        )?;
        added.extend(["--approvals".into(), approvals]);
    }
    ask.say(
        "Now the secrets (hidden as you type or paste; set them in the environment to skip these).",
    );
    // As the page does: the bot token and the key are tried before anything is created.
    if !given("--check-credentials") {
        added.push("--check-credentials".into());
    }
    args.extend(added.into_iter().map(OsString::from));
    Ok(args)
}

/// Asks until `check` takes the answer (an empty one is `default`, when there is one); a
/// refusal is said before asking again. The end of input stops the setup.
fn until_valid<T>(
    ask: &mut impl Ask,
    prompt: &str,
    default: Option<&str>,
    check: impl Fn(&str) -> Result<T, provision::Error>,
) -> Result<T, Failure> {
    loop {
        let Some(answer) = ask.line(prompt) else {
            return Err(Failure::Usage("setup stopped: no answer".into()));
        };
        let answer = match (answer.is_empty(), default) {
            (true, Some(default)) => default.to_string(),
            _ => answer,
        };
        match check(&answer) {
            Ok(value) => return Ok(value),
            Err(refused) => ask.say(&format!("  {refused}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripted answers, and everything said.
    struct Script {
        answers: std::collections::VecDeque<&'static str>,
        shown: String,
    }

    impl Ask for Script {
        fn line(&mut self, prompt: &str) -> Option<String> {
            self.shown.push_str(prompt);
            self.answers.pop_front().map(str::to_string)
        }
        fn say(&mut self, text: &str) {
            self.shown.push_str(text);
            self.shown.push('\n');
        }
    }

    fn run(args: &[&str], terminal: bool, answers: &[&'static str]) -> (Vec<String>, String) {
        let mut script = Script {
            answers: answers.iter().copied().collect(),
            shown: String::new(),
        };
        let args = complete(
            args.iter().map(OsString::from).collect(),
            terminal,
            &mut script,
        )
        .map_err(|_| ())
        .unwrap();
        (
            args.into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            script.shown,
        )
    }

    #[test]
    fn setup_asks_for_what_is_missing_and_names_a_wrong_answer() {
        let (args, shown) = run(
            &["textslash", "setup"],
            true,
            &[
                "My Agent",
                "my-agent",
                "",
                "WhatsApp",
                "415 523",
                "+1 415-523 8886",
                "n",
            ],
        );
        assert_eq!(
            args,
            [
                "textslash",
                "deploy",
                "--prefix",
                "my-agent",
                "--region",
                "iad",
                "--channel",
                "whatsapp",
                "--whatsapp-number",
                "+14155238886",
                "--approvals",
                "auto",
                "--check-credentials"
            ]
        );
        assert!(
            shown.contains("prefix: only lowercase letters, digits and hyphens"),
            "{shown}"
        );
        assert!(
            shown.contains("whatsapp_number: an international number"),
            "{shown}"
        );
    }

    #[test]
    fn what_is_given_is_not_asked_and_off_a_terminal_nothing_is() {
        let (args, shown) = run(
            &[
                "textslash",
                "setup",
                "--prefix=a1",
                "--channel",
                "discord",
                "--region",
                "ams",
            ],
            true,
            &[""],
        );
        assert_eq!(
            args,
            [
                "textslash",
                "deploy",
                "--prefix=a1",
                "--channel",
                "discord",
                "--region",
                "ams",
                "--approvals",
                "ask",
                "--check-credentials"
            ]
        );
        assert!(!shown.contains("Name for this deployment"), "{shown}");
        let (args, shown) = run(&["textslash", "setup"], false, &[]);
        assert_eq!(args, ["textslash", "deploy"]);
        assert!(shown.is_empty());
        let (args, _) = run(&["textslash", "status", "--prefix", "x"], true, &[]);
        assert_eq!(args, ["textslash", "status", "--prefix", "x"]);
    }
}
