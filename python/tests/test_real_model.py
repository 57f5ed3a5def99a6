"""The Python API on a real model as people download it: SmolLM2-135M-Instruct, the Q4_1 GGUF that
llama.cpp made (`bash scripts/models/fetch_real.sh` fetches it). Skipped when the file is absent,
unless MINILLM_REQUIRE_REAL_MODELS=1 (set by .ci/run)."""

import os
from pathlib import Path

import pytest

import minillm

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    cache = os.environ.get("MINILLM_REAL_MODELS") or os.path.expanduser("~/.cache/minillm/real-models")
    path = Path(cache) / NAME
    if not path.is_file():
        why = f"{path} is absent: run `bash scripts/models/fetch_real.sh`"
        if os.environ.get("MINILLM_REQUIRE_REAL_MODELS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def test_model_load_runs_the_real_file(smollm2):
    model = minillm.Model.load(smollm2)
    top = model.next_token_probs("The capital of France is", top=3)
    assert top[0]["text"] == " Paris" and top[0]["prob"] > 0.5, top
    info = model.info()
    assert info["parameters"] == 134_515_008 and info["weight_type"].startswith("q4_1"), info
    reply = model.generate("What is the capital of France?", chat=True, temperature=0, max_new_tokens=12)
    assert reply.strip(), reply


def test_tokenizer_from_the_gguf_file(smollm2):
    tok = minillm.Tokenizer.from_file(smollm2)
    assert tok.encode("Hello world!") == [19556, 905, 17]
    # A byte with no token in SmolLM2's vocabulary is dropped, as llama.cpp drops it.
    assert tok.encode("!\x04!") == [17, 17]
    assert tok.decode([19556, 905, 17]) == "Hello world!"
