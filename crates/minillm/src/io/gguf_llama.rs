//! LLaMA-family models (Llama, Mistral, Qwen2) as llama.cpp's `llama` and `qwen2` architectures
//! in GGUF, as llama.cpp's `convert_hf_to_gguf.py` writes them:
//!
//! - tensor names `token_embd`, `blk.N.attn_q` ... `ffn_down`, `output_norm`, `output` (absent
//!   when the head is tied), matrices (out, in) as HF stores them;
//! - for `llama`, the rows of q and k permuted within each head: HF rotates the two halves of a
//!   head (`rotate_half`), llama.cpp adjacent pairs, so row `h*d + half*d/2 + i` moves to
//!   `h*d + 2i + half` (Qwen2 is run with llama.cpp's half-rotation and keeps HF's order);
//! - Llama 3.1's rope scaling as a `rope_freqs` tensor (each frequency's divisor), linear
//!   scaling as metadata;
//! - the tokenizer as `gpt2` (byte-level BPE: tokens and merges, with the split pattern's `pre`
//!   name) or `llama` (SentencePiece: pieces, scores and token types), with BOS/EOS, whether a
//!   BOS starts every text, and the chat template.

use super::generation_config::{GenerationConfig, TextTokens};
use super::gguf::{Gguf, TensorInfo, TensorOut, TensorType, Value, ValueType};
use super::gguf_gpt2::{byte_level_tokenizer, encode, file_type, pre_name};
use crate::chat::jinja::JinjaTemplate;
use crate::error::{Error, Result};
use crate::model::config::{Family, LlamaShape, RopeScaling};
use crate::model::layers::rope::frequencies;
use crate::model::params::Layout;
use crate::model::quantized::{Matrix, Quantized};
use crate::model::{Arch, Gpt, ModelConfig};
use crate::quant::{BLOCK, QMatrix, QuantType};
use crate::tokenizer::bpe::{Bpe, Merge};
use crate::tokenizer::formats::{merge_texts, vocab_entries};
use crate::tokenizer::sentencepiece::{Prepend, SentencePiece};
use crate::tokenizer::{END_OF_TEXT_NAMES, Tokenizer};
use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

fn arch_name(l: &LlamaShape) -> &'static str {
    match l.family {
        Family::Llama | Family::Mistral => "llama",
        Family::Qwen2 => "qwen2",
    }
}

/// llama.cpp's name for one of our (HF) tensor names.
fn gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let (layer, part) = name.strip_prefix("model.layers.")?.split_once('.')?;
    let (module, kind) = part.rsplit_once('.')?;
    let target = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{target}.{kind}"))
}

/// How many heads a q or k tensor's rows are permuted in (`None`: not permuted).
fn permuted_heads(c: &ModelConfig, l: &LlamaShape, name: &str) -> Option<usize> {
    if l.family == Family::Qwen2 {
        return None;
    }
    if name.contains("self_attn.q_proj.") {
        Some(c.n_head)
    } else if name.contains("self_attn.k_proj.") {
        Some(l.n_kv_head)
    } else {
        None
    }
}

/// Row `r` of HF's order is row `to_gguf_row(r)` in llama.cpp's (heads of `d` rows).
fn to_gguf_row(r: usize, d: usize) -> usize {
    let (head, within) = (r / d, r % d);
    let (half, i) = (within / (d / 2), within % (d / 2));
    head * d + 2 * i + half
}

/// Rows of `row_len` units each, moved from HF's order to llama.cpp's (`to_gguf`) or back.
fn permute_rows<T: Copy>(data: &[T], rows: usize, d: usize, to_gguf: bool) -> Vec<T> {
    let row_len = data.len() / rows;
    let mut out = data.to_vec();
    for r in 0..rows {
        let g = to_gguf_row(r, d);
        let (src, dst) = if to_gguf { (r, g) } else { (g, r) };
        out[dst * row_len..(dst + 1) * row_len].copy_from_slice(&data[src * row_len..(src + 1) * row_len]);
    }
    out
}

/// The fused block matrices split into llama.cpp's tensors: (name part, first row, rows).
fn parts(c: &ModelConfig, l: &LlamaShape, m: Matrix) -> Vec<(&'static str, usize, usize)> {
    let (q, kv) = (c.n_head * l.head_dim, l.n_kv_head * l.head_dim);
    match m {
        Matrix::Qkv => {
            vec![("self_attn.q_proj", 0, q), ("self_attn.k_proj", q, kv), ("self_attn.v_proj", q + kv, kv)]
        }
        Matrix::AttnProj => vec![("self_attn.o_proj", 0, c.n_embd)],
        Matrix::Fc => {
            vec![("mlp.gate_proj", 0, l.intermediate), ("mlp.up_proj", l.intermediate, l.intermediate)]
        }
        Matrix::FcProj => vec![("mlp.down_proj", 0, c.n_embd)],
    }
}

fn row_bytes(q: QuantType, cols: usize) -> usize {
    cols / BLOCK * q.block_bytes()
}

/// Encodes a LLaMA-family `model` and `tok` as GGUF with matrices in `ty` (the output layer in
/// `head`, like `llama-quantize --output-tensor-type`); `chat_template` is the model's.
pub fn to_bytes(
    model: &Gpt,
    tok: &Tokenizer,
    generation: &GenerationConfig,
    chat_template: Option<&str>,
    ty: TensorType,
    head: Option<QuantType>,
    name: &str,
) -> Result<Vec<u8>> {
    let c = &model.config;
    let Arch::Llama(l) = &c.arch else {
        return Err(Error::Invalid("gguf_llama writes LLaMA-family models".into()));
    };
    let arch = arch_name(l);
    let quantized = match ty.quant() {
        Some(q) => Some(model.quantized_as(q, head)?),
        None => None,
    };
    let u32v = |x: usize| Value::U32(x as u32);
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type(ty))),
        (key("context_length"), u32v(c.block_size)),
        (key("embedding_length"), u32v(c.n_embd)),
        (key("feed_forward_length"), u32v(l.intermediate)),
        (key("block_count"), u32v(c.n_layer)),
        (key("attention.head_count"), u32v(c.n_head)),
        (key("attention.head_count_kv"), u32v(l.n_kv_head)),
        (key("attention.key_length"), u32v(l.head_dim)),
        (key("attention.value_length"), u32v(l.head_dim)),
        (key("rope.dimension_count"), u32v(l.head_dim)),
        (key("rope.freq_base"), Value::F32(l.rope_theta as f32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(l.norm_eps as f32)),
        (key("vocab_size"), u32v(c.vocab_size)),
    ];
    if let Some(RopeScaling::Linear { factor }) = l.rope_scaling {
        metadata.push((key("rope.scaling.type"), Value::String("linear".into())));
        metadata.push((key("rope.scaling.factor"), Value::F32(factor as f32)));
    }
    metadata.extend(tokenizer_metadata(tok, generation)?);
    if let Some(t) = chat_template {
        metadata.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }

    let mut tensors = Vec::new();
    let mut push = |hf: &str, dims: Vec<u64>, ty: TensorType, data: Vec<u8>| {
        let name = gguf_name(hf).expect("every LLaMA-family tensor has a llama.cpp name");
        tensors.push(TensorOut { name, dims, ty, data });
    };
    let layout = Layout::new(c);
    // Matrices in f32/f16 files, and everything that stays f32 in quantized ones.
    let float_ty = |shape: &[usize]| match (shape.len(), ty) {
        (1, _) => TensorType::F32,
        (_, TensorType::F16) => TensorType::F16,
        _ => TensorType::F32,
    };
    for t in &layout.tensors {
        let mut shape = t.shape.clone();
        if t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight" {
            shape[0] = c.vocab_size;
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if let Some(q) = &quantized
            && let Some((layer, m)) = Matrix::of(&t.name)
            && let Some(blocks) = &q.blocks[layer][m as usize]
        {
            let stem = t.name.rsplit_once('.').map_or("", |s| s.0);
            let (_, first, rows) = parts(c, l, m)
                .into_iter()
                .find(|p| stem.ends_with(p.0))
                .expect("the tensor is a part of its fused matrix");
            let rb = row_bytes(blocks.ty, blocks.cols);
            let mut data = blocks.bytes()[first * rb..(first + rows) * rb].to_vec();
            if permuted_heads(c, l, &t.name).is_some() {
                data = permute_rows(&data, rows, l.head_dim, true);
            }
            push(&t.name, dims, blocks.ty.into(), data);
            continue;
        }
        if let Some(q) = &quantized
            && t.name == c.head_name()
            && let Some(m) = &q.lm_head
        {
            push(&t.name, dims, m.ty.into(), m.bytes().to_vec());
            continue;
        }
        let mut values = match Matrix::of(&t.name) {
            // A part of a fused matrix (q of q|k|v, gate of gate|up): its rows.
            Some((layer, m)) => {
                let stem = t.name.rsplit_once('.').map_or("", |s| s.0);
                let (_, first, rows) =
                    parts(c, l, m).into_iter().find(|p| stem.ends_with(p.0)).expect("a part of its matrix");
                let cols = shape[1];
                model.matrix_f32(layer, m)[first * cols..(first + rows) * cols].to_vec()
            }
            None => model.tensor_f32(&t.name).expect("a tensor of the model").into_owned(),
        };
        if permuted_heads(c, l, &t.name).is_some() {
            values = permute_rows(&values, shape[0], l.head_dim, true);
        }
        let tty = float_ty(&shape);
        push(&t.name, dims, tty, encode(&values, tty));
    }
    if let Some(RopeScaling::Llama3 { .. }) = l.rope_scaling {
        // Each frequency's divisor, as llama.cpp applies them.
        let plain = frequencies(&LlamaShape { rope_scaling: None, ..l.clone() });
        let divisors: Vec<f32> = plain.iter().zip(frequencies(l)).map(|(p, s)| (p / s) as f32).collect();
        tensors.push(TensorOut {
            name: "rope_freqs.weight".into(),
            dims: vec![divisors.len() as u64],
            ty: TensorType::F32,
            data: encode(&divisors, TensorType::F32),
        });
    }
    Ok(super::gguf::to_bytes(&metadata, &tensors))
}

/// The tokenizer's metadata: byte-level BPE as `gpt2`, SentencePiece-style as `llama`, with
/// BOS/EOS (and UNK) ids and whether a BOS starts every text.
fn tokenizer_metadata(tok: &Tokenizer, generation: &GenerationConfig) -> Result<Vec<(String, Value)>> {
    let TextTokens { bos, eos, ends } = TextTokens::of(tok, generation);
    let Some(eos) = eos else {
        return Err(Error::Invalid(format!(
            "this tokenizer has no end-of-text token ({}), which llama.cpp needs to know where a text ends",
            END_OF_TEXT_NAMES.join(", ")
        )));
    };
    let entries = vocab_entries(tok);
    if entries.len() != tok.vocab_size() || entries.iter().enumerate().any(|(i, e)| e.0 as usize != i) {
        return Err(Error::Invalid(
            "GGUF lists every token id in order, but this tokenizer's ids have gaps".into(),
        ));
    }
    let strings = |it: Vec<String>| Value::strings(it);
    let types = |f: &dyn Fn(u32, &str) -> i32| {
        Value::Array(ValueType::I32, entries.iter().map(|(id, t)| Value::I32(f(*id, t))).collect())
    };
    let mut out: Vec<(String, Value)> = Vec::new();
    match tok.sentencepiece() {
        None => {
            out.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            out.push(("tokenizer.ggml.pre".into(), Value::String(pre_name(tok.pattern()).into())));
            out.push((
                "tokenizer.ggml.tokens".into(),
                strings(entries.iter().map(|e| e.1.clone()).collect()),
            ));
            out.push((
                "tokenizer.ggml.token_type".into(),
                types(&|id, _| if tok.is_special(id) { CONTROL } else { NORMAL }),
            ));
            let merges = merge_texts(tok).into_iter().map(|[l, r]| format!("{l} {r}")).collect();
            out.push(("tokenizer.ggml.merges".into(), strings(merges)));
        }
        Some(sp) => {
            out.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
            out.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            out.push(("tokenizer.ggml.tokens".into(), strings(sp.pieces.clone())));
            // llama.cpp's SentencePiece joins the adjacent pair whose result scores highest:
            // a piece's score is minus the rank of the merge that makes it, so it joins what
            // HF's merges would join first.
            let mut scores = vec![-1e9f32; sp.pieces.len()];
            for (rank, m) in tok.bpe().merges().iter().enumerate() {
                let s = &mut scores[m.id as usize];
                *s = s.max(-(rank as f32));
            }
            out.push((
                "tokenizer.ggml.scores".into(),
                Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
            ));
            let byte_ids = tok.bpe().byte_ids();
            out.push((
                "tokenizer.ggml.token_type".into(),
                types(&|id, text| match text {
                    "<unk>" => UNKNOWN,
                    _ if tok.is_special(id) => CONTROL,
                    _ if byte_ids.contains(&id) => BYTE,
                    _ => NORMAL,
                }),
            ));
            out.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(sp.prepend != Prepend::Never)));
            if let Some(unk) = tok.special_id("<unk>") {
                out.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(unk)));
            }
        }
    }
    out.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos.unwrap_or(eos))));
    out.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
    // A second end token (Qwen2.5's <|endoftext|> beside <|im_end|>) as llama.cpp's end of turn.
    if let Some(&second) = ends.iter().find(|&&e| e != eos) {
        out.push(("tokenizer.ggml.eot_token_id".into(), Value::U32(second)));
    }
    out.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(tok.prefix().is_some())));
    Ok(out)
}

/// What a LLaMA-family GGUF file holds besides the model.
pub struct Extras {
    pub generation: GenerationConfig,
    pub chat_template: Option<JinjaTemplate>,
}

/// Reads a `llama`- or `qwen2`-architecture GGUF file whose bytes `owner` holds (a mapped
/// file): blocks of matrices in the file's order stay where they lie; q and k, permuted for
/// llama.cpp, and matrices llama.cpp keeps as separate tensors (q|k|v, gate|up) are joined into
/// minillm's fused ones, which copies their blocks.
pub fn from_shared(
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    path: &Path,
) -> Result<(Gpt, Tokenizer, Extras)> {
    let bytes: &[u8] = (*owner).as_ref();
    let file = Gguf::parse(bytes, path)?;
    let arch = file.get("general.architecture").and_then(Value::as_str).unwrap_or_default().to_string();
    let family = match arch.as_str() {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        other => {
            return Err(Error::format(path, format!("architecture '{other}' is not a LLaMA-family one")));
        }
    };
    let bad = |m: String| Error::format(path, m);
    let size = |k: &str| -> Result<usize> {
        let key = format!("{arch}.{k}");
        file.get(&key)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| bad(format!("metadata '{key}' is missing or not a whole number")))
    };
    // GGUF keeps these as f32: read back as the decimal they were written from (1e-5, not
    // 9.99999974e-6), as llama.cpp's converter got them from config.json.
    let float = |k: &str| {
        let x = file.get(&format!("{arch}.{k}")).and_then(Value::as_f64)?;
        (x as f32).to_string().parse::<f64>().ok()
    };
    let (tok, generation_ends) = tokenizer(&file, path)?;
    let n_head = size("attention.head_count")?;
    let n_embd = size("embedding_length")?;
    let head_dim = size("rope.dimension_count")
        .or_else(|_| size("attention.key_length"))
        .unwrap_or(n_embd / n_head.max(1));
    if let Ok(k) = size("attention.key_length")
        && k != head_dim
    {
        return Err(bad(format!(
            "key_length {k} differs from the rotary dimension {head_dim}; partial rotary embeddings are not supported"
        )));
    }
    let mut rope_scaling = match file.get(&format!("{arch}.rope.scaling.type")).and_then(Value::as_str) {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: float("rope.scaling.factor")
                .ok_or_else(|| bad("linear rope scaling without a factor".into()))?,
        }),
        Some(other) => return Err(bad(format!("rope scaling '{other}' is not supported (none, linear)"))),
    };
    let mut shape = LlamaShape {
        family,
        n_kv_head: size("attention.head_count_kv").unwrap_or(n_head),
        head_dim,
        intermediate: size("feed_forward_length")?,
        rope_theta: float("rope.freq_base").unwrap_or(1e4),
        rope_scaling,
        norm_eps: float("attention.layer_norm_rms_epsilon")
            .ok_or_else(|| bad(format!("metadata '{arch}.attention.layer_norm_rms_epsilon' is missing")))?,
        qkv_bias: file.tensor("blk.0.attn_q.bias").is_some(),
        tied_head: file.tensor("output.weight").is_none(),
    };
    if let Some(info) = file.tensor("rope_freqs.weight") {
        if info.dims != [head_dim as u64 / 2] || info.ty != TensorType::F32 {
            return Err(bad(format!(
                "rope_freqs has dims {:?}; {} f32 divisors were expected",
                info.dims,
                head_dim / 2
            )));
        }
        let mut divisors = vec![0.0f32; head_dim / 2];
        file.read_f32(info, &mut divisors);
        rope_scaling = llama3_from_divisors(&shape, &divisors).ok_or_else(|| {
            bad("rope_freqs holds divisors that are not Llama 3.1's rope scaling; minillm cannot run them".into())
        })?;
        shape.rope_scaling = rope_scaling.clone();
    }
    let config = ModelConfig {
        n_layer: size("block_count")?,
        n_head,
        n_embd,
        block_size: size("context_length")?,
        vocab_size: tok.vocab_size(),
        dropout: 0.0,
        bias: false,
        arch: Arch::Llama(shape.clone()),
    };
    config.validate().map_err(|e| bad(e.to_string()))?;
    let l = &shape;
    let tensor = |hf: &str| -> Result<&TensorInfo> {
        let g = gguf_name(hf).expect("a LLaMA-family name");
        file.tensor(&g).ok_or_else(|| bad(format!("tensor '{g}' is missing")))
    };
    let full = Layout::new(&config);
    let check_dims = |info: &TensorInfo, shape: &[usize]| -> Result<()> {
        let want: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if info.dims != want {
            return Err(bad(format!(
                "tensor '{}' has dims {:?}, the metadata needs {want:?}",
                info.name, info.dims
            )));
        }
        Ok(())
    };
    let shape_of = |name: &str| -> Vec<usize> {
        let mut s = full.get(name).expect("a layout tensor").shape.clone();
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
            s[0] = config.vocab_size;
        }
        s
    };

    // Block matrices whose parts are all in one block type become one fused matrix of blocks.
    let mut quantized = Quantized { blocks: vec![Default::default(); config.n_layer], lm_head: None };
    for layer in 0..config.n_layer {
        for m in Matrix::ALL {
            let names: Vec<String> = parts(&config, l, m)
                .iter()
                .map(|(stem, _, _)| format!("model.layers.{layer}.{stem}.weight"))
                .collect();
            let infos = names.iter().map(|n| tensor(n)).collect::<Result<Vec<_>>>()?;
            for (n, info) in names.iter().zip(&infos) {
                check_dims(info, &shape_of(n))?;
            }
            let Some(q) = infos[0].ty.quant() else { continue };
            if infos.iter().any(|i| i.ty.quant() != Some(q)) {
                continue; // mixed types: read as f32 below
            }
            let cols = infos[0].dims[0] as usize;
            let rows: usize = infos.iter().map(|i| i.dims[1] as usize).sum();
            let matrix = if let [info] = infos.as_slice() {
                let start = file.data(info).as_ptr() as usize - bytes.as_ptr() as usize;
                QMatrix::from_shared(q, (rows, cols), owner.clone(), start..start + file.data(info).len())
            } else {
                let mut data = Vec::with_capacity(rows * row_bytes(q, cols));
                for (n, info) in names.iter().zip(&infos) {
                    let part = file.data(info);
                    match permuted_heads(&config, l, n) {
                        Some(_) => data.extend(permute_rows(part, info.dims[1] as usize, l.head_dim, false)),
                        None => data.extend_from_slice(part),
                    }
                }
                QMatrix::from_bytes(q, rows, cols, data)
            };
            quantized.blocks[layer][m as usize] =
                Some(matrix.map_err(|e| bad(format!("{}: {e}", names[0])))?);
        }
    }
    let head = config.head_name();
    let head_info = tensor(head)?;
    check_dims(head_info, &shape_of(head))?;
    if let Some(q) = head_info.ty.quant() {
        let start = file.data(head_info).as_ptr() as usize - bytes.as_ptr() as usize;
        let (rows, cols) = (config.vocab_size, config.n_embd);
        quantized.lm_head = Some(
            QMatrix::from_shared(q, (rows, cols), owner.clone(), start..start + file.data(head_info).len())
                .map_err(|e| bad(format!("{head}: {e}")))?,
        );
    }

    let layout = Layout::without(&config, |name| quantized.holds(&config, name));
    let mut params = vec![0.0f32; layout.total];
    for t in &layout.tensors {
        let info = tensor(&t.name)?;
        let shape = shape_of(&t.name);
        check_dims(info, &shape)?;
        let n: usize = shape.iter().product();
        let mut values = vec![0.0f32; n];
        read_f32(&file, info, &mut values).map_err(|e| bad(format!("{}: {e}", info.name)))?;
        if permuted_heads(&config, l, &t.name).is_some() {
            values = permute_rows(&values, shape[0], l.head_dim, false);
        }
        params[t.offset..t.offset + n].copy_from_slice(&values);
    }
    let model = Gpt::from_parts(config, params, quantized)?;

    let generation = GenerationConfig { eos_token_ids: generation_ends, ..Default::default() };
    let chat_template = match file.get("tokenizer.chat_template").and_then(Value::as_str) {
        Some(source) => {
            let name = |key: &str| {
                file.get(key)
                    .and_then(Value::as_u64)
                    .map(|id| tok.token_text(id as u32))
                    .filter(|t| !t.is_empty())
            };
            let t = JinjaTemplate::new(
                source,
                name("tokenizer.ggml.bos_token_id"),
                name("tokenizer.ggml.eos_token_id"),
                generation.eos_token_ids.clone(),
            )
            .map_err(|e| bad(e.to_string()))?;
            Some(t)
        }
        None => None,
    };
    Ok((model, tok, Extras { generation, chat_template }))
}

/// Llama 3.1's rope scaling from llama.cpp's per-frequency divisors (`None` inside: no
/// scaling). The divisors fix the factor (the largest), and each blended frequency's position
/// fixes the context / (high - low) ratios; with low_freq_factor 1, the first high_freq_factor
/// (of 4, 2, 8, 16, 32) whose whole-number original context reproduces every divisor to 1e-4 is
/// taken. `None` when none does.
fn llama3_from_divisors(l: &LlamaShape, divisors: &[f32]) -> Option<Option<RopeScaling>> {
    let plain = frequencies(&LlamaShape { rope_scaling: None, ..l.clone() });
    let factor = divisors.iter().fold(1.0f64, |m, &d| m.max(d as f64));
    if factor < 1.0 + 1e-6 {
        return divisors.iter().all(|&d| (d - 1.0).abs() < 1e-6).then_some(None);
    }
    let tau = 2.0 * std::f64::consts::PI;
    let blended =
        plain.iter().zip(divisors).find(|(_, d)| (**d as f64) > 1.0 + 1e-4 && (**d as f64) < factor - 1e-4);
    // The longest wavelength kept whole: the original context / high_freq_factor lies above it.
    let kept = plain
        .iter()
        .zip(divisors)
        .filter(|(_, d)| (**d - 1.0).abs() < 1e-6)
        .map(|(f, _)| tau / f)
        .fold(0.0, f64::max);
    for high in [4.0, 2.0, 8.0, 16.0, 32.0] {
        let old = match blended {
            // smooth = (old / wavelen - 1) / (high - 1), and 1/d = (1 - smooth) / factor + smooth.
            Some((&f, &d)) => {
                let smooth = (1.0 / d as f64 - 1.0 / factor) / (1.0 - 1.0 / factor);
                (smooth * (high - 1.0) + 1.0) * tau / f
            }
            None => kept * high * (1.0 + 1e-3),
        };
        let scaling = RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: high,
            original_context: old.round().max(1.0) as usize,
        };
        let scaled = frequencies(&LlamaShape { rope_scaling: Some(scaling.clone()), ..l.clone() });
        let fits = plain
            .iter()
            .zip(&scaled)
            .zip(divisors)
            .all(|((p, s), &d)| ((p / s) / d as f64 - 1.0).abs() < 1e-4);
        if fits {
            return Some(Some(scaling));
        }
    }
    None
}

/// A tensor of any block type as f32 (quantized ones dequantized).
fn read_f32(file: &Gguf, info: &TensorInfo, out: &mut [f32]) -> Result<()> {
    match info.ty.quant() {
        None => {
            file.read_f32(info, out);
            Ok(())
        }
        Some(q) => {
            let cols = info.dims[0] as usize;
            let m = QMatrix::from_bytes(q, out.len() / cols, cols, file.data(info).to_vec())?;
            out.copy_from_slice(&m.dequantize());
            Ok(())
        }
    }
}

/// The tokenizer and the ids generation ends at (EOS, and the end of turn where named).
fn tokenizer(file: &Gguf, path: &Path) -> Result<(Tokenizer, Vec<u32>)> {
    let bad = |m: String| Error::format(path, m);
    let id = |key: &str| file.get(key).and_then(Value::as_u64).map(|x| x as u32);
    let tok = match file.get("tokenizer.ggml.model").and_then(Value::as_str) {
        Some("gpt2") => byte_level_tokenizer(file, path)?,
        Some("llama") => sentencepiece_tokenizer(file, path)?,
        other => {
            return Err(bad(format!(
                "tokenizer.ggml.model is {other:?}; minillm reads 'gpt2' and 'llama' tokenizers"
            )));
        }
    };
    // Without the key, llama.cpp adds a BOS for SentencePiece vocabularies and not for BPE ones.
    let add_bos = match file.get("tokenizer.ggml.add_bos_token") {
        Some(v) => *v == Value::Bool(true),
        None => tok.sentencepiece().is_some(),
    };
    let tok = match id("tokenizer.ggml.bos_token_id").filter(|_| add_bos) {
        Some(bos) if tok.is_special(bos) => tok.with_prefix(Some(bos))?,
        Some(bos) => return Err(bad(format!("the BOS token {bos} is not a special (control) token"))),
        None => tok,
    };
    let mut ends: Vec<u32> = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(end) = id(key) {
            if end as usize >= tok.vocab_size() {
                return Err(bad(format!("{key} {end} is outside the vocabulary of {}", tok.vocab_size())));
            }
            if !ends.contains(&end) {
                ends.push(end);
            }
        }
    }
    Ok((tok, ends))
}

/// A `llama` (SentencePiece) tokenizer: pieces, scores and token types. Its merges are the
/// splits of every piece into two others, the highest-scoring result first: llama.cpp's
/// SentencePiece joins the adjacent pair whose result scores highest, which is the BPE of
/// these merges.
fn sentencepiece_tokenizer(file: &Gguf, path: &Path) -> Result<Tokenizer> {
    let bad = |m: String| Error::format(path, m);
    let array = |key: &str| {
        file.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("metadata '{key}' is missing or not an array")))
    };
    let pieces: Vec<String> = array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("a token is not text".into())))
        .collect::<Result<_>>()?;
    let n = pieces.len();
    let scores: Vec<f64> =
        array("tokenizer.ggml.scores")?.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect();
    let types: Vec<i64> = array("tokenizer.ggml.token_type")?
        .iter()
        .map(|v| v.as_u64().map_or(NORMAL as i64, |x| x as i64))
        .collect();
    if scores.len() != n || types.len() != n {
        return Err(bad(format!("{n} tokens but {} scores and {} token types", scores.len(), types.len())));
    }
    let special = |id: usize| matches!(types[id] as i32, CONTROL | UNKNOWN | USER_DEFINED);
    let mut tokens: Vec<Vec<u8>> = pieces
        .iter()
        .enumerate()
        .map(|(id, p)| if special(id) { Vec::new() } else { SentencePiece::piece_bytes(p) })
        .collect();
    let mut byte_ids = [u32::MAX; 256];
    for (id, p) in pieces.iter().enumerate() {
        if types[id] as i32 == BYTE
            && let [b] = SentencePiece::piece_bytes(p).as_slice()
        {
            byte_ids[*b as usize] = id as u32;
        }
    }
    if let Some(b) = byte_ids.iter().position(|&id| id == u32::MAX) {
        return Err(bad(format!(
            "the byte-fallback token <0x{b:02X}> is missing; minillm reads SentencePiece vocabularies with byte fallback"
        )));
    }
    let ids: FxHashMap<&str, u32> = pieces
        .iter()
        .enumerate()
        .filter(|(id, _)| !special(*id) && types[*id] as i32 != BYTE)
        .map(|(id, p)| (p.as_str(), id as u32))
        .collect();
    let mut candidates: Vec<(f64, u32, u32, u32)> = Vec::new();
    for (id, p) in pieces.iter().enumerate() {
        if special(id) || types[id] as i32 == BYTE {
            continue;
        }
        for (at, _) in p.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&p[..at]), ids.get(&p[at..])) {
                candidates.push((scores[id], id as u32, l, r));
            }
        }
    }
    // Highest score first; among one piece's splits, the one with the better-scored left part.
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(scores[b.2 as usize].total_cmp(&scores[a.2 as usize]))
    });
    let merges: Vec<Merge> =
        candidates.iter().map(|&(_, id, left, right)| Merge { left, right, id }).collect();
    for t in tokens.iter_mut().enumerate().filter(|(id, _)| special(*id)).map(|x| x.1) {
        t.clear();
    }
    let bpe = Bpe::from_pieces(tokens, merges, byte_ids).map_err(&bad)?;
    let specials: Vec<(String, u32)> = pieces
        .iter()
        .enumerate()
        .filter(|(id, _)| special(*id))
        .map(|(id, p)| (p.clone(), id as u32))
        .collect();
    // llama.cpp puts the '▁' before the text and after every special token, whatever follows:
    // Llama 2's normalizer does the same.
    let prepend = match file.get("tokenizer.ggml.add_space_prefix") {
        Some(Value::Bool(false)) => Prepend::Never,
        _ => Prepend::EveryStretch,
    };
    Tokenizer::sentencepiece_from(bpe, SentencePiece::new(pieces, prepend), specials)
        .map_err(|e| bad(e.to_string()))
}
