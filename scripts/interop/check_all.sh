#!/usr/bin/env bash
# The Python interop checks end to end: trains a small BPE model with minillm, exports it to an
# HF directory and to GGUF (f32, f16, q8_0 and q4_0), and checks them with HF transformers and llama.cpp's
# gguf package. The LLaMA family: a LLaMA-shaped model trained here, the tiny Llama and Qwen2
# fixtures that transformers wrote, the Llama as a Mistral, and with SentencePiece-style
# tokenizers, each exported by minillm and loaded back by transformers.
#
#   scripts/interop/check_all.sh PYTHON
#
# PYTHON must have torch, transformers, safetensors, numpy and gguf installed; the minillm
# binary is target/release/minillm (build it first).
set -euo pipefail
python=${1:?usage: check_all.sh PYTHON}
root="$(cd "$(dirname "$0")/../.." && pwd)"
minillm="$root/target/release/minillm"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

"$minillm" corpus --out corpus.txt > /dev/null
"$minillm" tokenizer train --input corpus.txt --vocab-size 512 --special '<|endoftext|>' --out tok.json > /dev/null
"$minillm" prepare --input corpus.txt --tokenizer tok.json --out data > /dev/null
"$minillm" train --data data --out run --model d2 --context 64 --batch-size 8 --max-steps 60 \
    --eval-every 60 --eval-batches 2 --sample-tokens 0 > /dev/null 2>&1
"$minillm" corpus --tasks tasks > /dev/null
"$minillm" sft --model run --data tasks/sft-train.jsonl --val-data tasks/sft-val.jsonl --out sft \
    --max-steps 5 --eval-every 5 --sample-tokens 0 > /dev/null 2>&1
"$minillm" export --model sft --format hf --out sft-hf
"$python" "$root/scripts/interop/check_hf_export.py" sft-hf sft "What is the capital of France?"
"$minillm" export --model run --format hf --out hf
"$minillm" export --model run --format gguf --out model.gguf
"$minillm" export --model run --format gguf --type f16 --out model-f16.gguf

"$python" "$root/scripts/interop/check_hf_export.py" hf run "Once upon a time, the capital of France was Paris."
"$python" "$root/scripts/interop/check_gguf.py" model.gguf hf
"$python" "$root/scripts/interop/check_gguf.py" model-f16.gguf hf
# q8_0, q4_0 (LM head q8_0), and q4_0 throughout (--head-type q4_0).
for types in q8_0:q8_0 q4_0:q8_0 q4_0:q4_0; do
    ty=${types%:*} head=${types#*:}
    "$minillm" quantize --model run --type "$ty" --head-type "$head" --out "model-$ty-$head.gguf"
    "$minillm" export --model "model-$ty-$head.gguf" --format hf --out "hf-$ty-$head"
    "$python" "$root/scripts/interop/check_gguf.py" "model-$ty-$head.gguf" hf "hf-$ty-$head"
done
"$minillm" train --data data --out llama-run --model d2 --arch llama --context 64 --batch-size 8 \
    --max-steps 60 --eval-every 60 --eval-batches 2 --sample-tokens 0 > /dev/null 2>&1
"$minillm" export --model llama-run --format hf --out llama-hf
"$python" "$root/scripts/interop/check_hf_export.py" llama-hf llama-run "Once upon a time, the capital of France was Paris."
for fixture in llama_tiny qwen2_tiny; do
    "$minillm" export --model "$root/crates/minillm/tests/fixtures/$fixture" --format hf --out "$fixture-hf"
    "$python" "$root/scripts/interop/check_hf_export.py" "$fixture-hf" "$root/crates/minillm/tests/fixtures/$fixture" \
        "The year 2024 had 366 days; isn't that odd?"
done
# Mistral: the tiny Llama's weights and tokenizer as a MistralForCausalLM (the same block;
# Mistral's config has no llama3 rope scaling, so plain rotary positions).
mkdir mistral-tiny
cp "$root/crates/minillm/tests/fixtures/llama_tiny/"{model.safetensors,tokenizer.json,generation_config.json} mistral-tiny/
"$python" - "$root/crates/minillm/tests/fixtures/llama_tiny/config.json" mistral-tiny/config.json <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for key in ("attention_bias", "mlp_bias", "pretraining_tp", "rope_parameters", "rope_scaling"):
    config.pop(key, None)
config.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=None, rope_theta=10000.0)
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
"$minillm" export --model mistral-tiny --format hf --out mistral-tiny-hf
"$python" "$root/scripts/interop/check_hf_export.py" mistral-tiny-hf mistral-tiny "The year 2024 had 366 days."

# SentencePiece-style tokenizers (Llama 2's form, and Metaspace's) on the tiny Llama's weights.
for form in legacy metaspace; do
    mkdir "llama-sp-$form"
    cp "$root/crates/minillm/tests/fixtures/llama_tiny/"{config.json,model.safetensors,generation_config.json} "llama-sp-$form/"
    cp "$root/crates/minillm/tests/fixtures/sentencepiece/$form.json" "llama-sp-$form/tokenizer.json"
    "$minillm" export --model "llama-sp-$form" --format hf --out "llama-sp-$form-hf"
    "$python" "$root/scripts/interop/check_hf_export.py" "llama-sp-$form-hf" "llama-sp-$form" \
        "Hello world, 日本 2024! Two  spaces."
done
echo "interop checks passed"
