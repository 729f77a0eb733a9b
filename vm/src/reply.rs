//! What the user reads when a job ends: a pure step from the agent's [`Outcome`] to the
//! reply's text and the job's final state, so every ending is tested without a process.

use crate::agent::Outcome;
use crate::store::JobState;

pub const INTERRUPTED_BY_RESTART: &str = "Your agent restarted while it was working on your last message. Send it again if you still need it.";
pub const PARKED: &str = "The agent is waiting for your answer to its question above, and sleeps until then: answer it whenever you like.";
pub const INTERRUPTED_BY_SHUTDOWN: &str = "Your agent was stopped while working on this (the machine is shutting down). Send it again to retry.";

/// What the reply depends on besides the outcome.
pub struct Context {
    /// The vm is shutting down (a cancel then means "interrupted", not "the user cancelled").
    pub shutting_down: bool,
    pub timeout_minutes: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub state: JobState,
}

fn done(text: impl Into<String>) -> Reply {
    Reply {
        text: text.into(),
        state: JobState::Done,
    }
}

/// The reply for a job that ended with `outcome` (`Err`: the agent could not be started).
pub fn for_outcome(outcome: &std::io::Result<Outcome>, context: &Context) -> Reply {
    match outcome {
        Ok(Outcome::Finished(result)) => {
            if let Some(sentence) = result.api_status.and_then(api_trouble) {
                done(sentence)
            } else if result.is_error || result.subtype.starts_with("error") {
                let detail = if result.errors.is_empty() {
                    result.text.clone()
                } else {
                    result.errors.join("; ")
                };
                done(format!(
                    "The agent hit an error ({}): {detail}",
                    result.subtype
                ))
            } else if result.text.trim().is_empty() {
                done(with_denials(
                    "The agent finished without a text reply.".into(),
                    &result.denied_tools,
                ))
            } else {
                done(with_denials(result.text.clone(), &result.denied_tools))
            }
        }
        Ok(Outcome::UnknownSession) => {
            done("The agent could not resume its session. Send /new to start over.")
        }
        Ok(Outcome::Failed { code, stderr_tail }) => {
            let last_line = stderr_tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            done(format!(
                "The agent failed (exit code {}): {last_line}",
                code.map_or("none".into(), |c| c.to_string())
            ))
        }
        Ok(Outcome::TimedOut) => done(format!(
            "The agent ran out of time ({} minutes) and was stopped. Try a smaller request.",
            context.timeout_minutes
        )),
        Ok(Outcome::Parked) => done(PARKED),
        Ok(Outcome::Cancelled) if context.shutting_down => Reply {
            text: INTERRUPTED_BY_SHUTDOWN.into(),
            state: JobState::Interrupted,
        },
        Ok(Outcome::Cancelled) => Reply {
            text: "Cancelled the running job.".into(),
            state: JobState::Cancelled,
        },
        Err(error) => done(format!(
            "The agent could not be started ({error}). Check AGENT_CMD."
        )),
    }
}

/// What a failed call to Anthropic's API means for the user, by its HTTP status.
fn api_trouble(status: u16) -> Option<&'static str> {
    Some(match status {
        401 | 403 => {
            "Anthropic refused the API key. Deploy again with a valid key (console.anthropic.com → API keys)."
        }
        429 => "Your Anthropic account hit a rate limit. Try again in a minute.",
        529 => "Anthropic's API is overloaded right now. Try again in a minute.",
        500..=599 => "Anthropic's API had a problem on its side. Try again in a minute.",
        _ => return None,
    })
}

/// One line naming the tools the agent was refused, so the user knows why work is missing.
fn with_denials(text: String, denied: &[String]) -> String {
    if denied.is_empty() {
        text
    } else {
        format!(
            "{text}\n\n(The agent was not allowed to use: {}.)",
            denied.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::AgentResult;

    const CONTEXT: Context = Context {
        shutting_down: false,
        timeout_minutes: 30,
    };

    fn finished(change: impl FnOnce(&mut AgentResult)) -> std::io::Result<Outcome> {
        let mut result = AgentResult {
            session_id: Some("s".into()),
            is_error: false,
            subtype: "success".into(),
            text: "All done.".into(),
            total_cost_usd: 0.01,
            errors: vec![],
            api_status: None,
            denied_tools: vec![],
        };
        change(&mut result);
        Ok(Outcome::Finished(result))
    }

    fn text(outcome: std::io::Result<Outcome>) -> String {
        for_outcome(&outcome, &CONTEXT).text
    }

    #[test]
    fn a_finished_run_says_what_the_agent_said_and_what_it_was_refused() {
        assert_eq!(for_outcome(&finished(|_| {}), &CONTEXT), done("All done."));
        assert_eq!(
            text(finished(|r| r.text = "  ".into())),
            "The agent finished without a text reply."
        );
        assert_eq!(
            text(finished(
                |r| r.denied_tools = vec!["Bash".into(), "Write".into()]
            )),
            "All done.\n\n(The agent was not allowed to use: Bash, Write.)"
        );
    }

    #[test]
    fn api_errors_become_sentences_by_status() {
        let with_status = |status| {
            text(finished(|r| {
                r.is_error = true;
                r.api_status = Some(status);
            }))
        };
        assert!(with_status(401).contains("refused the API key"));
        assert!(with_status(429).contains("rate limit"));
        assert!(with_status(529).contains("overloaded"));
        assert!(with_status(502).contains("problem on its side"));
        // A status without a sentence of its own falls back to the CLI's words.
        let other = text(finished(|r| {
            r.is_error = true;
            r.api_status = Some(418);
            r.subtype = "success".into();
            r.errors = vec!["API error 418".into()];
        }));
        assert_eq!(other, "The agent hit an error (success): API error 418");
    }

    #[test]
    fn every_other_ending_has_its_own_sentence_and_state() {
        let failed = Ok(Outcome::Failed {
            code: Some(3),
            stderr_tail: "warming up\nboom\n\n".into(),
        });
        assert_eq!(text(failed), "The agent failed (exit code 3): boom");
        assert!(text(Ok(Outcome::TimedOut)).contains("(30 minutes)"));
        assert!(text(Ok(Outcome::UnknownSession)).contains("/new"));
        assert_eq!(
            for_outcome(&Ok(Outcome::Cancelled), &CONTEXT).state,
            JobState::Cancelled
        );
        let shutting_down = Context {
            shutting_down: true,
            ..CONTEXT
        };
        assert_eq!(
            for_outcome(&Ok(Outcome::Cancelled), &shutting_down),
            Reply {
                text: INTERRUPTED_BY_SHUTDOWN.into(),
                state: JobState::Interrupted
            }
        );
        let missing = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(text(missing).ends_with("Check AGENT_CMD."));
    }
}
