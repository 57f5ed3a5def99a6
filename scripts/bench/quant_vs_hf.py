#!/usr/bin/env python3
"""The quantization table: file size, batch-1 decoding speed and perplexity at f32, f16, q8_0 and
q4_0, with HF transformers' f32 decoding of the same model beside them, on this machine in one run.

    cargo build --release && python3 scripts/bench/quant_vs_hf.py [--demo minillm-demo] [--rounds 3]

Two models: the demo model (`minillm demo` leaves it in ./minillm-demo; perplexity on its
held-out split) and GPT-2 small's shape with random weights (speed and size only: the perplexity of
random weights means nothing). minillm runs `minillm bench quant` (each type written to GGUF and
read back, decoding through the file's blocks); HF runs `generate(do_sample=False,
use_cache=True)` in float32 on the same shape, the demo model loaded from its HF export. The two
take turns for several rounds because this machine's speed drifts; the best round of each counts.
Tokens/s counts new tokens, the prompt's prefill included in the time. Needs torch and transformers.
"""
import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

MINILLM = Path(__file__).resolve().parents[2] / "target" / "release" / "minillm"
PROMPT, NEW = 16, 128


def hf_tokens_per_s(model, new_tokens):
    ids = torch.randint(0, model.config.vocab_size, (1, PROMPT))
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    assert out.shape == (1, PROMPT + new_tokens)
    return new_tokens / (time.perf_counter() - start)


def minillm_quant(threads, source, new_tokens):
    args = [str(MINILLM), "--threads", str(threads), "bench", "quant", *source, "--prompt", str(PROMPT),
            "--new-tokens", str(new_tokens), "--rounds", "1", "--json"]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def table(name, hf_model, source, new_tokens, threads, rounds):
    hf_tokens_per_s(hf_model, new_tokens)  # warm-up
    hf, best = 0.0, {}
    for _ in range(rounds):
        hf = max(hf, hf_tokens_per_s(hf_model, new_tokens))
        for row in minillm_quant(threads, source, new_tokens)["rows"]:
            if row["type"] not in best or row["tokens_per_s"] > best[row["type"]]["tokens_per_s"]:
                best[row["type"]] = row
    print(f"\n{name}: batch 1, {PROMPT}-token prompt + {new_tokens} new tokens, {threads} threads, "
          f"best of {rounds} alternating rounds")
    print("| weights | file MB | MB read per token | tokens/s | vs HF f32 | perplexity | vs f32 |")
    print("|---|---|---|---|---|---|---|")
    base = best["f32"]["perplexity"]
    for row in best.values():
        ppl = row["perplexity"]
        ppl_text = "-" if ppl is None else f"{ppl:.4f}"
        change = "-" if ppl is None else f"{100 * (ppl / base - 1):+.3f}%"
        print(f"| minillm {row['weights']} | {row['file_mb']:.2f} | {row['read_mb_per_token']:.1f} | "
              f"{row['tokens_per_s']:.1f} | {row['tokens_per_s'] / hf:.2f}x | {ppl_text} | {change} |")
    print(f"| HF transformers f32 | | | {hf:.1f} | 1.00x | | |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", default="minillm-demo", help="the directory `minillm demo` wrote")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}")
    demo = Path(args.demo)
    if (demo / "run").is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            hf_dir = Path(tmp) / "hf"
            subprocess.run([str(MINILLM), "export", "--model", str(demo / "run"), "--format", "hf",
                            "--out", str(hf_dir)], check=True, capture_output=True)
            model = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
        new = min(NEW, model.config.n_positions - PROMPT)
        table("demo model", model, ["--model", str(demo / "run"), "--data", str(demo / "data")], new,
              args.threads, args.rounds)
    else:
        print(f"(no demo model in {demo}: run `minillm demo` first for its rows)")
    model = GPT2LMHeadModel(GPT2Config()).eval()
    table("GPT-2 small shape (random weights)", model, ["--preset", "gpt2"], NEW, args.threads, args.rounds)


if __name__ == "__main__":
    main()
