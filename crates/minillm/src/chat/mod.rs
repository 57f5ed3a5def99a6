//! The chat template: how a conversation becomes tokens, defined once for `chat`, `generate`,
//! fine-tuning and the server.
//!
//! Each message is its role's special token, a newline and the content, closed by `<|end|>` and
//! a newline:
//!
//! ```text
//! <|system|>\nYou are helpful.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\nHello.<|end|>\n
//! ```
//!
//! A prompt for the model to answer ends with `<|assistant|>\n`; generation stops at `<|end|>`.
//! The role tokens are special, so text typed by a user can never forge a turn. A model has this
//! template when its tokenizer has the four tokens ([`add_chat_tokens`] gives them to a base
//! model); HF exports carry the same template in Jinja ([`JINJA`]) for `apply_chat_template`.

pub mod jinja;
pub mod tools;

use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::model::params::Layout;
use crate::tokenizer::{SpecialTokens, Tokenizer};
use jinja::JinjaTemplate;
use serde::{Deserialize, Serialize};

pub const SYSTEM: &str = "<|system|>";
pub const USER: &str = "<|user|>";
pub const ASSISTANT: &str = "<|assistant|>";
pub const END: &str = "<|end|>";
const ROLE_TOKENS: [&str; 4] = [SYSTEM, USER, ASSISTANT, END];

/// The template in Jinja, for HF `tokenizer_config.json`: renders exactly what [`ChatTemplate`]
/// encodes.
pub const JINJA: &str = "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering an assistant's call ([`tools`]).
    Tool,
}

/// The role as the APIs and templates spell it: `system`, `user`, `assistant`, `tool`.
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// (Absent in an assistant's message that only calls tools, as HF writes those.)
    #[serde(default)]
    pub content: String,
    /// An assistant's calls to tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<tools::ToolCall>,
    /// Which call a tool's result answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A conversation as tokens, with which tokens the model should learn to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub ids: Vec<u32>,
    /// True for the tokens of assistant replies and the `<|end|>` closing each.
    pub trainable: Vec<bool>,
}

/// The role and end token ids of one tokenizer.
#[derive(Clone, Copy, Debug)]
pub struct ChatTemplate {
    system: u32,
    user: u32,
    assistant: u32,
    end: u32,
    newline: u32,
}

impl ChatTemplate {
    /// The template, if `tok` has its four special tokens.
    pub fn of(tok: &Tokenizer) -> Option<ChatTemplate> {
        let newline = match tok.encode_ordinary("\n").as_slice() {
            [id] => *id,
            _ => return None,
        };
        Some(ChatTemplate {
            system: tok.special_id(SYSTEM)?,
            user: tok.special_id(USER)?,
            assistant: tok.special_id(ASSISTANT)?,
            end: tok.special_id(END)?,
            newline,
        })
    }

    /// The token that closes a turn: where generation stops.
    pub fn end_id(&self) -> u32 {
        self.end
    }

    /// Encodes `messages`; with `generation_prompt`, ends with the opening of an assistant turn.
    /// Content is ordinary text: special-token text inside it stays text.
    pub fn render(&self, tok: &Tokenizer, messages: &[Message], generation_prompt: bool) -> Rendered {
        let mut out = Rendered { ids: Vec::new(), trainable: Vec::new() };
        let mut push = |ids: &[u32], trainable: bool| {
            out.ids.extend_from_slice(ids);
            out.trainable.extend(std::iter::repeat_n(trainable, ids.len()));
        };
        // A tokenizer whose texts start with a special token (Llama 3's) starts conversations
        // with it too.
        if let Some(prefix) = tok.prefix() {
            push(&[prefix], false);
        }
        for m in messages {
            let role = match m.role {
                Role::System => self.system,
                // A tool's result comes back as the user's turn (`tools::as_plain_turns` wraps it).
                Role::User | Role::Tool => self.user,
                Role::Assistant => self.assistant,
            };
            push(&[role], false);
            // The newline and content are encoded together, as HF tokenizes the rendered text
            // between special tokens; the newline itself is part of the turn's opening.
            let body = tok.encode_ordinary(&format!("\n{}", m.content));
            let reply = m.role == Role::Assistant;
            let (opening, rest) = match body.split_first() {
                Some((&first, rest)) if first == self.newline => (&body[..1], rest),
                _ => (&body[..0], body.as_slice()),
            };
            push(opening, false);
            push(rest, reply);
            push(&[self.end], reply);
            push(&[self.newline], false);
        }
        if generation_prompt {
            push(&[self.assistant, self.newline], false);
        }
        out
    }
}

/// Gives a base model and its tokenizer the template's special tokens, if they lack them: new ids
/// after the existing ones (which keep their meaning), and new embedding rows (and an untied
/// head's) set to the mean of the existing rows, so the new tokens start as an "average token"
/// rather than noise.
pub fn add_chat_tokens(tok: &Tokenizer, model: &Gpt) -> Result<(Tokenizer, Gpt)> {
    let missing: Vec<&str> = ROLE_TOKENS.into_iter().filter(|t| tok.special_id(t).is_none()).collect();
    let old_params = model.full_params();
    if missing.is_empty() {
        return Ok((tok.clone(), Gpt::from_params(model.config.clone(), old_params.into_owned())?));
    }
    if tok.vocab_size() != model.config.vocab_size {
        return Err(Error::Invalid("the tokenizer and the model disagree on the vocabulary size".into()));
    }
    let grown_tok = tok.with_added_specials(&missing)?;
    let old = &model.config;
    let config = crate::model::ModelConfig { vocab_size: grown_tok.vocab_size(), ..old.clone() };
    let (old_layout, layout) = (Layout::new(old), Layout::new(&config));
    let mut params = vec![0.0f32; layout.total];
    for (src, dst) in old_layout.tensors.iter().zip(&layout.tensors) {
        let n = src.len().min(dst.len());
        params[dst.offset..dst.offset + n].copy_from_slice(&old_params[src.offset..src.offset + n]);
    }
    let c = old.n_embd;
    let tables =
        [(&old_layout.wte, &layout.wte)].into_iter().chain(old_layout.lm_head.iter().zip(&layout.lm_head));
    for (src, dst) in tables {
        let rows = &old_params[src.start..src.start + old.vocab_size * c];
        let mut mean = vec![0.0f64; c];
        for row in rows.chunks_exact(c) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / old.vocab_size as f64) as f32).collect();
        for id in old.vocab_size..config.vocab_size {
            let at = dst.start + id * c;
            params[at..at + c].copy_from_slice(&mean);
        }
    }
    Ok((grown_tok, Gpt::from_params(config, params)?))
}

/// How a conversation becomes the tokens a model continues: the model's own Jinja template
/// when it ships one (an HF model's), minillm's when its tokenizer has the role tokens
/// (`minillm sft` gives it them), otherwise plain dialogue lines (`User: ...` /
/// `Assistant: ...`), the way the built-in corpus writes dialogues, a reply ending with its line.
/// `chat`, `generate --chat`, `serve` and the lab all render through this, so they cannot
/// disagree.
pub enum Dialogue {
    Jinja(JinjaTemplate),
    Template(ChatTemplate),
    Plain,
}

impl Dialogue {
    /// A model trained here carries minillm's template in Jinja too (exports write it): the
    /// token-level one renders it, keeping role tokens out of reach of typed text.
    pub fn of(tok: &Tokenizer, jinja: Option<&JinjaTemplate>) -> Dialogue {
        match (jinja, ChatTemplate::of(tok)) {
            (Some(j), Some(own)) if j.source() == JINJA => Dialogue::Template(own),
            (Some(j), _) => Dialogue::Jinja(j.clone()),
            (None, Some(own)) => Dialogue::Template(own),
            (None, None) => Dialogue::Plain,
        }
    }

    /// Whether the format has turns of its own (a template), rather than plain lines.
    pub fn has_template(&self) -> bool {
        !matches!(self, Dialogue::Plain)
    }

    /// The conversation, ending where the assistant's reply begins.
    pub fn render(&self, tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>> {
        match self {
            Dialogue::Jinja(t) => t.render(tok, messages, true),
            Dialogue::Template(t) => Ok(t.render(tok, messages, true).ids),
            Dialogue::Plain => tok.encode_prompt(&plain_text(messages)),
        }
    }

    /// The conversation with `tools` offered to the model (and earlier calls and results in
    /// it), ending where the reply begins: through the model's template when it renders tools
    /// itself, otherwise as plain turns ([`tools::as_plain_turns`]).
    pub fn render_with_tools(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        tools: &[tools::Tool],
    ) -> Result<Vec<u32>> {
        let uses_tools =
            !tools.is_empty() || messages.iter().any(|m| m.role == Role::Tool || !m.tool_calls.is_empty());
        match self {
            _ if !uses_tools => self.render(tok, messages),
            // Calls are read (and forced) in the `<tool_call>` format; a template that teaches
            // its model another one (Llama 3.1's bare JSON, Mistral's [TOOL_CALLS]) would have
            // its calls come back as text, so it is refused rather than misread.
            Dialogue::Jinja(t) if t.renders_tools() && !t.source().contains("<tool_call>") => Err(Error::Invalid(
                "this model's chat template writes tool calls in a format minillm does not read yet (it reads the <tool_call> format of Hermes and Qwen2.5 models)".into(),
            )),
            Dialogue::Jinja(t) if t.renders_tools() => t.render_with_tools(tok, messages, tools, true),
            _ => self.render(tok, &tools::as_plain_turns(messages, tools)),
        }
    }

    /// The conversation with its last message, an assistant's, left open to be continued
    /// (Anthropic's prefill, HF's `continue_final_message`): the turns before it as [`render`]
    /// gives them, then the start of the reply.
    ///
    /// [`render`]: Dialogue::render
    pub fn render_continuing(&self, tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>> {
        let Some((last, before)) = messages.split_last().filter(|(m, _)| m.role == Role::Assistant) else {
            return Err(Error::Invalid(
                "the conversation does not end with an assistant message to continue".into(),
            ));
        };
        match self {
            Dialogue::Jinja(t) => {
                // As transformers does it: the whole conversation rendered, then cut right after
                // the last message's text (templates differ in what opens a reply: Llama 2's puts
                // a space, ChatML a newline).
                t.render(tok, messages, false)?; // refuses special-token text in any message
                let text = t.render_text(messages, false)?;
                let content = last.content.trim();
                let end = text.rfind(content).map(|at| at + content.len()).ok_or_else(|| {
                    Error::Invalid("the model's chat template does not show the last assistant message's text as written, so it cannot be continued".into())
                })?;
                tok.encode(&text[..end], SpecialTokens::Allow)
            }
            Dialogue::Template(t) => {
                let mut ids = t.render(tok, before, true).ids;
                ids.extend(tok.encode_ordinary(&last.content));
                Ok(ids)
            }
            Dialogue::Plain => tok.encode_prompt(&format!("{} {}", plain_text(before), last.content)),
        }
    }

    /// The whole conversation for fine-tuning, with the replies' tokens marked as the ones to
    /// learn.
    pub fn render_for_training(&self, tok: &Tokenizer, messages: &[Message]) -> Result<Rendered> {
        match self {
            Dialogue::Jinja(t) => t.render_for_training(tok, messages),
            Dialogue::Template(t) => Ok(t.render(tok, messages, false)),
            Dialogue::Plain => Err(Error::Invalid(
                "the model has no chat template to fine-tune with (`minillm sft` gives a base model minillm's)".into(),
            )),
        }
    }

    /// The conversation as the text the model reads (special tokens as their text), for showing
    /// the prompt.
    pub fn render_text(&self, tok: &Tokenizer, messages: &[Message]) -> Result<String> {
        match self {
            Dialogue::Jinja(t) => t.render_text(messages, true),
            Dialogue::Template(t) => tok.decode(&t.render(tok, messages, true).ids),
            Dialogue::Plain => Ok(plain_text(messages)),
        }
    }

    /// The tokens that end a reply (none for plain lines, which end at a newline).
    pub fn end_ids(&self) -> Vec<u32> {
        match self {
            Dialogue::Jinja(t) => t.ends().to_vec(),
            Dialogue::Template(t) => vec![t.end_id()],
            Dialogue::Plain => Vec::new(),
        }
    }

    /// Text that ends a reply.
    pub fn stops(&self) -> Vec<String> {
        match self {
            Dialogue::Plain => vec!["\n".into()],
            _ => Vec::new(),
        }
    }
}

fn plain_text(messages: &[Message]) -> String {
    let mut text = String::new();
    for m in messages {
        match m.role {
            Role::System => text.push_str(&format!("{}\n", m.content)),
            // Tool results arrive wrapped as user turns (`tools::as_plain_turns`).
            Role::User | Role::Tool => text.push_str(&format!("User: {}\n", m.content)),
            Role::Assistant => text.push_str(&format!("Assistant: {}\n", m.content)),
        }
    }
    text.push_str("Assistant:");
    text
}
