#!/usr/bin/env bash
# Long fuzzing runs of every parser of outside input, coverage-guided: libFuzzer through
# cargo-fuzz with AddressSanitizer, on the nightly toolchain (the normal test suite runs the
# same parsers as a bounded property test on stable: crates/minillm/tests/fuzz_parsers.rs).
#
#   scripts/fuzz.sh [SECONDS_PER_PARSER] [PARSER...]     (default: 60 seconds, every parser)
#
# Seeds: each parser's valid input (written by the test suite) and every input that ever failed
# (crates/minillm/tests/fuzz_failures/<parser>/). New coverage is kept in fuzz/corpus/<parser>/;
# a failing input is saved by libFuzzer under fuzz/artifacts/parsers/: fix the fault, then
# commit the input to fuzz_failures/<parser>/ under a name that says what it did, so the normal
# test suite checks it on every run. Prints executions per second and coverage per parser.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
rustup toolchain list | grep -q '^nightly' ||
    { echo "fuzz.sh needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus="$PWD/fuzz/corpus"
MINILLM_FUZZ_SEEDS="$corpus" cargo test --release -q -p minillm --test fuzz_parsers -- --ignored seed_corpus >/dev/null
parsers=("$@")
[ ${#parsers[@]} -gt 0 ] || mapfile -t parsers < <(ls "$corpus")
cargo +nightly fuzz build -O parsers
for parser in "${parsers[@]}"; do
    failures="crates/minillm/tests/fuzz_failures/$parser"
    seeds=("$corpus/$parser")
    [ -d "$failures" ] && seeds+=("$failures")
    echo "== $parser: $seconds s"
    # 2 GB of memory at most (libFuzzer counts the whole process), 10 s per input.
    MINILLM_FUZZ_PARSER="$parser" cargo +nightly fuzz run -O parsers "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|Done|==.*ERROR|SUMMARY)|panicked' || true
done
