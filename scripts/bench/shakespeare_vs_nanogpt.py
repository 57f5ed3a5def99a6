#!/usr/bin/env python3
"""minillm against nanoGPT's own trainer on tinyshakespeare (its CPU "baby GPT"), in turns.

    cargo build --release && python3 scripts/bench/shakespeare_vs_nanogpt.py [--rounds 2] [--python PY]

nanoGPT runs through ../shared/tools/nanogpt/run_baby.sh (its train.py, 2000 iterations, 2
threads, the baby GPT: 4 layers, 4 heads, 128 wide, context 64, batch 12, no dropout); minillm
runs `minillm train --config configs/shakespeare_char.toml`, the same model and settings. Each
round runs both, one after the other, and prints the wall time of the whole run (evaluations and
checkpoints included) and the final validation loss of each; last, the ratio of the medians.
PY is a Python with torch and numpy for nanoGPT (default: this one).
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MINILLM = ROOT / "target" / "release" / "minillm"
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "tinyshakespeare.txt"
RUN_BABY = SHARED / "tools" / "nanogpt" / "run_baby.sh"


def minillm_round(work: Path, data: Path, r: int, threads: int):
    out = work / f"minillm-{r}"
    start = time.perf_counter()
    subprocess.run(
        [str(MINILLM), "train", "--data", str(data), "--out", str(out), "--threads", str(threads),
         "--config", str(ROOT / "configs" / "shakespeare_char.toml")],
        check=True, capture_output=True,
    )
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return wall, [x["val_loss"] for x in lines if "val_loss" in x][-1]


def nanogpt_round(work: Path, r: int, python: str, threads: int):
    env = {"THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    log = subprocess.run(
        ["bash", str(RUN_BABY), python, str(work / f"nanogpt-{r}")],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    wall = float(re.search(r"wall_s: ([0-9.]+)", log).group(1))
    val = float(re.findall(r"val loss ([0-9.]+)", log)[-1])
    return wall, val


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=sys.executable, help="a Python with torch and numpy, for nanoGPT")
    a = ap.parse_args()
    for need in (MINILLM, DATA, RUN_BABY):
        if not need.exists():
            sys.exit(f"missing {need} (build with `cargo build --release`; ../shared holds the data and nanoGPT)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        subprocess.run(
            [str(MINILLM), "prepare", "--input", str(DATA), "--tokenizer", "bytes", "--out", str(data)],
            check=True, capture_output=True,
        )
        ours, theirs = [], []
        for r in range(a.rounds):
            m_wall, m_val = minillm_round(work, data, r, a.threads)
            n_wall, n_val = nanogpt_round(work, r, a.python, a.threads)
            ours.append(m_wall)
            theirs.append(n_wall)
            print(f"round {r + 1}: minillm {m_wall:.1f} s (val loss {m_val:.4f}), "
                  f"nanoGPT {n_wall:.1f} s (val loss {n_val:.4f}), ratio {m_wall / n_wall:.2f}", flush=True)
    print(f"median wall time: minillm {statistics.median(ours):.1f} s, nanoGPT {statistics.median(theirs):.1f} s, "
          f"minillm takes {statistics.median(ours) / statistics.median(theirs):.2f}x nanoGPT's time")


if __name__ == "__main__":
    main()
