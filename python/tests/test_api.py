"""The Python API against the command line: the same ids, probabilities, attention, text,
metrics and refusals for the same input."""

import json
import os
import signal
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import minillm
from conftest import ROOT, TRAIN_SETTINGS, cli, minillm_bin

TEXTS = [
    "The capital of France is",
    "héllo wörld — 東京 🙂 ok",
    "  leading spaces, tabs\t and\nnewlines\n\n",
    "I'm sure it's 12345 o'clock",
]


# --- tokenizers -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_ids_and_pieces_equal_the_cli(text):
    tok = minillm.Tokenizer.gpt2()
    want = json.loads(cli("tokenizer", "encode", "--tokenizer", "gpt2", "--json", text))
    assert tok.encode(text) == want["ids"]
    assert tok.tokens(text) == [t["text"] for t in want["tokens"]]
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch([text, text]) == [want["ids"], want["ids"]]


def test_the_seeds_prompt_has_gpt2s_ids():
    assert minillm.Tokenizer.gpt2().encode("The capital of France is") == [464, 3139, 286, 4881, 318]


def test_gpt2_ids_equal_tiktoken():
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    files = ROOT.parent / "shared" / "data" / "gpt2"
    if not (files / "vocab.bpe").exists():
        pytest.skip(f"GPT-2's vocab.bpe and encoder.json are not in {files} (tiktoken cannot download them here)")
    ranks = data_gym_to_mergeable_bpe_ranks(str(files / "vocab.bpe"), str(files / "encoder.json"))
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding("gpt2", pat_str=pattern, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    tok = minillm.Tokenizer.gpt2()
    for text in TEXTS + [(ROOT / "README.md").read_text()]:
        assert tok.encode(text) == enc.encode(text)


def test_a_file_tokenizer_equals_the_cli(gpt2_tiny):
    tok = minillm.Tokenizer.from_file(gpt2_tiny / "tokenizer.json")
    for text in TEXTS:
        want = json.loads(cli("tokenizer", "encode", "--tokenizer", gpt2_tiny / "tokenizer.json", "--json", text))
        assert tok.encode(text) == want["ids"]


def test_training_a_tokenizer_writes_the_clis_file(tmp_path):
    text = minillm.builtin_corpus()[:200_000]
    (tmp_path / "text.txt").write_text(text)
    cli("tokenizer", "train", "--input", tmp_path / "text.txt", "--vocab-size", "400",
        "--special", "<|endoftext|>", "--out", tmp_path / "cli.json")
    tok = minillm.Tokenizer.train([text], 400, specials=["<|endoftext|>"])
    tok.save(tmp_path / "py.json")
    assert (tmp_path / "py.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert tok.vocab_size == 400
    assert tok.special_tokens == [("<|endoftext|>", 399)]


def test_special_token_text_is_refused_unless_asked():
    tok = minillm.Tokenizer.gpt2()
    with pytest.raises(minillm.Error, match='special="allow"'):
        tok.encode("a<|endoftext|>b")
    assert tok.encode("a<|endoftext|>b", special="allow") == [64, 50256, 65]
    assert 50256 not in tok.encode("a<|endoftext|>b", special="text")
    with pytest.raises(minillm.Error, match="refuse"):
        tok.encode("a", special="maybe")


def test_char_and_word_tokenizers():
    chars = minillm.CharTokenizer.fit("hello world")
    assert chars.tokens("hello") == list("hello")
    assert chars.tokens("hex") == ["h", "e", "<unk>"]
    assert chars.vocab_size == 1 + len(set("hello world"))
    words = minillm.WordTokenizer.fit("the cat sat on the mat", max_vocab=10)
    assert words.tokens("the cat ran") == ["the", "cat", "<unk>"]
    assert words.encode("the")[0] == 1  # the most frequent word takes the first id after <unk>


# --- a model, looked inside -------------------------------------------------------------------


def inspect_json(model, text, *flags):
    return json.loads(cli("inspect", "--model", model, "--json", *flags, text))


@pytest.mark.parametrize("fixture", ["gpt2_tiny", "llama_tiny"])
def test_next_token_probs_equal_inspect_json(fixture, request):
    path = request.getfixturevalue(fixture)
    model = minillm.Model.load(path)
    text = "The cat sat on the"
    assert model.next_token_probs(text, top=7) == inspect_json(path, text, "--top-k", "7")["next"]


def test_the_sampler_reshapes_the_distribution(gpt2_tiny):
    model = minillm.Model.load(gpt2_tiny)
    plain = model.next_token_probs("Once upon a", top=5)
    assert "shaped" not in plain[0]
    greedy = model.next_token_probs("Once upon a", top=5, top_k=1)
    assert [p["shaped"] for p in greedy] == [1.0, 0.0, 0.0, 0.0, 0.0]
    # Against softmax(logits / T) computed here from the model's logits.
    logits = model.logits("Once upon a").astype(np.float64) / 0.7
    p = np.exp(logits - logits.max())
    p /= p.sum()
    warm = model.next_token_probs("Once upon a", top=5, temperature=0.7)
    np.testing.assert_allclose([e["shaped"] for e in warm], [p[e["id"]] for e in warm], rtol=1e-6)
    sharp = model.next_token_probs("Once upon a", top=5, temperature=0.5)
    assert sharp[0]["shaped"] > sharp[0]["prob"]  # a low temperature favours the favourite
    assert [p["id"] for p in sharp] == [p["id"] for p in plain]


@pytest.mark.parametrize("fixture", ["gpt2_tiny", "llama_tiny"])
def test_attention_and_residual_norms_equal_the_clis_json(fixture, request):
    path = request.getfixturevalue(fixture)
    model = minillm.Model.load(path)
    text = "The cat sat on the mat"
    maps = model.attention(text)
    info = model.info()
    t = len(inspect_json(path, text)["tokens"])
    assert model.tokens(text) == [t["text"] for t in inspect_json(path, text)["tokens"]]
    assert maps.shape == (info["n_layer"], info["n_head"], t, t)
    assert maps.dtype == np.float32
    for layer in range(info["n_layer"]):
        for head in range(info["n_head"]):
            want = inspect_json(path, text, "--layer", str(layer), "--head", str(head))
            np.testing.assert_allclose(maps[layer, head], want["attention"]["weights"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.residual_norms(text), want["residual_norms"], rtol=1e-6)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-5)


def safetensors_tensor(path: Path, name: str) -> np.ndarray:
    """One f32 tensor read from a .safetensors file by hand (8-byte header length, JSON header)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    entry = json.loads(data[8 : 8 + n])[name]
    assert entry["dtype"] == "F32"
    start, end = entry["data_offsets"]
    return np.frombuffer(data[8 + n + start : 8 + n + end], dtype="<f4").reshape(entry["shape"])


def test_embeddings_are_the_files_table(gpt2_tiny):
    emb = minillm.Model.load(gpt2_tiny).embeddings()
    np.testing.assert_array_equal(emb, safetensors_tensor(gpt2_tiny / "model.safetensors", "transformer.wte.weight"))


def test_logits_give_the_probabilities(gpt2_tiny):
    model = minillm.Model.load(gpt2_tiny)
    logits = model.logits("Once upon a").astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = model.next_token_probs("Once upon a", top=3)
    assert [e["id"] for e in top] == list(np.argsort(-p, kind="stable")[:3])
    np.testing.assert_allclose([e["prob"] for e in top], np.sort(p)[::-1][:3], rtol=1e-9)


def test_eval_equals_the_cli(gpt2_tiny, tmp_path):
    text = "It was the best of times, it was the worst of times."
    (tmp_path / "t.txt").write_text(text)
    want = json.loads(cli("eval", "--model", gpt2_tiny, "--data", tmp_path / "t.txt", "--json"))
    assert minillm.Model.load(gpt2_tiny).eval(text) == want


def test_info(gpt2_tiny):
    info = minillm.Model.load(gpt2_tiny).info()
    config = json.loads((gpt2_tiny / "config.json").read_text())
    assert (info["n_layer"], info["n_embd"], info["vocab_size"]) == (config["n_layer"], config["n_embd"], config["vocab_size"])
    assert info["weight_type"] == "f32"


# --- generation -------------------------------------------------------------------------------


def generate_json(model, prompt, *flags):
    return json.loads(cli("generate", "--model", model, "--json", *flags, prompt))["text"]


@pytest.mark.parametrize("fixture", ["gpt2_tiny", "llama_tiny"])
def test_generate_equals_the_cli(fixture, request):
    path = request.getfixturevalue(fixture)
    model = minillm.Model.load(path)
    greedy = model.generate("Once upon a", max_new_tokens=16, temperature=0)
    assert greedy == generate_json(path, "Once upon a", "--max-new-tokens", "16", "--temperature", "0")
    sampled = model.generate("Once upon a", max_new_tokens=16, temperature=0.9, top_p=0.9, seed=5)
    assert sampled == generate_json(path, "Once upon a", "--max-new-tokens", "16", "--temperature", "0.9", "--top-p", "0.9", "--seed", "5")
    # Streamed, the same text in pieces; several samples, the first is the single one.
    pieces = list(model.generate("Once upon a", max_new_tokens=16, temperature=0.9, top_p=0.9, seed=5, stream=True))
    assert "".join(pieces) == sampled and len(pieces) > 1
    many = model.generate("Once upon a", max_new_tokens=16, temperature=0.9, top_p=0.9, seed=5, num_samples=3)
    assert len(many) == 3 and many[0] == sampled


def test_calls_inside_a_stream_wait_for_its_generation(gpt2_tiny):
    model = minillm.Model.load(gpt2_tiny)
    pieces = []
    for piece in model.generate("Once upon a", max_new_tokens=20, temperature=0, stream=True):
        pieces.append(piece)
        # The model is busy generating: these wait for it (and must not deadlock).
        assert model.next_token_probs("Once", top=1)[0]["prob"] > 0
        assert model.tokens("Once")
    assert "".join(pieces) == model.generate("Once upon a", max_new_tokens=20, temperature=0)


def test_stop_strings_and_logit_bias(gpt2_tiny):
    model = minillm.Model.load(gpt2_tiny)
    full = model.generate("Once upon a", max_new_tokens=24, temperature=0)
    cut = full[len(full) // 2 :][:3]
    stopped = model.generate("Once upon a", max_new_tokens=24, temperature=0, stop=[cut])
    assert cut not in stopped and full.startswith(stopped)
    first = model.next_token_probs("Once upon a", top=1)[0]["id"]
    banned = model.generate("Once upon a", max_new_tokens=1, temperature=0, logit_bias={first: -100})
    assert banned != model.tokenizer.decode([first])


def test_pipeline_has_hfs_shape(gpt2_tiny):
    generator = minillm.pipeline("text-generation", model=str(gpt2_tiny))
    out = generator("Once upon a", max_new_tokens=8)
    assert isinstance(out, list) and len(out) == 1 and list(out[0]) == ["generated_text"]
    model = minillm.Model.load(gpt2_tiny)
    assert out[0]["generated_text"] == "Once upon a" + model.generate("Once upon a", max_new_tokens=8, temperature=0)
    sampled = generator("Once upon a", max_length=12, do_sample=True, num_return_sequences=3, seed=1)
    assert len(sampled) == 3 and all(s["generated_text"].startswith("Once upon a") for s in sampled)
    batch = generator(["Hello", "Once upon a"], max_new_tokens=4, return_full_text=False)
    assert [len(b) for b in batch] == [1, 1] and not batch[1][0]["generated_text"].startswith("Once")
    with pytest.raises(ValueError, match="do_sample=True"):
        generator("Hello", num_return_sequences=2)
    with pytest.warns(UserWarning, match="temperature apply only with do_sample=True"):
        generator("Hello", max_new_tokens=2, temperature=0.7)
    with pytest.raises(TypeError):
        generator("Hello", max_tokens=3)
    with pytest.raises(ValueError, match="text-generation"):
        minillm.pipeline("summarization", model=str(gpt2_tiny))
    with pytest.raises(TypeError, match="device"):
        minillm.pipeline("text-generation", model=str(gpt2_tiny), device="cuda")


# --- refusals -------------------------------------------------------------------------------


def test_bad_input_raises_with_the_librarys_message(gpt2_tiny, tmp_path):
    with pytest.raises(minillm.Error, match="is not a model"):
        minillm.Model.load(tmp_path / "nothing")
    model = minillm.Model.load(gpt2_tiny)
    with pytest.raises(TypeError, match="temperatur"):
        model.generate("Hi", temperatur=0.5)
    with pytest.raises(minillm.Error, match="temperature"):
        model.generate("Hi", temperature="hot")
    with pytest.raises(minillm.Error, match="top-p"):
        model.generate("Hi", top_p=0)
    long = "word " * 5000
    with pytest.raises(minillm.Error, match="context holds"):
        model.generate(long)
    assert isinstance(model.generate(long, truncate="left", max_new_tokens=2, temperature=0), str)
    with pytest.raises(minillm.Error, match="empty"):
        model.attention("")
    with pytest.raises(minillm.Error, match="top must be"):
        model.next_token_probs("Hi", top=0)
    with pytest.raises(minillm.Error, match="already started"):
        minillm.set_threads(1)
    with pytest.raises(minillm.Error, match="f32 is not a quantized type"):
        minillm.quantize(gpt2_tiny, tmp_path / "m.gguf", "f32")
    assert not (tmp_path / "m.gguf").exists()
    with pytest.raises(minillm.Error, match="type: unknown weight type 'q3_X'"):
        minillm.quantize(gpt2_tiny, tmp_path / "m.gguf", "q3_X")
    with pytest.raises(TypeError, match="unexpected setting 'modle'"):
        minillm.train({"modle": "baby"}, data=tmp_path, out=tmp_path / "run")
    # A run that cannot start raises where it is started, not when first iterated.
    with pytest.raises(minillm.Error, match="nothing"):
        minillm.train({"model": "baby"}, data=tmp_path / "nothing", out=tmp_path / "run")
    with pytest.raises(minillm.Error, match="required arguments were not provided: model out"):
        minillm.sft(data=tmp_path / "chats.jsonl")
    with pytest.raises(minillm.Error, match=r"invalid value 'onnx' for format \[possible values: hf, gguf\]"):
        minillm.export(gpt2_tiny, tmp_path / "e", "onnx")
    with pytest.raises(minillm.Error, match="invalid value 'abc' for max_steps: invalid digit"):
        minillm.train(data=tmp_path, out=tmp_path / "run", max_steps="abc")


# --- training, fine-tuning, quantization ------------------------------------------------------


def comparable(step):
    return {k: v for k, v in step.items() if k not in ("tokens_per_s", "elapsed_s")}


def test_training_yields_the_clis_metrics(shards, cli_run, tmp_path):
    run = minillm.train(dict(TRAIN_SETTINGS), data=shards, out=tmp_path / "run")
    steps = list(run)
    assert run.wait() == tmp_path / "run"
    want = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [comparable(s) for s in steps] == [comparable(w) for w in want]
    written = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert written == steps
    assert (tmp_path / "run" / "latest.json").exists()


def test_a_config_file_and_keywords(shards, tmp_path):
    (tmp_path / "c.toml").write_text('model = "baby"\nmax_steps = 3\neval_every = 3\nsample_tokens = 0\n')
    steps = list(minillm.train(tmp_path / "c.toml", data=shards, out=tmp_path / "run", max_steps=2))
    assert [s["step"] for s in steps] == [1, 2]


def test_ctrl_c_stops_training_with_a_checkpoint(shards, tmp_path):
    settings = {**TRAIN_SETTINGS, "max_steps": 40, "eval_every": 100, "checkpoint_every": 100}
    run = minillm.train(settings, data=shards, out=tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        for step in run:
            if step["step"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())
    stopped = run.metrics[-1]["step"]
    assert 3 <= stopped < 40 and str(stopped) in json.dumps(latest)
    resumed = list(minillm.train(resume=tmp_path / "run", data=shards))
    assert resumed[0]["step"] == stopped + 1 and resumed[-1]["step"] == 40


def test_sft_then_dpo(cli_run, tmp_path):
    tasks = minillm.corpus(tasks=tmp_path / "tasks")
    sft = minillm.sft(cli_run, tasks / "sft-train.jsonl", out=tmp_path / "sft", val_data=tasks / "sft-val.jsonl",
                      max_steps=3, eval_every=3, batch_size=4, sample_tokens=0)
    assert [s["step"] for s in sft] == [1, 2, 3]
    dpo = minillm.dpo(tmp_path / "sft", tasks / "dpo-train.jsonl", out=tmp_path / "dpo",
                      val_data=tasks / "dpo-val.jsonl", max_steps=2, eval_every=2, batch_size=2, beta=0.2)
    steps = list(dpo)
    assert [s["step"] for s in steps] == [1, 2] and "rewards/margins" in steps[-1]
    chat = minillm.Model.load(tmp_path / "dpo").generate("What is a cat?", chat=True, max_new_tokens=8, temperature=0)
    assert isinstance(chat, str)
    with pytest.raises(minillm.Error, match="chat template"):
        minillm.Model.load(cli_run).generate("Hi", chat=True)


def test_quantize_and_export_write_the_clis_files(gpt2_tiny, tmp_path):
    # The file's name is in its metadata: the same name in two directories.
    (tmp_path / "py").mkdir(), (tmp_path / "cli").mkdir()
    minillm.quantize(gpt2_tiny, tmp_path / "py" / "m.gguf", "q8_0")
    cli("quantize", "--model", gpt2_tiny, "--type", "q8_0", "--out", tmp_path / "cli" / "m.gguf")
    assert (tmp_path / "py" / "m.gguf").read_bytes() == (tmp_path / "cli" / "m.gguf").read_bytes()
    q = minillm.Model.load(tmp_path / "py" / "m.gguf")
    assert q.info()["weight_type"].startswith("q8_0")
    assert q.generate("Once", max_new_tokens=6, temperature=0) == generate_json(tmp_path / "cli" / "m.gguf", "Once", "--max-new-tokens", "6", "--temperature", "0")
    out = minillm.export(gpt2_tiny, tmp_path / "hf", "hf")
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    with pytest.raises(minillm.Error, match="already exists"):
        minillm.export(gpt2_tiny, tmp_path / "hf", "hf")


def test_the_gil_is_released_during_long_work():
    import threading
    import time

    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)
    before = len(ticks)
    started = time.perf_counter()
    minillm.Tokenizer.train([minillm.builtin_corpus()], 800)  # one call of about a second
    took = time.perf_counter() - started
    during = len(ticks) - before
    done.set()
    counter.join()
    # Holding the GIL for the whole call would leave the counting thread one tick or two.
    assert during > 0.2 * took / 0.001, f"{during} ticks in {took:.2f}s: the GIL was held"


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory):
    """A random 30M-parameter GPT (GPT-2's vocabulary): long generations take seconds here."""
    out = tmp_path_factory.mktemp("d6") / "model"
    cli("model", "init", "--preset", "d6", "--out", out)
    return out


def test_ctrl_c_stops_a_streamed_generation(slow_model):
    import threading
    import time

    model = minillm.Model.load(slow_model)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in model.generate("Once upon a time", max_new_tokens=240, temperature=0.8, stream=True):
            pass
    took = time.perf_counter() - started
    assert took < 2.0, f"the generation went on for {took:.1f}s after Ctrl-C"
    # The model is free again.
    assert isinstance(model.generate("Once", max_new_tokens=2, temperature=0), str)
