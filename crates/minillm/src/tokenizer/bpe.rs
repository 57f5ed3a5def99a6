//! Byte-level BPE encoding: turn one pre-token piece into token ids by applying learned merges.
//!
//! A vocabulary starts from the 256 single bytes; each merge `(left, right) -> id` was learned in
//! order (its rank). Encoding a piece starts from its bytes and repeatedly merges the adjacent
//! pair with the lowest rank, leftmost first, until no adjacent pair has a merge. This is the rule
//! of GPT-2's `encoder.py`, HF `tokenizers` and tiktoken alike.
//!
//! Two things make it fast without changing a single id: a piece that is itself a token (and
//! that BPE would reach, checked once at load) is looked up whole, and long pieces (runs of
//! spaces, a paragraph of CJK) merge with a heap instead of rescanning every pair.

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A merge: the pair it joins and the id of the token it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Merge {
    pub left: u32,
    pub right: u32,
    pub id: u32,
}

/// The id of a byte the vocabulary has no token for (SmolLM2's has none for bytes 0x04, 0x06, ...
/// and for the bytes UTF-8 never uses).
pub const NO_TOKEN: u32 = u32::MAX;

/// What encoding does with a byte that has no token ([`NO_TOKEN`]). No merge can involve such a
/// byte, so it can only be dropped; the two tools that read such vocabularies drop it at
/// different moments, which changes the ids when it sits between two bytes that merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingBytes {
    /// HF `tokenizers` (a BPE model with `unk_token: null`): the byte is removed before merging,
    /// so its neighbours may merge across it ("!\x04!" -> "!!").
    Skip,
    /// llama.cpp: the byte stays a symbol no merge touches and is dropped from the output, so it
    /// separates its neighbours ("!\x04!" -> "!", "!").
    Split,
}

/// Vocabulary and merges of a byte-level BPE model (special tokens live in `Tokenizer`).
#[derive(Clone, Debug)]
pub struct Bpe {
    /// Bytes of every token id; ids not produced by BPE (specials) are empty here.
    tokens: Vec<Vec<u8>>,
    merges: Vec<Merge>,
    /// The id of each byte's token, [`NO_TOKEN`] for a byte the vocabulary lacks.
    byte_ids: [u32; 256],
    /// Whether some byte has no token, and how such bytes are dropped (`None`: every byte has one).
    missing_bytes: Option<MissingBytes>,
    /// (left, right) packed in a u64 -> (rank, merged id).
    ranks: FxHashMap<u64, (u32, u32)>,
    /// Tokens that BPE produces from their own bytes, for the whole-piece shortcut; with
    /// `ignore_merges`, every token.
    whole: FxHashMap<Vec<u8>, u32>,
    /// HF's `ignore_merges` (Llama 3's tokenizer.json, as tiktoken encodes): a piece that is a
    /// token is that token, even one its merges would not reach.
    ignore_merges: bool,
}

/// A pair of token ids as one hash key (encoding's merge ranks, training's pair counts).
#[inline(always)]
pub(super) fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

/// Pieces up to this many bytes merge by rescanning (cheap for short words); longer ones use a heap.
const SHORT_PIECE: usize = 32;

impl Bpe {
    /// Builds a model from the ids of the 256 bytes and the merges in rank order. `n_ids` is the
    /// size of the id space (at least every id used + 1). A byte may have no token
    /// ([`NO_TOKEN`]); encoding then drops it as HF does ([`MissingBytes::Skip`]; see
    /// [`Bpe::set_missing_bytes`]). Fails on an id out of range, a merge of unknown tokens or an
    /// id made twice.
    pub fn new(byte_ids: [u32; 256], merges: Vec<Merge>, n_ids: usize) -> Result<Bpe, String> {
        let mut tokens: Vec<Vec<u8>> = vec![Vec::new(); n_ids];
        for (b, &id) in byte_ids.iter().enumerate().filter(|(_, id)| **id != NO_TOKEN) {
            let slot = tokens
                .get_mut(id as usize)
                .ok_or_else(|| format!("byte {b} has id {id}, outside the vocabulary of {n_ids}"))?;
            if !slot.is_empty() {
                return Err(format!("id {id} is given to two bytes"));
            }
            slot.push(b as u8);
        }
        let mut ranks = FxHashMap::default();
        for (rank, m) in merges.iter().enumerate() {
            let (l, r, id) = (m.left as usize, m.right as usize, m.id as usize);
            let known = |i: usize| i < n_ids && !tokens[i].is_empty();
            if !known(l) || !known(r) {
                return Err(format!("merge {rank} joins ids {l} and {r}, which are not tokens yet"));
            }
            if id >= n_ids || !tokens[id].is_empty() {
                return Err(format!("merge {rank} makes id {id}, which is out of range or taken"));
            }
            let joined = [tokens[l].as_slice(), tokens[r].as_slice()].concat();
            tokens[id] = joined;
            if ranks.insert(pair_key(m.left, m.right), (rank as u32, m.id)).is_some() {
                return Err(format!("merge {rank} repeats the pair ({l}, {r})"));
            }
        }
        let missing_bytes = byte_ids.contains(&NO_TOKEN).then_some(MissingBytes::Skip);
        let mut bpe = Bpe {
            tokens,
            merges,
            byte_ids,
            missing_bytes,
            ranks,
            whole: FxHashMap::default(),
            ignore_merges: false,
        };
        bpe.whole = bpe.reachable_tokens();
        Ok(bpe)
    }

    /// A model whose tokens are given with their bytes, not all built from bytes by merges:
    /// SentencePiece's BPE, whose symbols start as characters (`tokens[id]` is the piece with
    /// '▁' as a space; `byte_ids` are its `<0xNN>` fallback tokens). Every merge must join two
    /// tokens into the one whose bytes are theirs together.
    pub fn from_pieces(
        tokens: Vec<Vec<u8>>,
        merges: Vec<Merge>,
        byte_ids: [u32; 256],
    ) -> Result<Bpe, String> {
        let n = tokens.len();
        if let Some(b) = byte_ids.iter().position(|&id| id == NO_TOKEN) {
            return Err(format!("the byte-fallback token <0x{b:02X}> is missing"));
        }
        if let Some(&id) = byte_ids.iter().find(|&&id| id as usize >= n) {
            return Err(format!("byte token {id} is outside the vocabulary of {n}"));
        }
        let mut ranks = FxHashMap::default();
        for (rank, m) in merges.iter().enumerate() {
            let (l, r, id) = (m.left as usize, m.right as usize, m.id as usize);
            if l >= n
                || r >= n
                || id >= n
                || tokens[id] != [tokens[l].as_slice(), tokens[r].as_slice()].concat()
            {
                return Err(format!(
                    "merge {rank} ({l} + {r} -> {id}) does not join two tokens into a third"
                ));
            }
            if ranks.insert(pair_key(m.left, m.right), (rank as u32, m.id)).is_some() {
                return Err(format!("merge {rank} repeats the pair ({l}, {r})"));
            }
        }
        Ok(Bpe {
            tokens,
            merges,
            byte_ids,
            missing_bytes: None,
            ranks,
            whole: FxHashMap::default(),
            ignore_merges: false,
        })
    }

    /// Sets how bytes without a token are dropped (a model whose bytes all have tokens ignores it).
    pub fn set_missing_bytes(&mut self, how: MissingBytes) {
        if self.missing_bytes.is_some() {
            self.missing_bytes = Some(how);
        }
    }

    /// The bytes that have no token, in order.
    pub fn missing_bytes(&self) -> Vec<u8> {
        (0..=255u8).filter(|&b| !self.has_token(b)).collect()
    }

    #[inline]
    fn has_token(&self, b: u8) -> bool {
        self.byte_ids[b as usize] != NO_TOKEN
    }

    /// The same model with `n` ids (at least as many as now): the new ids are free slots, for
    /// special tokens.
    pub fn with_n_ids(&self, n: usize) -> Bpe {
        let mut bpe = self.clone();
        bpe.tokens.resize(n.max(self.tokens.len()), Vec::new());
        bpe
    }

    /// Turns HF's `ignore_merges` on or off (see the field).
    pub fn set_ignore_merges(&mut self, on: bool) {
        if self.ignore_merges == on {
            return; // `whole` already says so: no second pass over every merge
        }
        self.ignore_merges = on;
        self.whole = if on {
            self.merges.iter().map(|m| (self.tokens[m.id as usize].clone(), m.id)).collect()
        } else {
            self.reachable_tokens()
        };
    }

    pub fn ignores_merges(&self) -> bool {
        self.ignore_merges
    }

    /// Tokens that BPE reaches from their own bytes. Almost every token qualifies, but a token
    /// can be learned in a context that merging its bytes alone never recreates; those must
    /// take the slow path to stay exact.
    fn reachable_tokens(&self) -> FxHashMap<Vec<u8>, u32> {
        let mut whole = FxHashMap::default();
        let mut out = Vec::new();
        for m in &self.merges {
            let bytes = &self.tokens[m.id as usize];
            out.clear();
            self.merge_piece(bytes, &mut out);
            if out == [m.id] {
                whole.insert(bytes.clone(), m.id);
            }
        }
        whole
    }

    /// The id of each byte's token ([`NO_TOKEN`] where the vocabulary has none).
    pub fn byte_ids(&self) -> &[u32; 256] {
        &self.byte_ids
    }

    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// Size of the id space, including slots for special tokens.
    pub fn n_ids(&self) -> usize {
        self.tokens.len()
    }

    /// The bytes of token `id`; empty for ids that are not BPE tokens.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// Appends the ids of one piece to `out`.
    #[inline]
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        match self.missing_bytes {
            Some(how) if !piece.iter().all(|&b| self.has_token(b)) => {
                self.encode_without_missing(piece, how, out)
            }
            _ => self.encode_whole_bytes(piece, out),
        }
    }

    /// A piece holding bytes that have no token: they are dropped as `how` says.
    #[cold]
    fn encode_without_missing(&self, piece: &[u8], how: MissingBytes, out: &mut Vec<u32>) {
        match how {
            MissingBytes::Skip => {
                let kept: Vec<u8> = piece.iter().copied().filter(|&b| self.has_token(b)).collect();
                self.encode_whole_bytes(&kept, out);
            }
            MissingBytes::Split => {
                for part in piece.split(|&b| !self.has_token(b)).filter(|p| !p.is_empty()) {
                    self.encode_whole_bytes(part, out);
                }
            }
        }
    }

    /// A piece whose bytes all have tokens.
    #[inline]
    fn encode_whole_bytes(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        if let Some(&id) = self.whole.get(piece) {
            out.push(id);
        } else {
            self.merge_piece(piece, out);
        }
    }

    fn merge_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SHORT_PIECE {
            let mut ids = [0u32; SHORT_PIECE];
            for (slot, &b) in ids.iter_mut().zip(piece) {
                *slot = self.byte_ids[b as usize];
            }
            self.merge_short(&ids[..piece.len()], out);
        } else {
            self.merge_long(piece.iter().map(|&b| self.byte_ids[b as usize]).collect(), out);
        }
    }

    /// Applies the merges to a sequence of initial symbols (SentencePiece's characters).
    pub fn merge_ids(&self, ids: &[u32], out: &mut Vec<u32>) {
        if ids.len() <= SHORT_PIECE {
            self.merge_short(ids, out);
        } else {
            self.merge_long(ids.to_vec(), out);
        }
    }

    #[inline]
    fn rank(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.ranks.get(&pair_key(left, right)).copied()
    }

    /// Rescans all adjacent pairs after each merge: O(n^2), fastest for short pieces.
    fn merge_short(&self, initial: &[u32], out: &mut Vec<u32>) {
        let mut parts = [0u32; SHORT_PIECE];
        let mut n = initial.len();
        parts[..n].copy_from_slice(initial);
        // ranks[i] is the rank of the pair (parts[i], parts[i + 1]), u32::MAX if none.
        let mut ranks = [u32::MAX; SHORT_PIECE];
        let mut made = [0u32; SHORT_PIECE];
        for i in 0..n.saturating_sub(1) {
            if let Some((r, id)) = self.rank(parts[i], parts[i + 1]) {
                ranks[i] = r;
                made[i] = id;
            }
        }
        while n > 1 {
            let (best, &best_rank) =
                ranks[..n - 1].iter().enumerate().min_by_key(|&(i, &r)| (r, i)).expect("n > 1");
            if best_rank == u32::MAX {
                break;
            }
            parts[best] = made[best];
            parts.copy_within(best + 2..n, best + 1);
            ranks.copy_within(best + 2..n, best + 1);
            made.copy_within(best + 2..n, best + 1);
            n -= 1;
            for i in [best.wrapping_sub(1), best] {
                if i < n.saturating_sub(1) {
                    (ranks[i], made[i]) = self.rank(parts[i], parts[i + 1]).unwrap_or((u32::MAX, 0));
                }
            }
        }
        out.extend_from_slice(&parts[..n]);
    }

    /// Heap of candidate merges over a linked list of parts: O(n log n) for long pieces.
    fn merge_long(&self, mut ids: Vec<u32>, out: &mut Vec<u32>) {
        let n = ids.len();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        // (rank, position, left id, right id): stale entries are skipped when popped.
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some((r, _)) = self.rank(ids[i], ids[i + 1]) {
                heap.push(Reverse((r, i, ids[i], ids[i + 1])));
            }
        }
        while let Some(Reverse((_, i, left, right))) = heap.pop() {
            let j = next[i];
            if !alive[i] || j >= n || ids[i] != left || ids[j] != right {
                continue;
            }
            let (_, made) = self.rank(left, right).expect("pair was in the heap");
            ids[i] = made;
            alive[j] = false;
            next[i] = next[j];
            if next[j] < n {
                prev[next[j]] = i;
            }
            let p = prev[i];
            if p < n
                && let Some((r, _)) = self.rank(ids[p], made)
            {
                heap.push(Reverse((r, p, ids[p], made)));
            }
            if next[i] < n
                && let Some((r, _)) = self.rank(made, ids[next[i]])
            {
                heap.push(Reverse((r, i, made, ids[next[i]])));
            }
        }
        let mut i = 0;
        while i < n {
            out.push(ids[i]);
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_bytes() -> [u32; 256] {
        std::array::from_fn(|i| i as u32)
    }

    /// Merges over bytes a, b, c: ab (256), bc (257), abc = ab + c (258).
    fn tiny() -> Bpe {
        let m = |left, right, id| Merge { left, right, id };
        Bpe::new(identity_bytes(), vec![m(97, 98, 256), m(98, 99, 257), m(256, 99, 258)], 259).unwrap()
    }

    #[test]
    fn lowest_rank_pair_merges_first_leftmost_on_ties() {
        let bpe = tiny();
        let mut out = Vec::new();
        bpe.encode_piece(b"abcbc", &mut out);
        assert_eq!(out, [258, 257]);
        out.clear();
        bpe.encode_piece(b"abab", &mut out);
        assert_eq!(out, [256, 256]);
    }

    #[test]
    fn long_and_short_paths_agree() {
        let bpe = tiny();
        let piece: Vec<u8> = b"abcabbcaabcbcbca".iter().cycle().take(200).copied().collect();
        for len in 1..piece.len() {
            let (mut short, mut long) = (Vec::new(), Vec::new());
            let ids: Vec<u32> = piece[..len].iter().map(|&b| b as u32).collect();
            if len <= SHORT_PIECE {
                bpe.merge_short(&ids, &mut short);
            } else {
                short = reference_merge(&bpe, &piece[..len]);
            }
            bpe.merge_long(ids, &mut long);
            assert_eq!(short, long, "length {len}");
        }
    }

    /// The textbook loop, kept here as the reference for the fast paths.
    fn reference_merge(bpe: &Bpe, piece: &[u8]) -> Vec<u32> {
        let mut parts: Vec<u32> = piece.iter().map(|&b| b as u32).collect();
        loop {
            let best = (0..parts.len().saturating_sub(1))
                .filter_map(|i| bpe.rank(parts[i], parts[i + 1]).map(|(r, id)| (r, i, id)))
                .min();
            let Some((_, i, id)) = best else { return parts };
            parts[i] = id;
            parts.remove(i + 1);
        }
    }

    #[test]
    fn unreachable_tokens_skip_the_whole_piece_shortcut() {
        // "bc" merges first, so the bytes "abc" become a + bc and never ab + c = 258.
        let m = |left, right, id| Merge { left, right, id };
        let bpe =
            Bpe::new(identity_bytes(), vec![m(98, 99, 256), m(97, 98, 257), m(257, 99, 258)], 259).unwrap();
        let mut out = Vec::new();
        bpe.encode_piece(b"abc", &mut out);
        assert_eq!(out, [97, 256]);
    }

    #[test]
    fn bytes_without_a_token_are_dropped_as_hf_or_as_llama_cpp_drops_them() {
        let m = |left, right, id| Merge { left, right, id };
        let mut bytes = identity_bytes();
        bytes[4] = NO_TOKEN;
        bytes[255] = 4; // id 4 is free: any id may take the place
        let mut bpe = Bpe::new(bytes, vec![m(97, 98, 256)], 257).unwrap();
        assert_eq!(bpe.missing_bytes(), [4]);
        let encode = |bpe: &Bpe, piece: &[u8]| {
            let mut out = Vec::new();
            bpe.encode_piece(piece, &mut out);
            out
        };
        // HF: the byte goes before merging, so "a" and "b" meet.
        assert_eq!(encode(&bpe, b"a\x04b"), [256]);
        assert!(encode(&bpe, b"\x04\x04").is_empty());
        // llama.cpp: the byte stays as a symbol no merge touches, then goes.
        bpe.set_missing_bytes(MissingBytes::Split);
        assert_eq!(encode(&bpe, b"a\x04b"), [97, 98]);
        assert_eq!(encode(&bpe, b"ab\x04\xff"), [256, 4]);
        // A vocabulary with every byte ignores the setting.
        let mut whole = tiny();
        whole.set_missing_bytes(MissingBytes::Split);
        assert!(whole.missing_bytes().is_empty());
    }

    #[test]
    fn malformed_merges_are_refused() {
        let m = |left, right, id| Merge { left, right, id };
        assert!(Bpe::new(identity_bytes(), vec![m(97, 300, 256)], 257).is_err());
        assert!(Bpe::new(identity_bytes(), vec![m(97, 98, 97)], 257).is_err());
        assert!(Bpe::new(identity_bytes(), vec![m(97, 98, 256), m(97, 98, 257)], 258).is_err());
    }
}
