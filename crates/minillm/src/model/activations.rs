//! Every buffer a forward and backward pass of shape (B, T) needs, allocated once.
//!
//! A training step then allocates nothing. Backward needs gradients for one block at a time, so
//! its scratch buffers are shared by all blocks. Widths follow the architecture: W for a fused
//! q | k | v row, A for attention's output, M_in and M for the MLP's first product and its
//! hidden layer (GPT-2: 3C, C, 4C, 4C). RMSNorm keeps no means.

use super::config::ModelConfig;
use super::layers::rope::Rope;

/// The widths of a pass's buffers.
struct Widths {
    c: usize,
    qkv: usize,
    attn: usize,
    mlp_in: usize,
    mlp: usize,
    /// Per row: 1 with LayerNorm's means, 0 for RMSNorm.
    mean: usize,
}

impl Widths {
    fn of(config: &ModelConfig) -> Widths {
        Widths {
            c: config.n_embd,
            qkv: config.qkv_width(),
            attn: config.attn_width(),
            mlp_in: config.mlp_in_width(),
            mlp: config.mlp_width(),
            mean: usize::from(config.norm().has_mean()),
        }
    }
}

pub struct BlockActs {
    pub ln1: Vec<f32>,      // (B, T, C)
    pub ln1_mean: Vec<f32>, // (B, T), empty for RMSNorm
    pub ln1_rstd: Vec<f32>, // (B, T)
    pub qkv: Vec<f32>,      // (B, T, W), queries and keys rotated for rotary models
    pub atty: Vec<f32>,     // (B, T, A) attention output before its projection
    pub att: Vec<f32>,      // (B, NH, T, T) attention probabilities
    pub att_mask: Vec<f32>, // (B, NH, T, T) dropout mask, empty without dropout
    pub attproj: Vec<f32>,  // (B, T, C)
    pub attproj_mask: Vec<f32>,
    pub resid2: Vec<f32>, // (B, T, C) residual stream after attention
    pub ln2: Vec<f32>,
    pub ln2_mean: Vec<f32>,
    pub ln2_rstd: Vec<f32>,
    pub fch: Vec<f32>,      // (B, T, M_in)
    pub fch_gelu: Vec<f32>, // (B, T, M): after GELU, or SwiGLU's gate

    pub fcproj: Vec<f32>, // (B, T, C)
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
    pub d_b: Vec<f32>,     // (B, T, max(C, A))
    pub d_qkv: Vec<f32>,   // (B, T, W)
    pub d_fch: Vec<f32>,   // (B, T, M_in)
    pub d_fch_gelu: Vec<f32>,
    // Attention scratch, used by forward and backward: (B, NH, T, T) and (B, NH, T, 3 hs).
    pub tt: Vec<f32>,
    pub heads: Vec<f32>,
    /// Rotary angles for positions 0..T (rotary models only).
    pub rope: Option<Rope>,
}

impl Activations {
    pub fn new(config: &ModelConfig, b: usize, t: usize) -> Activations {
        let (nh, w) = (config.n_head, Widths::of(config));
        let c = w.c;
        let n = b * t;
        let z = |len: usize| vec![0.0f32; len];
        let mask = |len: usize| {
            if config.dropout > 0.0 { z(len) } else { Vec::new() }
        };
        let blocks = (0..config.n_layer)
            .map(|_| BlockActs {
                ln1: z(n * c),
                ln1_mean: z(n * w.mean),
                ln1_rstd: z(n),
                qkv: z(n * w.qkv),
                atty: z(n * w.attn),
                att: z(n * nh * t),
                att_mask: mask(n * nh * t),
                attproj: z(n * c),
                attproj_mask: mask(n * c),
                resid2: z(n * c),
                ln2: z(n * c),
                ln2_mean: z(n * w.mean),
                ln2_rstd: z(n),
                fch: z(n * w.mlp_in),
                fch_gelu: z(n * w.mlp),
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
            lnf_mean: z(n * w.mean),
            lnf_rstd: z(n),
            logits: z(n * config.padded_vocab_size()),
            losses: z(n),
            d_resid: z(n * c),
            d_a: z(n * c),
            d_b: z(n * c.max(w.attn)),
            d_qkv: z(n * w.qkv),
            d_fch: z(n * w.mlp_in),
            d_fch_gelu: z(n * w.mlp),
            tt: z(n * nh * t),
            heads: z(n * 3 * w.attn),
            rope: Rope::of(config, t),
        }
    }

    /// Bytes these buffers take for `config` at (B, T), counted without allocating them.
    /// Counted in 128 bits: a batch and context from flags can overflow 64, and the count
    /// decides whether training may start (saturating at `usize::MAX`).
    pub fn bytes(config: &ModelConfig, b: usize, t: usize) -> usize {
        let w = Widths::of(config);
        let u = |x: usize| x as u128;
        let (c, qkv, attn, mlp_in, mlp, mean) =
            (u(w.c), u(w.qkv), u(w.attn), u(w.mlp_in), u(w.mlp), u(w.mean));
        let n = u(b) * u(t);
        let nc = n * c;
        let att = n * u(config.n_head) * u(t);
        let (mask_att, mask_c) = if config.dropout > 0.0 { (att, nc) } else { (0, 0) };
        // ln1, attproj, resid2, ln2, fcproj, resid3; qkv, atty, fch, fch_gelu; norm statistics.
        let wide = n * (qkv + attn + mlp_in + mlp);
        let per_block = 6 * nc + wide + 2 * n * (1 + mean) + att + mask_att + 2 * mask_c;
        let top = 2 * nc + mask_c + n * (2 + mean) + n * u(config.padded_vocab_size());
        let d = 2 * nc + n * (c.max(attn) + qkv + mlp_in + mlp + 3 * attn);
        let floats = u(config.n_layer) * per_block + top + d + att + u(Rope::floats(config, t));
        usize::try_from(4 * floats + 8 * n).unwrap_or(usize::MAX)
    }

    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let mut floats = self.encoded.len() + self.encoded_mask.len() + self.lnf.len() + self.lnf_mean.len();
        floats += self.lnf_rstd.len() + self.logits.len() + self.losses.len() + self.d_resid.len();
        floats += self.d_a.len() + self.d_b.len() + self.d_qkv.len() + self.d_fch.len();
        floats += self.d_fch_gelu.len() + self.tt.len() + self.heads.len();
        floats += self.rope.as_ref().map_or(0, Rope::allocated_floats);
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
        for preset in ["baby", "smollm2-135m"] {
            for dropout in [0.0, 0.1] {
                let mut config = ModelConfig { dropout, ..ModelConfig::preset(preset).unwrap() };
                config.n_layer = 2;
                config.vocab_size = 300;
                let acts = Activations::new(&config, 3, 7);
                assert_eq!(Activations::bytes(&config, 3, 7), acts.allocated_bytes(), "{preset}");
            }
        }
    }
}
