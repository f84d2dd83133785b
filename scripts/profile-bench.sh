#!/usr/bin/env bash
# Profiles the worker and the gateway through one bench scenario.
#
#   scripts/profile-bench.sh SCENARIO [OUT_DIR]
#
# Runs `sluice bench --scenario SCENARIO` (release build) and attaches `perf record`
# (cpu-clock, call graphs) to its worker and gateway as soon as they start, until they
# stop. Writes OUT_DIR/report.md (the scenario's figures, taken with perf attached, so a
# little higher than without), and for each process its perf data and three summaries:
# by thread, by library and by symbol (self time). Needs `perf` (linux-perf).
set -euo pipefail

scenario=${1:?usage: scripts/profile-bench.sh SCENARIO [OUT_DIR]}
out=${2:-.run/profile-$scenario}
sluice=${SLUICE:-.build/release/sluice}
frequency=${PERF_FREQUENCY:-999}

command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
[[ -x $sluice ]] || { echo "$sluice not found: run swift build -c release --product sluice first" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/run" "$out"/*.data "$out"/*.data.old

"$sluice" bench --scenario "$scenario" --output "$out/report.md" --run-dir "$out/run" --log-level warning \
    >"$out/bench.json" 2>"$out/bench.log" &
bench=$!

perfs=()
attach() { # NAME: waits for `sluice NAME` of this run and records it until it exits
    local name=$1 pid=""
    for _ in $(seq 1 600); do
        pid=$(pgrep -f "sluice $name --config $out/run" | head -1 || true)
        [[ -n $pid ]] && break
        kill -0 "$bench" 2>/dev/null || return 0
        sleep 0.1
    done
    [[ -n $pid ]] || { echo "no $name process appeared" >&2; return 0; }
    perf record -q -e cpu-clock -F "$frequency" -g -p "$pid" -o "$out/$name.data" 2>"$out/$name.perf.log" &
    perfs+=($!)
}
attach worker
attach gateway

status=0
wait "$bench" || status=$?
for p in "${perfs[@]}"; do wait "$p" 2>/dev/null || true; done

summary() { # DATA SORT LINES
    perf report -i "$1" --no-children --sort "$2" -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -"$3" || true
}
demangle() { if command -v swift >/dev/null; then swift demangle --simplified; else cat; fi; }
for name in worker gateway; do
    [[ -s $out/$name.data ]] || continue
    summary "$out/$name.data" comm 12 >"$out/$name-threads.txt"
    summary "$out/$name.data" dso 15 >"$out/$name-libraries.txt"
    summary "$out/$name.data" sym 40 | demangle >"$out/$name-symbols.txt"
done
echo "bench exited $status; report, perf data and summaries in $out"
exit "$status"
