#!/usr/bin/env python3
"""Checks that an HF export of a minillm model means the same thing to HF transformers.

    minillm export --model RUN --format hf --out DIR
    python3 scripts/interop/check_hf_export.py DIR RUN ["some text"]

Loads DIR offline with AutoModelForCausalLM and AutoTokenizer (the fast tokenizer from
tokenizer.json and, where the export has vocab.json + merges.txt, GPT-2's slow one), and compares with minillm's own
view of RUN (`minillm inspect --json`): the token ids, and the next-token probabilities of the
top 20 tokens (from the full softmax) within 1e-4. Needs `pip install torch transformers`.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

MINILLM = Path(__file__).resolve().parents[2] / "target" / "release" / "minillm"


def check_chat_template(out_dir):
    """A fine-tuned model's template renders, in HF, the text minillm's chat format documents,
    and HF reads each role marker as one special token."""
    tok = AutoTokenizer.from_pretrained(out_dir)
    if not tok.chat_template:
        return
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|end|>"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    want = ("<|system|>\nBe brief.<|end|>\n<|user|>\nHi <|end|><|end|>\n<|assistant|>\nHello.<|end|>\n"
            "<|user|>\nBye<|end|>\n<|assistant|>\n")
    assert text == want, f"chat template renders {text!r}"
    for marker in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"):
        assert len(tok(marker)["input_ids"]) == 1, f"{marker} is not one token in HF"
    print("chat template: HF's apply_chat_template renders minillm's format")


def main(out_dir, run, text):
    ours = json.loads(subprocess.run([str(MINILLM), "inspect", "--model", run, text, "--top-k", "20", "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    our_ids = [t["id"] for t in ours["tokens"]]
    kinds = (True, False) if (Path(out_dir) / "vocab.json").exists() else (True,)
    for use_fast in kinds:
        ids = AutoTokenizer.from_pretrained(out_dir, use_fast=use_fast)(text)["input_ids"]
        assert ids == our_ids, f"token ids differ (use_fast={use_fast}): {ids} vs {our_ids}"
    check_chat_template(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    tok = AutoTokenizer.from_pretrained(out_dir)
    if tok.eos_token is not None:
        eos = tok.convert_tokens_to_ids(tok.eos_token)
        assert eos == model.config.eos_token_id, f"eos {tok.eos_token} is id {eos}, config says {model.config.eos_token_id}"
        assert tok(tok.eos_token, add_special_tokens=False)["input_ids"] == [eos], "HF does not read the eos text as one special token"
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([our_ids])).logits[0, -1].double(), dim=-1)
    worst = max(abs(probs[c["id"]].item() - c["prob"]) for c in ours["next"])
    assert worst < 1e-4, f"next-token probabilities differ by {worst:.2e}"
    print(f"{model.config.model_type}: {len(our_ids)} token ids equal ({' and '.join('fast' if k else 'slow' for k in kinds)} "
          f"tokenizer); top-20 next-token probabilities within {worst:.1e} of HF transformers")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "The capital of France is")
