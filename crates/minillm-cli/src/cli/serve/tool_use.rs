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

/// The request's tools and what may be done with them.
pub struct Tools {
    pub tools: Vec<Tool>,
    pub choice: Choice,
    pub parallel: bool,
}

impl Tools {
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
