//! Every buffer a forward and backward pass of shape (B, T) needs, allocated once.
//!
//! A training step then allocates nothing. Backward needs gradients for one block at a time, so
//! its scratch buffers are shared by all blocks.

use super::config::ModelConfig;

pub struct BlockActs {
    pub ln1: Vec<f32>,      // (B, T, C)
    pub ln1_mean: Vec<f32>, // (B, T)
    pub ln1_rstd: Vec<f32>, // (B, T)
    pub qkv: Vec<f32>,      // (B, T, 3C)
    pub atty: Vec<f32>,     // (B, T, C) attention output before its projection
    pub att: Vec<f32>,      // (B, NH, T, T) attention probabilities
    pub att_mask: Vec<f32>, // (B, NH, T, T) dropout mask, empty without dropout
    pub attproj: Vec<f32>,  // (B, T, C)
    pub attproj_mask: Vec<f32>,
    pub resid2: Vec<f32>, // (B, T, C) residual stream after attention
    pub ln2: Vec<f32>,
    pub ln2_mean: Vec<f32>,
    pub ln2_rstd: Vec<f32>,
    pub fch: Vec<f32>,      // (B, T, 4C)
    pub fch_gelu: Vec<f32>, // (B, T, 4C)
    pub fcproj: Vec<f32>,   // (B, T, C)
    pub fcproj_mask: Vec<f32>,
    pub resid3: Vec<f32>, // (B, T, C) residual stream after the MLP
}

pub struct Activations {
    pub b: usize,
    pub t: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub has_targets: bool,
    pub encoded: Vec<f32>, // (B, T, C)
    pub encoded_mask: Vec<f32>,
    pub blocks: Vec<BlockActs>,
    pub lnf: Vec<f32>,
    pub lnf_mean: Vec<f32>,
    pub lnf_rstd: Vec<f32>,
    pub logits: Vec<f32>, // (B, T, Vp): logits, then probabilities, then their gradient
    pub losses: Vec<f32>, // (B, T)
    // Backward scratch, shared by the blocks.
    pub d_resid: Vec<f32>, // (B, T, C)
    pub d_a: Vec<f32>,     // (B, T, C)
    pub d_b: Vec<f32>,     // (B, T, C)
    pub d_qkv: Vec<f32>,   // (B, T, 3C)
    pub d_fch: Vec<f32>,   // (B, T, 4C)
    pub d_fch_gelu: Vec<f32>,
    // Attention scratch, used by forward and backward: (B, NH, T, T) and (B, NH, T, 3 hs).
    pub tt: Vec<f32>,
    pub heads: Vec<f32>,
}

impl Activations {
    pub fn new(config: &ModelConfig, b: usize, t: usize) -> Activations {
        let (c, nh) = (config.n_embd, config.n_head);
        let n = b * t;
        let z = |len: usize| vec![0.0f32; len];
        let mask = |len: usize| {
            if config.dropout > 0.0 { z(len) } else { Vec::new() }
        };
        let blocks = (0..config.n_layer)
            .map(|_| BlockActs {
                ln1: z(n * c),
                ln1_mean: z(n),
                ln1_rstd: z(n),
                qkv: z(n * 3 * c),
                atty: z(n * c),
                att: z(n * nh * t),
                att_mask: mask(n * nh * t),
                attproj: z(n * c),
                attproj_mask: mask(n * c),
                resid2: z(n * c),
                ln2: z(n * c),
                ln2_mean: z(n),
                ln2_rstd: z(n),
                fch: z(n * 4 * c),
                fch_gelu: z(n * 4 * c),
                fcproj: z(n * c),
                fcproj_mask: mask(n * c),
                resid3: z(n * c),
            })
            .collect();
        Activations {
            b,
            t,
            tokens: vec![0; n],
            targets: vec![0; n],
            has_targets: false,
            encoded: z(n * c),
            encoded_mask: mask(n * c),
            blocks,
            lnf: z(n * c),
            lnf_mean: z(n),
            lnf_rstd: z(n),
            logits: z(n * config.padded_vocab_size()),
            losses: z(n),
            d_resid: z(n * c),
            d_a: z(n * c),
            d_b: z(n * c),
            d_qkv: z(n * 3 * c),
            d_fch: z(n * 4 * c),
            d_fch_gelu: z(n * 4 * c),
            tt: z(n * nh * t),
            heads: z(n * 3 * c),
        }
    }

    /// Bytes these buffers take for `config` at (B, T), counted without allocating them.
    pub fn bytes(config: &ModelConfig, b: usize, t: usize) -> usize {
        let (n, c, nh) = (b * t, config.n_embd, config.n_head);
        let nc = n * c;
        let att = n * nh * t;
        let (mask_att, mask_c) = if config.dropout > 0.0 { (att, nc) } else { (0, 0) };
        let per_block = 18 * nc + 4 * n + att + mask_att + 2 * mask_c;
        let top = 2 * nc + mask_c + 3 * n + n * config.padded_vocab_size();
        let scratch = 17 * nc + att;
        4 * (config.n_layer * per_block + top + scratch) + 2 * 4 * n
    }

    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let mut floats = self.encoded.len() + self.encoded_mask.len() + self.lnf.len() + self.lnf_mean.len();
        floats += self.lnf_rstd.len() + self.logits.len() + self.losses.len() + self.d_resid.len();
        floats += self.d_a.len() + self.d_b.len() + self.d_qkv.len() + self.d_fch.len();
        floats += self.d_fch_gelu.len() + self.tt.len() + self.heads.len();
        for k in &self.blocks {
            for v in [
                &k.ln1,
                &k.ln1_mean,
                &k.ln1_rstd,
                &k.qkv,
                &k.atty,
                &k.att,
                &k.att_mask,
                &k.attproj,
                &k.attproj_mask,
                &k.resid2,
                &k.ln2,
                &k.ln2_mean,
                &k.ln2_rstd,
                &k.fch,
                &k.fch_gelu,
                &k.fcproj,
                &k.fcproj_mask,
                &k.resid3,
            ] {
                floats += v.len();
            }
        }
        4 * floats + 4 * (self.tokens.len() + self.targets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_bytes_equal_allocated_bytes() {
        for dropout in [0.0, 0.1] {
            let config = ModelConfig { dropout, ..ModelConfig::preset("baby").unwrap() };
            let acts = Activations::new(&config, 3, 7);
            assert_eq!(Activations::bytes(&config, 3, 7), acts.allocated_bytes());
        }
    }
}
