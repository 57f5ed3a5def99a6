#!/usr/bin/env python3
"""Reference numbers for the GPT model tests, from PyTorch + HF transformers.

Regenerate (CPU, a minute; needs `pip install torch transformers safetensors numpy`):

    python3 scripts/reference/gpt2_tiny.py crates/minillm/tests/fixtures/gpt2_tiny

Builds a small GPT2LMHeadModel from a fixed seed and writes, into the output directory:
  model.safetensors, config.json   the model, as HF's save_pretrained writes it
  reference.safetensors            tokens and targets (int32; -100 = ignored), the logits, the
                                   loss, every parameter's gradient ("grad.<name>") and the loss
                                   before each of 10 torch.optim.AdamW steps ("adamw_losses"),
                                   the attention probabilities of the first sequence
                                   ("attentions.<layer>", heads x T x T), the residual
                                   stream's norm per stage ("residual_norms") and HF's greedy
                                   continuation of its first 8 tokens ("greedy_tokens",
                                   `generate(do_sample=False, use_cache=True)`, 24 new tokens;
                                   "greedy_penalized_tokens" with repetition_penalty 2.0)
  reference.json                   the settings used, for the tests to read
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

SEED = 1234
B, T = 2, 16
GREEDY_PROMPT, GREEDY_NEW, REPETITION_PENALTY = 8, 24, 2.0
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def main(out: Path) -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=512,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        bos_token_id=511, eos_token_id=511,
    )
    # Decay on the blocks' matrices only, as minillm's trainer does.
    record(GPT2LMHeadModel(config), out, last_block=lambda m: m.transformer.h[-1],
           decayed=lambda n: n.startswith("transformer.h.") and n.endswith(".weight") and ".ln_" not in n)


def record(model, out: Path, last_block, decayed) -> None:
    """Saves `model` into `out` with every reference number the tests read (shared by
    llama_tiny.py): `last_block(model)` is the module whose output is the last residual stage,
    `decayed(name)` says which parameters AdamW decays."""
    config = model.config
    model = model.float()
    model.config._attn_implementation = "eager"
    model.train()  # dropout is 0, so train and eval agree
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

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
        # The length of the residual stream at each stage ("residual_norms", (n_layer + 1) x T):
        # the embedding, then each block's output. HF's last hidden state has the final norm
        # applied, so the last block's own output is caught with a hook.
        caught = []
        hook = last_block(model).register_forward_hook(
            lambda module, args, out: caught.append(out[0] if isinstance(out, tuple) else out))
        hidden = model(tokens[:1], output_hidden_states=True).hidden_states
        hook.remove()
        stages = list(hidden[:-1]) + [caught[0]]
        tensors["residual_norms"] = torch.stack([h[0].norm(dim=-1) for h in stages]).contiguous()
        prompt = tokens[:1, :GREEDY_PROMPT]
        # A random model soon repeats one token; HF's repetition penalty makes it wander,
        # which tests more steps (and the penalty) against HF.
        for name, penalty in [("greedy_tokens", 1.0), ("greedy_penalized_tokens", REPETITION_PENALTY)]:
            greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    use_cache=True, max_new_tokens=GREEDY_NEW, min_new_tokens=GREEDY_NEW,
                                    pad_token_id=0, repetition_penalty=penalty)
            tensors[name] = greedy[0].to(torch.int32).contiguous()

    # Ten AdamW steps.
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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "crates/minillm/tests/fixtures/gpt2_tiny"))
