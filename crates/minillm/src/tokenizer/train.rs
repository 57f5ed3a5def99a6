//! Learning BPE merges from a corpus.
//!
//! 1. Pre-tokenize the corpus and count each distinct piece (all cores).
//! 2. Start every piece as its bytes (ids 0..256 are the byte values) and count adjacent pairs,
//!    weighted by how often the piece occurs.
//! 3. Repeatedly merge the most frequent pair into a new token (id 256 + merge rank), updating the
//!    counts only in the pieces that held the pair, until the vocabulary is full.
//!
//! Tie-break (so the output is the same on every machine and thread count): among pairs with
//! equal counts the one with the smaller (left id, right id) wins, that is, the pair made of
//! earlier tokens; for two bytes, the smaller byte values.

use super::bpe::{Bpe, Merge, pair_key as key};
use super::pretokenize::chunk_boundaries;
use super::{Pattern, Tokenizer};
use crate::error::{Error, Result};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Debug)]
pub struct BpeConfig {
    /// Total vocabulary: 256 bytes + merges + special tokens.
    pub vocab_size: usize,
    pub pattern: Pattern,
    /// Special tokens, given the last ids in order. Their text is cut out of the corpus before
    /// counting, so no merge learns to glue a document to its separator.
    pub specials: Vec<String>,
}

/// Progress reports, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum TrainProgress {
    Counted { bytes: usize, total: usize },
    Merged { merges: usize, total: usize },
}

/// Trains a tokenizer on `texts`. Stops early (with a smaller vocabulary) if the corpus runs
/// out of pairs to merge.
pub fn train(
    texts: &[&str],
    config: &BpeConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<Tokenizer> {
    let minimum = 256 + config.specials.len();
    if config.vocab_size < minimum {
        return Err(Error::Invalid(format!(
            "a vocabulary of {} is too small: it needs 256 byte tokens{} (at least {minimum})",
            config.vocab_size,
            match config.specials.len() {
                0 => String::new(),
                n => format!(" + {n} special tokens"),
            }
        )));
    }
    let n_merges = config.vocab_size - minimum;
    let (pieces, counts) = count_pieces(texts, config, progress);
    let merges = learn_merges(pieces, &counts, n_merges, progress);
    let n_ids = 256 + merges.len() + config.specials.len();
    let bpe = Bpe::new(std::array::from_fn(|b| b as u32), merges, n_ids).map_err(Error::Invalid)?;
    let first_special = (256 + bpe.merges().len()) as u32;
    let specials = config.specials.iter().cloned().zip(first_special..).collect();
    Tokenizer::new(bpe, config.pattern, specials)
}

/// Distinct pieces as byte ids, sorted (for a stable order), with their counts.
fn count_pieces(
    texts: &[&str],
    config: &BpeConfig,
    progress: &mut dyn FnMut(TrainProgress),
) -> (Vec<Vec<u32>>, Vec<u64>) {
    let total: usize = texts.iter().map(|t| t.len()).sum();
    let mut chunks: Vec<&str> = Vec::new();
    for text in texts {
        let mut rest = *text;
        for segment in split_out_specials(&mut rest, &config.specials) {
            let cuts = chunk_boundaries(segment, 1 << 20);
            chunks.extend(cuts.windows(2).map(|w| &segment[w[0]..w[1]]));
        }
    }
    let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
    let mut done = 0;
    // Count a few chunks per thread at a time so progress moves and memory stays bounded.
    for batch in chunks.chunks(4 * rayon::current_num_threads().max(1)) {
        let partial: Vec<FxHashMap<&str, u64>> = batch
            .par_iter()
            .map(|chunk| {
                let mut m: FxHashMap<&str, u64> = FxHashMap::default();
                for piece in config.pattern.split(chunk) {
                    *m.entry(piece).or_default() += 1;
                }
                m
            })
            .collect();
        for m in partial {
            for (piece, n) in m {
                *counts.entry(piece).or_default() += n;
            }
        }
        done += batch.iter().map(|c| c.len()).sum::<usize>();
        progress(TrainProgress::Counted { bytes: done, total });
    }
    let mut sorted: Vec<(&str, u64)> = counts.into_iter().collect();
    sorted.sort_unstable();
    sorted.into_iter().map(|(p, n)| (p.bytes().map(u32::from).collect(), n)).unzip()
}

/// The parts of `text` between occurrences of any special token.
fn split_out_specials<'a>(text: &mut &'a str, specials: &[String]) -> Vec<&'a str> {
    let mut segments = Vec::new();
    loop {
        let next = specials.iter().filter_map(|s| text.find(s.as_str()).map(|at| (at, s.len()))).min();
        match next {
            Some((at, len)) => {
                segments.push(&text[..at]);
                *text = &text[at + len..];
            }
            None => {
                segments.push(*text);
                return segments;
            }
        }
    }
}

fn learn_merges(
    mut pieces: Vec<Vec<u32>>,
    counts: &[u64],
    n_merges: usize,
    progress: &mut dyn FnMut(TrainProgress),
) -> Vec<Merge> {
    // How often each pair occurs, and which pieces hold it (a superset: pieces that lost the
    // pair are skipped when merged).
    let mut pair_count: FxHashMap<u64, u64> = FxHashMap::default();
    let mut holders: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (i, piece) in pieces.iter().enumerate() {
        for w in piece.windows(2) {
            let k = key(w[0], w[1]);
            *pair_count.entry(k).or_default() += counts[i];
            let h = holders.entry(k).or_default();
            if h.last() != Some(&(i as u32)) {
                h.push(i as u32);
            }
        }
    }
    // Max-heap on (count, smaller pair first). Entries go stale when a count drops; a popped
    // entry whose count is out of date is pushed back with the current one.
    let mut heap: BinaryHeap<(u64, Reverse<u64>)> =
        pair_count.iter().map(|(&k, &c)| (c, Reverse(k))).collect();
    let mut merges = Vec::with_capacity(n_merges);
    let mut delta: FxHashMap<u64, i64> = FxHashMap::default();
    let report_every = (n_merges / 100).max(1);
    while merges.len() < n_merges {
        let Some((count, Reverse(k))) = heap.pop() else {
            break;
        };
        let current = pair_count.get(&k).copied().unwrap_or(0);
        if current != count {
            if current > 0 {
                heap.push((current, Reverse(k)));
            }
            continue;
        }
        let (left, right) = ((k >> 32) as u32, k as u32);
        let id = 256 + merges.len() as u32;
        merges.push(Merge { left, right, id });
        delta.clear();
        let mut gained: FxHashSet<u64> = FxHashSet::default();
        for &i in &holders.remove(&k).unwrap_or_default() {
            let piece = &mut pieces[i as usize];
            if !piece.windows(2).any(|w| w[0] == left && w[1] == right) {
                continue;
            }
            let n = counts[i as usize] as i64;
            for w in piece.windows(2) {
                *delta.entry(key(w[0], w[1])).or_default() -= n;
            }
            apply_merge(piece, left, right, id);
            for w in piece.windows(2) {
                let pk = key(w[0], w[1]);
                *delta.entry(pk).or_default() += n;
                if w[0] == id || w[1] == id {
                    let h = holders.entry(pk).or_default();
                    if h.last() != Some(&i) {
                        h.push(i);
                    }
                    gained.insert(pk);
                }
            }
        }
        for (&pk, &d) in &delta {
            let c = pair_count.entry(pk).or_default();
            *c = (*c as i64 + d) as u64;
            if d > 0 && gained.contains(&pk) {
                heap.push((*c, Reverse(pk)));
            }
        }
        pair_count.remove(&k);
        if merges.len() % report_every == 0 || merges.len() == n_merges {
            progress(TrainProgress::Merged { merges: merges.len(), total: n_merges });
        }
    }
    merges
}

/// Replaces every non-overlapping (left, right), leftmost first, with `id`.
fn apply_merge(piece: &mut Vec<u32>, left: u32, right: u32, id: u32) {
    let mut out = 0;
    let mut i = 0;
    while i < piece.len() {
        if i + 1 < piece.len() && piece[i] == left && piece[i + 1] == right {
            piece[out] = id;
            i += 2;
        } else {
            piece[out] = piece[i];
            i += 1;
        }
        out += 1;
    }
    piece.truncate(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vocab_size: usize) -> BpeConfig {
        BpeConfig { vocab_size, pattern: Pattern::Gpt2, specials: vec![] }
    }

    #[test]
    fn learns_the_most_frequent_pairs_first() {
        let tok = train(&["aaab aaab aaab ab"], &config(259), &mut |_| {}).unwrap();
        let m = tok.bpe().merges();
        // Pieces: "aaab" x1, " aaab" x2, " ab" x1. Pair counts: (a,a) 6, (a,b) 4, (' ',a) 3.
        // Then (a,b) 4 beats (aa,a) 3; then (aa,ab) 3 beats (' ',aa) 2.
        let pairs: Vec<(u32, u32)> = m.iter().map(|m| (m.left, m.right)).collect();
        assert_eq!(pairs, [(97, 97), (97, 98), (256, 257)]);
        assert_eq!(tok.encode_ordinary(" aaab"), [32, 258]);
        assert_eq!(tok.vocab_size(), 259);
    }

    #[test]
    fn ties_go_to_the_smaller_pair() {
        let tok = train(&["xy ba"], &config(257), &mut |_| {}).unwrap();
        // (x, y), (' ', b) and (b, a) occur once each; (' ', b) = (32, 98) is smallest.
        let m = tok.bpe().merges()[0];
        assert_eq!((m.left, m.right), (32, 98));
    }

    #[test]
    fn too_small_a_vocabulary_is_refused() {
        let cfg = BpeConfig { specials: vec!["<|end|>".into()], ..config(256) };
        let err = train(&["hello"], &cfg, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("at least 257"), "{err}");
    }

    #[test]
    fn stops_early_when_pairs_run_out_and_specials_follow_the_merges() {
        let cfg = BpeConfig { specials: vec!["<|end|>".into()], ..config(1000) };
        let tok = train(&["ab<|end|>ab"], &cfg, &mut |_| {}).unwrap();
        assert_eq!(tok.bpe().merges().len(), 1);
        assert_eq!(tok.special_id("<|end|>"), Some(257));
        assert_eq!(tok.encode("ab<|end|>", super::super::SpecialTokens::Allow).unwrap(), [256, 257]);
    }
}
