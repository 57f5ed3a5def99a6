#!/usr/bin/env python3
"""Generation speed, minillm against HF transformers, on this machine in one run.

    cargo build --release && python3 scripts/bench/decode_vs_hf.py [--threads 2] [--rounds 3]
    cargo build --release && python3 scripts/bench/decode_vs_hf.py --shape smollm2-135m

GPT-2 small's shape with random weights (speed does not depend on their values): a 16-token
prompt and 128 new tokens per sequence, greedy, at batch 1 and batch 8. HF transformers runs
`generate(do_sample=False, use_cache=True)` in float32 with the same thread count; minillm runs
`minillm bench decode`. With `--shape smollm2-135m`: SmolLM2-135M's shape (HF's
LlamaForCausalLM) at batch 1, minillm at f32 and with q4_0 blocks against HF's f32. The two take turns for several rounds, because this machine's speed
drifts; the best round of each counts. Tokens/s counts new tokens, prefill included in the time.
Needs `pip install torch transformers`.
"""
import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

MINILLM = Path(__file__).resolve().parents[2] / "target" / "release" / "minillm"
PROMPT, NEW = 16, 128


def hf_tokens_per_s(model, batch):
    ids = torch.randint(0, model.config.vocab_size, (batch, PROMPT))
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
                             max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=0)
    elapsed = time.perf_counter() - start
    assert out.shape == (batch, PROMPT + NEW)
    return batch * NEW / elapsed


def minillm_run(batch, threads, preset="gpt2", weights="f32"):
    out = subprocess.run([str(MINILLM), "--threads", str(threads), "bench", "decode", "--preset", preset,
                          "--batch", str(batch), "--prompt", str(PROMPT), "--new-tokens", str(NEW),
                          "--weights", weights, "--rounds", "1", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def smollm2(args):
    config = LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                         intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    hf_tokens_per_s(model, 1)  # warm-up
    print(f"torch {torch.__version__}, {args.threads} threads, SmolLM2-135M shape, prompt {PROMPT} + {NEW} "
          f"new tokens, batch 1, best of {args.rounds} alternating rounds")
    best = {"hf": 0.0, "f32": None, "q4_0": None}
    for _ in range(args.rounds):
        best["hf"] = max(best["hf"], hf_tokens_per_s(model, 1))
        for weights in ("f32", "q4_0"):
            run = minillm_run(1, args.threads, "smollm2-135m", weights)
            if best[weights] is None or run["runs"][0]["tokens_per_s"] > best[weights]["runs"][0]["tokens_per_s"]:
                best[weights] = run
    print(f"HF transformers f32: {best['hf']:.1f} tokens/s")
    for weights in ("f32", "q4_0"):
        r = best[weights]["runs"][0]
        print(f"minillm {weights}: {r['tokens_per_s']:.1f} tokens/s, {r['tokens_per_s'] / best['hf']:.2f}x HF; "
              f"weights ({best[weights]['weights_mb']:.0f} MB per step) read at {100 * r['fraction_of_bandwidth']:.0f}% "
              f"of the measured {best[weights]['read_bandwidth_gb_per_s']:.1f} GB/s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=["gpt2", "smollm2-135m"], default="gpt2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.shape == "smollm2-135m":
        return smollm2(args)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    hf_tokens_per_s(model, 1)  # warm-up
    print(f"torch {torch.__version__}, {args.threads} threads, GPT-2 small shape, prompt {PROMPT} + {NEW} "
          f"new tokens, best of {args.rounds} alternating rounds")
    for batch in (1, 8):
        ours, theirs, best = 0.0, 0.0, None
        for _ in range(args.rounds):
            theirs = max(theirs, hf_tokens_per_s(model, batch))
            run = minillm_run(batch, args.threads)
            if best is None or run["runs"][0]["tokens_per_s"] > ours:
                ours, best = run["runs"][0]["tokens_per_s"], run
        line = f"batch {batch}: minillm {ours:.1f} tokens/s, HF transformers {theirs:.1f} tokens/s, " \
               f"ratio {ours / theirs:.2f}x"
        if batch == 1:
            frac = best["runs"][0]["fraction_of_bandwidth"]
            line += f"; weights read at {100 * frac:.0f}% of the measured " \
                    f"{best['read_bandwidth_gb_per_s']:.1f} GB/s read bandwidth"
        print(line, flush=True)


if __name__ == "__main__":
    main()
