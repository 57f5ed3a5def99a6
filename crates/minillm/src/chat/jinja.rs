//! A model's own chat template: the Jinja program that HF's `tokenizer_config.json` (or
//! `chat_template.jinja`, or GGUF's `tokenizer.chat_template`) carries, rendered the way
//! transformers' `apply_chat_template` renders it:
//!
//! - the same Jinja settings (`trim_blocks`, `lstrip_blocks`, loop controls) and the same names in
//!   scope: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (none),
//!   `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` that writes what Python's `json.dumps`
//!   writes, and Python's string and dict methods (`.strip()`, `.items()` ...);
//! - the rendered text tokenized as one string with special tokens recognised and no prefix added
//!   (the template writes `bos_token` itself where the model wants it).
//!
//! For fine-tuning, the tokens of each assistant reply are found by rendering the conversation
//! up to the reply's start (with the generation prompt) and through the reply: the tokens between
//! the two are the reply, through its end-of-turn token.

use super::tools::Tool;
use super::{Message, Rendered, Role};
use crate::corpus::words::{DAYS, MONTHS};
use crate::error::{Error, Result};
use crate::tokenizer::{SpecialTokens, Tokenizer};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use std::sync::Arc;

/// The name the template has in its environment.
const NAME: &str = "chat_template";

/// A Jinja chat template with the special tokens it refers to and the ids that end a reply.
#[derive(Clone, Debug)]
pub struct JinjaTemplate {
    source: String,
    /// The environment with the template compiled in, once: fine-tuning renders every
    /// conversation several times.
    env: Arc<Environment<'static>>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    ends: Vec<u32>,
}

impl JinjaTemplate {
    /// Checks that `source` compiles; `ends` are the tokens generation stops at (the model's
    /// `eos_token_id` list, or its `eos_token`).
    pub fn new(
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
        ends: Vec<u32>,
    ) -> Result<JinjaTemplate> {
        let mut env = environment();
        env.add_template_owned(NAME, source.to_string()).map_err(one_line)?;
        Ok(JinjaTemplate { source: source.to_string(), env: Arc::new(env), bos_token, eos_token, ends })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The beginning and end tokens' text, as `tokenizer_config.json` names them.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The tokens that end a reply.
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }

    /// The conversation as text, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` renders it.
    pub fn render_text(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_text_with_tools(messages, &[], add_generation_prompt)
    }

    /// Whether the template renders a `tools` list itself (Qwen2.5's does; ChatML-only ones and
    /// minillm's do not).
    pub fn renders_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// [`render_text`](Self::render_text) with `tools` offered, as `apply_chat_template(messages,
    /// tools=...)` renders it (no tools: `tools` is None, as there).
    pub fn render_text_with_tools(
        &self,
        messages: &[Message],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(one_line)?;
        let tools: Option<Vec<serde_json::Value>> =
            (!tools.is_empty()).then(|| tools.iter().map(Tool::for_template).collect());
        let context = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_deref(),
            eos_token => self.eos_token.as_deref(),
            tools => Value::from(minijinja::value::Serde(tools)),
            documents => Value::from(()),
        };
        template.render(context).map_err(one_line)
    }

    /// The tokens of [`render_text_with_tools`](Self::render_text_with_tools), checked as
    /// [`render`](Self::render) checks them.
    pub fn render_with_tools(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        for (i, m) in messages.iter().enumerate() {
            if let Some((name, _)) = tok.specials().iter().find(|(name, _)| m.content.contains(name.as_str()))
            {
                return Err(Error::Invalid(format!(
                    "message {} contains the special token {name}, which the model's template would read as a control token; remove it",
                    i + 1
                )));
            }
        }
        tok.encode(
            &self.render_text_with_tools(messages, tools, add_generation_prompt)?,
            SpecialTokens::Allow,
        )
    }

    /// The conversation as the tokens the model reads: the rendered text tokenized as one string,
    /// special tokens recognised, as `apply_chat_template(..., tokenize=True)` gives them.
    /// Message text holding a special token's text is refused: it would forge a turn.
    pub fn render(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.render_with_tools(tok, messages, &[], add_generation_prompt)
    }

    /// The conversation as tokens for fine-tuning, marking the assistant replies' tokens (each
    /// through the end-of-turn token that closes it) as the ones to learn.
    pub fn render_for_training(&self, tok: &Tokenizer, messages: &[Message]) -> Result<Rendered> {
        let ids = self.render(tok, messages, false)?;
        let mut trainable = vec![false; ids.len()];
        for (i, _) in messages.iter().enumerate().filter(|(_, m)| m.role == Role::Assistant) {
            let before = self.render(tok, &messages[..i], true)?;
            let through = self.render(tok, &messages[..=i], false)?;
            if !through.starts_with(&before) || !ids.starts_with(&through) {
                return Err(Error::Invalid(format!(
                    "the model's chat template renders the turns before message {} differently once that reply follows, so the reply's tokens cannot be told apart for training",
                    i + 1
                )));
            }
            let reply = &through[before.len()..];
            // What follows the end-of-turn token (a newline) opens the next turn.
            let len = reply.iter().rposition(|id| self.ends.contains(id)).map_or(reply.len(), |p| p + 1);
            trainable[before.len()..before.len() + len].fill(true);
        }
        Ok(Rendered { ids, trainable })
    }
}

/// The environment transformers renders chat templates in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("the default delimiters are valid");
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> Result<Value, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
    });
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// A template's error as one line: what went wrong and where.
fn one_line(e: minijinja::Error) -> Error {
    let at = e.line().map_or(String::new(), |l| format!(" (line {l})"));
    let what = e.detail().map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    Error::Invalid(format!("the model's chat template failed{at}: {what}"))
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent)`, keys in the order given, `", "` and `": "` between items.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => quote(v.as_str().unwrap_or_default(), out),
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => {
            // A dict's items are its keys with their values; a list's, its values alone.
            let is_map = v.kind() == ValueKind::Map;
            let items: Vec<Value> = v.try_iter()?.collect();
            let (open, close) = if is_map { ('{', '}') } else { ('[', ']') };
            out.push(open);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                if is_map {
                    quote(&item.to_string(), out);
                    out.push_str(": ");
                    write_json(&v.get_item(item)?, indent, depth + 1, out)?;
                } else {
                    write_json(item, indent, depth + 1, out)?;
                }
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(close);
        }
        other => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson cannot write a {other} as JSON"),
            ));
        }
    }
    Ok(())
}

/// A JSON string as Python writes it with `ensure_ascii=False`.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Today's date and time (UTC) in a `strftime` format, for templates that write the date into
/// the system prompt (Llama 3.1's). Directives outside the common ones are refused by name.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

fn strftime(format: &str, secs: u64) -> Result<String, minijinja::Error> {
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month_name = MONTHS[month as usize - 1];
        // Day 0, 1970-01-01, was a Thursday.
        let day_name = DAYS[((days + 3) % 7) as usize];
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('%') => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now does not support %{}", other.map_or(String::new(), String::from)),
                ));
            }
        }
    }
    Ok(out)
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_python_writes_them() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
        assert_eq!(strftime("%d %b %Y, %A %H:%M:%S %%", t).unwrap(), "26 Jul 2024, Friday 13:05:09 %");
        assert_eq!(strftime("%B %d %y %a %m", 0).unwrap(), "January 01 70 Thu 01");
        assert!(strftime("%Q", 0).unwrap_err().to_string().contains("%Q"));
    }

    #[test]
    fn tojson_writes_what_json_dumps_writes() {
        let env = environment();
        let render = |src: &str| {
            env.render_str(src, minijinja::context! {x => Value::from(minijinja::value::Serde(serde_json::json!({"b": [1, 2.5, "é\n"], "a": {}, "c": null})))}).unwrap()
        };
        assert_eq!(render("{{ x | tojson }}"), r#"{"b": [1, 2.5, "é\n"], "a": {}, "c": null}"#);
        assert_eq!(render("{{ [1, [2]] | tojson(indent=2) }}"), "[\n  1,\n  [\n    2\n  ]\n]");
    }

    #[test]
    fn template_errors_are_one_line_and_name_the_problem() {
        let bad = JinjaTemplate::new("{% for m in messages %}", None, None, vec![]).unwrap_err().to_string();
        assert!(bad.starts_with("the model's chat template failed") && !bad.contains('\n'), "{bad}");
        let t =
            JinjaTemplate::new("{{ raise_exception('roles must alternate') }}", None, None, vec![]).unwrap();
        let err = t.render_text(&[], false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate") && !err.contains('\n'), "{err}");
    }
}
