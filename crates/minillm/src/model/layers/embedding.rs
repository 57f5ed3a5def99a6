//! Token and position embeddings: out[b, t] = wte[token[b, t]] + wpe[t].

/// out (B, T, C) from tokens (B, T), wte (Vp, C), wpe (T_max, C).
pub fn forward(out: &mut [f32], tokens: &[u32], wte: &[f32], wpe: &[f32], t_len: usize, c: usize) {
    for (i, (row, &tok)) in out.chunks_exact_mut(c).zip(tokens).enumerate() {
        let te = &wte[tok as usize * c..][..c];
        let pe = &wpe[(i % t_len) * c..][..c];
        for ((o, &a), &b) in row.iter_mut().zip(te).zip(pe) {
            *o = a + b;
        }
    }
}

/// dwte, dwpe += scatter of dout (B, T, C) to the rows that were looked up.
pub fn backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], tokens: &[u32], t_len: usize, c: usize) {
    for (i, (row, &tok)) in dout.chunks_exact(c).zip(tokens).enumerate() {
        crate::kernels::vec::axpy(&mut dwte[tok as usize * c..][..c], 1.0, row);
        crate::kernels::vec::axpy(&mut dwpe[(i % t_len) * c..][..c], 1.0, row);
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
        backward(&mut dwte, &mut dwpe, &r, &tokens, t, c);
        let mut out = vec![0.0; tokens.len() * c];
        check("wte", &wte, &dwte, |w| {
            forward(&mut out, &tokens, w, &wpe, t, c);
            weighted_sum(&out, &r)
        });
        check("wpe", &wpe, &dwpe, |w| {
            forward(&mut out, &tokens, &wte, w, t, c);
            weighted_sum(&out, &r)
        });
    }
}
