//! Tool calls: functions a caller offers the model, the model's calls to them, and the results
//! coming back, in the format Hermes and Qwen2.5 models are trained on:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Lima"}}
//! </tool_call>
//! ```
//!
//! A template that knows tools (it reads `tools`, as Qwen2.5's does) renders them itself, as
//! transformers' `apply_chat_template(messages, tools=...)` does. For any other template (minillm's
//! own, plain dialogue lines, or a Jinja template without tools) the conversation is rewritten
//! into plain turns first: the tools described in the system message, calls written into the
//! assistant's text, results as user turns in `<tool_response>` tags. Either way the reply is
//! read back by [`parse_calls`], and [`call_grammar`] makes a model that must call a tool write a
//! well-formed call with arguments valid under the tool's schema (constrained decoding).

use super::{Message, Role};
use crate::constrain::Spec;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A function the model may call, as OpenAI describes one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The arguments' JSON schema.
    pub parameters: Value,
}

/// One call the model made (or, in a conversation, made earlier).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// (HF's conversations may leave it out.)
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON value (an object), as chat templates read it.
    pub arguments: Value,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

impl Tool {
    /// A tool, its name checked as OpenAI checks it (letters, digits, `_` and `-`, at most 64)
    /// and its parameters a JSON schema object.
    pub fn new(name: &str, description: Option<String>, parameters: Option<Value>) -> Result<Tool> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::Invalid(format!(
                "tool name '{name}' must be 1 to 64 letters, digits, '_' or '-'"
            )));
        }
        let parameters = parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        if !parameters.is_object() {
            return Err(Error::Invalid(format!(
                "the parameters of tool '{name}' must be a JSON schema object"
            )));
        }
        Ok(Tool { name: name.into(), description, parameters })
    }

    /// As templates read `tools`: `{"type": "function", "function": {...}}`.
    pub fn for_template(&self) -> Value {
        json!({"type": "function", "function": self})
    }
}

impl ToolCall {
    pub fn new(id: String, name: String, arguments: Value) -> ToolCall {
        ToolCall { id, kind: "function".into(), function: FunctionCall { name, arguments } }
    }

    fn as_text(&self) -> String {
        let call = json!({"name": self.function.name, "arguments": self.function.arguments});
        format!("{OPEN}\n{}\n{CLOSE}", dumps(&call))
    }
}

/// JSON as Python's `json.dumps` writes it (what Hermes-format models saw in training).
fn dumps(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let items: Vec<String> =
                map.iter().map(|(k, v)| format!("{}: {}", Value::String(k.clone()), dumps(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(dumps).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// The conversation with tools turned into plain turns, for a template that does not render
/// tools itself: the tool list joins (or becomes) the system message, earlier calls become the
/// assistant's text, results become user turns.
pub fn as_plain_turns(messages: &[Message], tools: &[Tool]) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let listed: Vec<String> = tools.iter().map(|t| dumps(&t.for_template())).collect();
        let instructions = format!(
            "You may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\nFor each function call, return a json object with function name and arguments within {OPEN}{CLOSE} XML tags:\n{OPEN}\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n{CLOSE}",
            listed.join("\n")
        );
        match messages.first().filter(|m| m.role == Role::System) {
            Some(system) => {
                out.push(Message::new(Role::System, format!("{}\n\n{instructions}", system.content)))
            }
            None => out.push(Message::new(Role::System, instructions)),
        }
    }
    let skip = usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == Role::System));
    for m in &messages[skip..] {
        match m.role {
            Role::Tool => out
                .push(Message::new(Role::User, format!("<tool_response>\n{}\n</tool_response>", m.content))),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls: Vec<String> = m.tool_calls.iter().map(ToolCall::as_text).collect();
                let text = [m.content.clone(), calls.join("\n")].into_iter().filter(|s| !s.is_empty());
                out.push(Message::new(Role::Assistant, text.collect::<Vec<_>>().join("\n")));
            }
            _ => out.push(Message::new(m.role, m.content.clone())),
        }
    }
    out
}

/// What a reply says: its text before the first call, and the calls (name and arguments) it
/// makes. A block that is not a well-formed call to one of `tools` leaves the whole reply as
/// text: a caller must never run a call the model did not make.
pub fn parse_calls(reply: &str, tools: &[Tool]) -> (String, Vec<(String, Value)>) {
    let Some(first) = reply.find(OPEN) else { return (reply.to_string(), Vec::new()) };
    let mut calls = Vec::new();
    let mut rest = &reply[first..];
    while let Some(after) = rest.trim_start().strip_prefix(OPEN) {
        let Some(end) = after.find(CLOSE) else { return (reply.to_string(), Vec::new()) };
        let call: Option<(String, Value)> =
            serde_json::from_str::<Value>(after[..end].trim()).ok().and_then(|v| {
                let name = v.get("name")?.as_str()?.to_string();
                let arguments = v.get("arguments").cloned().unwrap_or_else(|| json!({}));
                (arguments.is_object() && tools.iter().any(|t| t.name == name)).then_some((name, arguments))
            });
        match call {
            Some(call) => calls.push(call),
            None => return (reply.to_string(), Vec::new()),
        }
        rest = &after[end + CLOSE.len()..];
    }
    if !rest.trim().is_empty() {
        return (reply.to_string(), Vec::new());
    }
    (reply[..first].trim_end().to_string(), calls)
}

/// A grammar for a reply that is nothing but calls: to `only` (a tool's name) or to any of
/// `tools`, one, or several in a row when `parallel`; each call's arguments valid under its
/// tool's schema.
pub fn call_grammar(tools: &[Tool], only: Option<&str>, parallel: bool) -> Result<Spec> {
    let chosen: Vec<&Tool> = tools.iter().filter(|t| only.is_none_or(|name| t.name == name)).collect();
    if chosen.is_empty() {
        return Err(Error::Invalid(match only {
            Some(name) => format!("no tool is named '{name}'"),
            None => "there are no tools to call".into(),
        }));
    }
    let alternatives: Vec<String> = chosen
        .iter()
        .map(|t| {
            let schema = crate::constrain::compact(&t.parameters)?;
            // Tool names are letters, digits, '_' and '-' (checked in `Tool::new`): safe in a
            // Lark string literal.
            Ok(format!("\"{{\\\"name\\\": \\\"{}\\\", \\\"arguments\\\": \" %json {} \"}}\"", t.name, schema))
        })
        .collect::<Result<_>>()?;
    let repeat = if parallel { " (\"\\n\" call)*" } else { "" };
    Ok(Spec::Lark(format!(
        "start: call{repeat}\ncall: \"{OPEN}\\n\" body \"\\n{CLOSE}\"\nbody: {}\n",
        alternatives.join(" | ")
    )))
}

/// A streamed reply that may call tools, split as it comes: text that cannot be the start of a
/// call is let through at once; from the first `<tool_call>` on (and any text that might be its
/// beginning, or whitespace before it) everything is held until the reply ends, when
/// [`finish`](CallSieve::finish) says whether it was calls or text after all. What is let
/// through is exactly the text [`parse_calls`] would give.
#[derive(Default)]
pub struct CallSieve {
    all: String,
    /// Bytes of `all` already let through.
    passed: usize,
}

impl CallSieve {
    /// Takes the next piece of the reply; returns what can be shown now.
    pub fn push(&mut self, piece: &str) -> String {
        self.all.push_str(piece);
        if let Some(at) = self.all.find(OPEN) {
            let text_end = self.all[..at].trim_end().len();
            return self.pass_until(text_end);
        }
        // Hold a tail that could begin the tag, and trailing whitespace (dropped before calls).
        let rest = &self.all[self.passed..];
        let tag_start = (1..OPEN.len().min(rest.len() + 1))
            .rev()
            .find(|&n| rest.is_char_boundary(rest.len() - n) && OPEN.starts_with(&rest[rest.len() - n..]))
            .map_or(rest.len(), |n| rest.len() - n);
        let kept = rest[..tag_start].trim_end().len();
        self.pass_until(self.passed + kept)
    }

    fn pass_until(&mut self, end: usize) -> String {
        let end = end.max(self.passed);
        let out = self.all[self.passed..end].to_string();
        self.passed = end;
        out
    }

    /// The reply has ended: the text still to show and the calls it makes (none: it was text).
    pub fn finish(mut self, tools: &[Tool]) -> (String, Vec<(String, Value)>) {
        let (_, calls) = parse_calls(&self.all, tools);
        if calls.is_empty() {
            let end = self.all.len();
            return (self.pass_until(end), calls);
        }
        (String::new(), calls)
    }
}
