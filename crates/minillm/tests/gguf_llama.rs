//! LLaMA-family GGUF files (llama.cpp's `llama` and `qwen2` architectures): written and read
//! back with the same weights, blocks, logits, tokenizer, end tokens and chat template; q and k
//! rows permuted as llama.cpp's converter permutes them.

mod common;

use minillm::io::generation_config::GenerationConfig;
use minillm::io::gguf::{Gguf, TensorType, Value};
use minillm::io::{gguf_llama, load};
use minillm::model::config::RopeScaling;
use minillm::model::kv_cache::KvCache;
use minillm::model::{Arch, Gpt};
use minillm::quant::QuantType;
use minillm::tokenizer::{SpecialTokens, Tokenizer, formats};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn model_and_tokenizer(name: &str) -> (Gpt, Tokenizer) {
    let loaded = load(&fixture(name)).unwrap();
    (loaded.model, loaded.tok)
}

fn logits(model: &Gpt, tokens: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(model, 1);
    let mut out = Vec::new();
    model.score(&mut cache, tokens, None, |_, row| out.extend_from_slice(row)).unwrap();
    out
}

fn read(bytes: Vec<u8>) -> (Gpt, Tokenizer, gguf_llama::Extras) {
    gguf_llama::from_shared(Arc::new(bytes), Path::new("m.gguf")).unwrap()
}

#[test]
fn llama_and_qwen2_files_read_back_with_the_same_weights_blocks_and_logits() {
    for name in ["llama_tiny", "qwen2_tiny"] {
        let (model, tok) = model_and_tokenizer(name);
        let tokens = tok.encode_prompt("The quick brown fox jumps over the lazy dog.").unwrap();
        let none = GenerationConfig::default();
        let f32_bytes = gguf_llama::to_bytes(
            &model,
            &tok,
            &none,
            None,
            minillm::io::gguf::recipe(TensorType::F32, None).as_ref(),
            name,
        )
        .unwrap();
        let (back, back_tok, _) = read(f32_bytes.clone());
        assert_eq!(back.config, model.config, "{name}");
        assert!(back.params == model.params, "{name}: f32 weights differ");
        assert_eq!(formats::to_hf_json(&back_tok), formats::to_hf_json(&tok), "{name}");
        let again = gguf_llama::to_bytes(
            &back,
            &back_tok,
            &none,
            None,
            minillm::io::gguf::recipe(TensorType::F32, None).as_ref(),
            name,
        )
        .unwrap();
        assert!(again == f32_bytes, "{name}: rewriting changed the file");

        // Blocks: the file's model decodes exactly as the same model quantized in memory.
        for (ty, q, head) in [
            (TensorType::F16, QuantType::F16, QuantType::F16),
            (TensorType::Q8_0, QuantType::Q8_0, QuantType::Q8_0),
            (TensorType::Q4_0, QuantType::Q4_0, QuantType::Q8_0),
        ] {
            let bytes = gguf_llama::to_bytes(
                &model,
                &tok,
                &none,
                None,
                minillm::io::gguf::recipe(ty, Some(head)).as_ref(),
                name,
            )
            .unwrap();
            let (back, _, _) = read(bytes);
            // An untied token embedding is in the file's type too, as llama-quantize makes it,
            // and stays in blocks when read (one row is widened per token).
            let untied = matches!(&model.config.arch, Arch::Llama(l) if !l.tied_head);
            let embedding = back.quantized().unwrap().embedding.as_ref().map(|m| m.ty);
            assert_eq!(embedding, untied.then_some(q), "{name} {ty:?}: the token embedding's blocks");
            let mut want = Gpt::from_params(model.config.clone(), model.params.clone()).unwrap();
            want.quantize(q, Some(head)).unwrap();
            assert_eq!(back.weight_type(), want.weight_type(), "{name} {ty:?}");
            assert!(logits(&back, &tokens) == logits(&want, &tokens), "{name} {ty:?}: logits differ");
        }
    }
}

#[test]
fn q_and_k_rows_are_permuted_for_llama_cpp_s_adjacent_pair_rotation() {
    let (model, tok) = model_and_tokenizer("llama_tiny");
    let bytes = common::llama_f32_gguf(&model, &tok);
    let file = Gguf::parse(&bytes, Path::new("t.gguf")).unwrap();
    let Arch::Llama(l) = &model.config.arch else { unreachable!() };
    let d = l.head_dim;
    let rows_of = |name: &str| {
        let info = file.tensor(name).unwrap();
        let mut v = vec![0.0f32; (info.dims[0] * info.dims[1]) as usize];
        file.read_f32(info, &mut v);
        (v, info.dims[0] as usize)
    };
    let q = model.tensor_f32("model.layers.0.self_attn.q_proj.weight").unwrap();
    let q: Vec<f32> = q[..model.config.n_head * d * model.config.n_embd].to_vec();
    let (g, cols) = rows_of("blk.0.attn_q.weight");
    // HF's row (head, half, i) is llama.cpp's row (head, i, half).
    for head in 0..model.config.n_head {
        for half in 0..2 {
            for i in 0..d / 2 {
                let hf = head * d + half * d / 2 + i;
                let gg = head * d + 2 * i + half;
                assert_eq!(g[gg * cols..(gg + 1) * cols], q[hf * cols..(hf + 1) * cols]);
            }
        }
    }
    // Llama 3.1's scaling travels as each frequency's divisor: 1 for high frequencies, the
    // factor for low ones.
    let loaded = load(&fixture("llama_tiny")).unwrap();
    let with_scaling = common::llama_f32_gguf(&loaded.model, &loaded.tok);
    let file = Gguf::parse(&with_scaling, Path::new("t.gguf")).unwrap();
    let (divisors, n) = rows_of_1d(&file, "rope_freqs.weight");
    assert_eq!(n, d / 2);
    let Arch::Llama(l) = &loaded.model.config.arch else { unreachable!() };
    let Some(RopeScaling::Llama3 { factor, .. }) = l.rope_scaling else {
        panic!("the fixture has llama3 scaling")
    };
    assert!(
        (divisors[0] - 1.0).abs() < 1e-6 && (divisors[n - 1] - factor as f32).abs() < 1e-5,
        "{divisors:?}"
    );
    // Read back, the divisors become Llama 3.1's scaling again, with the same frequencies.
    let (back, _, _) = read(with_scaling);
    let Arch::Llama(b) = &back.config.arch else { unreachable!() };
    assert!(matches!(b.rope_scaling, Some(RopeScaling::Llama3 { factor: f, .. }) if f == factor));
    let again = common::llama_f32_gguf(&back, &loaded.tok);
    let (again, _) = rows_of_1d(&Gguf::parse(&again, Path::new("t.gguf")).unwrap(), "rope_freqs.weight");
    assert!(
        again.iter().zip(&divisors).all(|(a, d)| (a / d - 1.0).abs() < 1e-5),
        "{again:?} vs {divisors:?}"
    );
    let tokens = loaded.tok.encode_prompt("The quick brown fox jumps over the lazy dog.").unwrap();
    let (a, b) = (logits(&loaded.model, &tokens), logits(&back, &tokens));
    let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst < 1e-5, "logits moved by {worst}");
}

fn rows_of_1d(file: &Gguf, name: &str) -> (Vec<f32>, usize) {
    let info = file.tensor(name).unwrap();
    let mut v = vec![0.0f32; info.dims[0] as usize];
    file.read_f32(info, &mut v);
    let n = v.len();
    (v, n)
}

#[test]
fn sentencepiece_tokenizers_travel_with_scores_and_encode_the_same() {
    // The SentencePiece fixture (Llama 2's form) on a LLaMA-shaped model of its vocabulary.
    let tok = formats::read_file(&fixture("sentencepiece/legacy.json")).unwrap();
    let model = Gpt::new(minillm::model::ModelConfig::llama_depth(1, tok.vocab_size()), 3).unwrap();
    let bytes = gguf_llama::to_bytes(
        &model,
        &tok,
        &GenerationConfig::default(),
        None,
        minillm::io::gguf::recipe(TensorType::F16, None).as_ref(),
        "sp",
    )
    .unwrap();
    let file = Gguf::parse(&bytes, Path::new("sp.gguf")).unwrap();
    assert_eq!(file.get("tokenizer.ggml.model").and_then(Value::as_str), Some("llama"));
    assert_eq!(file.get("tokenizer.ggml.add_bos_token"), Some(&Value::Bool(true)));
    let (_, back, extras) = read(bytes);
    assert_eq!(back.prefix(), tok.prefix());
    assert_eq!(extras.generation.eos_token_ids, [tok.special_id("</s>").unwrap()]);
    for text in common::tricky_strings(5, 200).iter().map(String::as_str).chain([
        "Hello world, 日本 2024!",
        "  two spaces, a\ttab\nand lines",
        "<s>special</s> text",
    ]) {
        // The merges rebuilt from the scores encode as the original merges do.
        assert_eq!(
            back.encode(text, SpecialTokens::AsText).unwrap(),
            tok.encode(text, SpecialTokens::AsText).unwrap(),
            "{text:?}"
        );
        assert_eq!(back.encode_prompt(text).unwrap(), tok.encode_prompt(text).unwrap(), "{text:?}");
    }
}

#[test]
fn end_tokens_and_the_chat_template_travel_in_the_file() {
    let tok = formats::read_file(&fixture("chat_templates/chatml.json")).unwrap();
    let model = Gpt::new(minillm::model::ModelConfig::llama_depth(1, tok.vocab_size()), 3).unwrap();
    let im_end = tok.special_id("<|im_end|>").unwrap();
    let eot = tok.special_id("<|endoftext|>").unwrap();
    let generation = GenerationConfig { eos_token_ids: vec![im_end, eot], ..Default::default() };
    let template =
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}";
    let bytes = gguf_llama::to_bytes(
        &model,
        &tok,
        &generation,
        Some(template),
        minillm::io::gguf::recipe(TensorType::Q8_0, None).as_ref(),
        "c",
    )
    .unwrap();
    let (_, _, extras) = read(bytes);
    let t = extras.chat_template.expect("the template is read back");
    assert_eq!((t.source(), t.ends()), (template, &[im_end, eot][..]));
    assert_eq!(t.eos_token(), Some("<|im_end|>"));
    assert_eq!(extras.generation.eos_token_ids, [im_end, eot]);

    // Metadata for a model minillm does not run is refused by name, not ignored.
    let bytes = gguf_llama::to_bytes(
        &model,
        &tok,
        &generation,
        None,
        minillm::io::gguf::recipe(TensorType::F32, None).as_ref(),
        "c",
    )
    .unwrap();
    let file = Gguf::parse(&bytes, Path::new("c.gguf")).unwrap();
    let tensors: Vec<minillm::io::gguf::TensorOut> = file
        .tensors
        .iter()
        .map(|t| minillm::io::gguf::TensorOut {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.ty,
            data: file.data(t).to_vec(),
        })
        .collect();
    for (key, value, says) in [
        ("llama.expert_count", 8, "mixtures of experts are not supported"),
        ("llama.attention.sliding_window", 16, "sliding_window 16 is shorter than the context"),
    ] {
        let mut metadata = file.metadata.clone();
        metadata.push((key.to_string(), Value::U32(value)));
        let err = gguf_llama::from_shared(
            Arc::new(minillm::io::gguf::to_bytes(&metadata, &tensors)),
            Path::new("x.gguf"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains(says), "{err}");
    }

    // A tokenizer without an end of text is refused, as for GPT-2's files.
    let bytes_model = Gpt::new(minillm::model::ModelConfig::llama_depth(1, 256), 3).unwrap();
    let err = gguf_llama::to_bytes(
        &bytes_model,
        &Tokenizer::bytes(),
        &GenerationConfig::default(),
        None,
        minillm::io::gguf::recipe(TensorType::F32, None).as_ref(),
        "b",
    )
    .unwrap_err();
    assert!(err.to_string().contains("no end-of-text token"), "{err}");
}

#[test]
fn files_as_llama_quantize_leaves_them_read_f16_rows_of_any_width_any_alignment_any_order() {
    // llama-quantize keeps a matrix whose rows no block type divides in f16 (here ffn_down, 40
    // wide); files may align tensors to 64 and list them in any order. The same weights in an
    // f32 file are the reference.
    let (base, tok) = model_and_tokenizer("llama_tiny");
    let mut config = base.config.clone();
    if let Arch::Llama(l) = &mut config.arch {
        l.intermediate = 40;
    }
    let mut model = Gpt::new(config, 7).unwrap();
    for layer in 0..model.config.n_layer {
        let name = format!("model.layers.{layer}.mlp.down_proj.weight");
        let range = model.layout.get(&name).unwrap().range();
        for w in &mut model.params[range] {
            *w = half::f16::from_f32(*w).to_f32(); // what the f16 file can hold
        }
    }
    let reference = common::llama_f32_gguf(&model, &tok);
    let file = Gguf::parse(&reference, Path::new("m.gguf")).unwrap();
    let mut metadata = file.metadata.clone();
    metadata.push(("general.alignment".into(), Value::U32(64)));
    let mut tensors: Vec<minillm::io::gguf::TensorOut> = file
        .tensors
        .iter()
        .rev()
        .map(|t| {
            let data = file.data(t).to_vec();
            let (ty, data) = if t.name.ends_with("ffn_down.weight") {
                assert_eq!(t.dims[0], 40);
                let halves = data.chunks_exact(4).flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                });
                (TensorType::F16, halves.collect())
            } else {
                (t.ty, data)
            };
            minillm::io::gguf::TensorOut { name: t.name.clone(), dims: t.dims.clone(), ty, data }
        })
        .collect();
    tensors.rotate_left(3);
    let bytes = minillm::io::gguf::to_bytes(&metadata, &tensors);
    let parsed = Gguf::parse(&bytes, Path::new("m.gguf")).unwrap();
    assert_eq!(parsed.tensor("blk.0.ffn_down.weight").unwrap().ty, TensorType::F16Rows);
    assert!(parsed.tensors.iter().all(|t| t.start % 64 == 0));
    let (back, _, _) = read(bytes);
    let tokens = tok.encode_prompt("The quick brown fox jumps over the lazy dog.").unwrap();
    let (a, b) = (logits(&read(reference).0, &tokens), logits(&back, &tokens));
    let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst < 1e-5, "logits moved by {worst}");
}
