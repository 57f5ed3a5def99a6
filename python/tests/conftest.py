"""Shared fixtures: the `minillm` binary (the command line the Python API must agree with), the
committed tiny GPT-2 and LLaMA models, and a small run trained here on the built-in corpus."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates" / "minillm" / "tests" / "fixtures"


def minillm_bin() -> str:
    """$MINILLM_BIN (set by the cargo test that runs this suite), else the release build."""
    found = os.environ.get("MINILLM_BIN") or shutil.which("minillm") or str(ROOT / "target" / "release" / "minillm")
    if not Path(found).exists():
        pytest.exit(f"no minillm binary at {found}: run `cargo build --release` or set MINILLM_BIN", 2)
    return found


def cli(*args: str, cwd=None) -> str:
    """Runs the command line and returns its standard output; fails the test on an error."""
    out = subprocess.run([minillm_bin(), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, f"minillm {' '.join(map(str, args))} failed:\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def gpt2_tiny() -> Path:
    return FIXTURES / "gpt2_tiny"


@pytest.fixture(scope="session")
def llama_tiny() -> Path:
    return FIXTURES / "llama_tiny"


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """The built-in corpus, a 512-token BPE trained on it, and its shards."""
    import minillm

    d = tmp_path_factory.mktemp("shards")
    corpus = minillm.corpus(d / "corpus.txt")
    tok = minillm.Tokenizer.train([corpus.read_text()], 512, specials=["<|endoftext|>"])
    tok.save(d / "tokenizer.json")
    return minillm.prepare(corpus, tokenizer=str(d / "tokenizer.json"), out=d / "data")


TRAIN_SETTINGS = {
    "model": "baby",
    "max_steps": 12,
    "eval_every": 6,
    "batch_size": 4,
    "seed": 7,
    "sample_tokens": 8,
    "warmup_steps": 2,
}


@pytest.fixture(scope="session")
def cli_run(shards, tmp_path_factory) -> Path:
    """A baby GPT trained 12 steps by the command line."""
    out = tmp_path_factory.mktemp("cli") / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TRAIN_SETTINGS.items()]
    cli("train", "--data", shards, "--out", out, *flags)
    return out
