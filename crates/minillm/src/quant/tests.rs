use super::activations::Int8Activations;
use super::*;
use crate::rng::Rng;

fn normals(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * scale).collect()
}

/// The worst error a block format allows for a block whose largest magnitude is `amax`: half
/// a quantization step, plus the rounding of the scale to f16 (relative 2^-11, times the
/// largest integer). q4_0's mirror image of its extreme is clipped: a whole step.
/// The k-quants' bound is per super-block (`block` is 256 weights for them): their sub-block
/// scales are rounded to 6 or 8 bits of the super-block's largest, so a weight can be off by up
/// to a step of the coarsest sub-block, not half a step of its own.
fn bound(ty: QuantType, block: &[f32], v: f32) -> f32 {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (lo, hi) = block.iter().fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let half = 2f32.powi(-11);
    let with_min = |levels: f32| (hi - lo) / levels * (0.5 + levels * half) + lo.abs() * half;
    1.0001
        * match ty {
            QuantType::F16 => v.abs() * half + 6e-8,
            QuantType::Q8_0 => (amax / 127.0) * (0.5 + 127.0 * half),
            QuantType::Q4_0 => (amax / 8.0) * (1.0 + 8.0 * half),
            QuantType::Q5_0 => (amax / 16.0) * (1.0 + 16.0 * half),
            QuantType::Q4_1 => with_min(15.0),
            QuantType::Q5_1 => with_min(31.0),
            QuantType::Q4K => (hi - lo) / 15.0,
            QuantType::Q5K => (hi - lo) / 31.0,
            QuantType::Q6K => amax / 32.0,
        }
}

fn round_trip_within_bound(ty: QuantType, w: &[f32], cols: usize) -> f64 {
    let q = QMatrix::quantize(ty, w, w.len() / cols, cols).unwrap();
    assert_eq!(q.bytes().len() as f64, w.len() as f64 * ty.bits_per_weight() / 8.0);
    let back = q.dequantize();
    let mut sq = 0.0f64;
    for (block, got) in w.chunks(ty.block_weights()).zip(back.chunks(ty.block_weights())) {
        for (&a, &b) in block.iter().zip(got) {
            assert!((a - b).abs() <= bound(ty, block, a), "{}: {a} came back as {b}", ty.name());
            sq += ((a - b) as f64).powi(2);
        }
    }
    // Typical errors are far below the worst case: about a step / sqrt(12).
    let rms = (sq / w.len() as f64).sqrt();
    let amax_mean = w.chunks(BLOCK).map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64).sum::<f64>()
        / (w.len() / BLOCK) as f64;
    let step = match ty {
        QuantType::F16 => return rms,
        QuantType::Q8_0 => amax_mean / 127.0,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q4K => amax_mean / 8.0,
        QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q5K => amax_mean / 16.0,
        QuantType::Q6K => amax_mean / 32.0,
    };
    assert!(rms < 0.45 * step, "{}: rms error {rms:.3e} for a step of {step:.3e}", ty.name());
    rms
}

#[test]
fn round_trips_stay_within_each_formats_bound() {
    let mut rng = Rng::new(5);
    let mut w = normals(64 * 512, &mut rng, 0.02);
    w[7] = 0.9; // an outlier coarsens only its own block
    w[100] = 0.0;
    w[32 * 5..32 * 6].fill(0.0); // an all-zero block: scale 0, no division by it
    w[256 * 3..256 * 4].fill(0.0); // an all-zero super-block
    let rms: Vec<f64> = QuantType::ALL.iter().map(|&ty| round_trip_within_bound(ty, &w, 512)).collect();
    // The searched scales pay: each k-quant is closer than the plain type of its size, and
    // more bits are closer.
    let of = |ty: QuantType| rms[QuantType::ALL.iter().position(|&t| t == ty).unwrap()];
    for (better, than) in [
        (QuantType::Q4K, QuantType::Q4_0),
        (QuantType::Q4K, QuantType::Q4_1),
        (QuantType::Q5K, QuantType::Q5_0),
        (QuantType::Q5K, QuantType::Q5_1),
        (QuantType::Q6K, QuantType::Q5K),
        (QuantType::Q8_0, QuantType::Q6K),
    ] {
        assert!(
            of(better) < of(than),
            "{}: {:.3e}, {}: {:.3e}",
            better.name(),
            of(better),
            than.name(),
            of(than)
        );
    }
    // Real weights: every matrix of the PyTorch-made fixture model.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
    let model = crate::io::load_model(&dir).unwrap();
    let c = model.config.n_embd;
    for o in &model.layout.blocks {
        for range in [&o.attn_w, &o.attn_proj_w, &o.fc_w, &o.fc_proj_w] {
            let w = &model.params[range.clone()];
            for ty in QuantType::ALL.into_iter().filter(|t| c.is_multiple_of(t.block_weights())) {
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

/// sum |a_i * b_i|: the scale of a dot product's rounding error.
fn magnitude(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum()
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn simd_kernels_equal_the_portable_reference() {
    let mut rng = Rng::new(9);
    for ty in QuantType::ALL {
        let kernels = simd::all_kernels(ty);
        assert!(kernels.len() > 1 || !cfg!(target_arch = "x86_64") || !std::is_x86_feature_detected!("avx2"));
        for blocks in [1, 2, 3, 7, 24, 96] {
            let k = blocks * ty.block_weights();
            let rows = 4;
            let w = normals(rows * k, &mut rng, 0.05);
            let acts = 4;
            let xall = normals(acts * k, &mut rng, 1.0);
            let x = xall[..k].to_vec();
            let q = QMatrix::quantize(ty, &w, rows, k).unwrap();
            let deq = q.dequantize();
            let mut x8 = Int8Activations::default();
            x8.quantize(&xall, acts, k);
            let xs = if ty == QuantType::F16 { x.clone() } else { x8.row(0).dequantize() };
            if let simd::Kernel::Int8(_) = kernels[0].0 {
                // Several activation rows at once give each row exactly what it gets alone.
                for &(kernel, name) in &kernels {
                    let simd::Kernel::Int8(dot) = kernel else { unreachable!() };
                    for n in 1..=rows {
                        for a in 1..=acts {
                            let all: Vec<_> = (0..a).map(|i| x8.row(i)).collect();
                            let mut together = vec![f32::NAN; n * a];
                            dot(&q.bytes(), &all, &mut together);
                            for (i, got) in together.chunks(n).enumerate() {
                                let mut alone = vec![f32::NAN; n];
                                dot(&q.bytes(), &[x8.row(i)], &mut alone);
                                assert_eq!(
                                    got,
                                    &alone[..],
                                    "{} {name}: {n} rows x {a} activations",
                                    ty.name()
                                );
                            }
                        }
                    }
                }
            }
            // Each kernel for 1 to 4 rows at a time, against the portable one.
            for n in 1..=rows {
                let run = |kernel: simd::Kernel| -> Vec<f32> {
                    let mut out = vec![f32::NAN; n];
                    match kernel {
                        simd::Kernel::Float(dot) => {
                            let row_bytes = q.bytes().len() / rows;
                            for (o, row) in out.iter_mut().zip(q.bytes().chunks(row_bytes)) {
                                *o = dot(row, &x);
                            }
                        }
                        simd::Kernel::Int8(dot) => dot(&q.bytes(), &[x8.row(0)], &mut out),
                    }
                    out
                };
                let want = run(kernels[0].0);
                for &(kernel, name) in &kernels[1..] {
                    for (r, (got, want)) in run(kernel).iter().zip(&want).enumerate() {
                        // Same products, summed in another order: equal up to float rounding.
                        let scale = magnitude(&deq[r * k..(r + 1) * k], &xs);
                        assert!(
                            ((got - want).abs() as f64) <= 1e-6 * scale + 1e-7,
                            "{} {name}, {n} rows, row {r}: {got} vs {want}",
                            ty.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_interleaved_layout_keeps_every_byte_and_product() {
    let mut rng = Rng::new(17);
    let kernel_of = |ty| {
        interleaved::kernel(ty)
            .into_iter()
            .map(|k| (k, "SIMD"))
            .chain([(interleaved::reference(ty), "portable")])
    };
    for ty in [QuantType::Q8_0, QuantType::Q4_0] {
        // Groups that are full, partial (the last padded with zero rows) and alone.
        for (rows, blocks) in [(1, 1), (7, 3), (8, 2), (9, 1), (17, 3), (42, 24)] {
            let k = blocks * BLOCK;
            let w = normals(rows * k, &mut rng, 0.05);
            let (plain, packed) = QMatrix::quantize(ty, &w, rows, k).unwrap().layouts();
            let packed = packed.expect("q8_0 and q4_0 interleave");
            assert_eq!(*packed.bytes(), *plain.bytes(), "{} {rows} x {k}: GGUF bytes back", ty.name());
            assert_eq!(packed.dequantize(), plain.dequantize());
            let (mut a, mut b) = (vec![0.0; k], vec![0.0; k]);
            for r in 0..rows {
                packed.dequantize_row(r, &mut a);
                plain.dequantize_row(r, &mut b);
                assert_eq!(a, b, "{} row {r}", ty.name());
            }
            // Products through the layout (portable kernel) against the rows' own, 1 to 9
            // rows of x (full and partial groups of four), with a bias.
            let bias = normals(rows, &mut rng, 0.1);
            for m in 1..=9 {
                let x = normals(m * k, &mut rng, 1.0);
                let (mut want, mut got) = (vec![f32::NAN; m * rows], vec![f32::NAN; m * rows]);
                plain.times(&mut want, &x, Some(&bias), m);
                packed.times(&mut got, &x, Some(&bias), m);
                let deq = plain.dequantize();
                let mut x8 = Int8Activations::default();
                x8.quantize(&x, m, k);
                for i in 0..m {
                    for j in 0..rows {
                        let scale = magnitude(&deq[j * k..(j + 1) * k], &x8.row(i).dequantize());
                        let (g, w) = (got[i * rows + j], want[i * rows + j]);
                        assert!(
                            ((g - w).abs() as f64) <= 1e-6 * scale + 1e-6,
                            "{} {rows}x{k} m {m}: {g} vs {w}",
                            ty.name()
                        );
                    }
                }
            }
            // Stacked on a matrix of whole groups and of a partial one: the rows' bytes one after
            // the other, in the layout, and the same products.
            for top_rows in [8, 9] {
                let top = QMatrix::quantize(ty, &normals(top_rows * k, &mut rng, 0.05), top_rows, k).unwrap();
                let (top_plain, top_packed) = top.layouts();
                let want = top_plain.stacked(&plain).unwrap();
                let got = top_packed.unwrap().stacked(&packed).unwrap();
                assert!(
                    got.is_interleaved() || top_rows % interleaved::GROUP_ROWS != 0,
                    "whole groups join as they are"
                );
                assert_eq!(
                    *got.bytes(),
                    [top.bytes(), plain.bytes()].concat()[..],
                    "{} {top_rows} + {rows}",
                    ty.name()
                );
                let x = normals(3 * k, &mut rng, 1.0);
                let (mut a, mut b) = (vec![f32::NAN; 3 * got.rows], vec![f32::NAN; 3 * got.rows]);
                got.times(&mut a, &x, None, 3);
                want.times(&mut b, &x, None, 3);
                for (g, w) in a.iter().zip(&b) {
                    assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{} stacked: {g} vs {w}", ty.name());
                }
            }
            // Each kernel on one group: several activation rows give each exactly what it gets
            // alone, and the SIMD kernel what the portable one gives, up to float rounding.
            let group = &interleaved::pack(ty, rows, k, &plain.bytes())[..interleaved::group_bytes(ty, k)];
            let most = interleaved::ACTIVATION_ROWS;
            let x = normals(most * k, &mut rng, 1.0);
            let mut x8 = Int8Activations::default();
            x8.quantize(&x, most, k);
            let all: Vec<_> = (0..most).map(|i| x8.row(i)).collect();
            let mut want = vec![[f32::NAN; interleaved::GROUP_ROWS]; most];
            interleaved::reference(ty)(group, &all, &mut want);
            for (kernel, name) in kernel_of(ty) {
                for a in 1..=most {
                    let mut together = vec![[f32::NAN; interleaved::GROUP_ROWS]; a];
                    kernel(group, &all[..a], &mut together);
                    for (i, got) in together.iter().enumerate() {
                        let mut alone = [[f32::NAN; interleaved::GROUP_ROWS]; 1];
                        kernel(group, &all[i..i + 1], &mut alone);
                        assert_eq!(got, &alone[0], "{} {name}: {a} activation rows", ty.name());
                        for (g, w) in got.iter().zip(&want[i]) {
                            assert!(
                                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                                "{} {name}: {g} vs {w}",
                                ty.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_activation_rounding_gives_the_portable_values() {
    use super::activations::{quantize_portable, quantizer};
    let mut rng = Rng::new(19);
    let mut x = normals(5 * 64, &mut rng, 3.0);
    x[70] = 1e-30; // a block of zeros but one tiny value
    x[64..70].fill(0.0);
    x[71..96].fill(0.0);
    // A block whose scale is 1: halves round to even (2.5 -> 2, -3.5 -> -4), as llama.cpp's
    // SIMD rounding does.
    x[128..160].copy_from_slice(&std::array::from_fn::<f32, 32, _>(|i| {
        if i == 0 { 127.0 } else { i as f32 - 14.5 }
    }));
    x[192..224].fill(0.0); // scale 0, no division by it
    let (simd, name) = quantizer();
    let mut want = Int8Activations::default();
    let mut got = Int8Activations::default();
    want.quantize_by(quantize_portable, &x, 5, 64);
    got.quantize_by(simd, &x, 5, 64);
    for i in 0..5 {
        let (w, g) = (want.row(i), got.row(i));
        assert_eq!(
            (w.q, w.scales, w.offsets, w.lane_sums),
            (g.q, g.scales, g.offsets, g.lane_sums),
            "{name}, row {i}"
        );
    }
    assert_eq!(&want.row(2).q[1..4], &[-14, -12, -12], "ties to even");
}

#[test]
fn activations_round_to_8_bits_within_half_a_step() {
    let mut rng = Rng::new(13);
    let mut x = normals(3 * 96, &mut rng, 2.0);
    x[5] = 40.0; // an outlier coarsens only its own block
    x[64..96].fill(0.0); // scale 0, no division by it
    let mut x8 = Int8Activations::default();
    x8.quantize(&x, 3, 96);
    for i in 0..3 {
        let row = x8.row(i);
        let back = row.dequantize();
        for (b, (xs, got)) in x[i * 96..(i + 1) * 96].chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = row.scales[b];
            assert_eq!(d, amax / 127.0);
            let q = &row.q[b * BLOCK..(b + 1) * BLOCK];
            assert!(q.iter().all(|&q| q != i8::MIN));
            assert_eq!(row.offsets[b], [-q.iter().map(|&q| q as i32).sum::<i32>(); 8]);
            for (a, g) in xs.iter().zip(got) {
                assert!((a - g).abs() <= d * 0.5001 + 1e-7, "{a} came back as {g} (step {d})");
            }
        }
    }
    assert!(x8.row(0).q[BLOCK * 2..].iter().all(|&q| q == 0) && x8.row(0).scales[2] == 0.0);
}

#[test]
fn the_quantized_product_is_the_dequantized_product() {
    let mut rng = Rng::new(11);
    // Small (one thread) and large (split across threads) shapes, row counts that do and do not
    // fill the kernels' four rows, with and without bias; activation rows that do and do not
    // fill groups of four, and enough of them (m >= 16) for f16 to widen tiles into GEMM.
    for &(m, n, k) in
        &[(1, 5, 64), (3, 42, 96), (1, 701, 256), (4, 300, 320), (6, 70, 64), (19, 130, 96), (5, 66, 512)]
    {
        let w = normals(n * k, &mut rng, 0.05);
        let x = normals(m * k, &mut rng, 1.0);
        let bias = normals(n, &mut rng, 0.1);
        let mut x8 = Int8Activations::default();
        x8.quantize(&x, m, k);
        for ty in QuantType::ALL.into_iter().filter(|t| k.is_multiple_of(t.block_weights())) {
            let q = QMatrix::quantize(ty, &w, n, k).unwrap();
            let deq = q.dequantize();
            for b in [None, Some(bias.as_slice())] {
                let mut out = vec![f32::NAN; m * n];
                q.times(&mut out, &x, b, m);
                for i in 0..m {
                    let x = &x[i * k..(i + 1) * k];
                    // f16 multiplies x as it is; q8_0 and q4_0 multiply x rounded to 8 bits.
                    let xs = if ty == QuantType::F16 { x.to_vec() } else { x8.row(i).dequantize() };
                    for j in 0..n {
                        let row = &deq[j * k..(j + 1) * k];
                        let bias = b.map_or(0.0, |b| b[j] as f64);
                        let got = out[i * n + j] as f64;
                        let want = dot64(row, &xs) + bias;
                        assert!(
                            (got - want).abs() <= 1e-6 * magnitude(row, &xs) + 1e-6,
                            "{} ({i}, {j}): {got} vs {want}",
                            ty.name()
                        );
                        // And the rounding of x moves the product by at most half a step of
                        // each block of x times the weights it meets.
                        let steps: f64 = row
                            .chunks(BLOCK)
                            .zip(x.chunks(BLOCK))
                            .map(|(w, xb)| {
                                let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                                d / 2.0 * w.iter().map(|w| w.abs() as f64).sum::<f64>()
                            })
                            .sum();
                        let exact = dot64(row, x) + bias;
                        assert!(
                            (got - exact).abs() <= steps * 1.001 + 1e-6 * magnitude(row, x) + 1e-6,
                            "{} ({i}, {j}): {got} vs f32 activations' {exact}, bound {steps}",
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
    let err = QMatrix::quantize(QuantType::Q4K, &[0.0; 96], 1, 96).unwrap_err().to_string();
    assert!(err.contains("multiple of 256"), "{err}");
    let err = QMatrix::from_bytes(QuantType::Q4_0, 2, 64, vec![0; 71]).unwrap_err().to_string();
    assert!(err.contains("needs 72 bytes, got 71"), "{err}");
    assert_eq!(QuantType::parse("Q4_0").unwrap(), QuantType::Q4_0);
    assert_eq!(QuantType::parse("q5_k").unwrap(), QuantType::Q5K);
    assert!(QuantType::parse("q3_K").unwrap_err().to_string().contains("f16, q8_0, q4_0, q4_1"));
    assert_eq!(
        QuantType::ALL.map(|t| t.bits_per_weight()),
        [16.0, 8.5, 4.5, 5.0, 5.5, 6.0, 4.5, 5.5, 6.5625]
    );
}

/// The fixture made by scripts/reference/quant_blocks.py with the `gguf` package.
fn gguf_package_blocks() -> Vec<(String, Vec<u8>)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant/blocks.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[test]
fn blocks_decode_and_quantize_as_the_gguf_package_does() {
    let tensors = gguf_package_blocks();
    let get = |name: &str| &tensors.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("{name}")).1;
    let weights = f32s(get("weights"));
    let (rows, cols) = (8, 512);
    for ty in
        [QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q4K, QuantType::Q5K, QuantType::Q6K]
    {
        let blocks = get(&format!("{}.blocks", ty.name()));
        let want = f32s(get(&format!("{}.dequantized", ty.name())));
        let m = QMatrix::from_bytes(ty, rows, cols, blocks.clone()).unwrap();
        let got = m.dequantize();
        // Bit for bit: the same operations in the same order.
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{}: {differ} of {} values differ", ty.name(), want.len());
        if ty.block_weights() == BLOCK {
            // Types the package quantizes: the same bytes.
            let ours = QMatrix::quantize(ty, &weights, rows, cols).unwrap();
            assert!(ours.bytes() == &blocks[..], "{}: blocks differ from the gguf package's", ty.name());
        }
    }
}

#[test]
fn f16_widens_to_the_exact_f32_of_every_value() {
    // Every f16 bit pattern (subnormals, infinities and NaNs included), little-endian, from an
    // aligned start, against the per-value conversion; a misaligned start is refused.
    let data: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
    let mut padded = vec![0u8; data.len() + 2];
    let a = padded.as_ptr().align_offset(2);
    padded[a..a + data.len()].copy_from_slice(&data);
    let same = |got: f32, pair: &[u8]| {
        let want = half::f16::from_le_bytes([pair[0], pair[1]]).to_f32();
        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
    };
    let mut out = vec![0.0f32; data.len() / 2];
    assert!(super::matrix::widen_f16(&padded[a..a + data.len()], &mut out));
    for (i, (&got, pair)) in out.iter().zip(data.chunks_exact(2)).enumerate() {
        assert!(same(got, pair), "f16 bits {i:#06x} widened to {got}");
    }
    assert!(!super::matrix::widen_f16(&padded[a + 1..a + 1 + data.len()], &mut out));
    // Through a matrix, whichever path its bytes take.
    let q = QMatrix::from_bytes(QuantType::F16, 2, 32, data[..128].to_vec()).unwrap();
    assert!(q.dequantize().iter().zip(data.chunks_exact(2)).all(|(&got, pair)| same(got, pair)));
}
