//! Token shards on disk and the loader that draws (B, T) training windows from them.
//!
//! A shard is a 40-byte header then the token ids, little-endian, u16 when the vocabulary fits
//! and u32 otherwise:
//!
//! ```text
//! magic "mllmtok\0" | version u32 | bytes per token u32 | vocab size u32 | reserved u32
//! | tokenizer hash u64 | token count u64 | ids...
//! ```
//!
//! The tokenizer hash lets training refuse shards made with another tokenizer.

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use std::path::Path;

const MAGIC: &[u8; 8] = b"mllmtok\0";
const VERSION: u32 = 1;
const HEADER: usize = 40;

/// What a shard says about the tokens in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub vocab_size: u32,
    pub tokenizer_hash: u64,
}

/// FNV-1a over the tokenizer's tokenizer.json text: equal hashes, equal tokenizers.
pub fn tokenizer_hash(tok: &Tokenizer) -> u64 {
    fnv1a(crate::tokenizer::formats::to_hf_json(tok).bytes())
}

/// FNV-1a, 64 bits: a quick fingerprint (of a tokenizer; of a run's settings and parameters,
/// compared across the ranks of a data-parallel run), not a defence against tampering.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Serializes a shard.
pub fn shard_bytes(ids: &[u32], info: ShardInfo) -> Vec<u8> {
    let width: u32 = if info.vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut out = Vec::with_capacity(HEADER + ids.len() * width as usize);
    out.extend_from_slice(MAGIC);
    for v in [VERSION, width, info.vocab_size, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&info.tokenizer_hash.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for &id in ids {
        match width {
            2 => out.extend_from_slice(&(id as u16).to_le_bytes()),
            _ => out.extend_from_slice(&id.to_le_bytes()),
        }
    }
    out
}

pub fn write_shard(path: &Path, ids: &[u32], info: ShardInfo) -> Result<()> {
    atomic_write(path, &shard_bytes(ids, info))
}

/// Reads a shard, checking its header and that every id is inside the vocabulary.
pub fn read_shard(path: &Path) -> Result<(Vec<u32>, ShardInfo)> {
    let bytes = std::fs::read(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })?;
    let bad = |m: String| Error::format(path, m);
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad("not a minillm token shard (run `minillm prepare` to make one)".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let (version, width, vocab_size) = (u32_at(8), u32_at(12), u32_at(16));
    if version != VERSION {
        return Err(bad(format!("shard version {version}; this minillm reads version {VERSION}")));
    }
    if width != 2 && width != 4 {
        return Err(bad(format!("{width} bytes per token; shards use 2 or 4")));
    }
    let info = ShardInfo { vocab_size, tokenizer_hash: u64_at(24) };
    let count = u64_at(32) as usize;
    let body = &bytes[HEADER..];
    if body.len() != count * width as usize {
        return Err(bad(format!(
            "the header promises {count} tokens but the file holds {} bytes of them (truncated?)",
            body.len()
        )));
    }
    let ids: Vec<u32> = match width {
        2 => body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect(),
        _ => body.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
    };
    if let Some(&id) = ids.iter().find(|&&id| id >= vocab_size) {
        return Err(bad(format!("token id {id} is outside the shard's vocabulary of {vocab_size}")));
    }
    Ok((ids, info))
}

/// Draws training windows: `b` rows of `t` tokens at random offsets, each with its next-token
/// targets. Seeded, so the same seed gives the same batches.
#[derive(Debug)]
pub struct Loader {
    tokens: Vec<u32>,
    rng: Rng,
}

impl Loader {
    /// Fails if the tokens cannot fill one window of `t` plus its target.
    pub fn new(tokens: Vec<u32>, t: usize, seed: u64) -> Result<Loader> {
        if tokens.len() < t + 1 {
            return Err(Error::Invalid(format!(
                "{} tokens cannot fill one window of context {t} plus its target; use a shorter context or more data",
                tokens.len()
            )));
        }
        Ok(Loader { tokens, rng: Rng::new(seed) })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Fills inputs and targets (each b * t) with random windows.
    pub fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32], t: usize) {
        let starts = self.tokens.len() - t;
        for (x, y) in inputs.chunks_exact_mut(t).zip(targets.chunks_exact_mut(t)) {
            let s = self.rng.below(starts);
            x.copy_from_slice(&self.tokens[s..s + t]);
            y.copy_from_slice(&self.tokens[s + 1..s + t + 1]);
        }
    }

    /// The state of the random stream, for exact resume.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
    }

    /// Consecutive non-overlapping windows covering the whole split (the last partial one
    /// dropped), for evaluation.
    pub fn windows(&self, t: usize) -> impl Iterator<Item = (&[u32], &[u32])> {
        windows(&self.tokens, t)
    }
}

/// Consecutive non-overlapping windows of `t` tokens with their next-token targets (the last
/// partial window dropped).
pub fn windows(tokens: &[u32], t: usize) -> impl Iterator<Item = (&[u32], &[u32])> {
    let n = tokens.len().saturating_sub(1) / t;
    (0..n).map(move |i| (&tokens[i * t..(i + 1) * t], &tokens[i * t + 1..(i + 1) * t + 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_and_refuse_damage() {
        let dir = std::env::temp_dir().join(format!("minillm-shard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for vocab in [300u32, 100_000] {
            let ids: Vec<u32> = (0..1000).map(|i| i * 97 % vocab).collect();
            let info = ShardInfo { vocab_size: vocab, tokenizer_hash: 42 };
            let path = dir.join(format!("{vocab}.bin"));
            write_shard(&path, &ids, info).unwrap();
            assert_eq!(read_shard(&path).unwrap(), (ids.clone(), info));
            let width = if vocab <= 65536 { 2 } else { 4 };
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 40 + 1000 * width);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
            assert!(read_shard(&path).unwrap_err().to_string().contains("truncated"));
        }
        std::fs::write(dir.join("text.bin"), "hello, not a shard at all, clearly....").unwrap();
        assert!(read_shard(&dir.join("text.bin")).unwrap_err().to_string().contains("minillm prepare"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_are_next_token_windows_and_seeded() {
        let tokens: Vec<u32> = (0..100).collect();
        let mut a = Loader::new(tokens.clone(), 8, 1).unwrap();
        let mut b = Loader::new(tokens, 8, 1).unwrap();
        let (mut x, mut y, mut x2, mut y2) = ([0; 24], [0; 24], [0; 24], [0; 24]);
        a.next_batch(&mut x, &mut y, 8);
        b.next_batch(&mut x2, &mut y2, 8);
        assert_eq!((x, y), (x2, y2));
        for i in 0..24 {
            assert_eq!(y[i], x[i] + 1);
        }
        assert_eq!(a.windows(8).count(), 12);
        assert!(Loader::new(vec![1, 2, 3], 8, 0).unwrap_err().to_string().contains("context 8"));
    }
}
