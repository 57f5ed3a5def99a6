#!/usr/bin/env bash
# The server soak (tests/soak.rs) for longer than CI's 20 s: SECONDS of 24 clients mixing
# streamed and plain requests, hang-ups, malformed bodies and requests at every limit against
# 4 slots. Prints requests by status, p50/p99 latency and memory over the second half.
#   bash scripts/bench/soak.sh [SECONDS]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/../.."
MINILLM_SOAK_SECONDS="${1:-300}" cargo test --release -p minillm-cli --test soak -- --nocapture 2>&1 | grep -E "^soak:|test result"
