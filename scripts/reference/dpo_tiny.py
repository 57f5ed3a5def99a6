#!/usr/bin/env python3
"""Reference numbers for minillm's DPO, from PyTorch, with TRL's definitions.

Regenerate (seconds; needs `pip install torch transformers safetensors`):

    python3 scripts/reference/dpo_tiny.py crates/minillm/tests/fixtures/gpt2_tiny

Uses the directory's GPT2LMHeadModel (made by gpt2_tiny.py) as the policy. Three preference
pairs, each a chosen and a rejected sequence of tokens padded with token 0 to T = 16, with
targets = the next token on the completion positions and -100 elsewhere (prompt and padding).
Reference log-probabilities are fixed numbers (as if from another model), so the rewards are not
zero. Computes, as TRL's DPOTrainer (loss_type "sigmoid") does:
  logp      = sum over completion positions of log softmax(logits)[target]
  rewards   = beta * (logp - ref_logp), for chosen and rejected
  loss      = mean over pairs of -log sigmoid(chosen_reward - rejected_reward)
  metrics   rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins (means)
and the gradient of the loss for every parameter. Writes dpo_reference.safetensors
(chosen_tokens, chosen_targets, rejected_tokens, rejected_targets, ref_chosen, ref_rejected,
loss, metrics [chosen, rejected, accuracy, margin], "grad.<name>") and dpo_reference.json (beta).
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

BETA, PAIRS, T = 0.1, 3, 16


def sequences(gen, vocab):
    tokens = torch.zeros(PAIRS, T, dtype=torch.long)
    targets = torch.full((PAIRS, T), -100, dtype=torch.long)
    for i in range(PAIRS):
        n = int(torch.randint(8, T + 1, (1,), generator=gen))
        prompt = int(torch.randint(2, 6, (1,), generator=gen))
        seq = torch.randint(0, vocab, (n + 1,), generator=gen)
        tokens[i, :n] = seq[:n]
        # position j predicts seq[j + 1]; only completion tokens (after the prompt) count
        for j in range(prompt - 1, n):
            targets[i, j] = seq[j + 1]
    return tokens, targets


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_pretrained(out).float()
    model.config._attn_implementation = "eager"
    model.train()  # dropout is 0 in the fixture
    gen = torch.Generator().manual_seed(7)
    chosen, chosen_t = sequences(gen, model.config.vocab_size)
    rejected, rejected_t = sequences(gen, model.config.vocab_size)
    ref_chosen = -torch.rand(PAIRS, generator=gen, dtype=torch.float64) * 40 - 40
    ref_rejected = -torch.rand(PAIRS, generator=gen, dtype=torch.float64) * 40 - 40

    def logps(tokens, targets):
        logits = model(tokens).logits.double()
        mask = targets != -100
        picked = torch.gather(F.log_softmax(logits, -1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1)

    pi_w, pi_l = logps(chosen, chosen_t), logps(rejected, rejected_t)
    r_w, r_l = BETA * (pi_w - ref_chosen), BETA * (pi_l - ref_rejected)
    loss = -F.logsigmoid(r_w - r_l).mean()
    loss.backward()
    tensors = {
        "chosen_tokens": chosen.to(torch.int32), "chosen_targets": chosen_t.to(torch.int32),
        "rejected_tokens": rejected.to(torch.int32), "rejected_targets": rejected_t.to(torch.int32),
        "ref_chosen": ref_chosen, "ref_rejected": ref_rejected,
        "loss": loss.detach().reshape(1),
        "metrics": torch.stack([r_w.mean(), r_l.mean(), (r_w > r_l).double().mean(), (r_w - r_l).mean()]).detach(),
    }
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().contiguous()
    save_file(tensors, out / "dpo_reference.safetensors")
    (out / "dpo_reference.json").write_text(json.dumps({"beta": BETA, "pairs": PAIRS, "context": T}) + "\n")
    print(f"DPO loss {loss.item():.6f}; wrote dpo_reference.safetensors to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
