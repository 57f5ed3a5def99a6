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
and in each, as gpt2_tiny.py does for GPT-2:
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
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SEED = 1234
B, T = 2, 16
GREEDY_PROMPT, GREEDY_NEW, REPETITION_PENALTY = 8, 24, 2.0
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
SHARED = dict(
    hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=64, vocab_size=512, hidden_act="silu", attention_dropout=0.0,
    bos_token_id=0, eos_token_id=0, initializer_range=0.1,
)
SPLITS = {
    "llama": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def tokenizer(family: str) -> Tokenizer:
    """512 ids: <|endoftext|>, the 256 bytes, 255 merges learned from this file's docstring."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLITS[family]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([__doc__] * 4, trainer)
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


def write(model, out: Path) -> None:
    config = model.config
    model = model.float()
    model.config._attn_implementation = "eager"
    model.train()  # dropout is 0, so train and eval agree
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer(config.model_type).save(str(out / "tokenizer.json"))

    tokens = torch.randint(0, config.vocab_size, (B, T))
    targets = torch.roll(tokens, -1, dims=1)
    targets[0, :3] = -100  # ignored positions, as SFT masks prompts
    targets[1, -1] = -100

    def loss_of(logits):
        return F.cross_entropy(logits.view(-1, config.vocab_size), targets.view(-1), ignore_index=-100)

    logits = model(tokens).logits
    loss = loss_of(logits)
    loss.backward()
    tensors = {
        "tokens": tokens.to(torch.int32),
        "targets": targets.to(torch.int32),
        "logits": logits.detach().contiguous(),
        "loss": loss.detach().reshape(1),
    }
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().contiguous()

    with torch.no_grad():
        attentions = model(tokens[:1], output_attentions=True).attentions
        for layer, att in enumerate(attentions):
            tensors[f"attentions.{layer}"] = att[0].contiguous()
        # The residual stream's length at each stage: the embedding, then each block's output
        # (HF's last hidden state has the final norm applied, so a hook catches the last block's).
        caught = []
        hook = model.model.layers[-1].register_forward_hook(
            lambda module, args, out: caught.append(out[0] if isinstance(out, tuple) else out))
        hidden = model(tokens[:1], output_hidden_states=True).hidden_states
        hook.remove()
        stages = list(hidden[:-1]) + [caught[0]]
        tensors["residual_norms"] = torch.stack([h[0].norm(dim=-1) for h in stages]).contiguous()
        prompt = tokens[:1, :GREEDY_PROMPT]
        for name, penalty in [("greedy_tokens", 1.0), ("greedy_penalized_tokens", REPETITION_PENALTY)]:
            greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    use_cache=True, max_new_tokens=GREEDY_NEW, min_new_tokens=GREEDY_NEW,
                                    pad_token_id=0, repetition_penalty=penalty)
            tensors[name] = greedy[0].to(torch.int32).contiguous()

    # Ten AdamW steps: decay on the blocks' matrices only, as minillm's trainer does.
    def decayed(n):
        return n.startswith("model.layers.") and n.endswith(".weight") and "layernorm" not in n
    decay = [p for n, p in model.named_parameters() if decayed(n)]
    others = [p for n, p in model.named_parameters() if not decayed(n)]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]}, {"params": others, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
    )
    losses = []
    for _ in range(10):
        optim.zero_grad()
        step_loss = loss_of(model(tokens).logits)
        losses.append(step_loss.item())
        step_loss.backward()
        optim.step()
    tensors["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
    save_file(tensors, out / "reference.safetensors")
    settings = {"seed": SEED, "batch": B, "context": T, "adamw": ADAMW, "greedy_prompt": GREEDY_PROMPT,
                "greedy_new": GREEDY_NEW, "repetition_penalty": REPETITION_PENALTY, "torch": torch.__version__}
    (out / "reference.json").write_text(json.dumps(settings, indent=2) + "\n")
    print(f"{config.model_type}: loss {loss.item():.6f}; wrote {out}")


def main(out: Path) -> None:
    torch.set_num_threads(1)
    for name, make in [("llama_tiny", llama), ("qwen2_tiny", qwen2)]:
        torch.manual_seed(SEED)
        write(make(), out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "crates/minillm/tests/fixtures"))
