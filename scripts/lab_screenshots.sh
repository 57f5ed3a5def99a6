#!/usr/bin/env bash
# Refreshes the guide's screenshots of the lab (docs/guide/img/lab-*.png): runs the browser test
# on the demo model and its training run (made by `minillm demo` if ./minillm-demo is missing).
# Needs Chromium and Node, as the browser test does.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f minillm-demo/run/metrics.jsonl ]; then
    cargo run --release -- demo
fi
shots="$(mktemp -d)"
MINILLM_REQUIRE_BROWSER=1 MINILLM_SCREENSHOTS="$shots" MINILLM_LAB_MODEL="$PWD/minillm-demo/run" \
    MINILLM_LAB_RUN="$PWD/minillm-demo/run" MINILLM_LAB_PROMPT="The capital of France is" \
    cargo test --release -p minillm-cli --test lab_browser
for view in tokens next-token attention inside training narrow; do
    cp "$shots/$view.png" "docs/guide/img/lab-$view.png"
done
rm -rf "$shots"
ls -l docs/guide/img/lab-*.png
