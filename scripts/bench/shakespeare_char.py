#!/usr/bin/env python3
"""nanoGPT's CPU "baby GPT" on tinyshakespeare, minillm against PyTorch, in one session.

    cargo build --release && python3 scripts/bench/shakespeare_char.py [--threads 2]

Both train the same model on the same data with the same settings (configs/shakespeare_char.toml):
character level (bytes), 90/10 split, 4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
steps, lr 1e-3 warmup 100 cosine to 1e-4, AdamW (0.9, 0.99) with weight decay 0.1 on the blocks'
matrices, clip 1.0, no dropout, and both evaluate on the whole validation split at steps 500,
1000, 1500 and 2000. PyTorch runs HF's GPT2LMHeadModel (eager). Prints wall time and final val
loss for each. Needs `pip install torch transformers` and ../shared/data/tinyshakespeare.txt.
"""
import argparse
import math
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parents[2]
MINILLM = ROOT / "target" / "release" / "minillm"
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
STEPS, B, T, WARMUP, LR, MIN_LR = 2000, 12, 64, 100, 1e-3, 1e-4


def lr_at(step):
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    ratio = (step - WARMUP) / (STEPS - WARMUP)
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def pytorch_run():
    data = torch.tensor(list(DATA.read_bytes()), dtype=torch.long)
    n_val = round(len(data) * 0.1)
    train, val = data[: len(data) - n_val], data[len(data) - n_val:]
    torch.manual_seed(1337)
    config = GPT2Config(n_layer=4, n_head=4, n_embd=128, n_positions=T, vocab_size=256,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "eager"
    decay = [p for n, p in model.named_parameters() if n.startswith("transformer.h.") and n.endswith(".weight") and ".ln_" not in n]
    others = [p for n, p in model.named_parameters() if not any(p is d for d in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.99), eps=1e-8)

    @torch.no_grad()
    def evaluate():
        model.eval()
        windows = (len(val) - 1) // T
        x = val[: windows * T].view(windows, T)
        y = val[1: windows * T + 1].view(windows, T)
        total = 0.0
        for i in range(0, windows, B):
            logits = model(x[i: i + B]).logits
            total += F.cross_entropy(logits.reshape(-1, 256), y[i: i + B].reshape(-1), reduction="sum").item()
        model.train()
        return total / (windows * T)

    start = time.perf_counter()
    val_loss = float("nan")
    for step in range(STEPS):
        ix = torch.randint(len(train) - T, (B,))
        x = torch.stack([train[i: i + T] for i in ix])
        y = torch.stack([train[i + 1: i + T + 1] for i in ix])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = F.cross_entropy(model(x).logits.view(-1, 256), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 500 == 0:
            val_loss = evaluate()
            print(f"  pytorch step {step + 1}: train loss {loss.item():.4f}, val loss {val_loss:.4f}", flush=True)
    return time.perf_counter() - start, val_loss


def minillm_run(threads):
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        subprocess.run([str(MINILLM), "prepare", "--input", str(DATA), "--tokenizer", "bytes", "--out", str(data)],
                       check=True, capture_output=True)
        start = time.perf_counter()
        out = subprocess.run([str(MINILLM), "--threads", str(threads), "train", "--data", str(data), "--out", str(run),
                              "--config", str(ROOT / "configs" / "shakespeare_char.toml")],
                             check=True, capture_output=True, text=True).stdout
        seconds = time.perf_counter() - start
        val_lines = [l for l in out.splitlines() if l.strip().startswith("step") and "val loss" in l]
        for line in val_lines:
            print("  minillm", line.strip(), flush=True)
        val_loss = float(val_lines[-1].split("val loss ")[1].split(",")[0])
        return seconds, val_loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    ours = minillm_run(args.threads)
    theirs = pytorch_run()
    print(f"minillm: val loss {ours[1]:.4f} in {ours[0]:.1f} s")
    print(f"PyTorch: val loss {theirs[1]:.4f} in {theirs[0]:.1f} s")
    print(f"wall-time ratio PyTorch / minillm: {theirs[0] / ours[0]:.2f}x")


if __name__ == "__main__":
    main()
