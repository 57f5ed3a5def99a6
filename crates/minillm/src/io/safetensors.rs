//! Parameters as safetensors with HF's tensor names and shapes, as `save_pretrained` writes
//! them: GPT-2's (`transformer.h.0.attn.c_attn.weight`, Conv1D weights stored (in, out)), the
//! LLaMA family's (`model.layers.0.self_attn.q_proj.weight`, nn.Linear weights (out, in)).
//!
//! Loading checks every name, shape and dtype and names the first one that is wrong.

use crate::error::{Error, Result, shape};
use crate::fsutil::atomic_write_to;
use crate::model::params::{Layout, TensorInfo};
use crate::model::quantized::{Matrix, Quantized};
use crate::model::{Arch, Gpt, ModelConfig};
use crate::quant::{QMatrix, QuantType};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// GPT-2's checkpoints prefix the body's names with this; the layout leaves it out.
const PREFIX: &str = "transformer.";

/// The name `t` has in a checkpoint file.
fn file_name(config: &ModelConfig, name: &str) -> String {
    match config.arch {
        Arch::Gpt2 => format!("{PREFIX}{name}"),
        Arch::Llama(_) => name.to_string(),
    }
}

/// Serializes `params` (laid out for `config`) to safetensors bytes. The padding rows of the
/// embedding and head are left out; a GPT-2 without biases gets zero biases, which HF's GPT-2
/// expects.
pub fn to_bytes(config: &ModelConfig, params: &[f32]) -> Result<Vec<u8>> {
    let zeros = zero_biases(config);
    safetensors::serialize(views(config, params, &zeros)?, Some(metadata()))
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// Writes what [`to_bytes`] makes straight into the file at `path` (atomically), without
/// building it in memory first: a checkpoint costs no second copy of the weights.
pub fn save(path: &Path, config: &ModelConfig, params: &[f32]) -> Result<()> {
    let zeros = zero_biases(config);
    let views = views(config, params, &zeros)?;
    atomic_write_to(path, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata()), tmp).map_err(std::io::Error::other)
    })
}

fn metadata() -> HashMap<String, String> {
    HashMap::from([("format".to_string(), "pt".to_string())])
}

/// The zero biases a model without biases is saved with, one buffer as long as the longest.
fn zero_biases(config: &ModelConfig) -> Vec<u8> {
    if config.bias || config.arch != Arch::Gpt2 { Vec::new() } else { vec![0u8; 4 * 4 * config.n_embd] }
}

/// Every tensor as a view of `params`' own bytes (no copy; little-endian f32 is the file's
/// layout), with HF's names.
fn views<'a>(
    config: &ModelConfig,
    params: &'a [f32],
    zeros: &'a [u8],
) -> Result<Vec<(String, TensorView<'a>)>> {
    let layout = Layout::new(config);
    let view = |shape: Vec<usize>, data: &'a [u8]| {
        TensorView::new(Dtype::F32, shape, data).map_err(|e| Error::Invalid(e.to_string()))
    };
    let mut views = Vec::new();
    for t in &layout.tensors {
        let shape = t.saved_shape(config);
        let data = &params[t.range()][..stored_len(config, t)];
        views.push((file_name(config, &t.name), view(shape, le_bytes(data))?));
    }
    if !zeros.is_empty() {
        for t in &layout.tensors {
            if let Some(stem) = t.name.strip_suffix(".weight").filter(|s| *s != "wte" && *s != "wpe") {
                let len = if t.shape.len() == 2 { t.shape[1] } else { t.shape[0] };
                views.push((format!("{PREFIX}{stem}.bias"), view(vec![len], &zeros[..4 * len])?));
            }
        }
    }
    Ok(views)
}

#[cfg(not(target_endian = "little"))]
compile_error!("minillm writes its files from memory as they are: it needs a little-endian CPU");

/// The bytes of `data` as stored in memory, which on a little-endian machine is safetensors'
/// f32 layout.
fn le_bytes(data: &[f32]) -> &[u8] {
    // SAFETY: any f32's bytes are valid u8s; the slice covers exactly the floats' memory.
    unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data)) }
}

/// Reads parameters for `config` from safetensors bytes; `path` only names the file in errors.
pub fn from_bytes(bytes: &[u8], config: &ModelConfig, path: &Path) -> Result<Vec<f32>> {
    from_shards(&[(bytes, path)], config)
}

/// [`from_bytes`] for a checkpoint split over several files (HF's sharded safetensors): every
/// tensor widened to f32, in [`Layout::new`]'s layout (the optimizer's moments, a trainer's
/// resume).
pub fn from_shards(shards: &[(&[u8], &Path)], config: &ModelConfig) -> Result<Vec<f32>> {
    let (found, _) = tensors(shards, config)?;
    let layout = Layout::new(config);
    let mut params = vec![0.0f32; layout.total];
    for t in &layout.tensors {
        read_f32(&mut params[t.offset..t.offset + stored_len(config, t)], &found[&t.name], &|_| {});
    }
    Ok(params)
}

/// A model from safetensors shards, its weights kept in the type they are stored in: the f32
/// tensors go into the flat buffer; 16-bit matrices (f16, and bf16 ones within f16's range) stay
/// 16-bit, as f16 blocks of one row per output (HF's Conv1D stores GPT-2's (in, out), so they
/// are transposed once here; a LLaMA block's q, k and v, and its gate and up, are joined into
/// one matrix each, as the flat buffer joins them). Norms, biases, the position embedding and an
/// untied model's token embedding are widened to f32. `release` is handed each stretch of file
/// bytes once it has been read, for a mapped file to give its pages back.
pub fn load(shards: &[(&[u8], &Path)], config: ModelConfig, release: &dyn Fn(&[u8])) -> Result<Gpt> {
    let (found, _) = tensors(shards, &config)?;
    let full = Layout::new(&config);
    let mut quantized = Quantized { blocks: vec![Default::default(); config.n_layer], ..Default::default() };
    let sixteen = |view: &TensorView| matches!(view.dtype(), Dtype::F16 | Dtype::BF16) && fits_f16(view);
    let whole_blocks = |cols: usize| cols.is_multiple_of(crate::quant::BLOCK);
    let transposed = config.arch == Arch::Gpt2;
    for layer in 0..config.n_layer {
        for m in Matrix::ALL {
            // The matrix's tensors in the file, in the order their rows are joined.
            let parts: Vec<&TensorInfo> =
                full.tensors.iter().filter(|t| Matrix::of(&t.name) == Some((layer, m))).collect();
            let (inputs, outputs) = m.shape(&config);
            if !whole_blocks(inputs) || !parts.iter().all(|t| sixteen(&found[&t.name])) {
                continue;
            }
            let mut halves = Vec::with_capacity(2 * inputs * outputs);
            for t in parts {
                let rows = if transposed { outputs } else { t.shape[0] };
                halves.extend(f16_rows(&found[&t.name], rows, inputs, transposed, release));
            }
            quantized.blocks[layer][m as usize] =
                Some(QMatrix::from_bytes(QuantType::F16, outputs, inputs, halves)?.into());
        }
    }
    let head = &found[config.head_name()];
    if sixteen(head) && whole_blocks(config.n_embd) {
        let halves = f16_rows(head, config.vocab_size, config.n_embd, false, release);
        quantized.lm_head =
            Some(QMatrix::from_bytes(QuantType::F16, config.vocab_size, config.n_embd, halves)?);
    }
    let layout = Layout::without(&config, |name| quantized.holds(&config, name));
    let mut params = vec![0.0f32; layout.total];
    for t in &layout.tensors {
        read_f32(&mut params[t.offset..t.offset + stored_len(&config, t)], &found[&t.name], release);
    }
    Gpt::from_parts(config, params, quantized)
}

/// Elements of `t` in the file: the embedding has no padding rows there.
fn stored_len(config: &ModelConfig, t: &TensorInfo) -> usize {
    t.saved_shape(config).iter().product()
}

/// Whether every value of a 16-bit tensor is one f16 holds: always for f16; for bf16, when none
/// exceeds f16's largest (65504). bf16 has fewer mantissa bits than f16, so such values convert
/// exactly, but for those under f16's smallest normal (6.1e-5), which move by at most 3e-8.
fn fits_f16(view: &TensorView) -> bool {
    view.dtype() == Dtype::F16
        || view
            .data()
            .chunks_exact(2)
            .all(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32().abs() <= 65504.0)
}

/// The f16 bytes of a (rows x cols) matrix, one row per output: `transposed` when the file
/// holds it (cols x rows), as HF's Conv1D does.
fn f16_rows(
    view: &TensorView,
    rows: usize,
    cols: usize,
    transposed: bool,
    release: &dyn Fn(&[u8]),
) -> Vec<u8> {
    let data = view.data();
    let half = |i: usize| -> [u8; 2] {
        let b = [data[2 * i], data[2 * i + 1]];
        match view.dtype() {
            Dtype::BF16 => half::f16::from_f32(half::bf16::from_le_bytes(b).to_f32()).to_le_bytes(),
            _ => b,
        }
    };
    let mut out = vec![0u8; 2 * rows * cols];
    for (i, o) in out.chunks_exact_mut(2).enumerate() {
        let (r, c) = (i / cols, i % cols);
        o.copy_from_slice(&half(if transposed { c * rows + r } else { i }));
    }
    release(data);
    out
}

/// Reads a tensor of any float type into `dst` as f32, a stretch at a time, releasing each
/// stretch of the file once read.
fn read_f32(dst: &mut [f32], view: &TensorView, release: &dyn Fn(&[u8])) {
    const STRETCH: usize = 1 << 20;
    let width = view.dtype().bitsize() / 8;
    for (d, bytes) in dst.chunks_mut(STRETCH).zip(view.data().chunks(STRETCH * width)) {
        match view.dtype() {
            Dtype::F32 => {
                for (d, c) in d.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                }
            }
            Dtype::F16 => {
                for (d, c) in d.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            _ => {
                for (d, c) in d.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
        }
        release(bytes);
    }
}

/// Every tensor of the shards by its layout name, each checked against `config` (name, shape,
/// float type), and the first shard's path.
fn tensors<'a>(
    shards: &[(&'a [u8], &'a Path)],
    config: &ModelConfig,
) -> Result<(HashMap<String, TensorView<'a>>, &'a Path)> {
    let mut files = Vec::with_capacity(shards.len());
    for &(bytes, path) in shards {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        files.push((file, path));
    }
    let path = shards.first().map_or(Path::new("model.safetensors"), |s| s.1);
    let layout = Layout::new(config);
    let gpt2 = config.arch == Arch::Gpt2;
    let kind = match &config.arch {
        Arch::Gpt2 => "gpt2",
        Arch::Llama(l) => l.family.model_type(),
    };
    let mut found: HashMap<String, TensorView> = HashMap::new();
    for (name, view) in files.iter().flat_map(|(f, _)| f.tensors()) {
        let short = if gpt2 { name.strip_prefix(PREFIX).unwrap_or(&name) } else { &name }.to_string();
        // The causal-mask buffers of old GPT-2 checkpoints, the rotary frequencies of old Llama
        // ones (recomputed from the config), and a tied head's copy of the embedding.
        let is_buffer = (short.starts_with("h.")
            && (short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias")))
            || short.ends_with(".rotary_emb.inv_freq");
        if is_buffer || (short == "lm_head.weight" && layout.lm_head.is_none()) {
            continue;
        }
        let zero_bias_of_biasless_model = gpt2 && !config.bias && short.ends_with(".bias");
        if layout.get(&short).is_none() && !zero_bias_of_biasless_model {
            return Err(Error::format(
                path,
                format!("unexpected tensor '{name}': not part of a {kind} model shaped like config.json"),
            ));
        }
        found.insert(short, view);
    }
    for t in &layout.tensors {
        let name = file_name(config, &t.name);
        let view =
            found.get(&t.name).ok_or_else(|| Error::format(path, format!("tensor '{name}' is missing")))?;
        let want = t.saved_shape(config);
        if view.shape() != want.as_slice() {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{name}' has shape {}, the configuration needs {}",
                    shape(view.shape()),
                    shape(&want)
                ),
            ));
        }
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::format(
                path,
                format!("tensor '{name}' is {}; minillm reads F32, F16 and BF16 checkpoints", view.dtype()),
            ));
        }
    }
    Ok((found, path))
}
