//! A GPT-2 model and its tokenizer as llama.cpp's `gpt2` architecture in GGUF, the way
//! llama.cpp's `convert_hf_to_gguf.py` writes one: its tensor names (`blk.N.attn_qkv.weight` ...),
//! matrices stored (out, in) (HF's Conv1D (in, out), transposed), no `output.weight` (llama.cpp
//! ties it to `token_embd`), and the BPE tokenizer as token and merge lists.
//!
//! f16 files keep 1-D tensors (LayerNorms, biases) in f32, as llama.cpp's converter does.

use super::generation_config::GenerationConfig;
use super::gguf::{Gguf, TensorOut, TensorType, Value};
use super::gguf_tokenizer::{self, byte_level_tokenizer};
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::kernels::vec::transpose;
use crate::model::layers::layernorm::EPS;
use crate::model::params::Layout;
use crate::model::quantized::{Matrix, Quantized};
use crate::model::{Arch, Gpt, ModelConfig};
use crate::quant::{QMatrix, Recipe};
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

const ARCH: &str = "gpt2";

/// llama.cpp's name for a tensor of ours (HF name without `transformer.`), and whether HF stores
/// it transposed relative to GGUF.
fn gguf_name(name: &str) -> (String, bool) {
    match name {
        "wte.weight" => return ("token_embd.weight".into(), false),
        "wpe.weight" => return ("position_embd.weight".into(), false),
        "ln_f.weight" => return ("output_norm.weight".into(), false),
        "ln_f.bias" => return ("output_norm.bias".into(), false),
        _ => {}
    }
    let rest = name.strip_prefix("h.").expect("block tensors start with h.");
    let (block, part) = rest.split_once('.').expect("h.N.part");
    let (module, kind) = part.rsplit_once('.').expect("module.weight or module.bias");
    let target = match module {
        "ln_1" => "attn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "ln_2" => "ffn_norm",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        other => unreachable!("GPT-2 has no module {other}"),
    };
    (format!("blk.{block}.{target}.{kind}"), kind == "weight" && !module.starts_with("ln_"))
}

/// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`) for a file made by `recipe`.
pub(super) fn file_type(recipe: Option<&Recipe>) -> u32 {
    recipe.map_or(0, |r| r.file_type.ggml_file_type())
}

/// Encodes `model` and `tok` as a GGUF file with matrices in `ty`, each tensor's type chosen by
/// llama.cpp's rules for that file type (see [`crate::quant::recipe`]): the LM head (the token embedding) gets
/// more bits. The position embedding, LayerNorms and biases stay f32, as llama.cpp keeps them.
pub fn to_bytes(model: &Gpt, tok: &Tokenizer, ty: TensorType, name: &str) -> Result<Vec<u8>> {
    to_bytes_with(model, tok, super::gguf::recipe(ty, None).as_ref(), name)
}

/// [`to_bytes`] with the types chosen by `recipe` (`None`: f32 throughout).
pub fn to_bytes_with(model: &Gpt, tok: &Tokenizer, recipe: Option<&Recipe>, name: &str) -> Result<Vec<u8>> {
    model.config.require_gpt2("gguf_gpt2 (LLaMA-family models are written by gguf_llama)")?;
    if tok.sentencepiece().is_some() {
        return Err(Error::Invalid(
            "GGUF export writes byte-level BPE tokenizers; SentencePiece-style ones come with the LLaMA family's GGUF files".into(),
        ));
    }
    let quantized = match recipe {
        Some(r) => Some(model.quantized_with(r)?),
        None => None,
    };
    let c = &model.config;
    if tok.vocab_size() != c.vocab_size {
        return Err(Error::Invalid(format!(
            "the tokenizer has {} ids but the model {}; they do not belong together",
            tok.vocab_size(),
            c.vocab_size
        )));
    }
    let u32v = |x: usize| Value::U32(x as u32);
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(ARCH.into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type(recipe))),
        ("gpt2.context_length".into(), u32v(c.block_size)),
        ("gpt2.embedding_length".into(), u32v(c.n_embd)),
        ("gpt2.feed_forward_length".into(), u32v(4 * c.n_embd)),
        ("gpt2.block_count".into(), u32v(c.n_layer)),
        ("gpt2.attention.head_count".into(), u32v(c.n_head)),
        ("gpt2.attention.layer_norm_epsilon".into(), Value::F32(EPS)),
    ];
    // A model fine-tuned here carries minillm's template.
    let template = ChatTemplate::of(tok).map(|_| crate::chat::JINJA);
    metadata.extend(gguf_tokenizer::metadata(tok, &GenerationConfig::default(), template)?);

    let layout = Layout::new(c);
    let mut tensors = Vec::new();
    let mut add = |name: &str, shape: &[usize], data: &[f32]| {
        let (gname, transposed) = gguf_name(name);
        // GPT-2's matrices are one tensor each in llama.cpp, so one part.
        let blocks = quantized.as_ref().and_then(|q| match Matrix::of(name) {
            Some((layer, m)) => q.blocks[layer][m as usize].as_ref().map(|s| &s.parts()[0]),
            None if name == "wte.weight" => q.lm_head.as_ref(),
            None => None,
        });
        if let Some(m) = blocks {
            let dims = vec![m.cols as u64, m.rows as u64];
            tensors.push(TensorOut { name: gname, dims, ty: m.ty.into(), data: m.bytes().to_vec() });
            return;
        }
        // Everything else that is 2-D (the position embedding) stays f32 in quantized files.
        let ty = super::gguf::float_type(recipe, shape.len());
        let (dims, values) = match *shape {
            [n] => (vec![n as u64], data.to_vec()),
            [rows, cols] if transposed => (vec![rows as u64, cols as u64], transpose(data, rows, cols)),
            [rows, cols] => (vec![cols as u64, rows as u64], data.to_vec()),
            _ => unreachable!("GPT-2 tensors are 1-D or 2-D"),
        };
        tensors.push(TensorOut { name: gname, dims, ty, data: encode(&values, ty) });
    };
    for t in &layout.tensors {
        let shape = t.saved_shape(c);
        if quantized.as_ref().is_some_and(|q| q.holds(c, &t.name)) {
            add(&t.name, &shape, &[]); // written from its blocks
        } else {
            add(&t.name, &shape, &model.tensor_f32(&t.name).expect("a tensor of the model"));
        }
    }
    if !c.bias {
        // llama.cpp's gpt2 requires biases; zeros are the same model.
        for t in &layout.tensors {
            if let Some(stem) = t.name.strip_suffix(".weight").filter(|s| *s != "wte" && *s != "wpe") {
                let len = if t.shape.len() == 2 { t.shape[1] } else { t.shape[0] };
                add(&format!("{stem}.bias"), &[len], &vec![0.0; len]);
            }
        }
    }
    Ok(super::gguf::to_bytes(&metadata, &tensors))
}

pub(super) fn encode(values: &[f32], ty: TensorType) -> Vec<u8> {
    match ty {
        TensorType::F16 => values.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Reads a `gpt2`-architecture GGUF file into a model and its tokenizer; `path` names the file
/// in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Gpt, Tokenizer)> {
    from_shared(Arc::new(bytes.to_vec()), path)
}

/// [`from_bytes`] for a file the model may keep a share of (a mapped file): its quantized and
/// 16-bit matrices stay where they lie in it, with no copy; the small f32 tensors are read out.
pub fn from_shared(owner: Arc<dyn crate::quant::SharedBytes>, path: &Path) -> Result<(Gpt, Tokenizer)> {
    let file = Gguf::parse((*owner).as_ref(), path)?;
    let arch = file.get("general.architecture").and_then(Value::as_str);
    if arch != Some(ARCH) {
        return Err(Error::format(
            path,
            format!(
                "architecture is {}; minillm reads GGUF files of the gpt2, llama and qwen2 architectures",
                arch.map_or("missing".to_string(), |a| format!("'{a}'"))
            ),
        ));
    }
    let tok = byte_level_tokenizer(&file, path)?;
    let size = |key: &str| -> Result<usize> {
        file.get(key)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| Error::format(path, format!("metadata '{key}' is missing or not a whole number")))
    };
    let config = ModelConfig {
        n_layer: size("gpt2.block_count")?,
        n_head: size("gpt2.attention.head_count")?,
        n_embd: size("gpt2.embedding_length")?,
        block_size: size("gpt2.context_length")?,
        vocab_size: tok.vocab_size(),
        dropout: 0.0,
        bias: true,
        arch: Arch::Gpt2,
    };
    config.validate().map_err(|e| Error::format(path, e.to_string()))?;
    if size("gpt2.feed_forward_length")? != 4 * config.n_embd {
        return Err(Error::format(path, "gpt2.feed_forward_length is not 4 * embedding_length"));
    }
    if let Some(eps) = file.get("gpt2.attention.layer_norm_epsilon").and_then(Value::as_f64)
        && (eps - f64::from(EPS)).abs() > 1e-9
    {
        return Err(Error::format(
            path,
            format!("layer_norm_epsilon is {eps}; minillm's LayerNorm uses {EPS}"),
        ));
    }
    // Matrices stored in blocks stay blocks (no f32 copy); the other tensors are read as f32.
    let full = Layout::new(&config);
    let mut quantized = Quantized { blocks: vec![Default::default(); config.n_layer], ..Default::default() };
    let mut found = Vec::with_capacity(full.tensors.len());
    for t in &full.tensors {
        let (gname, transposed) = gguf_name(&t.name);
        let info =
            file.tensor(&gname).ok_or_else(|| Error::format(path, format!("tensor '{gname}' is missing")))?;
        let shape = t.saved_shape(&config);
        let want: Vec<u64> = match *shape.as_slice() {
            [n] => vec![n as u64],
            [rows, cols] if transposed => vec![rows as u64, cols as u64],
            [rows, cols] => vec![cols as u64, rows as u64],
            _ => unreachable!("GPT-2 tensors are 1-D or 2-D"),
        };
        if info.dims != want {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{gname}' has dims {}, the metadata needs {}",
                    crate::error::shape(&info.dims),
                    crate::error::shape(&want)
                ),
            ));
        }
        let matrix = Matrix::of(&t.name).map(Some).or((t.name == "wte.weight").then_some(None));
        if let (Some(q), Some(which)) = (info.ty.quant(), matrix) {
            let (rows, cols) = (info.dims[1] as usize, info.dims[0] as usize);
            let m = QMatrix::from_shared(q, (rows, cols), owner.clone(), info.range())
                .map_err(|e| Error::format(path, format!("tensor '{gname}': {e}")))?;
            match which {
                Some((layer, w)) => quantized.blocks[layer][w as usize] = Some(m.into()),
                None => quantized.lm_head = Some(m),
            }
            continue;
        }
        found.push((t.name.clone(), info, shape, transposed));
    }
    let layout = Layout::without(&config, |name| quantized.holds(&config, name));
    let mut params = vec![0.0f32; layout.total];
    for (name, info, shape, transposed) in found {
        let offset = layout.get(&name).expect("a tensor left in f32").offset;
        let n: usize = shape.iter().product();
        let dst = &mut params[offset..offset + n];
        if transposed {
            let mut stored = vec![0.0f32; n];
            file.read_f32(info, &mut stored);
            dst.copy_from_slice(&transpose(&stored, shape[1], shape[0]));
        } else {
            file.read_f32(info, dst);
        }
    }
    Ok((Gpt::from_parts(config, params, quantized)?, tok))
}
