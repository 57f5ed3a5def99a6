#!/usr/bin/env python3
"""minillm beside llama.cpp on the same GGUF files: batch-1 decoding and prompt processing, for
the demo model and GPT-2 small's shape, at every weight type, the two engines taking turns.

    cargo build --release && python3 scripts/bench/decode_vs_llamacpp.py LLAMA_CPP_BIN \
        [--demo minillm-demo] [--rounds 6] [--threads 2] [--models demo,gpt2] [--file F.gguf ...]

LLAMA_CPP_BIN is a folder with `llama-bench` that runs here (scripts/interop/llama_cpp.sh says how
to make one from ../shared/tools/llama.cpp). The demo model is the one `minillm demo` leaves in
./minillm-demo; GPT-2 small's shape is `minillm model init --preset gpt2` (random weights). Each
file is written by `minillm export` (f32) or `minillm quantize` (f16, q8_0, q4_0 with its q8_0
LM head, and q4_0 --pure: every matrix 4-bit).

`--file F.gguf` times a GGUF file as it is (a real model as people download it, such as the
SmolLM2 file `scripts/models/fetch_real.sh` fetches), alone with `--models none`.

Decoding: a 16-token prompt then 128 new tokens (48 for the demo model's 64-token context),
prefill included, new tokens per second; minillm through `bench decode --weights stored`,
llama.cpp through `llama-bench -pg 16,N`. Prompt processing: 512 tokens (62 for the demo model),
prompt tokens per second; `bench decode --prompt P --new-tokens 2` (the prefill's own time)
against `llama-bench -p P`. Each measurement is the best of 3 runs inside one process (after
llama-bench's warm-up run). Every round times every file in both engines, which goes first
alternating by round; the table gives the median of the rounds and every round's ratio, since
this machine's speed drifts by tens of percent within minutes.
"""
import json
import statistics
import tempfile
from pathlib import Path

from llama_cpp_common import MINILLM, BEST_OF, arguments, llama_bench_seconds, run

# (label, arguments to `minillm quantize` or None for the f32 export)
TYPES = [
    ("f32", None),
    ("f16", ["--type", "f16"]),
    ("q8_0", ["--type", "q8_0"]),
    ("q4_0 (head q8_0)", ["--type", "q4_0", "--head-type", "q8_0"]),
    ("q4_0 --pure", ["--type", "q4_0", "--pure"]),
]
PROMPT = 16


def make_files(model, out):
    files = []
    for i, (label, quantize) in enumerate(TYPES):
        path = out / f"{i}.gguf"
        if quantize is None:
            run([MINILLM, "export", "--model", model, "--format", "gguf", "--out", path])
        else:
            run([MINILLM, "quantize", "--model", model, *quantize, "--out", path])
        files.append((label, path))
    return files


def minillm(path, threads, prompt, new):
    out = run([MINILLM, "--threads", threads, "bench", "decode", "--model", path, "--weights", "stored",
               "--batch", "1", "--prompt", prompt, "--new-tokens", new, "--rounds", BEST_OF, "--json"])
    return json.loads(out.stdout)["runs"][0]


def measure(bin_dir, path, threads, new, pp, llama_first):
    """(minillm decode, llama.cpp decode, minillm prompt, llama.cpp prompt) in tokens/s; which
    engine goes first alternates by round."""
    def ours():
        return (minillm(path, threads, PROMPT, new)["tokens_per_s"],
                minillm(path, threads, pp, 2)["prompt_tokens_per_s"])

    def theirs():
        # llama-bench's -pg time covers the prompt and the new tokens, as minillm's does.
        return (new / llama_bench_seconds(bin_dir, path, threads, ["-p", "0", "-n", "0", "-pg", f"{PROMPT},{new}"]),
                pp / llama_bench_seconds(bin_dir, path, threads, ["-p", str(pp), "-n", "0"]))

    if llama_first:
        (theirs_decode, theirs_prompt), (ours_decode, ours_prompt) = theirs(), ours()
    else:
        (ours_decode, ours_prompt), (theirs_decode, theirs_prompt) = ours(), theirs()
    return ours_decode, theirs_decode, ours_prompt, theirs_prompt


def table(name, model, new, pp, args):
    with tempfile.TemporaryDirectory() as tmp:
        timed(name, make_files(model, Path(tmp)), new, pp, args)


def timed(name, files, new, pp, args):
    rounds = {label: [] for label, _ in files}
    for r in range(args.rounds):
        for label, path in files:
            rounds[label].append(measure(args.llama_cpp, path, args.threads, new, pp, r % 2 == 1))
    print(f"\n{name}: batch 1, {args.threads} threads, median of {args.rounds} interleaved rounds; "
          f"decode = {PROMPT}-token prompt + {new} new tokens (prefill in the time), "
          f"prompt = {pp} tokens")
    print("| type | file MB | decode minillm t/s | llama.cpp t/s | ratio (every round) | "
          "prompt minillm t/s | llama.cpp t/s | ratio (every round) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, path in files:
        cols = list(zip(*rounds[label]))
        med = [statistics.median(c) for c in cols]
        decode_ratios = [a / b for a, b in zip(cols[0], cols[1])]
        prompt_ratios = [a / b for a, b in zip(cols[2], cols[3])]
        every = lambda rs: " ".join(f"{x:.2f}" for x in rs)
        print(f"| {label} | {path.stat().st_size / 1e6:.2f} | {med[0]:.0f} | {med[1]:.0f} | "
              f"**{statistics.median(decode_ratios):.2f}x** ({every(decode_ratios)}) | "
              f"{med[2]:.0f} | {med[3]:.0f} | **{statistics.median(prompt_ratios):.2f}x** "
              f"({every(prompt_ratios)}) |", flush=True)


def main():
    parser = arguments(rounds=6)
    parser.add_argument("--models", default="demo,gpt2", help="demo, gpt2, both or none")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a GGUF file to time as it is")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m != "none"]
    unknown = set(models) - {"demo", "gpt2"}
    if unknown:
        raise SystemExit(f"--models takes demo and gpt2, not {', '.join(sorted(unknown))}")
    if "demo" in models:
        demo = Path(args.demo)
        if not (demo / "run").is_dir():
            raise SystemExit(f"no demo model in {demo}: run `minillm demo` first, or give --models gpt2")
        table("demo model (1.5M parameters)", demo / "run", 48, 62, args)
    if "gpt2" in models:
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "gpt2"
            run([MINILLM, "model", "init", "--preset", "gpt2", "--out", model])
            table("GPT-2 small's shape (124M parameters, random weights)", model, 128, 512, args)
    for f in args.file:
        timed(f.name, [(f.name, f)], 128, 512, args)


if __name__ == "__main__":
    main()
