//! Mutations of a valid input for the fuzz tests (shared with the CLI's HTTP fuzz test): bytes
//! overwritten, inserted, removed and the input cut short, including the values that break
//! length fields (0, 0xFF.., 0x80..) and JSON's structure.

use proptest::prelude::*;

/// One change to a file.
#[derive(Clone, Debug)]
pub enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

/// Bytes that make length and count fields extreme.
fn interesting() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(0xFF),
        Just(0x7F),
        Just(0x80),
        Just(b'9'),
        Just(b'"'),
        Just(b'{'),
        any::<u8>()
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), interesting()).prop_map(|(at, b)| Edit::Set(at, b)),
        1 => (any::<usize>(), proptest::collection::vec(interesting(), 1..9)).prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Set(at, b) => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = *b;
                }
            }
            Edit::Insert(at, b) => {
                let i = at % len;
                let i = i.min(bytes.len());
                bytes.splice(i..i, b.iter().copied());
            }
            Edit::Remove(at, n) => {
                let i = (at % len).min(bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

/// One change to a JSON document: a node (numbered in pre-order) replaced by an extreme value
/// or removed, or a field added to an object.
#[derive(Clone, Debug)]
pub enum JsonEdit {
    Replace(usize, serde_json::Value),
    Remove(usize),
    Add(usize, String, serde_json::Value),
}

/// Values at and past every limit and of every wrong type.
fn extreme() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let nested = (0..200).fold(json!(1), |v, _| json!([v]));
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(0.5)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!("")),
        Just(json!("\u{0}<|endoftext|>🦀\u{202e}")),
        Just(json!("x ".repeat(10_000))),
        Just(json!([])),
        Just(json!({})),
        Just(json!((0..5000).collect::<Vec<u32>>())),
        Just(json!([{"role": "user", "content": "Hi"}])),
        Just(nested),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z<|> \n]{0,12}".prop_map(|s| json!(s)),
    ]
}

/// The request fields a client can send, and a few nobody knows.
const FIELDS: &[&str] = &[
    "stream",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "stop_sequences",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "echo",
    "tools",
    "tool_choice",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "suffix",
    "system",
    "stream_options",
    "content",
    "prompt",
    "tokens",
    "ids",
    "text",
    "layer",
    "head",
    "x",
];

pub fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), extreme()).prop_map(|(at, v)| JsonEdit::Replace(at, v)),
        1 => any::<usize>().prop_map(JsonEdit::Remove),
        2 => (any::<usize>(), proptest::sample::select(FIELDS), extreme())
            .prop_map(|(at, k, v)| JsonEdit::Add(at, k.to_string(), v)),
    ]
}

/// Applies `edits` to `doc`; each node index is taken modulo the nodes there are.
pub fn apply_json(mut doc: serde_json::Value, edits: &[JsonEdit]) -> serde_json::Value {
    for e in edits {
        let (JsonEdit::Replace(at, _) | JsonEdit::Remove(at) | JsonEdit::Add(at, _, _)) = e;
        let mut left = at % count_nodes(&doc);
        edit_node(&mut doc, &mut left, e);
    }
    doc
}

fn count_nodes(v: &serde_json::Value) -> usize {
    1 + match v {
        serde_json::Value::Array(a) => a.iter().map(count_nodes).sum(),
        serde_json::Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Walks to node `left` (counting down in pre-order) and changes it; true once done.
fn edit_node(v: &mut serde_json::Value, left: &mut usize, edit: &JsonEdit) -> bool {
    use serde_json::Value;
    if *left == 0 {
        match edit {
            JsonEdit::Replace(_, new) => *v = new.clone(),
            JsonEdit::Add(_, key, new) => match v {
                Value::Object(o) => drop(o.insert(key.clone(), new.clone())),
                Value::Array(a) => a.push(new.clone()),
                other => *other = new.clone(),
            },
            JsonEdit::Remove(_) => *v = Value::Null,
        }
        return true;
    }
    *left -= 1;
    match v {
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                if *left == 0 && matches!(edit, JsonEdit::Remove(_)) {
                    a.remove(i);
                    return true;
                }
                if edit_node(child, left, edit) {
                    return true;
                }
            }
        }
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if *left == 0 && matches!(edit, JsonEdit::Remove(_)) {
                    o.remove(&k);
                    return true;
                }
                if edit_node(o.get_mut(&k).unwrap(), left, edit) {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}
