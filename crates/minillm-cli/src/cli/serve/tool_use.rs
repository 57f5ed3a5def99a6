//! Tools in a request, whichever API it came in: which were offered, what the model may do
//! with them, the grammar a required call is generated under, and a reply's calls read back.

use crate::cli::http::{Api, ApiError};
use minillm::chat::tools::{Tool, call_grammar, parse_calls};
use minillm::constrain::Spec;
use serde_json::Value;

/// What the request allows the model to do with its tools.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// At most this many tools in one request (OpenAI's limit).
const MAX_TOOLS: usize = 128;

/// The request's tools and what may be done with them.
pub struct Tools {
    pub tools: Vec<Tool>,
    pub choice: Choice,
    pub parallel: bool,
}

impl Tools {
    /// The request's `tools` list, each read by `read` (the API's shape), at most [`MAX_TOOLS`]
    /// of them with distinct names.
    pub fn offered(
        api: Api,
        body: &Value,
        read: impl Fn(&Value) -> Result<Tool, String>,
    ) -> Result<Vec<Tool>, ApiError> {
        let bad = |m: String| ApiError::bad(api, "tools", m);
        let list = match body.get("tools") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(list)) if list.len() <= MAX_TOOLS => list,
            Some(_) => return Err(bad(format!("'tools' must be a list of at most {MAX_TOOLS} tools"))),
        };
        let mut tools: Vec<Tool> = Vec::with_capacity(list.len());
        for t in list {
            let tool = read(t).map_err(bad)?;
            if tools.iter().any(|t| t.name == tool.name) {
                return Err(bad(format!("two tools are named '{}'", tool.name)));
            }
            tools.push(tool);
        }
        Ok(tools)
    }

    /// The tools with what the request asks of them, checked: a required or named call needs
    /// the tools (and the name to be one of them).
    pub fn checked(api: Api, tools: Vec<Tool>, choice: Choice, parallel: bool) -> Result<Tools, ApiError> {
        let bad = |m: String| ApiError::bad(api, "tool_choice", m);
        if tools.is_empty() && matches!(choice, Choice::Required | Choice::Named(_)) {
            return Err(bad("'tool_choice' asks for a tool call but 'tools' is empty".into()));
        }
        if let Choice::Named(name) = &choice
            && !tools.iter().any(|t| &t.name == name)
        {
            return Err(bad(format!("'tool_choice' names '{name}', which is not in 'tools'")));
        }
        Ok(Tools { tools, choice, parallel })
    }

    /// The constraint a reply must follow (`api`'s errors naming `field`): calls only, when the
    /// request requires them.
    pub fn grammar(&self, api: Api, field: &str) -> Result<Option<Spec>, ApiError> {
        let only = match &self.choice {
            Choice::Required => None,
            Choice::Named(name) => Some(name.as_str()),
            Choice::None | Choice::Auto => return Ok(None),
        };
        let spec = call_grammar(&self.tools, only, self.parallel)
            .map_err(|e| ApiError::bad(api, field, e.to_string()))?;
        Ok(Some(spec))
    }

    /// A reply's text before its calls, and the calls (none when calls are not allowed).
    pub fn read_calls(&self, reply: &str) -> (String, Vec<(String, Value)>) {
        match self.choice {
            Choice::None => (reply.to_string(), Vec::new()),
            _ => parse_calls(reply, &self.tools),
        }
    }
}
