//! Fake Twilio Content API (`https://content.twilio.com`, here `/twilio-content`): the
//! templates a WhatsApp message with quick replies is sent from, and how a message made from
//! one reads. Behaviour from Twilio's documents (docs/channels.md, "WhatsApp quick replies"):
//!
//! - `POST /v1/Content` (JSON, HTTP Basic): `friendly_name`, `language` and `types` are
//!   required; `twilio/quick-reply` has a `body` of at most 1,024 characters and 1 to 10
//!   actions, each a `title` of at most 20 characters and an `id` of at most 200. `201` with
//!   the resource, its `sid` `HX` and 32 hex digits (twilio-oai `twilio_content_v1.json`).
//! - `GET /v1/Content?PageSize=N` (1–1000, default 50): `{contents, meta}`, with
//!   `meta.next_page_url` while more pages remain.
//! - `DELETE /v1/Content/{Sid}`: `204`, or `404` (20404) for a SID the account does not have.
//! - A message sent with `ContentSid` and `ContentVariables` (the Messages API, in
//!   [`crate::channels`]): the SID must be this account's (error 21655), the variables a JSON
//!   object of non-empty strings (21656). (In a WhatsApp session a quick reply may carry
//!   at most 3 buttons without Meta's approval; a question has at most 3.)
//!
//! Fault rules on `GET`/`POST /twilio-content/v1/Content` play an account whose Content API
//! is closed to it.

use crate::Sim;
use crate::channels::{Button, twilio_error as error};
use crate::faults::Verdict;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Content {
    /// Every template made, oldest first: (account SID, the resource).
    templates: Mutex<Vec<(String, Value)>>,
    /// How many were ever made: a SID is never given twice.
    made: std::sync::atomic::AtomicU64,
}

impl Content {
    /// The SIDs of the account's templates (what a user sees in the Console).
    pub fn templates(&self, account: &str) -> Vec<String> {
        self.templates
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == account)
            .filter_map(|(_, t)| t["sid"].as_str().map(str::to_string))
            .collect()
    }
}

/// What a message made from a template shows: its text and its buttons.
pub struct Rendered {
    pub text: String,
    pub buttons: Vec<Button>,
}

/// Fills in the template `sid` of `account` with `variables` (the `ContentVariables` form
/// field), or the Twilio error code and message a send would get.
pub fn render(
    sim: &Sim,
    account: &str,
    sid: &str,
    variables: Option<&str>,
) -> Result<Rendered, (u32, &'static str)> {
    let template = sim
        .content
        .templates
        .lock()
        .unwrap()
        .iter()
        .find(|(a, t)| a == account && t["sid"] == sid)
        .map(|(_, t)| t.clone())
        .ok_or((21655, "The Content SID is Invalid."))?;
    let invalid = (21656, "The ContentVariables Parameter is invalid.");
    let given: serde_json::Map<String, Value> = match variables {
        None => Default::default(),
        Some(json) => serde_json::from_str(json).map_err(|_| invalid)?,
    };
    if given
        .values()
        .any(|v| v.as_str().is_none_or(|s| s.is_empty()))
    {
        return Err(invalid);
    }
    // A variable not given takes the template's sample.
    let fill = |text: &str| {
        let mut text = text.to_string();
        for (name, sample) in template["variables"].as_object().into_iter().flatten() {
            let value = given
                .get(name)
                .and_then(Value::as_str)
                .or(sample.as_str())
                .unwrap_or_default();
            text = text.replace(&format!("{{{{{name}}}}}"), value);
        }
        text
    };
    let quick = &template["types"]["twilio/quick-reply"];
    if quick.is_object() {
        let buttons: Vec<Button> = quick["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Button {
                text: fill(a["title"].as_str().unwrap_or_default()),
                data: fill(a["id"].as_str().unwrap_or_default()),
            })
            .collect();
        return Ok(Rendered {
            text: fill(quick["body"].as_str().unwrap_or_default()),
            buttons,
        });
    }
    let text = template["types"]["twilio/text"]["body"]
        .as_str()
        .map(fill)
        .ok_or((21655, "The Content SID is Invalid."))?;
    Ok(Rendered {
        text,
        buttons: vec![],
    })
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/twilio-content/v1/Content",
            get(list_templates).post(create_template),
        )
        .route("/twilio-content/v1/Content/{sid}", delete(delete_template))
        .with_state(sim)
}

/// `DELETE /v1/Content/{Sid}`: `204`; what a user does in the Console's Template Builder.
async fn delete_template(
    State(sim): State<Arc<Sim>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let account = match account(&sim, "DELETE", &headers) {
        Ok(account) => account,
        Err(refused) => return refused,
    };
    let mut templates = sim.content.templates.lock().unwrap();
    let before = templates.len();
    templates.retain(|(a, t)| !(*a == account && t["sid"] == sid.as_str()));
    if templates.len() == before {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The account of a request, or Twilio's 401; an injected fault first.
fn account(sim: &Sim, method: &str, headers: &HeaderMap) -> Result<String, Response> {
    if let Verdict::FailWith(status) | Verdict::AnswerWith(status, _) =
        sim.faults.verdict(method, "/twilio-content/v1/Content")
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        return Err(error(status, 20003, "Permission Denied"));
    }
    crate::channels::twilio_account(sim, headers)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"))
}

async fn create_template(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match account(&sim, "POST", &headers) {
        Ok(account) => account,
        Err(refused) => return refused,
    };
    let Ok(mut template) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, 20001, "Invalid JSON");
    };
    if let Err(problem) = check(&template) {
        return error(StatusCode::BAD_REQUEST, 20001, &problem);
    }
    let mut templates = sim.content.templates.lock().unwrap();
    let made = sim
        .content
        .made
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sid = format!("HX{:032x}", made + 1);
    template["sid"] = json!(sid);
    template["account_sid"] = json!(account);
    template["url"] = json!(format!("{}/twilio-content/v1/Content/{sid}", sim.base_url));
    templates.push((account, template.clone()));
    (StatusCode::CREATED, axum::Json(template)).into_response()
}

/// What `POST /v1/Content` refuses, named by field.
fn check(template: &Value) -> Result<(), String> {
    for field in ["friendly_name", "language"] {
        if template[field].as_str().is_none_or(str::is_empty) {
            return Err(format!("{field} is required"));
        }
    }
    let Some(types) = template["types"].as_object().filter(|t| !t.is_empty()) else {
        return Err("types is required".into());
    };
    if let Some(quick) = types.get("twilio/quick-reply") {
        if quick["body"]
            .as_str()
            .is_none_or(|b| b.is_empty() || b.chars().count() > 1024)
        {
            return Err("twilio/quick-reply body: 1 to 1024 characters".into());
        }
        let actions = quick["actions"].as_array().cloned().unwrap_or_default();
        if !(1..=10).contains(&actions.len()) {
            return Err("twilio/quick-reply actions: 1 to 10".into());
        }
        for action in actions {
            if action["title"]
                .as_str()
                .is_none_or(|t| t.is_empty() || t.chars().count() > 20)
            {
                return Err("twilio/quick-reply action title: 1 to 20 characters".into());
            }
            if action["id"].as_str().is_some_and(|id| id.len() > 200) {
                return Err("twilio/quick-reply action id: at most 200 characters".into());
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Page {
    #[serde(rename = "PageSize")]
    page_size: Option<usize>,
    #[serde(rename = "Page")]
    page: Option<usize>,
}

async fn list_templates(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    let account = match account(&sim, "GET", &headers) {
        Ok(account) => account,
        Err(refused) => return refused,
    };
    let size = page.page_size.unwrap_or(50);
    if !(1..=1000).contains(&size) {
        return error(StatusCode::BAD_REQUEST, 20001, "PageSize: 1 to 1000");
    }
    let number = page.page.unwrap_or(0);
    let mine: Vec<Value> = sim
        .content
        .templates
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, _)| *a == account)
        .map(|(_, t)| t.clone())
        .collect();
    let contents: Vec<Value> = mine
        .iter()
        .skip(number * size)
        .take(size)
        .cloned()
        .collect();
    let base = format!("{}/twilio-content/v1/Content", sim.base_url);
    let next = ((number + 1) * size < mine.len())
        .then(|| format!("{base}?PageSize={size}&Page={}", number + 1));
    axum::Json(json!({
        "contents": contents,
        "meta": {
            "page": number, "page_size": size, "key": "contents",
            "first_page_url": format!("{base}?PageSize={size}&Page=0"),
            "previous_page_url": (number > 0).then(|| format!("{base}?PageSize={size}&Page={}", number - 1)),
            "url": format!("{base}?PageSize={size}&Page={number}"),
            "next_page_url": next,
        },
    }))
    .into_response()
}
