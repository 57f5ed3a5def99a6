#!/usr/bin/env python3
"""Throughput and time to first token of `minillm serve` with 1, 4, 16 and 64 concurrent
streaming clients, with and without a JSON-schema constraint, and the constraint's cost per
token against a decoding step.

    cargo build --release && python3 scripts/bench/serve_throughput.py MODEL [MODEL ...]

For each model, starts `minillm serve --max-concurrent 64` on a free port. For each client count
C and each mode (free text; output constrained by SCHEMA through `response_format`), C threads
each make ROUNDS streaming /v1/completions requests of MAX_TOKENS tokens (temperature 0.8,
seeds differ). Reported: the completion tokens the server counted (`usage`) over the wall time
of the round, the median time from sending a request to its first text chunk, and the median
time between two text chunks of a request (a decoding step of the whole batch). The two
modes alternate round by round (this machine's speed drifts), and each cell is the median of
REPEATS rounds.

The constraint's cost: at 1 client, the median time between tokens with and without the
schema; the difference is what masking the vocabulary adds to each step, shown as a fraction
of the unconstrained step. Only the Python standard library is needed. Pass `gpt2-small` as a
MODEL to build (once, in /tmp) a GPT-2-small-shaped model (124M parameters, context 1024,
GPT-2's vocabulary) by one training step.
"""
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MINILLM = str(ROOT / "target" / "release" / "minillm")
CLIENTS, ROUNDS, MAX_TOKENS, REPEATS = (1, 4, 16, 64), 1, 48, 3
# Structure all the way through (objects, short strings, numbers, a list), so that every step is
# masked and the grammar moves between its states rather than sitting in one string; the list
# cannot be complete within MAX_TOKENS, so every request decodes as many tokens as without it.
SCHEMA = {"type": "object", "properties": {"people": {"type": "array", "minItems": 40, "items": {
    "type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                     "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False}}},
    "required": ["people"], "additionalProperties": False}


def gpt2_small() -> str:
    out = Path("/tmp/minillm-bench-gpt2-small")
    if not (out / "run" / "latest.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        run = lambda *a: subprocess.run([MINILLM, *a], cwd=out, check=True, capture_output=True)
        run("corpus", "--out", "corpus.txt")
        run("prepare", "--input", "corpus.txt", "--tokenizer", "gpt2", "--out", "data")
        run("train", "--data", "data", "--out", "run", "--model", "gpt2", "--batch-size", "1",
            "--max-steps", "1", "--eval-every", "1", "--eval-batches", "1", "--sample-tokens", "0")
    return str(out / "run")


def one_request(port: int, seed: int, schema: bool, out: dict) -> None:
    request = {"model": "bench", "prompt": "Once upon a time", "max_tokens": MAX_TOKENS,
               "temperature": 0.8, "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    if schema:
        request["response_format"] = {"type": "json_schema", "json_schema": {"name": "people", "schema": SCHEMA}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1200)
    sent = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(request), {"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    arrivals = []
    for line in resp:
        line = line.decode().strip()
        if not line.startswith("data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            out["tokens"].append(chunk["usage"]["completion_tokens"])
        elif chunk["choices"] and chunk["choices"][0].get("text"):
            arrivals.append(time.perf_counter())
    conn.close()
    if arrivals:
        out["first"].append(arrivals[0] - sent)
        out["gaps"].extend(b - a for a, b in zip(arrivals, arrivals[1:]))


def measure(port: int, clients: int, schema: bool) -> dict:
    out = {"tokens": [], "first": [], "gaps": []}

    def client(i: int) -> None:
        for r in range(ROUNDS):
            one_request(port, 1000 * i + r, schema, out)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"rate": sum(out["tokens"]) / wall, "ttft": statistics.median(out["first"]),
            "gap": statistics.median(out["gaps"]) if out["gaps"] else float("nan")}


def main(models) -> None:
    for spec in models:
        path = gpt2_small() if spec == "gpt2-small" else spec
        server = subprocess.Popen([MINILLM, "serve", "--model", path, "--port", "0", "--model-name", "bench",
                                   "--max-concurrent", "64"], stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline().split("http://")[1].split()[0].rstrip("/").rsplit(":", 1)[1])
        try:
            measure(port, 1, False)  # warm up
            measure(port, 1, True)
            cells = {}
            for c in CLIENTS:
                runs = {False: [], True: []}
                for _ in range(REPEATS):
                    for schema in (False, True):
                        runs[schema].append(measure(port, c, schema))
                cells[c] = {s: {k: statistics.median(r[k] for r in rs) for k in ("rate", "ttft", "gap")}
                            for s, rs in runs.items()}
        finally:
            server.terminate()
            server.wait()
        print(f"\n{spec}\n")
        print("| clients | free text | first token | between tokens | with JSON schema | first token | between tokens |")
        print("|---|---|---|---|---|---|---|")
        for c, m in cells.items():
            free, con = m[False], m[True]
            print(f"| {c} | {free['rate']:.0f} tok/s | {free['ttft'] * 1000:.0f} ms | {free['gap'] * 1000:.1f} ms | "
                  f"{con['rate']:.0f} tok/s | {con['ttft'] * 1000:.0f} ms | {con['gap'] * 1000:.1f} ms |")
        step, masked = cells[1][False]["gap"], cells[1][True]["gap"]
        print(f"\nat 1 client: {step * 1000:.2f} ms between tokens free, {masked * 1000:.2f} ms with the schema: "
              f"the constraint costs {(masked - step) * 1000:.2f} ms a token, {(masked - step) / step:.1%} of a step",
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1:])
