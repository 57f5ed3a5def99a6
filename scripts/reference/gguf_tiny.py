#!/usr/bin/env python3
"""A GGUF fixture written by llama.cpp's own `gguf` package, for minillm's GGUF reader tests.

Regenerate (seconds; needs `pip install gguf tokenizers safetensors numpy`):

    python3 scripts/reference/gguf_tiny.py crates/minillm/tests/fixtures/gpt2_tiny

Reads the directory's model.safetensors + config.json (made by gpt2_tiny.py), trains a 512-token
byte-level BPE with HF `tokenizers` on a fixed text, and writes into the same directory:
  gpt2_tiny.gguf        the model and tokenizer as llama.cpp's convert_hf_to_gguf.py lays out
                        GPT-2 (`gpt2` architecture, Conv1D weights transposed, f32)
  tokenizer.json        the same tokenizer, as HF `tokenizers` saves it
  gguf_reference.json   a sample text and the ids HF `tokenizers` gives it
The tests check that minillm reads the GGUF file into the model whose logits are in
reference.safetensors, and a tokenizer that gives the same ids as HF `tokenizers`.
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from safetensors.numpy import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TEXT = """\
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of
foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of
Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair,
we had everything before us, we had nothing before us, we were all going direct to Heaven, we
were all going direct the other way. There were a king with a large jaw and a queen with a plain
face, on the throne of England; there were a king with a large jaw and a queen with a fair face,
on the throne of France. In both countries it was clearer than crystal to the lords of the State
preserves of loaves and fishes, that things in general were settled for ever. 1775, 1776, 1777!
France, less favoured on the whole as to matters spiritual than her sister of the shield and
trident, rolled with exceeding smoothness down hill, making paper money and spending it. Under
the guidance of her Christian pastors, she entertained herself, besides, with such humane
achievements as sentencing a youth to have his hands cut off, his tongue torn out with pincers,
and his body burned alive, because he had not kneeled down in the rain to do honour to a dirty
procession of monks which passed within his view, at a distance of some fifty or sixty yards.
"""
SAMPLE = "The king's jaw, in 1775: it was settled for ever -- wasn't it?  Crystal clear!\n"
NAMES = {
    "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
}


def gguf_name(hf: str) -> str:
    short = hf.removeprefix("transformer.")
    fixed = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
             "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    if short in fixed:
        return fixed[short]
    _, block, rest = short.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{block}.{NAMES[module]}.{kind}"


def main(out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config["vocab_size"], special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1)
    tok.train_from_iterator([TEXT] * 4, trainer)
    assert tok.get_vocab_size() == config["vocab_size"], tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    doc = json.loads(tok.to_str())
    vocab = doc["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in doc["model"]["merges"]]
    eot = vocab["<|endoftext|>"]

    w = GGUFWriter(out / "gpt2_tiny.gguf", "gpt2")
    w.add_name("gpt2_tiny")
    w.add_block_count(config["n_layer"])
    w.add_context_length(config["n_positions"])
    w.add_embedding_length(config["n_embd"])
    w.add_feed_forward_length(4 * config["n_embd"])
    w.add_head_count(config["n_head"])
    w.add_layer_norm_eps(config["layer_norm_epsilon"])
    w.add_file_type(0)  # all f32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i == eot else 1 for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)
    for name, value in load_file(out / "model.safetensors").items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue
        if name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            value = value.T
        w.add_tensor(gguf_name(name), np.ascontiguousarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    ids = tok.encode(SAMPLE).ids
    (out / "gguf_reference.json").write_text(json.dumps({"sample": SAMPLE, "ids": ids}, indent=1) + "\n")
    print(f"wrote gpt2_tiny.gguf, tokenizer.json and gguf_reference.json ({len(ids)} ids) to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
