#!/usr/bin/env python3
"""Reference numbers for the LLaMA-family tests, from PyTorch + HF transformers.

Regenerate (CPU, a minute; needs `pip install torch transformers safetensors numpy`):

    python3 scripts/reference/llama_tiny.py crates/minillm/tests/fixtures

Writes two tiny random models, each into its own directory under the output directory:
  llama_tiny/   LlamaForCausalLM: grouped-query attention (4 query heads, 2 key/value heads),
                an untied LM head, llama3 rope scaling (with an original context short enough
                that the three frequency bands all occur)
  qwen2_tiny/   Qwen2ForCausalLM: q/k/v biases (set to random values, not HF's zeros), a tied
                head, one key/value head (multi-query), rope_theta 1e6
and in each, with gpt2_tiny.py's `record` (the same settings and numbers as for GPT-2):
  model.safetensors, config.json   the model, as save_pretrained writes it
  tokenizer.json                   a byte-level BPE of 512 ids (<|endoftext|> = 0, the model's bos
                                   and eos) trained by HF tokenizers after its family's split:
                                   Llama 3's pattern, Qwen2's (single digits); the Llama's, like
                                   Llama 3's, puts its bos before every text (post-processor); so
                                   the directory is a whole model minillm and transformers both load
  reference.safetensors            tokens, targets (int32; -100 = ignored), logits, loss, every
                                   parameter's gradient ("grad.<name>"), the loss before each of
                                   10 torch.optim.AdamW steps ("adamw_losses"), the first
                                   sequence's attention probabilities per query head
                                   ("attentions.<layer>", heads x T x T), the residual stream's
                                   norm per stage ("residual_norms") and HF's greedy continuation
                                   of its first 8 tokens ("greedy_tokens", 24 new tokens;
                                   "greedy_penalized_tokens" with repetition_penalty 2.0)
  reference.json                   the settings used
"""
import sys
from pathlib import Path

import torch
from gpt2_tiny import SEED, record
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SHARED = dict(
    hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=64, vocab_size=512, hidden_act="silu", attention_dropout=0.0,
    bos_token_id=0, eos_token_id=0, initializer_range=0.1,
)
SPLITS = {
    "llama": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


# What the tiny tokenizers learn their merges from (fixed, so the fixtures do not depend on
# anything else in this file).
TEXT = """Once upon a time, in 2024, a small model learned to read. It read stories about foxes and
kites, questions like "What is the capital of France?" and their answers ("Paris."), and sums
such as 12 + 345 = 357. Isn't that odd? It wasn't: models read numbers, quotes, code
(`print("hello")`) and text in other scripts (héllo, naïve, 日本語) every day. The end.
Tokenizers cut text into pieces: first by a pattern (words, numbers, punctuation, spaces), then
by merges learned from counting which neighbouring symbols occur together most often. Grouped
heads share their keys and values; rotary embeddings turn queries and keys by their position;
the gated linear unit multiplies a gate by an up projection before projecting down again. Every
gradient is checked against finite differences, and every logit against PyTorch's, because a
reader should be able to trust what they are reading without taking anyone's word for it.
Quick brown foxes jump over lazy dogs; zebras quietly vex judges; waltz, bad nymph, for quick jigs.
"""


def tokenizer(family: str) -> Tokenizer:
    """512 ids: <|endoftext|>, the 256 bytes, 255 merges learned from TEXT."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLITS[family]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT] * 4, trainer)
    assert tok.get_vocab_size() == 512, tok.get_vocab_size()
    if family == "llama":
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B:1",
                                          special_tokens=[("<|endoftext|>", 0)]),
        ])
    return tok



def llama():
    config = LlamaConfig(
        **SHARED, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=10000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    )
    return LlamaForCausalLM(config)


def qwen2():
    config = Qwen2Config(**SHARED, num_key_value_heads=1, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_theta=1e6, use_sliding_window=False)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_proj.bias"):
                p.normal_(0.0, 0.5)  # HF starts biases at zero, which would test nothing
    return model


def main(out: Path) -> None:
    torch.set_num_threads(1)
    # Decay on the blocks' matrices only, as minillm's trainer does.
    def decayed(n):
        return n.startswith("model.layers.") and n.endswith(".weight") and "layernorm" not in n

    for name, make in [("llama_tiny", llama), ("qwen2_tiny", qwen2)]:
        torch.manual_seed(SEED)
        model = make()
        record(model, out / name, last_block=lambda m: m.model.layers[-1], decayed=decayed)
        tokenizer(model.config.model_type).save(str(out / name / "tokenizer.json"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "crates/minillm/tests/fixtures"))
