//! `minillm chat`: talk to a model in a loop; each reply sees the conversation so far.

use super::session::{Loaded, MODEL_HELP, SamplingArgs, fit_context, load, stream};
use anyhow::Result;
use clap::Args as ClapArgs;
use minillm::SpecialTokens;
use minillm::rng::Rng;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// How a conversation becomes the text the model continues. A base model knows no chat
/// format, so this is plain dialogue lines, the way the built-in corpus writes its dialogues,
/// and a reply ends at the end of its line. (The fine-tuning stage replaces this with the
/// model's own chat template; nothing else here knows the format.)
struct PlainDialogue;

impl PlainDialogue {
    fn render(&self, turns: &[(String, String)], user: &str) -> String {
        let mut text = String::new();
        for (u, a) in turns {
            text.push_str(&format!("User: {u}\nAssistant: {a}\n"));
        }
        text.push_str(&format!("User: {user}\nAssistant:"));
        text
    }

    fn stops(&self) -> Vec<String> {
        vec!["\n".into()]
    }
}

pub fn run(a: Args) -> Result<()> {
    let mut loaded = load(&a.model)?;
    let template = PlainDialogue;
    let mut sampling = a.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    sampling.stop.extend(template.stops());
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
    template: &PlainDialogue,
    turns: &mut Vec<(String, String)>,
    user: &str,
    max_new: usize,
) -> Result<Vec<u32>> {
    let window = loaded.model.config.block_size;
    loop {
        let ids = loaded.tok.encode(&template.render(turns, user), SpecialTokens::AsText)?;
        if ids.len() + max_new.min(window / 2) <= window || turns.is_empty() {
            return fit_context(ids, window, Some("left"));
        }
        turns.remove(0);
    }
}
