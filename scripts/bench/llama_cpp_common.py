"""What the scripts that time minillm beside llama.cpp share: running a command, timing a file
with `llama-bench`, and their common arguments."""
import argparse
import json
import os
import subprocess
from pathlib import Path

MINILLM = Path(__file__).resolve().parents[2] / "target" / "release" / "minillm"
BEST_OF = 3  # runs per measurement in each engine (after llama-bench's warm-up run); the fastest counts


def run(args, env=None):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done


def llama_bench_seconds(bin_dir, path, threads, args):
    """The fastest of BEST_OF `llama-bench` repetitions of `args` on the file, in seconds."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(bin_dir))
    out = run([bin_dir / "llama-bench", "-m", path, *args, "-t", threads, "-r", BEST_OF, "-o", "json"],
              env=env)
    return min(json.loads(out.stdout)[0]["samples_ns"]) / 1e9


def arguments(rounds):
    """The arguments both scripts take; `rounds` is the default number of rounds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("llama_cpp", type=Path, help="a folder with llama-bench that runs here")
    parser.add_argument("--demo", default="minillm-demo", help="the directory `minillm demo` wrote")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser
