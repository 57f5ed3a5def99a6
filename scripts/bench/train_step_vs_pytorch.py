#!/usr/bin/env python3
"""Training-step speed, minillm against PyTorch eager, on this machine in one run.

    cargo build --release && python3 scripts/bench/train_step_vs_pytorch.py [--threads 2] [--rounds 3] [--only PRESET]

For each shape, PyTorch (HF GPT2LMHeadModel, or LlamaForCausalLM for the SmolLM2-135M shape;
eager attention, dropout 0, float32, the same thread count) and `minillm bench train-step` take
turns for several rounds, because this machine's speed drifts; the best round of each counts. Prints tokens/s (forward + backward)
and the ratio minillm / PyTorch. Needs `pip install torch transformers`.
"""
import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

SHAPES = [
    # name, minillm preset, layers, heads, width, context, vocab, batch
    ("baby GPT (nanoGPT shakespeare_char on CPU)", "baby", 4, 4, 128, 64, 65, 12),
    ("GPT-2 small shape, batch 1", "gpt2", 12, 12, 768, 256, 50257, 1),
    ("GPT-2 small shape, batch 4", "gpt2", 12, 12, 768, 256, 50257, 4),
    ("SmolLM2-135M shape (Llama), batch 1", "smollm2-135m", 30, 9, 576, 256, 49152, 1),
]
# SmolLM2-135M's config.json, as transformers writes it (the rest of its shape is above).
SMOLLM2 = dict(num_key_value_heads=3, intermediate_size=1536, rope_theta=100000.0, rms_norm_eps=1e-5,
               tie_word_embeddings=True, max_position_embeddings=8192)
MINILLM = Path(__file__).resolve().parents[2] / "target" / "release" / "minillm"


def torch_tokens_per_s(preset, layers, heads, width, context, vocab, batch, steps):
    if preset == "smollm2-135m":
        config = LlamaConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=width,
                             vocab_size=vocab, attention_dropout=0.0, **SMOLLM2)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(n_layer=layers, n_head=heads, n_embd=width, n_positions=context, vocab_size=vocab,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "eager"
    model.train()
    x = torch.randint(0, vocab, (batch, context))
    y = torch.randint(0, vocab, (batch, context))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x).logits.view(-1, vocab), y.view(-1))
        loss.backward()
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    return batch * context / times[len(times) // 2]


def minillm_tokens_per_s(preset, context, batch, steps, threads):
    out = subprocess.run([str(MINILLM), "--threads", str(threads), "bench", "train-step", "--preset", preset,
                          "--batch", str(batch), "--context", str(context), "--steps", str(steps), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tokens_per_s"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="run only the shapes whose minillm preset is this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.rounds} alternating rounds")
    for name, preset, layers, heads, width, context, vocab, batch in SHAPES:
        if args.only and preset != args.only:
            continue
        steps = 20 if width < 256 else 3
        ours, theirs = 0.0, 0.0
        for _ in range(args.rounds):
            theirs = max(theirs, torch_tokens_per_s(preset, layers, heads, width, context, vocab, batch, steps))
            ours = max(ours, minillm_tokens_per_s(preset, context, batch, steps, args.threads))
        print(f"{name}: minillm {ours:,.0f} tokens/s, PyTorch {theirs:,.0f} tokens/s, ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
