//! Anthropic's tool use: `tools` (`name`, `description`, `input_schema`), `tool_choice` (`auto`,
//! `any`, `tool`, `none`, with `disable_parallel_tool_use`), conversations whose messages hold
//! `tool_use` and `tool_result` blocks, and a reply's calls given back as `tool_use` blocks with
//! stop reason `tool_use`.

use super::tool_use::{Choice, Tools};
use crate::cli::http::{Api, ApiError, content_text, message_list, new_id};
use minillm::chat::tools::{Tool, ToolCall};
use minillm::chat::{Message, Role};
use serde_json::{Value, json};

const API: Api = Api::Anthropic;

impl Tools {
    /// Anthropic's `tools` and `tool_choice`.
    pub fn from_anthropic(body: &Value) -> Result<Tools, ApiError> {
        let bad = |field: &str, m: String| ApiError::bad(API, field, m);
        let tools = Tools::offered(API, body, |t| {
            if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
                return Err(format!("tools of type '{kind}' (Anthropic's own) are not offered here"));
            }
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let description = t.get("description").and_then(Value::as_str).map(String::from);
            let schema =
                t.get("input_schema").cloned().ok_or(format!("tool '{name}' needs an 'input_schema'"))?;
            Tool::new(name, description, Some(schema)).map_err(|e| e.to_string())
        })?;
        let choice_field = body.get("tool_choice").filter(|c| !c.is_null());
        let choice = match choice_field.map(|c| (c.get("type").and_then(Value::as_str), c)) {
            None if tools.is_empty() => Choice::None,
            None | Some((Some("auto"), _)) => Choice::Auto,
            Some((Some("none"), _)) => Choice::None,
            Some((Some("any"), _)) => Choice::Required,
            Some((Some("tool"), c)) => match c.get("name").and_then(Value::as_str) {
                Some(name) if tools.iter().any(|t| t.name == name) => Choice::Named(name.to_string()),
                _ => {
                    return Err(bad(
                        "tool_choice",
                        "'tool_choice' of type tool must name one of 'tools'".into(),
                    ));
                }
            },
            Some(_) => {
                return Err(bad("tool_choice", "'tool_choice.type' must be auto, any, tool or none".into()));
            }
        };
        let parallel = match choice_field.and_then(|c| c.get("disable_parallel_tool_use")) {
            None | Some(Value::Null) => true,
            Some(v) => !v.as_bool().ok_or_else(|| {
                bad("tool_choice", "'disable_parallel_tool_use' must be true or false".into())
            })?,
        };
        Tools::checked(API, tools, choice, parallel)
    }

    /// The reply as content blocks (its text, then a `tool_use` block per call), and whether
    /// it calls.
    pub fn anthropic_content(&self, reply: &str) -> (Vec<Value>, bool) {
        let (text, calls) = self.read_calls(reply);
        let mut blocks = Vec::new();
        if !text.is_empty() || calls.is_empty() {
            blocks.push(json!({"type": "text", "text": text}));
        }
        let calling = !calls.is_empty();
        for (name, input) in calls {
            blocks.push(json!({"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": input}));
        }
        (blocks, calling)
    }
}

/// The conversation: the system prompt, then each message's blocks. An assistant's `tool_use`
/// blocks become its calls; a user's `tool_result` blocks become tool messages (the results come
/// before any text of the same message, as Anthropic requires them first).
pub fn conversation(body: &Value) -> Result<Vec<Message>, ApiError> {
    let bad = |m: String| ApiError::bad(API, "messages", m);
    let mut out = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => out.push(Message::new(Role::System, content_text(API, "system", system)?)),
    }
    let list = message_list(API, body)?;
    for (i, m) in list.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                let given = other.map_or("a message without a role".to_string(), |n| format!("role '{n}'"));
                return Err(bad(format!("{given} is not supported here: the roles are user or assistant")));
            }
        };
        let blocks = match m.get("content") {
            Some(Value::String(text)) => {
                out.push(Message::new(role, text.clone()));
                continue;
            }
            Some(Value::Array(blocks)) => blocks,
            _ => {
                return Err(bad(format!(
                    "message {}: 'content' must be a string or a list of blocks",
                    i + 1
                )));
            }
        };
        let (mut text, mut calls) = (String::new(), Vec::new());
        for block in blocks {
            match (role, block.get("type").and_then(Value::as_str)) {
                (_, Some("text")) => {
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default())
                }
                (Role::Assistant, Some("tool_use")) => {
                    let (id, name, input) = (block.get("id"), block.get("name"), block.get("input"));
                    match (
                        id.and_then(Value::as_str),
                        name.and_then(Value::as_str),
                        input.filter(|v| v.is_object()),
                    ) {
                        (Some(id), Some(name), Some(input)) => {
                            calls.push(ToolCall::new(id.into(), name.into(), input.clone()))
                        }
                        _ => {
                            return Err(bad(format!(
                                "message {}: a tool_use block needs 'id', 'name' and an object 'input'",
                                i + 1
                            )));
                        }
                    }
                }
                (Role::User, Some("tool_result")) => {
                    let id = block.get("tool_use_id").and_then(Value::as_str);
                    let id = id.ok_or_else(|| {
                        bad(format!("message {}: a tool_result block needs its 'tool_use_id'", i + 1))
                    })?;
                    let content = match block.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(c) => content_text(API, "messages", c)?,
                    };
                    let failed = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                    let mut result =
                        Message::new(Role::Tool, if failed { format!("Error: {content}") } else { content });
                    result.tool_call_id = Some(id.to_string());
                    out.push(result);
                }
                (_, kind) => {
                    let kind = kind.unwrap_or("(none)");
                    return Err(bad(format!(
                        "message {}: blocks of type '{kind}' are not supported in a {role} message",
                        i + 1
                    )));
                }
            }
        }
        if !text.is_empty() || !calls.is_empty() || role == Role::Assistant {
            let mut message = Message::new(role, text);
            message.tool_calls = calls;
            out.push(message);
        }
    }
    Ok(out)
}
