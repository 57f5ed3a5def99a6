#!/usr/bin/env python3
"""Checks a GGUF file written by `minillm export --format gguf` with llama.cpp's own `gguf` package.

    python3 scripts/interop/check_gguf.py MODEL.gguf HF_DIR [DEQUANTIZED_HF_DIR]

HF_DIR is the same model exported with `minillm export --format hf` (config.json,
model.safetensors, vocab.json, merges.txt). For a quantized file (q8_0 / q4_0), DEQUANTIZED_HF_DIR
is the GGUF file itself exported back with `minillm export --format hf`: the weights minillm
computes with. Checks, against them:
  - the metadata llama.cpp's `gpt2` architecture reads (block count, context, width, heads,
    feed-forward width, LayerNorm epsilon, file type);
  - the tokenizer: every token text by id (= vocab.json), every merge (= merges.txt), token types;
  - every tensor: llama.cpp's name, its shape, and its values (HF's Conv1D weights transposed),
    exactly for f32 and as numpy's float16 rounding of the same values for f16;
  - quantized tensors: the blocks are byte for byte what the gguf package's own quantizer (its
    numpy port of llama.cpp's) makes of HF_DIR's weights, and the gguf package's dequantization
    of them equals minillm's dequantized weights exactly.
Needs `pip install gguf safetensors numpy`. Exits non-zero on the first difference.
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
NAMES = {
    "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    short = hf.removeprefix("transformer.")
    fixed = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
             "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    if short in fixed:
        return fixed[short]
    _, block, rest = short.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{block}.{NAMES[module]}.{kind}"


def fail(msg: str) -> None:
    print(f"FAIL: {msg}")
    sys.exit(1)


def main(gguf_path: Path, hf_dir: Path, dequantized_dir: Path | None) -> None:
    reader = GGUFReader(gguf_path)
    meta = {k: f.contents() for k, f in reader.fields.items()}
    config = json.loads((hf_dir / "config.json").read_text())
    want = {
        "general.architecture": "gpt2",
        "gpt2.block_count": config["n_layer"],
        "gpt2.context_length": config["n_positions"],
        "gpt2.embedding_length": config["n_embd"],
        "gpt2.feed_forward_length": 4 * config["n_embd"],
        "gpt2.attention.head_count": config["n_head"],
        "tokenizer.ggml.model": "gpt2",
    }
    for key, value in want.items():
        if meta.get(key) != value:
            fail(f"metadata {key} is {meta.get(key)!r}, expected {value!r}")
    eps = meta.get("gpt2.attention.layer_norm_epsilon")
    if eps is None or abs(eps - config["layer_norm_epsilon"]) > 1e-9:
        fail(f"layer_norm_epsilon {eps} vs {config['layer_norm_epsilon']}")
    print(f"metadata: {len(want) + 1} keys match config.json")

    vocab = json.loads((hf_dir / "vocab.json").read_text())
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    tokens = meta["tokenizer.ggml.tokens"]
    if [t for t, _ in by_id] != tokens or [i for _, i in by_id] != list(range(len(tokens))):
        fail("tokenizer.ggml.tokens differs from vocab.json")
    merges = [line for line in (hf_dir / "merges.txt").read_text().splitlines()[1:] if line]
    if meta["tokenizer.ggml.merges"] != merges:
        fail("tokenizer.ggml.merges differs from merges.txt")
    types = meta["tokenizer.ggml.token_type"]
    if len(types) != len(tokens) or not set(types) <= {1, 3}:
        fail("token_type is not one NORMAL (1) or CONTROL (3) per token")
    print(f"tokenizer: {len(tokens)} tokens and {len(merges)} merges match vocab.json / merges.txt")

    hf = {k: v for k, v in load_file(hf_dir / "model.safetensors").items()
          if not k.endswith((".attn.bias", ".attn.masked_bias")) and k != "lm_head.weight"}
    tensors = {t.name: t for t in reader.tensors}
    if len(tensors) != len(hf):
        fail(f"{len(tensors)} tensors in the GGUF file, {len(hf)} in the HF model")
    dequantized = load_file(dequantized_dir / "model.safetensors") if dequantized_dir else None
    worst, quantized = 0.0, 0
    for name, value in hf.items():
        t = tensors.get(gguf_name(name))
        if t is None:
            fail(f"{gguf_name(name)} (from {name}) is missing")
        expected = value.T if name.endswith(CONV1D) else value
        if t.tensor_type in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0):
            if dequantized is None:
                fail(f"{t.name} is {t.tensor_type.name}: pass the dequantized HF export too")
            blocks = np.asarray(t.data)
            theirs = quantize(np.ascontiguousarray(expected, dtype=np.float32), t.tensor_type)
            if blocks.tobytes() != theirs.tobytes():
                fail(f"{t.name}: {t.tensor_type.name} blocks differ from the gguf package's quantization")
            ours = dequantized[name].T if name.endswith(CONV1D) else dequantized[name]
            back = dequantize(blocks, t.tensor_type).reshape(expected.shape)
            if not np.array_equal(back, ours):
                fail(f"{t.name}: the gguf package dequantizes to other values than minillm's")
            err = float(np.max(np.abs(back - expected)))
            print(f"  {t.name}: {t.tensor_type.name}, blocks identical, largest rounding {err:.2e}")
            quantized += 1
            continue
        got = np.asarray(t.data).reshape(expected.shape)
        if t.tensor_type == GGMLQuantizationType.F16:
            expected = expected.astype(np.float16)
        elif t.tensor_type != GGMLQuantizationType.F32:
            fail(f"{t.name} has type {t.tensor_type.name}; expected F32, F16, Q8_0 or Q4_0")
        if expected.ndim == 1 and t.tensor_type != GGMLQuantizationType.F32:
            fail(f"{t.name} is 1-D but not F32 (llama.cpp keeps norms and biases in F32)")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        worst = max(worst, diff)
        if diff != 0.0:
            fail(f"{t.name} differs from {name} by up to {diff}")
    print(f"tensors: all {len(hf)} match ({quantized} quantized as llama.cpp does; the others exactly, "
          f"largest difference {worst})")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        sys.exit(2)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None)
