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

use super::generation_config::GenerationConfig;
use super::gguf::{Gguf, TensorInfo, TensorOut, TensorType, Value};
use super::gguf_gpt2::{encode, file_type};
use super::gguf_tokenizer;
use crate::chat::jinja::JinjaTemplate;
use crate::error::{Error, Result};
use crate::model::config::{Family, LlamaShape, RopeScaling};
use crate::model::layers::rope::frequencies;
use crate::model::params::Layout;
use crate::model::quantized::{Matrix, Quantized, Stacked};
use crate::model::{Arch, Gpt, ModelConfig};
use crate::quant::{QMatrix, Recipe};
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

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

/// Whether a tensor's rows are reordered for llama.cpp: q and k of the `llama` architecture.
fn permuted(l: &LlamaShape, name: &str) -> bool {
    l.family != Family::Qwen2 && (name.contains("self_attn.q_proj.") || name.contains("self_attn.k_proj."))
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

/// Where tensor `name` lies in its fused block matrix: (layer, matrix, first row, rows).
fn part_of(c: &ModelConfig, l: &LlamaShape, name: &str) -> Option<(usize, Matrix, usize, usize)> {
    let (layer, m) = Matrix::of(name)?;
    let stem = name.rsplit_once('.').map_or("", |s| s.0);
    let (_, first, rows) = parts(c, l, m).into_iter().find(|p| stem.ends_with(p.0))?;
    Some((layer, m, first, rows))
}

/// Encodes a LLaMA-family `model` and `tok` as GGUF with each matrix's type chosen by `recipe`
/// (`None`: f32); `chat_template` is the model's.
pub fn to_bytes(
    model: &Gpt,
    tok: &Tokenizer,
    generation: &GenerationConfig,
    chat_template: Option<&str>,
    recipe: Option<&Recipe>,
    name: &str,
) -> Result<Vec<u8>> {
    let c = &model.config;
    let Arch::Llama(l) = &c.arch else {
        return Err(Error::Invalid("gguf_llama writes LLaMA-family models".into()));
    };
    let arch = arch_name(l);
    let quantized = match recipe {
        Some(r) => Some(model.quantized_with(r)?),
        None => None,
    };
    let u32v = |x: usize| Value::U32(x as u32);
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type(recipe))),
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
    metadata.extend(gguf_tokenizer::metadata(tok, generation, chat_template)?);

    let mut tensors = Vec::new();
    let mut push = |hf: &str, dims: Vec<u64>, ty: TensorType, data: Vec<u8>| {
        let name = gguf_name(hf).expect("every LLaMA-family tensor has a llama.cpp name");
        tensors.push(TensorOut { name, dims, ty, data });
    };
    let layout = Layout::new(c);
    // Matrices in f32/f16 files, and everything that stays f32 in quantized ones.
    for t in &layout.tensors {
        let shape = t.saved_shape(c);
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let part = part_of(c, l, &t.name);
        if let Some(q) = &quantized
            && let Some((layer, m, first, rows)) = part
            && let Some(stacked) = &q.blocks[layer][m as usize]
        {
            let (blocks, start) = stacked.part_with(first, rows).expect("parts follow llama.cpp's tensors");
            let rb = blocks.ty.row_bytes(blocks.cols);
            let mut data = blocks.bytes()[(first - start) * rb..(first - start + rows) * rb].to_vec();
            if permuted(l, &t.name) {
                data = permute_rows(&data, rows, l.head_dim, true);
            }
            push(&t.name, dims, blocks.ty.into(), data);
            continue;
        }
        let table = quantized.as_ref().and_then(|q| match t.name.as_str() {
            n if n == c.head_name() => q.lm_head.as_ref(),
            n if n == c.embedding_name() => q.embedding.as_ref(),
            _ => None,
        });
        if let Some(m) = table {
            push(&t.name, dims, m.ty.into(), m.bytes().to_vec());
            continue;
        }
        let mut values = match part {
            // A part of a fused matrix (q of q|k|v, gate of gate|up): its rows.
            Some((layer, m, first, rows)) => {
                let cols = shape[1];
                model.matrix_f32(layer, m)[first * cols..(first + rows) * cols].to_vec()
            }
            None => model.tensor_f32(&t.name).expect("a tensor of the model").into_owned(),
        };
        if permuted(l, &t.name) {
            values = permute_rows(&values, shape[0], l.head_dim, true);
        }
        // A matrix a quantized file does not hold in blocks (its rows are not whole blocks of
        // any type) is f16 there, as llama-quantize leaves it.
        let tty = match &quantized {
            Some(_) if shape.len() == 2 => TensorType::F16,
            _ => super::gguf::float_type(recipe, shape.len()),
        };
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
    owner: Arc<dyn crate::quant::SharedBytes>,
    path: &Path,
) -> Result<(Gpt, Tokenizer, Extras)> {
    let file = Gguf::parse((*owner).as_ref(), path)?;
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
    let (tok, generation_ends) = gguf_tokenizer::read(&file, path)?;
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
    // Settings that make a different model than minillm runs are refused by name, as in config.json.
    if let Ok(n) = size("expert_count")
        && n > 0
    {
        return Err(bad(format!("{arch}.expert_count is {n}: mixtures of experts are not supported")));
    }
    let context = size("context_length")?;
    if let Ok(window) = size("attention.sliding_window")
        && window < context
    {
        return Err(bad(format!(
            "{arch}.attention.sliding_window {window} is shorter than the context of {context}; minillm attends over the whole context"
        )));
    }
    let rope_scaling = match file.get(&format!("{arch}.rope.scaling.type")).and_then(Value::as_str) {
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
                "rope_freqs has dims {}; {} f32 divisors were expected",
                crate::error::shape(&info.dims),
                head_dim / 2
            )));
        }
        let mut divisors = vec![0.0f32; head_dim / 2];
        file.read_f32(info, &mut divisors);
        shape.rope_scaling = llama3_from_divisors(&shape, &divisors).ok_or_else(|| {
            bad("rope_freqs holds divisors that are not Llama 3.1's rope scaling; minillm cannot run them".into())
        })?;
    }
    let config = ModelConfig {
        n_layer: size("block_count")?,
        n_head,
        n_embd,
        block_size: context,
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
                "tensor '{}' has dims {}, the metadata needs {}",
                info.name,
                crate::error::shape(&info.dims),
                crate::error::shape(&want)
            )));
        }
        Ok(())
    };
    let shape_of = |name: &str| full.get(name).expect("a layout tensor").saved_shape(&config);

    // Block matrices whose parts are all in blocks become one fused matrix of stacked parts
    // (one part when they share a type).
    let mut quantized = Quantized { blocks: vec![Default::default(); config.n_layer], ..Default::default() };
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
            if infos.iter().any(|i| i.ty.quant().is_none()) {
                continue; // f32 parts: the whole matrix is read as f32 below
            }
            let mut parts = Vec::with_capacity(infos.len());
            for (n, info) in names.iter().zip(&infos) {
                let q = info.ty.quant().expect("checked above");
                let (rows, cols) = (info.dims[1] as usize, info.dims[0] as usize);
                let part = if permuted(l, n) {
                    QMatrix::from_bytes(q, rows, cols, permute_rows(file.data(info), rows, l.head_dim, false))
                } else {
                    QMatrix::from_shared(q, (rows, cols), owner.clone(), info.range())
                };
                parts.push(part.map_err(|e| bad(format!("{n}: {e}")))?);
            }
            quantized.blocks[layer][m as usize] =
                Some(Stacked::new(parts).map_err(|e| bad(format!("{}: {e}", names[0])))?);
        }
    }
    // The output layer, and an untied model's token embedding (rows read per token), stay in
    // blocks when the file has them so.
    let table = |name: &str| -> Result<Option<QMatrix>> {
        let info = tensor(name)?;
        check_dims(info, &shape_of(name))?;
        info.ty
            .quant()
            .map(|q| QMatrix::from_shared(q, (config.vocab_size, config.n_embd), owner.clone(), info.range()))
            .transpose()
            .map_err(|e| bad(format!("{name}: {e}")))
    };
    let (head, embedding) = (config.head_name(), config.embedding_name());
    quantized.lm_head = table(head)?;
    if embedding != head {
        quantized.embedding = table(embedding)?;
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
        if permuted(l, &t.name) {
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
