#!/usr/bin/env bash
# minillm against llama.cpp (scripts/interop/check_llama_cpp.py), with llama.cpp's tools from
# ../shared/tools/llama.cpp: their shared libraries arrive as text files naming their targets
# (symlinks flattened), so they are linked again in a temporary folder; if the binaries still do
# not run here (built for another CPU), they are rebuilt with the folder's build.sh (about 12
# minutes on 2 cores), or taken from $MINILLM_LLAMA_CPP (a bin folder) when that is set.
#
#   bash scripts/interop/llama_cpp.sh PYTHON
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${1:?usage: llama_cpp.sh PYTHON}
shared=$(cd .. && pwd)/shared
tools=$shared/tools/llama.cpp
if ! [ -d "$tools/bin" ]; then
    echo "!!! $tools is missing: the llama.cpp checks did NOT run" >&2
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
probe=crates/minillm/tests/fixtures/gpt2_tiny/gpt2_tiny.gguf

runs() { LD_LIBRARY_PATH="$1" "$1/llama-simple" -m "$probe" -n 2 "Hello" >/dev/null 2>&1; }

bin=${MINILLM_LLAMA_CPP:-}
if [ -z "$bin" ]; then
    bin=$work/bin
    mkdir -p "$bin"
    for f in "$tools"/bin/*; do
        name=$(basename "$f")
        # A library smaller than a path is a flattened symlink: its text is the target's name.
        if [[ $name == lib* ]] && [ "$(stat -c %s "$f")" -lt 256 ]; then
            ln -s "$tools/bin/$(cat "$f")" "$bin/$name"
        else
            ln -s "$f" "$bin/$name"
        fi
    done
    if ! runs "$bin"; then
        echo "llama.cpp's tools in $tools do not run on this machine; rebuilding them (about 12 minutes)" >&2
        bin=$(bash "$tools/build.sh")
    fi
fi
if ! runs "$bin"; then
    echo "!!! llama.cpp's tools in $bin do not run: the llama.cpp checks FAIL" >&2
    exit 1
fi
export LD_LIBRARY_PATH=$bin
tar -xzf "$tools/converter.tar.gz" -C "$work"
cargo build --release --quiet
"$python" scripts/interop/check_llama_cpp.py target/release/minillm "$bin" "$work" "$shared/data/gpt2" "$work/check"
