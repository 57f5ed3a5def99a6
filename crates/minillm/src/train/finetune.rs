//! Fine-tuning data: conversations for SFT (loss on the assistant's tokens only) and preference
//! pairs for DPO, read from JSON lines, and DPO's loss with TRL's definitions.

use crate::chat::{ChatTemplate, Message, Role};
use crate::error::{Error, Result};
use crate::fsutil::read_text;
use crate::model::layers::loss::IGNORE;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
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
                other => return Err(format!("role {other:?} is not system, user or assistant")),
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

/// A conversation rendered with the template and shifted into a training sequence.
pub fn sequence(t: &ChatTemplate, tok: &Tokenizer, messages: &[Message], context: usize) -> Option<Sequence> {
    let r = t.render(tok, messages, false);
    Sequence::of(&r.ids, &r.trainable, context)
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

/// DPO's numbers for a batch, as TRL logs them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DpoStats {
    pub loss: f32,
    /// Mean beta * (log pi(y_w|x) - log ref(y_w|x)).
    pub chosen_reward: f32,
    pub rejected_reward: f32,
    /// Fraction of pairs whose chosen reward beats the rejected one (ties count half, so an
    /// untrained policy, equal to its reference, scores 0.5).
    pub accuracy: f32,
    pub margin: f32,
}

/// The DPO loss -log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))) averaged over pairs, from
/// sequence log-probabilities (summed over completion tokens), and its gradient with respect to
/// each policy log-probability: (stats, d/d pi_w, d/d pi_l).
pub fn dpo(
    beta: f32,
    pi_w: &[f64],
    pi_l: &[f64],
    ref_w: &[f64],
    ref_l: &[f64],
) -> (DpoStats, Vec<f64>, Vec<f64>) {
    let n = pi_w.len();
    let beta = beta as f64;
    let (mut s, mut d_w, mut d_l) = (DpoStats::default(), vec![0.0; n], vec![0.0; n]);
    let mut sums = [0.0f64; 5];
    for i in 0..n {
        let (rw, rl) = (beta * (pi_w[i] - ref_w[i]), beta * (pi_l[i] - ref_l[i]));
        let z = rw - rl;
        // -log sigmoid(z) = softplus(-z), computed without overflow.
        let loss = if z > 0.0 { (-z).exp().ln_1p() } else { -z + z.exp().ln_1p() };
        let sig_neg = 1.0 / (1.0 + z.exp()); // sigmoid(-z) = -d loss / d z
        d_w[i] = -beta * sig_neg / n as f64;
        d_l[i] = beta * sig_neg / n as f64;
        let acc = if rw > rl {
            1.0
        } else if rw == rl {
            0.5
        } else {
            0.0
        };
        for (sum, x) in sums.iter_mut().zip([loss, rw, rl, acc, z]) {
            *sum += x;
        }
    }
    let mean = |x: f64| (x / n.max(1) as f64) as f32;
    s.loss = mean(sums[0]);
    s.chosen_reward = mean(sums[1]);
    s.rejected_reward = mean(sums[2]);
    s.accuracy = mean(sums[3]);
    s.margin = mean(sums[4]);
    (s, d_w, d_l)
}

/// Sequence log-probabilities: minus the sum of each row's token losses (ignored positions
/// are 0), for rows of width `t`.
pub fn row_logps(token_losses: &[f32], t: usize) -> Vec<f64> {
    token_losses.chunks(t).map(|row| -row.iter().map(|&l| l as f64).sum::<f64>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpo_gradient_matches_finite_differences() {
        let (pw, pl, rw, rl) =
            (vec![-3.0, -7.5, -2.0], vec![-4.0, -6.0, -9.0], vec![-3.5, -7.0, -2.2], vec![-3.9, -6.5, -8.0]);
        let (stats, dw, dl) = dpo(0.5, &pw, &pl, &rw, &rl);
        let loss = |pw: &[f64], pl: &[f64]| dpo(0.5, pw, pl, &rw, &rl).0.loss as f64;
        for i in 0..3 {
            for (grad, which) in [(&dw, 0), (&dl, 1)] {
                let (mut a, mut b) = (pw.clone(), pl.clone());
                let h = 1e-3;
                let (plus, minus) = if which == 0 {
                    a[i] += h;
                    let p = loss(&a, &pl);
                    a[i] -= 2.0 * h;
                    (p, loss(&a, &pl))
                } else {
                    b[i] += h;
                    let p = loss(&pw, &b);
                    b[i] -= 2.0 * h;
                    (p, loss(&pw, &b))
                };
                let fd = (plus - minus) / (2.0 * h);
                assert!((fd - grad[i]).abs() < 1e-4, "pair {i}: {fd} vs {}", grad[i]);
            }
        }
        assert!(stats.loss > 0.0 && (stats.accuracy - 2.0 / 3.0).abs() < 1e-6);
        // A policy equal to its reference: loss log 2, accuracy one half.
        let (s, _, _) = dpo(0.1, &rw, &rl, &rw, &rl);
        assert!((s.loss - std::f32::consts::LN_2).abs() < 1e-6 && s.accuracy == 0.5 && s.margin == 0.0);
    }

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
