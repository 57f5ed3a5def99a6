//! `minillm chat`: talk to a model in a loop; each reply sees the conversation so far.

use super::session::{Loaded, MODEL_HELP, SamplingArgs, fit_context, load, stream};
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::chat::Dialogue;
use minillm::chat::{Message, Role};
use minillm::rng::Rng;
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

pub fn run(a: Args) -> Result<()> {
    let mut loaded = load(&a.model)?;
    let mut sampling = a.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    sampling.prepare_output(&loaded)?;
    let dialogue = loaded.dialogue();
    if a.system.is_some() && !dialogue.has_template() {
        bail!("--system needs a model with a chat template (fine-tune it with `minillm sft`)");
    }
    if dialogue.has_template() {
        // A reply ends where the model closes its turn.
        loaded.generation.eos_token_ids = dialogue.end_ids();
    }
    sampling.stop.extend(dialogue.stops());
    let mut rng = Rng::new(sampling.seed);
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "Chatting with {}. /reset forgets the conversation, /quit (or Ctrl-D) ends.",
            a.model.display()
        );
    }
    let mut turns: Vec<(String, String)> = Vec::new();
    let mut failed = false;
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
        // A line the template refuses (typed control tokens) is said and skipped, not the end
        // of the conversation.
        let prompt = match fit_turns(
            &loaded,
            &dialogue,
            a.system.as_deref(),
            &mut turns,
            user,
            sampling.max_new_tokens,
        ) {
            Ok(prompt) => prompt,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
                continue;
            }
        };
        let mut out = std::io::stdout().lock();
        write!(out, "assistant>")?;
        let reply = stream(&mut loaded, &prompt, &sampling, &mut rng, |piece| {
            write!(out, "{piece}")?;
            Ok(out.flush()?)
        })?;
        writeln!(out)?;
        turns.push((user.to_string(), reply.text.trim().to_string()));
    }
    if failed {
        bail!("some lines were refused (see above)");
    }
    Ok(())
}

/// The conversation's tokens, oldest turns dropped until there is room for a reply of
/// `max_new` tokens (or, with nothing left to drop, the start of the text cut off).
fn fit_turns(
    loaded: &Loaded,
    dialogue: &Dialogue,
    system: Option<&str>,
    turns: &mut Vec<(String, String)>,
    user: &str,
    max_new: usize,
) -> Result<Vec<u32>> {
    let window = loaded.model.config.block_size;
    loop {
        let mut messages: Vec<Message> = system.iter().map(|s| Message::new(Role::System, *s)).collect();
        for (u, a) in turns.iter() {
            messages.push(Message::new(Role::User, u.clone()));
            messages.push(Message::new(Role::Assistant, a.clone()));
        }
        messages.push(Message::new(Role::User, user));
        let ids = dialogue.render(&loaded.tok, &messages)?;
        if ids.len() + max_new.min(window / 2) <= window || turns.is_empty() {
            return fit_context(ids, window, Some("left"));
        }
        turns.remove(0);
    }
}
