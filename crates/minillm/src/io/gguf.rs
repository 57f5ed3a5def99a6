//! GGUF, llama.cpp's single-file model format, read and written by hand (it is short).
//!
//! ```text
//! "GGUF"  version:u32 (3)  n_tensors:u64  n_metadata:u64
//! n_metadata x (key:string  type:u32  value)          strings are u64 length + UTF-8
//! n_tensors  x (name:string  n_dims:u32  dims:u64 x n_dims  type:u32  offset:u64)
//! padding to `general.alignment` (32 by default)
//! tensor data, each tensor at its offset from here (a multiple of the alignment)
//! ```
//!
//! Dimensions are listed fastest-varying first (ggml's `ne`): PyTorch shape (out, in) is
//! written `[in, out]`. Everything is little-endian.

use crate::error::{Error, Result, shape};
use crate::quant::{FileType, QMatrix, QuantType, Recipe};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: usize = 32;

/// A metadata value. Arrays hold one type; [`Value::Array`] keeps the element type so that an
/// empty array still writes correctly.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    fn from_u32(t: u32) -> Option<ValueType> {
        use ValueType::*;
        [U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64].get(t as usize).copied()
    }
}

impl Value {
    pub fn kind(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as an unsigned integer, whichever integer type the writer chose.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x.into()),
            Value::F64(x) => Some(x),
            _ => self.as_u64().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    pub fn strings(items: impl IntoIterator<Item = String>) -> Value {
        Value::Array(ValueType::String, items.into_iter().map(Value::String).collect())
    }
}

/// ggml's tensor element types that minillm reads and writes: f32, or one of the block formats
/// (f16 included), so a new block format needs no change here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    Blocks(QuantType),
    /// f16 whose rows are not whole blocks of 32, as llama-quantize leaves a matrix no block
    /// type divides: f16 itself has no blocks, but minillm's f16 kernels work 32 values at a
    /// time, so such a tensor is read widened to f32 (only read: files are written in blocks).
    F16Rows,
}

impl TensorType {
    pub const F16: TensorType = TensorType::Blocks(QuantType::F16);
    pub const Q8_0: TensorType = TensorType::Blocks(QuantType::Q8_0);
    pub const Q4_0: TensorType = TensorType::Blocks(QuantType::Q4_0);

    pub fn code(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16Rows => QuantType::F16.ggml_type(),
            TensorType::Blocks(q) => q.ggml_type(),
        }
    }

    fn from_code(code: u32) -> Option<TensorType> {
        match code {
            0 => Some(TensorType::F32),
            _ => QuantType::from_ggml_type(code).map(TensorType::from),
        }
    }

    /// The block format, for every type but f32 (and f16 in rows that are not whole blocks).
    pub fn quant(self) -> Option<QuantType> {
        match self {
            TensorType::F32 | TensorType::F16Rows => None,
            TensorType::Blocks(q) => Some(q),
        }
    }

    /// Bytes of a tensor of `dims`; `None` when the first (fastest) dimension does not split
    /// into whole blocks, or on overflow.
    fn byte_len(self, dims: &[u64]) -> Option<u64> {
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        match self {
            TensorType::F16Rows => elements.checked_mul(2),
            TensorType::F32 => elements.checked_mul(4),
            TensorType::Blocks(q) => {
                let block = q.block_weights() as u64;
                let whole_blocks = dims.first().is_some_and(|d| d % block == 0);
                whole_blocks.then(|| elements / block * q.block_bytes() as u64)
            }
        }
    }
}

/// The recipe a file of `ty` is made by: llama.cpp's rules for that file type, with the output
/// layer in `head` if given (`llama-quantize --output-tensor-type`); `None` for f32.
pub fn recipe(ty: TensorType, head: Option<QuantType>) -> Option<Recipe> {
    ty.quant().map(|q| Recipe { file_type: FileType::Plain(q), head, pure: false })
}

/// The type of a tensor a file made by `recipe` does not hold in blocks: an f16 file's matrices
/// (`dims` 2) are f16; norms, biases, the position table and every tensor of an f32 file are f32.
pub(super) fn float_type(recipe: Option<&Recipe>, dims: usize) -> TensorType {
    let sixteen = recipe.is_some_and(|r| r.file_type == FileType::Plain(QuantType::F16));
    if sixteen && dims == 2 { TensorType::F16 } else { TensorType::F32 }
}

/// ggml's name for a tensor type code, for errors about types minillm does not read.
fn ggml_type_name(code: u32) -> &'static str {
    const NAMES: [&str; 31] = [
        "f32", "f16", "q4_0", "q4_1", "type 4", "type 5", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K",
        "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s",
        "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16",
    ];
    NAMES.get(code as usize).copied().unwrap_or("an unknown type")
}

impl From<QuantType> for TensorType {
    fn from(q: QuantType) -> TensorType {
        TensorType::Blocks(q)
    }
}

/// A tensor to write: its name, ggml dims (fastest first) and its data already encoded.
pub struct TensorOut {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

/// Encodes a whole GGUF file.
pub fn to_bytes(metadata: &[(String, Value)], tensors: &[TensorOut]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut out, key);
        out.extend_from_slice(&(value.kind() as u32).to_le_bytes());
        put_value(&mut out, value);
    }
    // llama.cpp writes 32; a file may say otherwise (`general.alignment`), and is then laid out so.
    let alignment =
        match metadata.iter().find(|(k, _)| k == "general.alignment").and_then(|(_, v)| v.as_u64()) {
            Some(a) if a > 0 && a.is_power_of_two() => a as usize,
            _ => DEFAULT_ALIGNMENT,
        };
    let mut offset = 0usize;
    for t in tensors {
        put_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.code().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = align(offset + t.data.len(), alignment);
    }
    out.resize(align(out.len(), alignment), 0);
    for t in tensors {
        out.extend_from_slice(&t.data);
        out.resize(align(out.len(), alignment), 0);
    }
    out
}

fn align(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// One tensor's entry in a file that was read.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Where its bytes are in the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    /// Where its bytes are in the file.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// A parsed GGUF file, borrowing the file's bytes.
pub struct Gguf<'a> {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses `bytes`; `path` only names the file in errors. Every length and offset is checked
    /// against the file's size before it is used.
    pub fn parse(bytes: &'a [u8], path: &Path) -> Result<Gguf<'a>> {
        let mut r = Reader { bytes, pos: 0, path };
        if r.take(4)? != MAGIC {
            return Err(Error::format(path, "not a GGUF file (it does not start with 'GGUF')"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::format(
                path,
                format!("GGUF version {version}; minillm reads versions 2 and 3"),
            ));
        }
        let n_tensors = r.count(8)?;
        let n_metadata = r.count(8)?;
        let mut metadata = Vec::with_capacity(n_metadata);
        for _ in 0..n_metadata {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0).map_err(|e| r.context(e, &key))?;
            metadata.push((key, value));
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > 4 {
                return Err(Error::format(
                    path,
                    format!("tensor '{name}' has {n_dims} dimensions (at most 4)"),
                ));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<u64>>>()?;
            let code = r.u32()?;
            let ty = TensorType::from_code(code).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "tensor '{name}' is {} (ggml type {code}), which minillm does not read yet; it reads f32, {}",
                        ggml_type_name(code),
                        QuantType::ALL.map(QuantType::name).join(", ")
                    ),
                )
            })?;
            let offset = r.u64()?;
            infos.push((name, dims, ty, offset));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => return Err(Error::format(path, "general.alignment is not a power of two")),
            },
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = align(r.pos, alignment);
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, mut ty, offset) in infos {
            if ty == TensorType::F16
                && dims.first().is_some_and(|d| d % QuantType::F16.block_weights() as u64 != 0)
            {
                ty = TensorType::F16Rows;
            }
            if let Some(q) = ty.quant() {
                let block = q.block_weights() as u64;
                if dims.first().is_none_or(|d| d % block != 0) {
                    return Err(Error::format(
                        path,
                        format!(
                            "tensor '{name}' {} is {}, whose rows must be whole blocks of {block}",
                            shape(&dims),
                            q.name()
                        ),
                    ));
                }
            }
            let len = ty.byte_len(&dims);
            let start = (data_start as u64).checked_add(offset);
            let end = start.zip(len).and_then(|(s, l)| s.checked_add(l));
            match (start, len, end) {
                (Some(start), Some(len), Some(end)) if end <= bytes.len() as u64 => {
                    tensors.push(TensorInfo { name, dims, ty, start: start as usize, len: len as usize })
                }
                _ => {
                    return Err(Error::format(
                        path,
                        format!(
                            "tensor '{name}' {} lies past the end of the file (truncated?)",
                            shape(&dims)
                        ),
                    ));
                }
            }
        }
        Ok(Gguf { metadata, tensors, bytes })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's bytes as stored.
    pub fn data(&self, t: &TensorInfo) -> &'a [u8] {
        &self.bytes[t.range()]
    }

    /// A tensor's elements as f32 (F16 converted, blocks dequantized).
    pub fn read_f32(&self, t: &TensorInfo, out: &mut [f32]) {
        let data = self.data(t);
        match t.ty {
            TensorType::F16Rows => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            TensorType::F32 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                    *o = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                }
            }
            TensorType::Blocks(q) => {
                let cols = t.dims[0] as usize;
                let matrix = QMatrix::from_bytes(q, data.len() / q.row_bytes(cols), cols, data.to_vec())
                    .expect("parse checked the tensor's size");
                out.copy_from_slice(&matrix.dequantize());
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            Error::format(
                self.path,
                format!("ends early, at byte {} of its header (truncated?)", self.bytes.len()),
            )
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A count of items each at least `min_size` bytes, refused when the file cannot hold them
    /// (so a corrupt count cannot make us allocate terabytes).
    fn count(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > left {
            return Err(Error::format(
                self.path,
                format!("claims {n} entries, more than the file can hold (truncated or damaged?)"),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.count(1)?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| Error::format(self.path, "holds a string that is not UTF-8"))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        let ty = ValueType::from_u32(ty)
            .ok_or_else(|| Error::format(self.path, format!("unknown metadata type {ty}")))?;
        Ok(match ty {
            ValueType::U8 => Value::U8(self.take(1)?[0]),
            ValueType::I8 => Value::I8(self.take(1)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(self.u32()? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32()?)),
            ValueType::Bool => Value::Bool(self.take(1)?[0] != 0),
            ValueType::String => Value::String(self.string()?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(self.u64()? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64()?)),
            ValueType::Array => {
                if depth > 2 {
                    return Err(Error::format(self.path, "nests arrays too deeply"));
                }
                let elem = self.u32()?;
                let n = self.count(1)?;
                let elem_type = ValueType::from_u32(elem)
                    .ok_or_else(|| Error::format(self.path, format!("unknown metadata type {elem}")))?;
                let items = (0..n).map(|_| self.value(elem, depth + 1)).collect::<Result<Vec<_>>>()?;
                Value::Array(elem_type, items)
            }
        })
    }

    fn context(&self, e: Error, key: &str) -> Error {
        match e {
            Error::Format { path, message } => {
                Error::Format { path, message: format!("metadata '{key}': {message}") }
            }
            other => other,
        }
    }
}
