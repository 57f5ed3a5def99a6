//! Fine-tuning data: conversations for SFT (loss on the assistant's tokens only) and preference
//! pairs for DPO, read from JSON lines and rendered with the chat template into sequences that
//! fit the model's context.

use crate::chat::{Dialogue, Message, Role};
use crate::error::{Error, Result};
use crate::fsutil::read_text;
use crate::model::Trainable;
use crate::model::layers::loss::IGNORE;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::objective::reference_logps;
use serde_json::Value;
use std::path::Path;

/// One training sequence: input tokens and next-token targets ([`IGNORE`] where no loss counts),
/// at most the model's context long.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Sequence {
    /// The rendered conversation shifted by one: position i predicts token i+1, which counts
    /// only if the model should learn to write it. `None` when longer than `context`.
    pub fn of(ids: &[u32], trainable: &[bool], context: usize) -> Option<Sequence> {
        if ids.len() < 2 || ids.len() > context + 1 {
            return None;
        }
        let n = ids.len() - 1;
        let targets = (0..n).map(|i| if trainable[i + 1] { ids[i + 1] } else { IGNORE }).collect();
        Some(Sequence { tokens: ids[..n].to_vec(), targets })
    }

    pub fn counted(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }

    /// Writes this sequence into a row of width `t`, padded with token 0 and ignored targets.
    pub fn fill(&self, inputs: &mut [u32], targets: &mut [u32]) {
        let n = self.tokens.len();
        inputs[..n].copy_from_slice(&self.tokens);
        inputs[n..].fill(0);
        targets[..n].copy_from_slice(&self.targets);
        targets[n..].fill(IGNORE);
    }
}

/// An SFT example: the conversation, and the answer its last reply should contain (for the
/// held-out accuracy), when the data gives one.
#[derive(Clone, Debug)]
pub struct Chat {
    pub messages: Vec<Message>,
    pub answer: Option<String>,
}

/// A DPO example: a prompt and two continuations, the preferred first.
#[derive(Clone, Debug)]
pub struct Preference {
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
}

/// A line left out: its number and why.
pub type Skipped = (usize, String);

/// Reads JSON lines with `parse`; a bad line is an error naming its number, or with
/// `skip_bad` is counted and skipped. Returns the records and (line, reason) of skipped ones.
pub fn read_jsonl<T>(
    path: &Path,
    skip_bad: bool,
    parse: impl Fn(&Value) -> std::result::Result<T, String>,
) -> Result<(Vec<T>, Vec<Skipped>)> {
    let text = read_text(path)?;
    let (mut records, mut skipped) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed =
            serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}")).and_then(|v| parse(&v));
        match parsed {
            Ok(r) => records.push(r),
            Err(why) if skip_bad => skipped.push((i + 1, why)),
            Err(why) => {
                return Err(Error::format(
                    path,
                    format!("line {}: {why} (--skip-bad-lines skips such lines)", i + 1),
                ));
            }
        }
    }
    if records.is_empty() {
        return Err(Error::format(path, "holds no usable examples"));
    }
    Ok((records, skipped))
}

fn text_field(v: &Value, key: &str) -> std::result::Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("'{key}' is missing or not a string"))
}

fn messages(v: &Value) -> std::result::Result<Vec<Message>, String> {
    let list = v.as_array().ok_or("messages must be a list")?;
    list.iter()
        .map(|m| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => {
                    let role = crate::error::quoted_or_missing(other);
                    return Err(format!("role {role} is not system, user or assistant"));
                }
            };
            Ok(Message::new(role, text_field(m, "content")?))
        })
        .collect()
}

/// A string is one turn of `role`; a list is messages.
fn turns(v: &Value, role: Role) -> std::result::Result<Vec<Message>, String> {
    match v {
        Value::String(s) => Ok(vec![Message::new(role, s.clone())]),
        other => messages(other),
    }
}

/// `{"messages": [...]}`, `{"prompt", "completion"}` or Alpaca `{"instruction", "input",
/// "output"}`, each with an optional `"answer"`; detected per line.
pub fn parse_chat(v: &Value) -> std::result::Result<Chat, String> {
    let answer = v.get("answer").and_then(Value::as_str).map(str::to_string);
    let messages = if let Some(list) = v.get("messages") {
        messages(list)?
    } else if v.get("prompt").is_some() {
        vec![
            Message::new(Role::User, text_field(v, "prompt")?),
            Message::new(Role::Assistant, text_field(v, "completion")?),
        ]
    } else if v.get("instruction").is_some() {
        let input = v.get("input").and_then(Value::as_str).unwrap_or("");
        let instruction = text_field(v, "instruction")?;
        let user = if input.is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
        vec![Message::new(Role::User, user), Message::new(Role::Assistant, text_field(v, "output")?)]
    } else {
        return Err(
            "expected \"messages\", \"prompt\" + \"completion\", or \"instruction\" + \"output\"".into()
        );
    };
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("the conversation has no assistant reply to learn".into());
    }
    Ok(Chat { messages, answer })
}

/// `{"prompt", "chosen", "rejected"}`, each a string or a list of messages.
pub fn parse_preference(v: &Value) -> std::result::Result<Preference, String> {
    let field = |k: &str| v.get(k).ok_or_else(|| format!("'{k}' is missing"));
    let pref = Preference {
        prompt: turns(field("prompt")?, Role::User)?,
        chosen: turns(field("chosen")?, Role::Assistant)?,
        rejected: turns(field("rejected")?, Role::Assistant)?,
    };
    if pref.chosen.is_empty() || pref.rejected.is_empty() {
        return Err("'chosen' and 'rejected' need at least one message".into());
    }
    Ok(pref)
}

/// A conversation rendered with the template and shifted into a training sequence (`None`
/// when it does not fit `context`).
pub fn sequence(
    d: &Dialogue,
    tok: &Tokenizer,
    messages: &[Message],
    context: usize,
) -> Result<Option<Sequence>> {
    let r = d.render_for_training(tok, messages)?;
    Ok(Sequence::of(&r.ids, &r.trainable, context))
}

/// A preference pair as two sequences, with the frozen reference model's log-probabilities.
#[derive(Clone, Debug)]
pub struct Pair {
    pub chosen: Sequence,
    pub rejected: Sequence,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
}

/// Examples split into training and held-out ones.
#[derive(Clone, Debug)]
pub struct Examples<T> {
    pub train: Vec<T>,
    pub val: Vec<T>,
}

impl<T> Examples<T> {
    /// Holds out every tenth example (the 10th, 20th, ...).
    pub fn hold_out_every_tenth(all: Vec<T>) -> Examples<T> {
        let (train, val): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 10 != 9);
        Examples {
            train: train.into_iter().map(|x| x.1).collect(),
            val: val.into_iter().map(|x| x.1).collect(),
        }
    }
}

/// Renders `items` (`what`: "training examples", "held-out pairs", ...) with `make`, keeping those
/// that fit a context of `context` tokens. Returns them and, when some did not fit, a note saying
/// how many; none fitting is an error.
pub fn fit<T, U>(
    items: &[T],
    what: &str,
    context: usize,
    make: impl Fn(&T) -> Result<Option<U>>,
) -> Result<(Vec<U>, Option<String>)> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.extend(make(item)?);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "none of the {what} fits the model's context of {context} tokens"
        )));
    }
    let note = (out.len() < items.len()).then(|| {
        format!(
            "{} of {} {what} do not fit the model's context of {context} tokens; left out",
            items.len() - out.len(),
            items.len()
        )
    });
    Ok((out, note))
}

/// SFT's sequences: each conversation rendered with `template`, those longer than `context` left
/// out (the notes say how many).
pub fn chat_sequences(
    chats: &Examples<Chat>,
    template: &Dialogue,
    tok: &Tokenizer,
    context: usize,
) -> Result<(Examples<Sequence>, Vec<String>)> {
    let seq = |c: &Chat| sequence(template, tok, &c.messages, context);
    let (train, a) = fit(&chats.train, "training examples", context, seq)?;
    let (val, b) = fit(&chats.val, "held-out examples", context, seq)?;
    Ok((Examples { train, val }, a.into_iter().chain(b).collect()))
}

/// DPO's pairs: prompt + chosen and prompt + rejected rendered with `template`, pairs longer than
/// the training window of `t` tokens left out, and each pair's log-probabilities under
/// `reference` computed `examples` pairs at a time.
pub fn preference_pairs(
    prefs: &Examples<Preference>,
    template: &Dialogue,
    tok: &Tokenizer,
    reference: &mut Trainable,
    (examples, t): (usize, usize),
) -> Result<(Examples<Pair>, Vec<String>)> {
    let whole = |p: &Preference, reply: &[Message]| -> Result<Option<Sequence>> {
        let messages: Vec<Message> = p.prompt.iter().chain(reply).cloned().collect();
        sequence(template, tok, &messages, t)
    };
    let pair = |p: &Preference| -> Result<Option<Pair>> {
        let (Some(chosen), Some(rejected)) = (whole(p, &p.chosen)?, whole(p, &p.rejected)?) else {
            return Ok(None);
        };
        Ok(Some(Pair { chosen, rejected, ref_chosen: 0.0, ref_rejected: 0.0 }))
    };
    let (mut train, a) = fit(&prefs.train, "training pairs", t, pair)?;
    let (mut val, b) = fit(&prefs.val, "held-out pairs", t, pair)?;
    reference_logps(reference, &mut train, examples, t)?;
    reference_logps(reference, &mut val, examples, t)?;
    Ok((Examples { train, val }, a.into_iter().chain(b).collect()))
}

/// Sequences drawn in shuffled order, epoch after epoch.
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
    rng: Rng,
}

impl Sampler {
    pub fn new(n: usize, seed: u64) -> Sampler {
        let mut s = Sampler { order: (0..n).collect(), pos: n, rng: Rng::new(seed) };
        s.pos = s.order.len();
        s
    }

    pub fn next_index(&mut self) -> usize {
        if self.pos == self.order.len() {
            // Fisher-Yates, from the sampler's own generator (saved in checkpoints).
            for i in (1..self.order.len()).rev() {
                let j = self.rng.below(i + 1);
                self.order.swap(i, j);
            }
            self.pos = 0;
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }

    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
        self.pos = self.order.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_per_line_and_bad_lines_named() {
        let chat = |s: &str| parse_chat(&serde_json::from_str(s).unwrap());
        let m = chat(
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
        )
        .unwrap();
        assert_eq!(m.messages.len(), 2);
        let p = chat(r#"{"prompt": "2+2?", "completion": "4", "answer": "4"}"#).unwrap();
        assert_eq!((p.messages[1].content.as_str(), p.answer.as_deref()), ("4", Some("4")));
        let a = chat(r#"{"instruction": "Add", "input": "2 and 2", "output": "4"}"#).unwrap();
        assert_eq!(a.messages[0].content, "Add\n\n2 and 2");
        assert!(chat(r#"{"text": "x"}"#).unwrap_err().contains("expected"));
        assert!(
            chat(r#"{"messages": [{"role": "user", "content": "Hi"}]}"#)
                .unwrap_err()
                .contains("no assistant")
        );
        assert!(chat(r#"{"messages": [{"role": "bot", "content": "Hi"}]}"#).unwrap_err().contains("role"));
        let pref =
            parse_preference(&serde_json::json!({"prompt": "Q", "chosen": "A", "rejected": "B"})).unwrap();
        assert_eq!((pref.prompt[0].role, pref.chosen[0].role), (Role::User, Role::Assistant));
        assert!(
            parse_preference(&serde_json::json!({"prompt": "Q", "chosen": "A"}))
                .unwrap_err()
                .contains("rejected")
        );
    }
}
