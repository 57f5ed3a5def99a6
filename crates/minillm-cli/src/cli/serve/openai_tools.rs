//! OpenAI's tool calls: `tools`, `tool_choice` and `parallel_tool_calls` read from a request,
//! conversations holding earlier calls (`tool_calls`) and their results (role `tool`), and a
//! reply's calls given back as `tool_calls` with finish reason `tool_calls`.
//!
//! `tool_choice: "required"` or a named function makes the reply a call by constrained decoding
//! (the arguments valid under the tool's schema); with `"auto"` the model decides, and its reply
//! is read for calls in its format. `"none"` still shows the tools (as OpenAI does) but reads
//! no calls.

use super::tool_use::{Choice, Tools};
use crate::cli::http::{Api, ApiError, content_text, message_list, new_id};
use minillm::chat::tools::{Tool, ToolCall};
use minillm::chat::{Message, Role};
use serde_json::{Value, json};

const API: Api = Api::OpenAi;

impl Tools {
    /// OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`.
    pub fn from_openai(body: &Value) -> Result<Tools, ApiError> {
        let bad = |field: &str, m: String| ApiError::bad(API, field, m);
        let tools = Tools::offered(API, body, |t| {
            let f = t.get("function").filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
            let f = f.ok_or("each tool must be {\"type\": \"function\", \"function\": {...}}")?;
            let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
            let description = f.get("description").and_then(Value::as_str).map(String::from);
            Tool::new(name, description, f.get("parameters").cloned()).map_err(|e| e.to_string())
        })?;
        let choice = match body.get("tool_choice") {
            None | Some(Value::Null) if tools.is_empty() => Choice::None,
            None | Some(Value::Null) => Choice::Auto,
            Some(Value::String(s)) if s == "none" => Choice::None,
            Some(Value::String(s)) if s == "auto" => Choice::Auto,
            Some(Value::String(s)) if s == "required" => Choice::Required,
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                    Choice::Named(name.to_string())
                }
                _ => {
                    return Err(bad(
                        "tool_choice",
                        "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}"
                            .into(),
                    ));
                }
            },
        };
        let parallel = match body.get("parallel_tool_calls") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_bool().ok_or_else(|| {
                bad("parallel_tool_calls", "'parallel_tool_calls' must be true or false".into())
            })?,
        };
        Tools::checked(API, tools, choice, parallel)
    }

    /// The reply as the chat API's message, and `tool_calls` as finish reason when it calls.
    pub fn openai_message(&self, reply: &str) -> (Value, Option<&'static str>) {
        let (text, calls) = self.read_calls(reply);
        if calls.is_empty() {
            return (json!({"role": "assistant", "content": reply}), None);
        }
        let calls: Vec<Value> = calls.iter().map(|(name, arguments)| call_json(name, arguments)).collect();
        let content = (!text.is_empty()).then_some(text);
        (json!({"role": "assistant", "content": content, "tool_calls": calls}), Some("tool_calls"))
    }
}

/// One call as the chat API gives it: a fresh id, the name, the arguments as JSON text.
pub fn call_json(name: &str, arguments: &Value) -> Value {
    json!({"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
}

/// The conversation: system (or developer), user, assistant (with `tool_calls` and content that
/// may then be null) and tool messages (with the `tool_call_id` they answer).
pub fn messages(body: &Value) -> Result<Vec<Message>, ApiError> {
    let bad = |m: String| ApiError::bad(API, "messages", m);
    let list = message_list(API, body)?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let name = m.get("role").and_then(Value::as_str);
            let role = match name {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("tool") => Role::Tool,
                _ => {
                    let given =
                        name.map_or("a message without a role".to_string(), |n| format!("role '{n}'"));
                    return Err(bad(format!(
                        "{given} is not supported here: the roles are system, user, assistant or tool"
                    )));
                }
            };
            let calls = match (role, m.get("tool_calls")) {
                (_, None | Some(Value::Null)) => Vec::new(),
                (Role::Assistant, Some(Value::Array(calls))) => {
                    calls.iter().map(|c| call(i, c)).collect::<Result<_, _>>()?
                }
                _ => {
                    return Err(bad(format!(
                        "message {}: only an assistant's message has a list of 'tool_calls'",
                        i + 1
                    )));
                }
            };
            let content = match m.get("content") {
                None | Some(Value::Null) if !calls.is_empty() => String::new(),
                other => content_text(API, "content", other.unwrap_or(&Value::Null))?,
            };
            let mut message = Message::new(role, content);
            message.tool_calls = calls;
            if role == Role::Tool {
                let id = m.get("tool_call_id").and_then(Value::as_str);
                let id = id.ok_or_else(|| {
                    bad(format!("message {}: a tool message needs the 'tool_call_id' it answers", i + 1))
                })?;
                message.tool_call_id = Some(id.to_string());
            }
            Ok(message)
        })
        .collect()
}

/// One earlier call: `{"id", "type": "function", "function": {"name", "arguments": JSON text}}`.
fn call(i: usize, c: &Value) -> Result<ToolCall, ApiError> {
    let bad = || {
        ApiError::bad(
            API,
            "messages",
            format!(
                "message {}: each tool call must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\": a JSON object as text}}}}",
                i + 1
            ),
        )
    };
    let name = c.pointer("/function/name").and_then(Value::as_str).ok_or_else(bad)?;
    let arguments = match c.pointer("/function/arguments") {
        Some(Value::String(text)) => {
            serde_json::from_str::<Value>(text).ok().filter(Value::is_object).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
    Ok(ToolCall::new(id.to_string(), name.to_string(), arguments))
}
