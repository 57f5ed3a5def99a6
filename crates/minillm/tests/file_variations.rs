//! The variations real files carry, each on a minimal file that has it (docs/guide/08-interop.md
//! lists them): handled ones read as the tool that wrote them reads them, refused ones with a
//! message naming the variation.

mod common;

use minillm::chat::jinja::JinjaTemplate;
use minillm::chat::{Message, Role};
use minillm::io::generation_config::GenerationConfig;
use minillm::io::gguf::{Gguf, TensorOut, TensorType, Value};
use minillm::io::{gguf_llama, load};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn hf_ids(hf: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    hf.encode(text, false).unwrap().get_ids().to_vec()
}

#[test]
fn merges_as_strings_or_as_pairs_read_the_same() {
    // tokenizers >= 0.20 writes each merge as a [left, right] pair; older files as "left right".
    let dir = common::temp_dir("variation-merges");
    let text = std::fs::read_to_string(fixture("llama_tiny/tokenizer.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let merges = doc["model"]["merges"].as_array().unwrap().clone();
    let as_strings: Vec<serde_json::Value> = merges
        .iter()
        .map(|m| match m {
            serde_json::Value::Array(p) => {
                format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()).into()
            }
            other => other.clone(),
        })
        .collect();
    let as_pairs: Vec<serde_json::Value> = as_strings
        .iter()
        .map(|m| {
            let (l, r) = m.as_str().unwrap().split_once(' ').unwrap();
            serde_json::json!([l, r])
        })
        .collect();
    let mut read = Vec::new();
    for (name, merges) in [("strings", as_strings), ("pairs", as_pairs)] {
        doc["model"]["merges"] = merges.into();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let tok = minillm::io::load_tokenizer(&path).unwrap();
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        for s in common::tricky_strings(31, 200) {
            assert_eq!(tok.encode_ordinary(&s), hf_ids(&hf, &s), "{name}: {s:?}");
        }
        read.push(tok.bpe().merges().to_vec());
    }
    assert_eq!(read[0], read[1]);
}

#[test]
fn added_tokens_in_the_middle_of_the_id_range_keep_their_ids() {
    // Some vocabularies put their special tokens among the ordinary ones (SmolLM2's are 0-16,
    // others sit in gaps of the range): each keeps its id, and text around it encodes as HF does.
    let dir = common::temp_dir("variation-added-middle");
    let text = std::fs::read_to_string(fixture("llama_tiny/tokenizer.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vocab = doc["model"]["vocab"].as_object_mut().unwrap();
    let n = vocab.len() as u64;
    // Move every id from 300 up by one, freeing 300 for a special token.
    for id in vocab.values_mut() {
        let i = id.as_u64().unwrap();
        if i >= 300 {
            *id = (i + 1).into();
        }
    }
    vocab.insert("<|middle|>".into(), 300.into());
    for t in doc["added_tokens"].as_array_mut().unwrap() {
        let i = t["id"].as_u64().unwrap();
        if i >= 300 {
            t["id"] = (i + 1).into();
        }
    }
    doc["added_tokens"].as_array_mut().unwrap().push(serde_json::json!({"id": 300, "content": "<|middle|>",
        "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let tok = minillm::io::load_tokenizer(&path).unwrap();
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.special_id("<|middle|>"), Some(300));
    assert!(tok.vocab_size() as u64 > n);
    for s in ["a<|middle|>b", "Hello <|middle|> world", "x"] {
        let ours = tok.encode(s, minillm::SpecialTokens::Allow).unwrap();
        assert_eq!(ours, hf_ids(&hf, s), "{s:?}");
    }
}

/// The llama_tiny fixture as an f32 GGUF file, its metadata changed by `edit`.
fn gguf_with(edit: impl Fn(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let loaded = load(&fixture("llama_tiny")).unwrap();
    let bytes = common::llama_f32_gguf(&loaded.model, &loaded.tok);
    let file = Gguf::parse(&bytes, Path::new("t.gguf")).unwrap();
    let mut metadata = file.metadata.clone();
    edit(&mut metadata);
    let tensors: Vec<TensorOut> = file
        .tensors
        .iter()
        .map(|t| TensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.ty,
            data: file.data(t).to_vec(),
        })
        .collect();
    minillm::io::gguf::to_bytes(&metadata, &tensors)
}

fn set(metadata: &mut Vec<(String, Value)>, key: &str, value: Value) {
    metadata.retain(|(k, _)| k != key);
    metadata.push((key.into(), value));
}

fn read_gguf(
    bytes: Vec<u8>,
) -> minillm::Result<(minillm::model::Gpt, minillm::Tokenizer, gguf_llama::Extras)> {
    gguf_llama::from_shared(Arc::new(bytes), Path::new("t.gguf"))
}

#[test]
fn gguf_pre_tokenizer_names_llama_cpp_knows_are_read_and_others_named() {
    let text = "Hello world 12345 don't";
    let ids = |pre: &str| {
        let bytes = gguf_with(|m| set(m, "tokenizer.ggml.pre", Value::String(pre.into())));
        read_gguf(bytes).map(|(_, tok, _)| tok.encode_ordinary(text))
    };
    // gpt-2 and default are GPT-2's pattern; smollm splits digits one by one; llama-bpe and qwen2
    // are GPT-4's pattern (qwen2: single digits).
    assert_eq!(ids("gpt-2").unwrap(), ids("default").unwrap());
    for pre in ["smollm", "llama-bpe", "dbrx", "qwen2"] {
        assert!(ids(pre).is_ok(), "{pre}");
    }
    assert_ne!(ids("smollm").unwrap(), ids("gpt-2").unwrap(), "smollm splits digits");
    let err = ids("deepseek-llm").unwrap_err().to_string();
    assert!(err.contains("pre-tokenizer 'deepseek-llm' is not one minillm implements"), "{err}");
}

#[test]
fn gguf_bos_and_eos_settings_are_read_or_refused_by_name() {
    // BOS equal to EOS (GPT-2-style vocabularies), put before every text when add_bos_token says so.
    let bytes = gguf_with(|m| {
        let eos = m.iter().find(|(k, _)| k == "tokenizer.ggml.eos_token_id").unwrap().1.clone();
        set(m, "tokenizer.ggml.bos_token_id", eos);
        set(m, "tokenizer.ggml.add_bos_token", Value::Bool(true));
    });
    let (_, tok, extras) = read_gguf(bytes).unwrap();
    let prompt = tok.encode_prompt("Hi").unwrap();
    assert_eq!(Some(prompt[0]), tok.prefix());
    assert!(extras.generation.eos_token_ids.contains(&prompt[0]), "BOS is EOS here");
    // An end token after every text is refused by name, not silently left off.
    let bytes = gguf_with(|m| set(m, "tokenizer.ggml.add_eos_token", Value::Bool(true)));
    let err = read_gguf(bytes).err().unwrap().to_string();
    assert!(err.contains("add_eos_token is true"), "{err}");
}

#[test]
fn chat_templates_with_namespace_loop_last_and_strftime_now_render() {
    // Constructs real templates use (Llama 3.1's date line, Qwen's namespace for the last user
    // turn, loop.last to end the final turn): the text transformers' apply_chat_template renders.
    let source = "{%- set ns = namespace(last_user=0) -%}\
        {%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor -%}\
        Today: {{ strftime_now('%Y') | length }} digits\n\
        {%- for m in messages %}\n[{{ m.role }}{% if loop.index0 == ns.last_user %}*{% endif %}] {{ m.content }}\
        {%- if loop.last and not add_generation_prompt %}{{ eos_token }}{% endif %}{% endfor -%}\
        {%- if add_generation_prompt %}\n[assistant] {% endif %}";
    let t = JinjaTemplate::new(source, None, Some("</s>".into()), vec![]).unwrap();
    let messages = [
        Message::new(Role::User, "Hi"),
        Message::new(Role::Assistant, "Hello!"),
        Message::new(Role::User, "Bye"),
    ];
    assert_eq!(
        t.render_text(&messages, true).unwrap(),
        "Today: 4 digits[user] Hi[assistant] Hello![user*] Bye[assistant] "
    );
    assert_eq!(
        t.render_text(&messages[..2], false).unwrap(),
        "Today: 4 digits[user*] Hi[assistant] Hello!</s>"
    );
}

#[test]
fn files_made_by_llama_quantize_with_a_q8_0_embedding_and_a_q6_k_head_read() {
    // llama-quantize's Q4_K_M keeps the output layer in q6_K (q8_0 where its rows are not whole
    // super-blocks) and a tied embedding in q8_0 (SmolLM2's file): both stay in their blocks.
    // Rows of 256 (whole q6_K super-blocks), as real models' widths are.
    let loaded = load(&fixture("llama_tiny")).unwrap();
    let mut config = loaded.model.config.clone();
    config.n_embd = 256;
    config.n_layer = 1;
    if let minillm::model::Arch::Llama(l) = &mut config.arch {
        (l.head_dim, l.intermediate) = (64, 256);
    }
    let model = minillm::model::Gpt::new(config, 3).unwrap();
    for head in [minillm::quant::QuantType::Q8_0, minillm::quant::QuantType::Q6K] {
        let recipe = minillm::io::gguf::recipe(TensorType::Q4_0, Some(head));
        let bytes = gguf_llama::to_bytes(
            &model,
            &loaded.tok,
            &GenerationConfig::default(),
            None,
            recipe.as_ref(),
            "t",
        )
        .unwrap();
        let file = Gguf::parse(&bytes, Path::new("t.gguf")).unwrap();
        let head_name =
            if file.tensor("output.weight").is_some() { "output.weight" } else { "token_embd.weight" };
        assert_eq!(file.tensor(head_name).unwrap().ty, TensorType::Blocks(head));
        let (read, _, _) = read_gguf(bytes.clone()).unwrap();
        assert!(read.weight_type().contains(head.name()), "{}", read.weight_type());
    }
}
