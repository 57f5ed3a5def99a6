//! Token and position embeddings: out[b, t] = wte[token[b, t]] + wpe[t]. Rotary models have no
//! position table (`wpe` is `None`): positions enter inside attention.

use crate::kernels::vec::axpy;

/// out (B, T, C) from tokens (B, T), wte (Vp, C), wpe (T_max, C).
pub fn forward(out: &mut [f32], tokens: &[u32], wte: &[f32], wpe: Option<&[f32]>, t_len: usize, c: usize) {
    for (i, (row, &tok)) in out.chunks_exact_mut(c).zip(tokens).enumerate() {
        row.copy_from_slice(&wte[tok as usize * c..][..c]);
        if let Some(wpe) = wpe {
            axpy(row, 1.0, &wpe[(i % t_len) * c..][..c]);
        }
    }
}

/// dwte, dwpe += scatter of dout (B, T, C) to the rows that were looked up.
pub fn backward(
    dwte: &mut [f32],
    mut dwpe: Option<&mut [f32]>,
    dout: &[f32],
    tokens: &[u32],
    t_len: usize,
    c: usize,
) {
    for (i, (row, &tok)) in dout.chunks_exact(c).zip(tokens).enumerate() {
        axpy(&mut dwte[tok as usize * c..][..c], 1.0, row);
        if let Some(dwpe) = dwpe.as_deref_mut() {
            axpy(&mut dwpe[(i % t_len) * c..][..c], 1.0, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn gradients_match_finite_differences() {
        let (v, t, c) = (5, 3, 4);
        let tokens = [1u32, 4, 1, 0, 2, 2];
        let mut rng = Rng::new(1);
        let (wte, wpe) = (random(&mut rng, v * c, 1.0), random(&mut rng, t * c, 1.0));
        let r = random(&mut rng, tokens.len() * c, 1.0);
        let (mut dwte, mut dwpe) = (vec![0.0; v * c], vec![0.0; t * c]);
        backward(&mut dwte, Some(&mut dwpe), &r, &tokens, t, c);
        let mut out = vec![0.0; tokens.len() * c];
        check("wte", &wte, &dwte, |w| {
            forward(&mut out, &tokens, w, Some(&wpe), t, c);
            weighted_sum(&out, &r)
        });
        check("wpe", &wpe, &dwpe, |w| {
            forward(&mut out, &tokens, &wte, Some(w), t, c);
            weighted_sum(&out, &r)
        });
        let mut alone = vec![0.0; v * c];
        backward(&mut alone, None, &r, &tokens, t, c);
        assert_eq!(alone, dwte, "without positions, the token rows get the same gradient");
    }
}
