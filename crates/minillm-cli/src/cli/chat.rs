//! `minillm chat`: talk to a model in a loop; each reply sees the conversation so far.

use super::session::{Loaded, MODEL_HELP, SamplingArgs, fit_context, load, stream};
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::chat::{ChatTemplate, Message, Role};
use minillm::rng::Rng;
use minillm::{SpecialTokens, Tokenizer};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// A system message opening the conversation (models with a chat template).
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// How a conversation becomes the tokens the model continues: the model's chat template when
/// it has one (`minillm sft` gives it one), otherwise plain dialogue lines, the way the built-in
/// corpus writes its dialogues, with a reply ending at the end of its line.
enum Format {
    Template(ChatTemplate, Option<String>),
    PlainDialogue,
}

impl Format {
    fn render(&self, tok: &Tokenizer, turns: &[(String, String)], user: &str) -> Result<Vec<u32>> {
        match self {
            Format::Template(template, system) => {
                let mut messages: Vec<Message> =
                    system.iter().map(|s| Message::new(Role::System, s.clone())).collect();
                for (u, a) in turns {
                    messages.push(Message::new(Role::User, u.clone()));
                    messages.push(Message::new(Role::Assistant, a.clone()));
                }
                messages.push(Message::new(Role::User, user));
                Ok(template.render(tok, &messages, true).ids)
            }
            Format::PlainDialogue => {
                let mut text = String::new();
                for (u, a) in turns {
                    text.push_str(&format!("User: {u}\nAssistant: {a}\n"));
                }
                text.push_str(&format!("User: {user}\nAssistant:"));
                Ok(tok.encode(&text, SpecialTokens::AsText)?)
            }
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let mut loaded = load(&a.model)?;
    let mut sampling = a.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    let template = match ChatTemplate::of(&loaded.tok) {
        Some(t) => {
            // A reply ends where the model closes its turn.
            loaded.generation.eos_token_id = Some(t.end_id());
            Format::Template(t, a.system.clone())
        }
        None if a.system.is_some() => {
            bail!("--system needs a model with a chat template (fine-tune it with `minillm sft`)")
        }
        None => {
            sampling.stop.push("\n".into());
            Format::PlainDialogue
        }
    };
    let mut rng = Rng::new(sampling.seed);
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "Chatting with {}. /reset forgets the conversation, /quit (or Ctrl-D) ends.",
            a.model.display()
        );
    }
    let mut turns: Vec<(String, String)> = Vec::new();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("you> ");
        }
        let Some(line) = lines.next().transpose()? else { break };
        let user = line.trim();
        match user {
            "" => continue,
            "/quit" => break,
            "/reset" => {
                turns.clear();
                println!("(conversation forgotten)");
                continue;
            }
            _ => {}
        }
        let prompt = fit_turns(&loaded, &template, &mut turns, user, sampling.max_new_tokens)?;
        let mut out = std::io::stdout().lock();
        write!(out, "assistant>")?;
        let reply = stream(&mut loaded, &prompt, &sampling, &mut rng, |piece| {
            write!(out, "{piece}")?;
            Ok(out.flush()?)
        })?;
        writeln!(out)?;
        turns.push((user.to_string(), reply.text.trim().to_string()));
    }
    Ok(())
}

/// The conversation's tokens, oldest turns dropped until there is room for a reply of
/// `max_new` tokens (or, with nothing left to drop, the start of the text cut off).
fn fit_turns(
    loaded: &Loaded,
    template: &Format,
    turns: &mut Vec<(String, String)>,
    user: &str,
    max_new: usize,
) -> Result<Vec<u32>> {
    let window = loaded.model.config.block_size;
    loop {
        let ids = template.render(&loaded.tok, turns, user)?;
        if ids.len() + max_new.min(window / 2) <= window || turns.is_empty() {
            return fit_context(ids, window, Some("left"));
        }
        turns.remove(0);
    }
}
