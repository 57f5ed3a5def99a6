#!/usr/bin/env python3
"""Data-parallel training on one machine: 2 ranks x 1 thread (mpirun) against 1 process x 2
threads, same model, same global batch, interleaved rounds, medians. Then, on paper, what the
measured step time means on real networks: the bytes an all-reduce moves, the time it takes on
10 / 25 / 100 Gb/s links, the scaling efficiency to expect on 2, 8 and 64 machines, and ZeRO-1's
memory per rank.

    cargo build --release --features mpi
    python3 scripts/bench/data_parallel.py [--rounds 3] [--bin target/release/minillm]

Standard library only. Needs OpenMPI's mpirun and ../shared/data/tinyshakespeare.txt.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
}

# (name, tokenizer, flags, steps): the same global batch for both ways of running.
SHAPES = [
    ("baby GPT (10.7M)", "bytes", ["--model", "baby", "--batch-size", "16", "--grad-accum", "2"], 8),
    ("GPT-2 small (124M)", "gpt2", ["--model", "gpt2", "--context", "256", "--batch-size", "2", "--grad-accum", "2"], 5),
]


def run(cmd, cwd, env=None):
    out = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out


def measure(binary, work, data, flags, steps, ranks, tag):
    out = work / tag
    args = ["train", "--data", str(data), "--out", str(out), "--max-steps", str(steps)]
    args += flags + ["--eval-every", "1000000", "--eval-batches", "1", "--sample-tokens", "0", "--checkpoint-every", "1000000"]
    if ranks == 1:
        run([binary, "--threads", "2", *args], work)
    else:
        run(["mpirun", "-np", str(ranks), "--oversubscribe", binary, *args], work, MPI_ENV)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    lines = lines[1:]  # the first step warms up
    tok = statistics.median(l["tokens_per_s"] for l in lines)
    comm = statistics.median(l.get("comm_share", 0.0) for l in lines)
    return tok, comm


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bin", default=str(ROOT / "target" / "release" / "minillm"))
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minillm-dp-"))
    rows, step_seconds = [], {}
    for name, tokenizer, flags, steps in SHAPES:
        data = work / f"data-{tokenizer}"
        if not data.exists():
            run([a.bin, "prepare", "--input", str(TEXT), "--tokenizer", tokenizer, "--out", str(data)], work)
        one, two, comm = [], [], []
        for r in range(a.rounds):
            t1, _ = measure(a.bin, work, data, flags, steps, 1, f"one-{tokenizer}-{r}")
            t2, c2 = measure(a.bin, work, data, flags, steps, 2, f"two-{tokenizer}-{r}")
            one.append(t1)
            two.append(t2)
            comm.append(c2)
            print(f"{name} round {r + 1}: 1x2 threads {t1:.0f} tok/s, 2 ranks x 1 {t2:.0f} tok/s ({t2 / t1:.2f}x), communicating {100 * c2:.0f}%")
        tokens = int(flags[flags.index("--batch-size") + 1]) * int(flags[flags.index("--grad-accum") + 1])
        tokens *= 256
        step_seconds[name] = tokens / statistics.median(one)
        rows.append((name, statistics.median(one), statistics.median(two), statistics.median(comm)))

    print("\n| model | 1 process x 2 threads | 2 ranks x 1 thread | ratio | share of the step communicating |")
    print("|---|---|---|---|---|")
    for name, t1, t2, c in rows:
        print(f"| {name} | {t1:,.0f} tok/s | {t2:,.0f} tok/s | {t2 / t1:.2f}x | {100 * c:.0f}% |")

    # On paper. A ring all-reduce sends and receives 2 (N-1)/N of the gradient per rank.
    gpt2_step = step_seconds["GPT-2 small (124M)"]
    models = [("GPT-2 small", 124.4e6, gpt2_step), ("1B LLaMA shape (TinyLlama 1.1B)", 1.1e9, gpt2_step * 1.1e9 / 124.4e6)]
    print(f"\nMeasured compute per step (GPT-2 small, {step_seconds and 'this machine'}): {gpt2_step:.2f} s;")
    print("the 1B shape's is scaled by parameters (6 x params FLOPs per token).\n")
    print("| model | machines | all-reduce per step | 10 Gb/s | 25 Gb/s | 100 Gb/s | efficiency at 10 / 25 / 100 Gb/s (no overlap .. full overlap) | ZeRO-1 memory per rank |")
    print("|---|---|---|---|---|---|---|---|")
    for name, params, compute in models:
        grad = 4 * params
        for n in (2, 8, 64):
            moved = 2 * (n - 1) / n * grad
            times = [moved * 8 / (gbps * 1e9) for gbps in (10, 25, 100)]
            eff = [f"{100 * compute / (compute + t):.0f}..{100 * compute / max(compute, t):.0f}%" for t in times]
            zero = (4 * params + 4 * params + 8 * params / n) / 1e9
            print(
                f"| {name} | {n} | {moved / 1e9:.2f} GB | {times[0]:.2f} s | {times[1]:.2f} s | {times[2]:.3f} s | "
                f"{' / '.join(eff)} | {zero:.2f} GB (unsharded {16 * params / 1e9:.2f} GB) |"
            )


if __name__ == "__main__":
    main()
