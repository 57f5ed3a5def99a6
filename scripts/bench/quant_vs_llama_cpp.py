#!/usr/bin/env python3
"""The quantization table with llama.cpp beside minillm: for every file type, the file's size,
minillm's peak memory and perplexity, and batch-1 decoding speed of minillm and llama.cpp's
`llama-bench` on the same GGUF file, the two taking turns in one run.

    cargo build --release && python3 scripts/bench/quant_vs_llama_cpp.py LLAMA_CPP_BIN \
        [--demo minillm-demo] [--rounds 5] [--threads 2]

LLAMA_CPP_BIN is a folder with `llama-bench` that runs here (scripts/interop/llama_cpp.sh says how
to make one from ../shared/tools/llama.cpp). Two models: the demo model (`minillm demo` leaves it in
./minillm-demo; perplexity on its held-out split) and SmolLM2-135M's shape with random weights
and GPT-2's tokenizer (`minillm model init --preset smollm2-135m`; speed and size only). Each
file is made by `minillm quantize --type T`. Speed: a 16-token prompt then 128 new tokens (fewer
for the demo model's 64-token context), prefill included, tokens/s of new tokens; minillm through
`bench decode --weights stored`, llama.cpp through `llama-bench -pg P,N`, each the fastest of 3
runs. Each round times every type in both engines, alternating; the table gives the medians over
rounds. Perplexity is `minillm eval` (through the blocks, as generation computes).
"""
import json
import statistics
import tempfile
from pathlib import Path

from llama_cpp_common import MINILLM, BEST_OF, arguments, llama_bench_seconds, run

TYPES = ["f32", "f16", "q8_0", "q6_K", "q5_K_M", "q5_0", "q4_K_M", "q4_1", "q4_0"]
PROMPT = 16


def make_files(model, out):
    files = {}
    for ty in TYPES:
        path = out / f"{ty}.gguf"
        if ty == "f32":
            run([MINILLM, "export", "--model", model, "--format", "gguf", "--out", path])
        else:
            run([MINILLM, "quantize", "--model", model, "--type", ty, "--out", path])
        files[ty] = path
    return files


def minillm_speed(path, new, threads):
    out = run([MINILLM, "--threads", threads, "bench", "decode", "--model", path, "--weights", "stored",
               "--batch", "1", "--prompt", PROMPT, "--new-tokens", new, "--rounds", BEST_OF, "--json"])
    return json.loads(out.stdout)["runs"][0]["tokens_per_s"]


def llama_speed(bin_dir, path, new, threads):
    # llama-bench's -pg time counts prompt and new tokens: new tokens per second, as minillm counts.
    return new / llama_bench_seconds(bin_dir, path, threads, ["-p", "0", "-n", "0", "-pg", f"{PROMPT},{new}"])


def memory_and_perplexity(path, data, new):
    out = run([MINILLM, "generate", "--model", path, "--max-new-tokens", new, "--seed", "1", "Hello",
               "--report-memory"])
    peak = next(float(line.split()[-2]) for line in out.stderr.splitlines()
                if line.startswith("peak resident memory:"))
    ppl = None
    if data is not None:
        ppl = json.loads(run([MINILLM, "eval", "--model", path, "--data", data, "--json"]).stdout)["perplexity"]
    return peak, ppl


def table(name, model, data, new, args):
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(model, Path(tmp))
        speeds = {ty: ([], []) for ty in TYPES}
        for _ in range(args.rounds):
            for ty, path in files.items():
                speeds[ty][0].append(minillm_speed(path, new, args.threads))
                speeds[ty][1].append(llama_speed(args.llama_cpp, path, new, args.threads))
        print(f"\n{name}: batch 1, {PROMPT}-token prompt + {new} new tokens, {args.threads} threads, "
              f"median of {args.rounds} alternating rounds")
        print("| type | file MB | minillm peak MB | perplexity | vs f32 | minillm tokens/s | "
              "llama.cpp tokens/s | minillm / llama.cpp |")
        print("|---|---|---|---|---|---|---|---|")
        base = None
        for ty, path in files.items():
            peak, ppl = memory_and_perplexity(path, data, new)
            base = base or ppl
            ours, theirs = (statistics.median(s) for s in speeds[ty])
            ppl_text = "-" if ppl is None else f"{ppl:.4f}"
            change = "-" if ppl is None else f"{100 * (ppl / base - 1):+.3f}%"
            print(f"| {ty} | {path.stat().st_size / 1e6:.2f} | {peak:.1f} | {ppl_text} | {change} | "
                  f"{ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |", flush=True)


def main():
    args = arguments(rounds=5).parse_args()
    demo = Path(args.demo)
    if (demo / "run").is_dir():
        table("demo model", demo / "run", demo / "data", 48, args)
    else:
        print(f"(no demo model in {demo}: run `minillm demo` first for its rows)")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "smollm2"
        run([MINILLM, "model", "init", "--preset", "smollm2-135m", "--out", model])
        table("SmolLM2-135M shape (random weights, GPT-2's tokenizer)", model, None, 128, args)


if __name__ == "__main__":
    main()
