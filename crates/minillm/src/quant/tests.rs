use super::*;
use crate::rng::Rng;

fn normals(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * scale).collect()
}

/// The worst error a block format allows for a block whose largest magnitude is `amax`: half
/// a quantization step, plus the rounding of the scale to f16 (relative 2^-11, times the
/// largest integer). q4_0's mirror image of its extreme is clipped: a whole step.
fn bound(ty: QuantType, amax: f32, v: f32) -> f32 {
    match ty {
        QuantType::F16 => v.abs() * 2f32.powi(-11) + 6e-8,
        QuantType::Q8_0 => (amax / 127.0) * (0.5 + 127.0 * 2f32.powi(-11)) * 1.0001,
        QuantType::Q4_0 => (amax / 8.0) * (1.0 + 8.0 * 2f32.powi(-11)) * 1.0001,
    }
}

fn round_trip_within_bound(ty: QuantType, w: &[f32], cols: usize) {
    let q = QMatrix::quantize(ty, w, w.len() / cols, cols).unwrap();
    assert_eq!(q.bytes().len() as f64, w.len() as f64 * ty.bits_per_weight() / 8.0);
    let back = q.dequantize();
    let mut sq = 0.0f64;
    for (block, got) in w.chunks(BLOCK).zip(back.chunks(BLOCK)) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (&a, &b) in block.iter().zip(got) {
            assert!(
                (a - b).abs() <= bound(ty, amax, a),
                "{}: {a} came back as {b} (block max {amax})",
                ty.name()
            );
            sq += ((a - b) as f64).powi(2);
        }
    }
    // Typical errors are far below the worst case: about a step / sqrt(12).
    let rms = (sq / w.len() as f64).sqrt();
    let amax_mean = w.chunks(BLOCK).map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64).sum::<f64>()
        / (w.len() / BLOCK) as f64;
    let step = match ty {
        QuantType::F16 => return,
        QuantType::Q8_0 => amax_mean / 127.0,
        QuantType::Q4_0 => amax_mean / 8.0,
    };
    assert!(rms < 0.45 * step, "{}: rms error {rms:.3e} for a step of {step:.3e}", ty.name());
}

#[test]
fn round_trips_stay_within_each_formats_bound() {
    let mut rng = Rng::new(5);
    let mut w = normals(64 * 96, &mut rng, 0.02);
    w[7] = 0.9; // an outlier coarsens only its own block
    w[100] = 0.0;
    w[32 * 5..32 * 6].fill(0.0); // an all-zero block: scale 0, no division by it
    for ty in QuantType::ALL {
        round_trip_within_bound(ty, &w, 96);
    }
    // Real weights: every matrix of the PyTorch-made fixture model.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
    let model = crate::io::load_model(&dir).unwrap();
    let c = model.config.n_embd;
    for o in &model.layout.blocks {
        for range in [&o.attn_w, &o.attn_proj_w, &o.fc_w, &o.fc_proj_w] {
            let w = &model.params[range.clone()];
            for ty in QuantType::ALL {
                round_trip_within_bound(ty, w, c);
            }
        }
    }
}

#[test]
fn blocks_have_llama_cpps_bytes() {
    // x_j = j - 16: q4_0's largest magnitude is -16, so d = -16 / -8 = 2 and -16 maps to 0.
    let x: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
    let q4 = QMatrix::quantize(QuantType::Q4_0, &x, 1, 32).unwrap();
    let b = q4.bytes();
    assert_eq!(b.len(), 18);
    assert_eq!(&b[..2], &half::f16::from_f32(2.0).to_le_bytes());
    // Byte j: element j (x/2 + 8, rounded) low, element j + 16 high; +15/2+8 = 15.5 -> 16 -> 15.
    for j in 0..16 {
        let (low, high) = (b[2 + j] & 15, b[2 + j] >> 4);
        assert_eq!(low as f32, ((j as f32 - 16.0) / 2.0 + 8.5).floor(), "byte {j}");
        assert_eq!(high, (((j as f32) / 2.0 + 8.5).floor() as u8).min(15), "byte {j}");
    }
    let q8 = QMatrix::quantize(QuantType::Q8_0, &x, 1, 32).unwrap();
    let b = q8.bytes();
    assert_eq!(b.len(), 34);
    assert_eq!(&b[..2], &half::f16::from_f32(16.0 / 127.0).to_le_bytes());
    assert_eq!((b[2] as i8, b[2 + 16] as i8, b[33] as i8), (-127, 0, 119)); // 15 * 127 / 16 = 119.06
}

#[test]
fn simd_kernels_equal_the_portable_reference() {
    let mut rng = Rng::new(9);
    for ty in QuantType::ALL {
        let kernels = simd::all_kernels(ty);
        for blocks in [1, 2, 3, 7, 24, 96] {
            let k = blocks * BLOCK;
            let w = normals(k, &mut rng, 0.05);
            let x = normals(k, &mut rng, 1.0);
            let q = QMatrix::quantize(ty, &w, 1, k).unwrap();
            let want = (kernels[0].0)(q.bytes(), &x);
            let deq = q.dequantize();
            let magnitude: f32 = deq.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            for &(dot, name) in &kernels[1..] {
                let got = dot(q.bytes(), &x);
                // Same products, summed in another order: equal up to float rounding.
                assert!(
                    (got - want).abs() <= 1e-6 * magnitude + 1e-7,
                    "{} {name}: {got} vs {want}",
                    ty.name()
                );
            }
        }
    }
}

#[test]
fn the_quantized_product_is_the_dequantized_product() {
    let mut rng = Rng::new(11);
    // Small (one thread) and large (split across threads) shapes, with and without bias.
    for &(m, n, k) in &[(1, 5, 64), (3, 40, 96), (1, 700, 256), (4, 300, 320)] {
        let w = normals(n * k, &mut rng, 0.05);
        let x = normals(m * k, &mut rng, 1.0);
        let bias = normals(n, &mut rng, 0.1);
        for ty in QuantType::ALL {
            let q = QMatrix::quantize(ty, &w, n, k).unwrap();
            let deq = q.dequantize();
            for b in [None, Some(bias.as_slice())] {
                let mut out = vec![f32::NAN; m * n];
                q.times(&mut out, &x, b, m);
                for i in 0..m {
                    for j in 0..n {
                        let terms = deq[j * k..(j + 1) * k].iter().zip(&x[i * k..(i + 1) * k]);
                        let want: f64 = terms.clone().map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                            + b.map_or(0.0, |b| b[j] as f64);
                        let magnitude: f64 = terms.map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-6 * magnitude + 1e-6,
                            "{} ({i}, {j}): {got} vs {want}",
                            ty.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn bad_shapes_and_sizes_are_refused() {
    let err = QMatrix::quantize(QuantType::Q8_0, &[0.0; 40], 1, 40).unwrap_err().to_string();
    assert!(err.contains("multiple of 32"), "{err}");
    let err = QMatrix::from_bytes(QuantType::Q4_0, 2, 64, vec![0; 71]).unwrap_err().to_string();
    assert!(err.contains("needs 72 bytes, got 71"), "{err}");
    assert_eq!(QuantType::parse("Q4_0").unwrap(), QuantType::Q4_0);
    assert!(QuantType::parse("q5_k").unwrap_err().to_string().contains("f16, q8_0 or q4_0"));
    assert_eq!(QuantType::ALL.map(|t| t.bits_per_weight()), [16.0, 8.5, 4.5]);
}
