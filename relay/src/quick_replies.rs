//! WhatsApp quick replies: a question's choices as buttons under the message, through
//! Twilio's Content API (`twilio/quick-reply`, docs/channels.md).
//!
//! A Content template is made once per set of choices in the user's Twilio account, named
//! `textslash_question_<choices>`, and found again by that name after a restart, so the
//! account holds at most two of them. Each question fills one in: `{{1}}` is its text and
//! each button's id is the choice token (`q:<id>:<a|A|d>`). A tapped button comes back as an
//! inbound message whose `ButtonPayload` is that id; the relay checks it like a Telegram tap.
//!
//! In a conversation the user opened in the last 24 hours, WhatsApp takes up to three quick
//! replies without Meta's approval, which is all a question needs. Where the Content API is
//! not open to the account (it answers 401, 403 or 404), the question goes as text with
//! numbered replies instead, and stays that way until the relay restarts. A message the
//! Messages API refuses with the template (deleted in the Console meanwhile) goes numbered
//! too, and the next question makes the template again. The templates stay in the account
//! after a teardown: every deployment on that account shares them.

use crate::SendError;
use crate::config::TwilioConfig;
use contract::protocol::{Decision, Question, choice_token};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `twilio/quick-reply`: a body of at most 1,024 characters.
pub const BODY_MAX: usize = 1024;
/// How many pages of the account's templates are read looking for ours.
const PAGES_MAX: usize = 10;

/// The templates this relay has found or made, by name.
pub struct QuickReplies {
    /// `None` once the Content API said it is not open to this account.
    known: tokio::sync::Mutex<Option<HashMap<String, String>>>,
}

impl Default for QuickReplies {
    /// None known yet, and the Content API not yet found closed.
    fn default() -> QuickReplies {
        QuickReplies {
            known: tokio::sync::Mutex::new(Some(HashMap::new())),
        }
    }
}

impl QuickReplies {
    /// Sends `body` to `to` with `question`'s choices as quick replies. `Ok(false)` when
    /// quick replies cannot be used here (the body is too long, or the account has no
    /// Content API): the caller sends the numbered text instead.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        config: &TwilioConfig,
        to: &str,
        body: &str,
        question: &Question,
    ) -> Result<bool, SendError> {
        if body.chars().count() > BODY_MAX || question.choices.is_empty() {
            return Ok(false);
        }
        let Some(template) = self.template(http, config, &question.choices).await? else {
            return Ok(false);
        };
        let mut variables = serde_json::Map::new();
        variables.insert("1".into(), json!(body));
        for (index, decision) in question.choices.iter().enumerate() {
            variables.insert(
                (index + 2).to_string(),
                json!(choice_token(&question.id, *decision)),
            );
        }
        let variables = Value::Object(variables).to_string();
        let sent = crate::twilio::send_form(
            http,
            config,
            &[
                ("To", to),
                ("ContentSid", &template),
                ("ContentVariables", &variables),
            ],
        )
        .await;
        match sent {
            Ok(()) => Ok(true),
            // The template is gone (deleted in the Console: 21655) or refused: this question
            // goes as numbered text, and the next one finds or makes the template again.
            Err(SendError::Permanent(reason)) => {
                tracing::warn!("a quick reply was refused, the question goes numbered: {reason}");
                if let Some(templates) = self.known.lock().await.as_mut() {
                    templates.retain(|_, sid| *sid != template);
                }
                Ok(false)
            }
            Err(retry) => Err(retry),
        }
    }

    /// The SID of the template for `choices`: remembered, found by name, or made.
    async fn template(
        &self,
        http: &reqwest::Client,
        config: &TwilioConfig,
        choices: &[Decision],
    ) -> Result<Option<String>, SendError> {
        // One look-up at a time, so two questions at once make one template.
        let mut known = self.known.lock().await;
        let Some(templates) = known.as_mut() else {
            return Ok(None);
        };
        let name = template_name(choices);
        if let Some(sid) = templates.get(&name) {
            return Ok(Some(sid.clone()));
        }
        let found = match find(http, config, &name).await {
            Ok(Some(sid)) => Ok(sid),
            Ok(None) => make(http, config, &name, choices).await,
            Err(error) => Err(error),
        };
        match found {
            Ok(sid) => {
                templates.insert(name, sid.clone());
                Ok(Some(sid))
            }
            Err(Unavailable::Closed(reason)) => {
                tracing::warn!(
                    "quick replies are not available, questions go as numbered replies: {reason}"
                );
                *known = None;
                Ok(None)
            }
            Err(Unavailable::Later(error)) => Err(error),
        }
    }
}

/// Why no template could be had.
enum Unavailable {
    /// The Content API is not open to this account (401, 403, 404) or refused ours (400).
    Closed(String),
    /// Try again later (unreachable, 429, 5xx).
    Later(SendError),
}

/// `textslash_question_allow_always_allow_deny`.
fn template_name(choices: &[Decision]) -> String {
    let parts: Vec<String> = choices
        .iter()
        .map(|d| d.label().to_lowercase().replace(' ', "_"))
        .collect();
    format!("textslash_question_{}", parts.join("_"))
}

/// The template named `name` among the account's (Content API, `GET /v1/Content`, read page
/// by page through `meta.next_page_url`).
async fn find(
    http: &reqwest::Client,
    config: &TwilioConfig,
    name: &str,
) -> Result<Option<String>, Unavailable> {
    let mut url = format!("{}/v1/Content?PageSize=1000", config.content_api_base);
    for _ in 0..PAGES_MAX {
        let page = call(http.get(&url), config).await?;
        let found = page["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["friendly_name"] == name)
            .and_then(|c| c["sid"].as_str());
        if let Some(sid) = found {
            return Ok(Some(sid.to_string()));
        }
        match page["meta"]["next_page_url"].as_str() {
            // Only ever followed on the Content API's own host.
            Some(next) if next.starts_with(&config.content_api_base) => url = next.to_string(),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Makes the template for `choices` (Content API, `POST /v1/Content`).
async fn make(
    http: &reqwest::Client,
    config: &TwilioConfig,
    name: &str,
    choices: &[Decision],
) -> Result<String, Unavailable> {
    let mut samples = serde_json::Map::new();
    samples.insert("1".into(), json!("The agent asks to run `ls`."));
    let actions: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(index, decision)| {
            let variable = (index + 2).to_string();
            samples.insert(variable.clone(), json!(choice_token("sample", *decision)));
            json!({"type": "QUICK_REPLY", "title": decision.label(), "id": format!("{{{{{variable}}}}}")})
        })
        .collect();
    let template = json!({
        "friendly_name": name,
        "language": "en",
        "variables": samples,
        "types": {"twilio/quick-reply": {"body": "{{1}}", "actions": actions}},
    });
    let made = call(
        http.post(format!("{}/v1/Content", config.content_api_base))
            .json(&template),
        config,
    )
    .await?;
    made["sid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Unavailable::Closed("the Content API made no template".into()))
}

async fn call(
    request: reqwest::RequestBuilder,
    config: &TwilioConfig,
) -> Result<Value, Unavailable> {
    let response = request
        .basic_auth(&config.account_sid, Some(&config.auth_token))
        .send()
        .await
        .map_err(|e| {
            Unavailable::Later(SendError::Retry {
                reason: format!("Twilio's Content API unreachable: {}", e.without_url()),
                after: None,
            })
        })?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(|_| {
            Unavailable::Closed("the Content API answered something that is not JSON".into())
        });
    }
    match crate::twilio::classify(response, "Twilio's Content API").await {
        Err(SendError::Permanent(reason)) => Err(Unavailable::Closed(reason)),
        Err(retry) => Err(Unavailable::Later(retry)),
        Ok(()) => Err(Unavailable::Closed(format!("unexpected {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_named_by_its_choices() {
        assert_eq!(
            template_name(&[Decision::Allow, Decision::AlwaysAllow, Decision::Deny]),
            "textslash_question_allow_always_allow_deny"
        );
        assert_eq!(
            template_name(&[Decision::Allow, Decision::Deny]),
            "textslash_question_allow_deny"
        );
    }
}
