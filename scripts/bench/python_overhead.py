#!/usr/bin/env python3
"""What calling minillm from Python costs, and its tokenizer against tiktoken's.

1. `Model.generate` and `Model.next_token_probs` against the same library calls timed inside
   Rust (`minillm bench library`, same model, prompt and settings) and against the command line
   (`minillm generate` / `minillm inspect --json`, a process per call, as a script calling the
   CLI would pay). Rounds alternate which goes first; medians of the per-round ratios.
2. `Tokenizer.encode` (one text, and `encode_batch` over many) against tiktoken's GPT-2 encoding
   on the same text, interleaved, checking the ids are identical.

Needs the Python package installed (`pip install ./python`), a release build (for the CLI) and,
for part 2, tiktoken with GPT-2's vocab.bpe and encoder.json (../shared/data/gpt2; tiktoken
cannot download them here).

    python3 scripts/bench/python_overhead.py --model minillm-demo/run --rounds 7
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import minillm

ROOT = Path(__file__).resolve().parents[2]


def timed(f, repeat):
    """Median seconds of `repeat` calls of f()."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def model_overhead(args):
    model = minillm.Model.load(args.model)
    settings = dict(max_new_tokens=args.new_tokens, temperature=0)
    flags = ["--temperature", "0", "--max-new-tokens", str(args.new_tokens)]
    cli = [args.minillm]
    ratios = {"generate": [], "next_token_probs": []}
    cli_ratios = {"generate": [], "next_token_probs": []}
    for r in range(args.rounds):
        def python():
            g = timed(lambda: model.generate(args.prompt, **settings), args.calls)
            n = timed(lambda: model.next_token_probs(args.prompt, top=10), args.calls)
            return g, n

        def rust():
            out = subprocess.run(cli + ["bench", "library", "--model", args.model, "--prompt", args.prompt,
                                        "--rounds", str(args.calls), "--json", *flags],
                                 capture_output=True, text=True, check=True).stdout
            doc = json.loads(out)
            return doc["generate_s"], doc["inspect_s"]

        (py, rs) = (python(), rust()) if r % 2 == 0 else tuple(reversed((rust(), python())))
        cli_g = timed(lambda: subprocess.run(cli + ["generate", "--model", args.model, *flags, args.prompt],
                                             capture_output=True, check=True), 3)
        cli_n = timed(lambda: subprocess.run(cli + ["inspect", "--model", args.model, "--json", args.prompt],
                                             capture_output=True, check=True), 3)
        for name, p, s, c in [("generate", py[0], rs[0], cli_g), ("next_token_probs", py[1], rs[1], cli_n)]:
            ratios[name].append(p / s)
            cli_ratios[name].append(p / c)
        print(f"round {r + 1}: generate {py[0] * 1e3:.2f} ms (Rust {rs[0] * 1e3:.2f}, CLI process {cli_g * 1e3:.1f}); "
              f"next_token_probs {py[1] * 1e3:.3f} ms (Rust {rs[1] * 1e3:.3f}, CLI process {cli_n * 1e3:.1f})")
    print(f"\n{args.model}, {minillm.threads()} threads, {args.new_tokens} new tokens, median of {args.rounds} rounds:")
    for name in ratios:
        over = statistics.median(ratios[name]) - 1
        print(f"  {name}: Python / Rust library {1 + over:.3f} ({100 * over:+.1f}%), "
              f"Python / CLI process {statistics.median(cli_ratios[name]):.3f}; "
              f"rounds: {', '.join(f'{x:.3f}' for x in ratios[name])}")


def tokenizer_speed(args):
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    except ImportError:
        print("\n(tiktoken is not installed: the tokenizer comparison is skipped)")
        return
    files = ROOT.parent / "shared" / "data" / "gpt2"
    if not (files / "vocab.bpe").exists():
        print(f"\n(no GPT-2 vocab.bpe in {files}: the tokenizer comparison is skipped)")
        return
    ranks = data_gym_to_mergeable_bpe_ranks(str(files / "vocab.bpe"), str(files / "encoder.json"))
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding("gpt2", pat_str=pattern, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    shakespeare = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    text = shakespeare.read_text() if shakespeare.exists() else minillm.builtin_corpus()
    lines = text.splitlines(keepends=True)
    # Documents of 100 lines: tiktoken's encode_batch hands each text to a Python thread pool,
    # which would measure its threads, not its encoder, on single lines.
    docs = ["".join(lines[i : i + 100]) for i in range(0, len(lines), 100)]
    tok = minillm.Tokenizer.gpt2()
    assert tok.encode(text) == enc.encode(text), "the ids differ"
    assert tok.encode_batch(docs) == enc.encode_batch(docs), "the batch ids differ"
    mb = len(text.encode()) / 1e6
    results = {"encode": [], "encode_batch": []}
    for r in range(args.rounds):
        pairs = [
            ("encode", lambda: tok.encode(text), lambda: enc.encode(text)),
            ("encode_batch", lambda: tok.encode_batch(docs), lambda: enc.encode_batch(docs)),
        ]
        for name, ours, theirs in pairs:
            first, second = (ours, theirs) if r % 2 == 0 else (theirs, ours)
            a, b = timed(first, 1), timed(second, 1)
            o, t = (a, b) if r % 2 == 0 else (b, a)
            results[name].append((mb / o, mb / t))
    print(f"\nGPT-2 tokenizer on {shakespeare.name if shakespeare.exists() else 'the built-in corpus'} "
          f"({mb:.2f} MB; the batch: {len(docs)} documents of 100 lines), median of {args.rounds} rounds:")
    for name, rows in results.items():
        ours = statistics.median(r[0] for r in rows)
        theirs = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[0] / r[1] for r in rows)
        print(f"  {name}: minillm {ours:.1f} MB/s, tiktoken {theirs:.1f} MB/s ({ratio:.2f}x)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minillm-demo/run", help="any --model (default: the demo's run)")
    p.add_argument("--minillm", default=str(ROOT / "target" / "release" / "minillm"))
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--calls", type=int, default=50, help="calls per timing (their median counts)")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    model_overhead(args)
    tokenizer_speed(args)


if __name__ == "__main__":
    main()
