//! Instruction and preference data drawn from the built-in corpus's world: questions about
//! capitals, animal sounds, colours, opposites and sums, whose answers the pretraining text
//! states. Items are split, not examples: the held-out questions ask about countries, animals,
//! things and sums that fine-tuning never showed, so held-out accuracy measures whether the
//! model learned to answer, not the answers.

use super::words::*;
use super::{capitalize, with_article};
use crate::rng::Rng;
use serde_json::{Value, json};

/// One question about one item: phrasings of the question, the full correct answer, and the
/// word that must appear in a correct answer.
struct Item {
    questions: Vec<String>,
    answer: String,
    key: String,
}

fn items() -> Vec<Item> {
    let mut items = Vec::new();
    for &(country, capital, _, _) in COUNTRIES {
        items.push(Item {
            questions: vec![
                format!("What is the capital of {country}?"),
                format!("Which city is the capital of {country}?"),
                format!("Tell me the capital of {country}."),
            ],
            answer: format!("The capital of {country} is {capital}."),
            key: capital.into(),
        });
    }
    for a in ANIMALS.iter().filter(|a| a.sound != "nothing at all") {
        let who = capitalize(&with_article(a.name));
        items.push(Item {
            questions: vec![
                format!("What sound does {} make?", with_article(a.name)),
                format!("What does {} say?", with_article(a.name)),
            ],
            answer: format!("{who} says {}.", a.sound),
            key: a.sound.into(),
        });
    }
    for &(thing, color) in COLORED_THINGS {
        items.push(Item {
            questions: vec![format!("What color is {thing}?"), format!("Tell me the color of {thing}.")],
            answer: format!("{} is {color}.", capitalize(thing)),
            key: color.into(),
        });
    }
    for &(word, opposite) in OPPOSITES {
        items.push(Item {
            questions: vec![
                format!("What is the opposite of {word}?"),
                format!("Name the opposite of {word}."),
            ],
            answer: format!("The opposite of {word} is {opposite}."),
            key: opposite.into(),
        });
    }
    for x in 0..10 {
        for y in 0..10 {
            let (a, b) = (NUMBER_WORDS[x], NUMBER_WORDS[y]);
            items.push(Item {
                questions: vec![format!("What is {a} plus {b}?"), format!("Add {a} and {b}.")],
                answer: format!("{} plus {b} is {}.", capitalize(a), NUMBER_WORDS[x + y]),
                key: NUMBER_WORDS[x + y].into(),
            });
        }
    }
    items
}

/// Replies a reader would not want: unhelpful, however polite.
const UNHELPFUL: &[&str] =
    &["I do not know.", "I will not tell you.", "Ask someone else.", "That is not a good question."];

/// The fine-tuning data sets, each a list of JSON lines.
pub struct TaskData {
    /// `{"messages": [...], "answer": key}` for SFT.
    pub sft_train: Vec<Value>,
    pub sft_val: Vec<Value>,
    /// `{"prompt", "chosen", "rejected"}` for DPO.
    pub dpo_train: Vec<Value>,
    pub dpo_val: Vec<Value>,
}

/// Every fifth item is held out. SFT shows each training item in every phrasing; each DPO pair
/// prefers the full, helpful answer to a curt one (the bare word) or an unhelpful one: a style
/// the model can learn to prefer on questions it never saw.
pub fn generate(seed: u64) -> TaskData {
    let mut rng = Rng::new(seed);
    let mut data =
        TaskData { sft_train: Vec::new(), sft_val: Vec::new(), dpo_train: Vec::new(), dpo_val: Vec::new() };
    for (i, item) in items().into_iter().enumerate() {
        let held_out = i % 5 == 2;
        for (k, q) in item.questions.iter().enumerate() {
            let chat = json!({
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": item.answer}],
                "answer": item.key,
            });
            let rejected = if rng.chance(0.5) {
                format!("{}.", capitalize(&item.key))
            } else {
                rng.pick(UNHELPFUL).to_string()
            };
            let pair = json!({"prompt": q, "chosen": item.answer, "rejected": rejected});
            if held_out {
                // One phrasing per held-out item is enough to measure.
                if k == 0 {
                    data.sft_val.push(chat);
                    data.dpo_val.push(pair);
                }
            } else {
                data.sft_train.push(chat);
                data.dpo_train.push(pair);
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_items_never_appear_in_training() {
        let d = generate(1);
        assert!(d.sft_train.len() > 300 && d.sft_val.len() > 30, "{} {}", d.sft_train.len(), d.sft_val.len());
        let train: std::collections::HashSet<String> =
            d.sft_train.iter().map(|v| v["messages"][1]["content"].to_string()).collect();
        for v in &d.sft_val {
            assert!(!train.contains(&v["messages"][1]["content"].to_string()), "{v} leaked");
            let key = v["answer"].as_str().unwrap();
            assert!(v["messages"][1]["content"].as_str().unwrap().contains(key));
        }
        for v in d.dpo_train.iter().chain(&d.dpo_val) {
            assert_ne!(v["chosen"], v["rejected"]);
        }
    }
}
