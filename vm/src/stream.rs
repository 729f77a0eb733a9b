//! Claude Code's `--output-format stream-json`: one JSON object per line. The vm needs the
//! session id (from `system/init` and `result`), the final result, and its cost, and, with
//! `--permission-prompt-tool stdio`, the permission requests the CLI waits on
//! (`control_request` / `can_use_tool`, `tests/fixtures/claude-code-2.1.330/permission-stdio-*`);
//! everything else is ignored. Unknown types are fine, malformed lines are reported, never
//! fatal.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Init {
        session_id: String,
    },
    /// Text the assistant said along the way.
    AssistantText(String),
    /// Tools the assistant calls now (`tool_use` blocks: name and input).
    ToolUse(Vec<(String, Value)>),
    Result(AgentResult),
    /// The CLI asks whether a tool call may run, and waits for the answer on stdin.
    PermissionRequest(PermissionRequest),
    /// A well-formed line the vm has no use for.
    Other,
}

/// A `control_request` with `subtype: can_use_tool`.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    /// Echoed in the answer's `request_id`.
    pub request_id: String,
    pub tool_name: String,
    pub input: Value,
    /// The CLI's own words for the call ("Make made.txt"), if any.
    pub description: Option<String>,
    /// The rules the CLI proposes for "always" (`permission_suggestions`), as sent.
    pub suggestions: Vec<Value>,
}

/// The line that answers `request_id` on the CLI's stdin: `allow` with the input unchanged
/// (and `rules` added for this session, when given), or `deny` with `message`, which the
/// model reads as the tool's error result.
pub fn permission_answer(request_id: &str, allow: Result<(&Value, &[Value]), &str>) -> String {
    let response = match allow {
        Ok((input, rules)) => {
            let mut allowed = serde_json::json!({"behavior": "allow", "updatedInput": input});
            if !rules.is_empty() {
                allowed["updatedPermissions"] = Value::Array(rules.to_vec());
            }
            allowed
        }
        Err(message) => serde_json::json!({"behavior": "deny", "message": message}),
    };
    serde_json::json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    })
    .to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentResult {
    pub session_id: Option<String>,
    pub is_error: bool,
    pub subtype: String,
    pub text: String,
    pub total_cost_usd: f64,
    /// `errors[]` of error subtypes, or the API status when `is_error` came from an API call.
    pub errors: Vec<String>,
    /// `api_error_status`: the Messages API's HTTP status when a call to it failed.
    pub api_status: Option<u16>,
    /// Tools the agent asked for and was not allowed (`permission_denials[].tool_name`), each
    /// once.
    pub denied_tools: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a stream-json line: {0}")]
pub struct MalformedLine(pub String);

pub fn parse_line(line: &str) -> Result<StreamEvent, MalformedLine> {
    let value: Value = serde_json::from_str(line).map_err(|e| MalformedLine(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err(MalformedLine("no \"type\" field".into()));
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    Ok(match (kind, value.get("subtype").and_then(Value::as_str)) {
        ("system", Some("init")) => match value.get("session_id").and_then(text) {
            Some(session_id) => StreamEvent::Init { session_id },
            None => return Err(MalformedLine("init without session_id".into())),
        },
        ("assistant", _) => {
            let tools: Vec<(String, Value)> = value["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|part| part["type"] == "tool_use")
                .filter_map(|part| Some((text(&part["name"])?, part["input"].clone())))
                .collect();
            if !tools.is_empty() {
                return Ok(StreamEvent::ToolUse(tools));
            }
            let parts: Vec<String> = value["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|part| part["type"] == "text")
                .filter_map(|part| text(&part["text"]))
                .collect();
            if parts.is_empty() {
                StreamEvent::Other
            } else {
                StreamEvent::AssistantText(parts.join("\n"))
            }
        }
        ("control_request", _) if value["request"]["subtype"] == "can_use_tool" => {
            let request = &value["request"];
            let (Some(request_id), Some(tool_name)) = (
                value.get("request_id").and_then(text),
                request.get("tool_name").and_then(text),
            ) else {
                return Err(MalformedLine(
                    "can_use_tool without request_id or tool_name".into(),
                ));
            };
            StreamEvent::PermissionRequest(PermissionRequest {
                request_id,
                tool_name,
                input: request.get("input").cloned().unwrap_or(Value::Null),
                description: request.get("description").and_then(text),
                suggestions: request["permission_suggestions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            })
        }
        ("result", subtype) => {
            let mut errors: Vec<String> = value["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text)
                .collect();
            if let Some(status) = value["api_error_status"].as_u64() {
                errors.push(format!("API error {status}"));
            }
            let mut denied_tools: Vec<String> = Vec::new();
            for denial in value["permission_denials"].as_array().into_iter().flatten() {
                if let Some(tool) = denial["tool_name"].as_str()
                    && !denied_tools.iter().any(|t| t == tool)
                {
                    denied_tools.push(tool.to_string());
                }
            }
            StreamEvent::Result(AgentResult {
                session_id: value.get("session_id").and_then(text),
                is_error: value["is_error"].as_bool().unwrap_or(false),
                subtype: subtype.unwrap_or_default().to_string(),
                text: text(&value["result"]).unwrap_or_default(),
                total_cost_usd: value["total_cost_usd"].as_f64().unwrap_or(0.0),
                errors,
                denied_tools,
                api_status: value["api_error_status"].as_u64().map(|s| s as u16),
            })
        }
        _ => StreamEvent::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE: &str = include_str!("../tests/fixtures/claude_stream_json.jsonl");

    #[test]
    fn reads_the_real_capture() {
        let events: Vec<StreamEvent> = CAPTURE.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(
            events[0],
            StreamEvent::Init {
                session_id: "81898c55-fde9-4d44-b1f5-fbd77cd4fef6".into()
            }
        );
        assert_eq!(events[1], StreamEvent::AssistantText("OK".into()));
        let StreamEvent::Result(result) = &events[2] else {
            panic!("{:?}", events[2])
        };
        assert_eq!(result.text, "OK");
        assert!(!result.is_error);
        assert_eq!(
            result.session_id.as_deref(),
            Some("81898c55-fde9-4d44-b1f5-fbd77cd4fef6")
        );
        assert!(
            result.total_cost_usd > 0.04 && result.total_cost_usd < 0.05,
            "{}",
            result.total_cost_usd
        );
    }

    #[test]
    fn reads_refused_tools_and_unknown_sessions_from_real_captures() {
        let result = |capture: &str| {
            capture
                .lines()
                .rev()
                .find_map(|l| match parse_line(l) {
                    Ok(StreamEvent::Result(r)) => Some(r),
                    _ => None,
                })
                .unwrap()
        };
        let refused = result(include_str!(
            "../tests/fixtures/claude-code-2.1.330/bash-tool-refused-default-mode.stream.jsonl"
        ));
        assert!(!refused.is_error);
        assert_eq!(refused.denied_tools, ["Bash"]);
        let unknown = result(include_str!(
            "../tests/fixtures/claude-code-2.1.330/resume-unknown.stream.jsonl"
        ));
        assert!(unknown.is_error);
        assert_eq!(unknown.subtype, "error_during_execution");
        assert!(unknown.errors[0].starts_with("No conversation found"));
    }

    #[test]
    fn reads_the_real_permission_request_and_answers_as_the_capture_did() {
        let capture = include_str!(
            "../tests/fixtures/claude-code-2.1.330/permission-stdio-allow.stdout.jsonl"
        );
        let request = capture
            .lines()
            .find_map(|l| match parse_line(l) {
                Ok(StreamEvent::PermissionRequest(r)) => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(request.request_id, "b3136a38-078b-489d-b73d-07638be17202");
        // The tool call itself is on the stream first, as a `tool_use` block.
        let called = capture
            .lines()
            .find_map(|l| match parse_line(l) {
                Ok(StreamEvent::ToolUse(tools)) => Some(tools),
                _ => None,
            })
            .unwrap();
        assert_eq!(called[0].0, "Bash");
        assert_eq!(called[0].1["command"], "echo hi > made.txt");
        assert_eq!(request.tool_name, "Bash");
        assert_eq!(request.input["command"], "echo hi > made.txt");
        assert_eq!(request.description.as_deref(), Some("Make made.txt"));
        assert_eq!(
            request.suggestions[0]["rules"][0]["ruleContent"],
            "echo hi *"
        );
        // What the capture's stdin answered, as a value (key order aside).
        let sent: Value = serde_json::from_str(
            include_str!(
                "../tests/fixtures/claude-code-2.1.330/permission-stdio-allow.stdin.jsonl"
            )
            .lines()
            .nth(1)
            .unwrap(),
        )
        .unwrap();
        let ours: Value = serde_json::from_str(&permission_answer(
            &request.request_id,
            Ok((&request.input, &[])),
        ))
        .unwrap();
        assert_eq!(ours, sent);
        let denied: Value =
            serde_json::from_str(&permission_answer("r1", Err("the owner said no"))).unwrap();
        assert_eq!(denied["response"]["response"]["behavior"], "deny");
        assert_eq!(
            denied["response"]["response"]["message"],
            "the owner said no"
        );
        // A control request of another kind is not a permission request.
        assert_eq!(
            parse_line(
                r#"{"type":"control_request","request_id":"x","request":{"subtype":"interrupt"}}"#
            ),
            Ok(StreamEvent::Other)
        );
        assert!(
            parse_line(r#"{"type":"control_request","request":{"subtype":"can_use_tool"}}"#)
                .is_err()
        );
    }

    #[test]
    fn tolerates_unknown_and_reports_malformed() {
        assert_eq!(
            parse_line(r#"{"type":"rate_limit_event"}"#),
            Ok(StreamEvent::Other)
        );
        assert_eq!(
            parse_line(r#"{"type":"system","subtype":"hook_started"}"#),
            Ok(StreamEvent::Other)
        );
        assert!(parse_line("not json").is_err());
        assert!(parse_line(r#"{"no":"type"}"#).is_err());
        let error = parse_line(r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"result":""}"#).unwrap();
        let StreamEvent::Result(result) = error else {
            panic!()
        };
        assert!(result.is_error);
        assert_eq!(result.errors, ["API error 529"]);
    }
}
