#!/usr/bin/env bash
# Runs the parser fuzz tests for longer than `make test` does (default: a few minutes).
# SLUICE_FUZZ_ITERATIONS and SLUICE_FUZZ_SEED choose the amount and the sequence.
set -euo pipefail
cd "$(dirname "$0")/.."
export PKG_CONFIG_PATH="$PWD/.deps/librdkafka/lib/pkgconfig"
export SLUICE_FUZZ_ITERATIONS="${SLUICE_FUZZ_ITERATIONS:-3000000}"
export SLUICE_FUZZ_SEED="${SLUICE_FUZZ_SEED:-$RANDOM$RANDOM}"
echo "fuzzing with $SLUICE_FUZZ_ITERATIONS iterations, seed $SLUICE_FUZZ_SEED"
swift test -c release --filter FuzzTests
