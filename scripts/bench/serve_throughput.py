#!/usr/bin/env python3
"""Aggregate generated tokens/s of `minillm serve` with 1, 4 and 16 concurrent streaming clients.

    cargo build --release && python3 scripts/bench/serve_throughput.py MODEL [MODEL ...]

For each model, starts `minillm serve` (--max-concurrent 16) on a free port, then for each
client count C runs C threads that each make ROUNDS streaming /v1/completions requests of
MAX_TOKENS tokens (temperature 0.8, seeds differ), and reports the completion tokens counted by
the server (`usage`) divided by the wall time of the whole round. Only the Python standard
library is needed. Pass `gpt2-small` as a MODEL to build (once, in /tmp) a GPT-2-small-shaped
model (124M parameters, context 1024, GPT-2's vocabulary) by one training step.
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MINILLM = str(ROOT / "target" / "release" / "minillm")
CLIENTS, ROUNDS, MAX_TOKENS = (1, 4, 16), 2, 64


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


def one_request(port: int, seed: int, counts: list) -> None:
    body = json.dumps({"model": "bench", "prompt": "Once upon a time", "max_tokens": MAX_TOKENS,
                       "temperature": 0.8, "seed": seed, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    for line in resp:
        line = line.decode().strip()
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                counts.append(chunk["usage"]["completion_tokens"])
    conn.close()


def measure(port: int, clients: int) -> float:
    counts: list = []

    def client(i: int) -> None:
        for r in range(ROUNDS):
            one_request(port, 1000 * i + r, counts)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main(models) -> None:
    print(f"| model | {' | '.join(f'{c} client' + ('s' if c > 1 else '') for c in CLIENTS)} | 16 vs 1 |")
    print("|---|" + "---|" * (len(CLIENTS) + 1))
    for spec in models:
        path = gpt2_small() if spec == "gpt2-small" else spec
        server = subprocess.Popen([MINILLM, "serve", "--model", path, "--port", "0", "--model-name", "bench",
                                   "--max-concurrent", "16"], stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline().split("http://")[1].split()[0].rsplit(":", 1)[1])
        try:
            measure(port, 1)  # warm up
            rates = [measure(port, c) for c in CLIENTS]
        finally:
            server.terminate()
            server.wait()
        cells = " | ".join(f"{r:.0f} tok/s" for r in rates)
        print(f"| {spec} | {cells} | {rates[-1] / rates[0]:.1f}x |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1:])
