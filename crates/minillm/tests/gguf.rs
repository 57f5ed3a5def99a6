//! GGUF: reading the file llama.cpp's own `gguf` package wrote (scripts/reference/gguf_tiny.py),
//! writing ours and reading it back, and damaged files.

use minillm::io::gguf::{Gguf, TensorType};
use minillm::io::{gguf_gpt2, load_model};
use minillm::model::{Gpt, ModelConfig, Trainable};
use minillm::tokenizer::{SpecialTokens, Tokenizer, formats};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny")
}

/// Every position's logits from the training forward on the model's weights in f32 (the
/// dequantized ones, for a quantized model): an independent path to check inference against.
fn logits(model: &Gpt, tokens: &[u32]) -> Vec<f32> {
    let f32_model = Gpt::from_params(model.config.clone(), model.full_params().into_owned()).unwrap();
    let mut model = Trainable::new(f32_model, 0).0;
    model.forward(tokens, None, (1, tokens.len())).unwrap();
    let (v, vp) = (model.config.vocab_size, model.config.padded_vocab_size());
    model.logits().chunks(vp).flat_map(|row| &row[..v]).copied().collect()
}

fn reference_tokens() -> (Vec<u32>, Vec<f32>, usize) {
    let bytes = std::fs::read(fixture().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ints = |n: &str| -> Vec<u32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let floats: Vec<f32> = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let tokens = ints("tokens");
    let t = st.tensor("tokens").unwrap().shape()[1];
    (tokens[..t].to_vec(), floats, t)
}

fn fixture_model_and_tokenizer() -> (Gpt, Tokenizer) {
    (load_model(&fixture()).unwrap(), formats::read_hf_json(&fixture().join("tokenizer.json")).unwrap())
}

#[test]
fn reads_the_file_llama_cpps_gguf_package_wrote() {
    let path = fixture().join("gpt2_tiny.gguf");
    let (model, tok) = gguf_gpt2::from_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
    let (safetensors_model, hf_tok) = fixture_model_and_tokenizer();
    assert_eq!(model.config, safetensors_model.config);
    assert!(model.params == safetensors_model.params, "weights differ from model.safetensors");

    // PyTorch's logits for the first reference sequence.
    let (tokens, want, t) = reference_tokens();
    let v = model.config.vocab_size;
    let got = logits(&model, &tokens);
    let worst = got.iter().zip(&want[..t * v]).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-4, "logits differ from PyTorch by {worst}");
    assert_eq!(got, logits(&safetensors_model, &tokens));

    // The tokenizer from the GGUF token and merge lists gives HF tokenizers' ids.
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("gguf_reference.json")).unwrap())
            .unwrap();
    let sample = reference["sample"].as_str().unwrap();
    let want_ids: Vec<u32> =
        reference["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(tok.encode(sample, SpecialTokens::Refuse).unwrap(), want_ids);
    assert_eq!(hf_tok.encode(sample, SpecialTokens::Refuse).unwrap(), want_ids);
    assert_eq!(tok.decode(&want_ids).unwrap(), sample);
    assert_eq!(tok.special_id("<|endoftext|>"), hf_tok.special_id("<|endoftext|>"));
}

#[test]
fn f32_export_reads_back_identical_and_rewrites_byte_for_byte() {
    let (model, tok) = fixture_model_and_tokenizer();
    let bytes = gguf_gpt2::to_bytes(&model, &tok, TensorType::F32, "tiny").unwrap();
    let path = Path::new("tiny.gguf");
    let file = Gguf::parse(&bytes, path).unwrap();
    for t in &file.tensors {
        assert_eq!(t.start % 32, 0, "{} is not aligned to 32 bytes", t.name);
    }
    assert!(file.tensor("output.weight").is_none(), "llama.cpp ties the output to token_embd");
    assert_eq!(file.tensor("blk.0.attn_qkv.weight").unwrap().dims, [64, 192], "ne = [in, out]");

    let (back, back_tok) = gguf_gpt2::from_bytes(&bytes, path).unwrap();
    assert!(back.params == model.params);
    assert_eq!(formats::to_hf_json(&back_tok), formats::to_hf_json(&tok));
    let (tokens, _, _) = reference_tokens();
    assert_eq!(logits(&back, &tokens), logits(&model, &tokens));
    assert!(gguf_gpt2::to_bytes(&back, &back_tok, TensorType::F32, "tiny").unwrap() == bytes);
}

#[test]
fn exports_name_where_texts_and_turns_end_and_refuse_a_tokenizer_without_an_end() {
    use minillm::io::gguf::Value;
    let (model, tok) = fixture_model_and_tokenizer();
    let eot = tok.special_id("<|endoftext|>").unwrap();
    let id = |file: &Gguf, key: &str| file.get(key).and_then(Value::as_u64).map(|x| x as u32);
    let bytes = gguf_gpt2::to_bytes(&model, &tok, TensorType::F32, "tiny").unwrap();
    let file = Gguf::parse(&bytes, Path::new("t.gguf")).unwrap();
    // GPT-2 starts and ends texts with <|endoftext|>, and adds no BOS to prompts.
    assert_eq!(id(&file, "tokenizer.ggml.bos_token_id"), Some(eot));
    assert_eq!(id(&file, "tokenizer.ggml.eos_token_id"), Some(eot));
    assert_eq!(file.get("tokenizer.ggml.add_bos_token"), Some(&Value::Bool(false)));
    assert!(
        file.get("tokenizer.ggml.eot_token_id").is_none() && file.get("tokenizer.chat_template").is_none()
    );

    // A fine-tuned model also names its end of turn and its template.
    let (chat_tok, chat_model) = minillm::chat::add_chat_tokens(&tok, &model).unwrap();
    let bytes = gguf_gpt2::to_bytes(&chat_model, &chat_tok, TensorType::F32, "chat").unwrap();
    let file = Gguf::parse(&bytes, Path::new("c.gguf")).unwrap();
    assert_eq!(id(&file, "tokenizer.ggml.eos_token_id"), Some(eot));
    assert_eq!(id(&file, "tokenizer.ggml.eot_token_id"), chat_tok.special_id(minillm::chat::END));
    assert_eq!(file.get("tokenizer.chat_template").and_then(Value::as_str), Some(minillm::chat::JINJA));

    // Bytes only: no token could be BOS or EOS.
    let bytes_model = Gpt::new(ModelConfig { vocab_size: 256, ..model.config.clone() }, 1).unwrap();
    let err = gguf_gpt2::to_bytes(&bytes_model, &Tokenizer::bytes(), TensorType::F32, "b").unwrap_err();
    assert!(err.to_string().contains("no end-of-text token"), "{err}");
}

#[test]
fn f16_export_rounds_matrices_only() {
    let (model, tok) = fixture_model_and_tokenizer();
    let bytes = gguf_gpt2::to_bytes(&model, &tok, TensorType::F16, "tiny").unwrap();
    let f32_len = gguf_gpt2::to_bytes(&model, &tok, TensorType::F32, "tiny").unwrap().len();
    assert!(bytes.len() < f32_len * 6 / 10, "f16 file {} vs f32 {f32_len}", bytes.len());
    let path = Path::new("tiny16.gguf");
    let file = Gguf::parse(&bytes, path).unwrap();
    for t in &file.tensors {
        let want = if t.dims.len() == 1 { TensorType::F32 } else { TensorType::F16 };
        assert_eq!(t.ty, want, "{}", t.name);
    }
    let (back, _) = gguf_gpt2::from_bytes(&bytes, path).unwrap();
    // The matrices stay 16-bit (no f32 copy); what they stand for is the f32 weights rounded.
    assert_eq!(back.weight_type(), "f16");
    assert!(back.weight_bytes() < model.weight_bytes() * 6 / 10);
    let (layout, widened) = (minillm::model::params::Layout::new(&model.config), back.full_params());
    for t in &layout.tensors {
        for (&b, &a) in widened[t.range()].iter().zip(&model.params[t.range()]) {
            let want = if t.shape.len() == 1 { a } else { half::f16::from_f32(a).to_f32() };
            assert_eq!(b, want, "{}", t.name);
        }
    }
    let (tokens, _, _) = reference_tokens();
    let (a, b) = (logits(&model, &tokens), logits(&back, &tokens));
    let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst > 0.0 && worst < 2e-2, "f16 changed the logits by {worst}");
}

#[test]
fn quantized_exports_keep_their_blocks_and_decode_as_they_evaluate() {
    use minillm::model::kv_cache::KvCache;
    use minillm::quant::{QMatrix, QuantType};
    let (model, tok) = fixture_model_and_tokenizer();
    let (tokens, _, _) = reference_tokens();
    let f32_logits = logits(&model, &tokens[..12]);
    for (ty, body, head) in [
        (TensorType::Q8_0, TensorType::Q8_0, TensorType::Q8_0),
        (TensorType::Q4_0, TensorType::Q4_0, TensorType::Q8_0),
        (TensorType::Q4_0, TensorType::Q4_0, TensorType::Q4_0), // --head-type q4_0
    ] {
        let head_type = head.quant();
        let recipe = minillm::io::gguf::recipe(ty, head_type);
        let bytes = gguf_gpt2::to_bytes_with(&model, &tok, recipe.as_ref(), "tiny").unwrap();
        if head == TensorType::Q8_0 {
            // llama.cpp's rule for a 64-wide head, whose rows are not whole 256-weight
            // super-blocks (q6_K's): q8_0.
            assert_eq!(bytes, gguf_gpt2::to_bytes(&model, &tok, ty, "tiny").unwrap(), "the default head");
        }
        let path = Path::new("tinyq.gguf");
        let file = Gguf::parse(&bytes, path).unwrap();
        for t in &file.tensors {
            let want = match t.name.as_str() {
                "token_embd.weight" => head,
                "position_embd.weight" => TensorType::F32,
                _ if t.dims.len() == 2 => body,
                _ => TensorType::F32,
            };
            assert_eq!(t.ty, want, "{}", t.name);
        }
        let (back, _) = gguf_gpt2::from_bytes(&bytes, path).unwrap();
        let q = back.quantized().expect("the blocks are kept for decoding");
        let qkv = &q.blocks[0][0].as_ref().unwrap().parts()[0];
        assert_eq!((qkv.ty.name(), qkv.rows, qkv.cols), (body.quant().unwrap().name(), 3 * 64, 64));
        // The f32 weights are the blocks' dequantized values, exactly.
        let mut stored = vec![0.0f32; 3 * 64 * 64];
        file.read_f32(file.tensor("blk.0.attn_qkv.weight").unwrap(), &mut stored);
        assert_eq!(stored, qkv.dequantize());
        let again = QMatrix::quantize(qkv.ty, &qkv.dequantize(), qkv.rows, qkv.cols).unwrap();
        assert_eq!(again.bytes(), qkv.bytes(), "quantizing dequantized blocks changes nothing");
        // Re-exporting writes the same blocks: no second rounding.
        assert_eq!(gguf_gpt2::to_bytes_with(&back, &tok, recipe.as_ref(), "tiny").unwrap(), bytes);
        // The model holds the blocks and no f32 copy of them: it is smaller than the f32 one.
        assert!(back.weight_bytes() < model.weight_bytes() / 3, "{ty:?}: {}", back.weight_bytes());
        // Prefill and decoding through the blocks give the logits the f32 forward gives on the
        // dequantized weights, up to the rounding of the activations to 8 bits (bounded per
        // product in the library's quant tests): here under 0.005, as much as q8_0's rounding
        // of the weights moves them.
        let full = logits(&back, &tokens[..12]);
        let v = back.config.vocab_size;
        let mut cache = KvCache::new(&back, 1);
        let first = back.prefill(&mut cache, 0, &tokens[..4]).unwrap();
        let worst = first.iter().zip(&full[3 * v..4 * v]).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-2, "{ty:?}: prefill differs from forward by {worst}");
        for pos in 4..12 {
            let row = back.decode(&mut cache, &[0], &[tokens[pos]]).unwrap();
            let want = &full[pos * v..(pos + 1) * v];
            let worst = row.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-2, "{ty:?} position {pos}: decode differs from forward by {worst}");
        }
        // And quantization moved the logits, by a little.
        let moved = full.iter().zip(&f32_logits).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(moved > 0.0 && moved < 0.5, "{ty:?} moved the logits by {moved}");
        // Training widens the blocks to f32, and says so.
        let (trained, note) = Trainable::new(back, 0);
        assert!(trained.quantized().is_none() && trained.params.len() == model.params.len());
        assert!(note.unwrap().contains("widened to f32"));
    }
    // A quantized tensor whose rows are not whole blocks is refused, naming it.
    let q8 = gguf_gpt2::to_bytes(&model, &tok, TensorType::Q8_0, "tiny").unwrap();
    let name = b"blk.0.attn_qkv.weight";
    let at = q8.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4;
    let mut bad = q8.clone();
    bad[at..at + 8].copy_from_slice(&48u64.to_le_bytes());
    let err = gguf_gpt2::from_bytes(&bad, Path::new("bad.gguf")).err().unwrap().to_string();
    assert!(err.contains("rows must be whole blocks of 32"), "{err}");
    assert_eq!(QuantType::parse("q8_0").unwrap(), TensorType::Q8_0.quant().unwrap());
}

#[test]
fn a_model_without_biases_exports_with_zero_biases() {
    let config = ModelConfig { bias: false, ..ModelConfig::depth(1, 512) };
    let model = Gpt::new(config, 7).unwrap();
    let tok = formats::read_hf_json(&fixture().join("tokenizer.json")).unwrap();
    let bytes = gguf_gpt2::to_bytes(&model, &tok, TensorType::F32, "nobias").unwrap();
    let (back, _) = gguf_gpt2::from_bytes(&bytes, Path::new("nobias.gguf")).unwrap();
    assert!(back.config.bias);
    let tokens = [1u32, 5, 9, 200, 3];
    assert_eq!(logits(&back, &tokens), logits(&model, &tokens));
}

fn error_of(bytes: &[u8]) -> String {
    match gguf_gpt2::from_bytes(bytes, Path::new("bad.gguf")) {
        Ok(_) => panic!("a damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

/// `bytes` with the first occurrence of `from` replaced by `to` (same length).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn damaged_files_get_clear_errors() {
    let (model, tok) = fixture_model_and_tokenizer();
    let good = gguf_gpt2::to_bytes(&model, &tok, TensorType::F32, "tiny").unwrap();

    assert!(error_of(b"PK\x03\x04 not gguf").contains("not a GGUF file"));
    assert!(error_of(&good[..good.len() - 100]).contains("past the end of the file"));
    assert!(error_of(&good[..1000]).contains("truncated"));
    assert!(
        error_of(&patched(
            &good,
            b"\x04\x00\x00\x00\x00\x00\x00\x00gpt2",
            b"\x04\x00\x00\x00\x00\x00\x00\x00opt2"
        ))
        .contains("architecture is 'opt2'")
    );
    assert!(
        error_of(&patched(&good, b"blk.1.ffn_up.weight", b"blk.1.ffn_xx.weight"))
            .contains("'blk.1.ffn_up.weight' is missing")
    );
    // The ggml type of the first tensor (after its name, n_dims and two dims) set to Q2_K,
    // a block format minillm does not read.
    let name = b"token_embd.weight";
    let at = good.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 16;
    let mut q2 = good.clone();
    q2[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    assert!(error_of(&q2).contains("is q2_K (ggml type 10), which minillm does not read yet"));
    // A version we do not know, and a tensor count larger than the file.
    let mut v9 = good.clone();
    v9[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(error_of(&v9).contains("version 9"));
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error_of(&huge).contains("more than the file can hold"));

    // Cut anywhere: an error, never a panic.
    for cut in (0..good.len()).step_by(997) {
        assert!(gguf_gpt2::from_bytes(&good[..cut], Path::new("cut.gguf")).is_err(), "cut at {cut}");
    }
}
