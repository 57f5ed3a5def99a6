#!/usr/bin/env python3
"""Blocks of every GGUF type minillm reads, made and decoded by the `gguf` package (llama.cpp's
own Python library), for minillm's block tests.

    python3 scripts/reference/quant_blocks.py crates/minillm/tests/fixtures/quant/blocks.safetensors

Writes one safetensors file holding `weights` (8 x 512 f32, normal with outliers and an
all-zero block), and per type T:
- q4_1, q5_0, q5_1 (types the package quantizes): `T.blocks`, the package's blocks for the
  weights (u8), and `T.dequantized`, the package's decoding of them;
- q4_K, q5_K, q6_K (the package decodes them but does not quantize): `T.blocks`, random
  blocks with sane f16 scales, and `T.dequantized`, the package's decoding of them. That their
  quantizer matches llama.cpp's byte for byte is checked against `llama-quantize` by
  scripts/interop/check_llama_cpp.py.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES
from safetensors.numpy import save_file

rng = np.random.default_rng(7)
rows, cols = 8, 512
weights = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
weights[1, 3] = 1.5  # an outlier
weights[2, 32:64] = 0.0  # an all-zero block
weights[3] += 0.2  # rows not centred on zero (the minimum matters)
out = {"weights": weights}

for name, t in [("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)]:
    blocks = quants.quantize(weights, t)
    out[f"{name}.blocks"] = np.ascontiguousarray(blocks.view(np.uint8))
    out[f"{name}.dequantized"] = quants.dequantize(blocks, t).astype(np.float32)


def half(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8).reshape(-1, 2)


for name, t in [("q4_K", T.Q4_K), ("q5_K", T.Q5_K), ("q6_K", T.Q6_K)]:
    block_weights, block_bytes = GGML_QUANT_SIZES[t]
    n = rows * cols // block_weights
    blocks = rng.integers(0, 256, size=(n, block_bytes), dtype=np.uint8)
    scales = half(rng.uniform(1e-4, 2e-2, size=n))
    if t == T.Q6_K:
        blocks[:, -2:] = scales  # d is last
    else:
        blocks[:, 0:2] = scales  # d, then dmin
        blocks[:, 2:4] = half(rng.uniform(1e-4, 2e-2, size=n))
    blocks = blocks.reshape(rows, -1)
    out[f"{name}.blocks"] = blocks
    out[f"{name}.dequantized"] = quants.dequantize(blocks, t).astype(np.float32)

save_file(out, sys.argv[1])
print(f"wrote {sys.argv[1]}: {', '.join(sorted(out))}")
