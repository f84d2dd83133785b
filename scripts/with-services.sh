#!/usr/bin/env bash
# Runs a command with a fresh redis-server and Tansu broker on free loopback ports,
# exported as SLUICE_TEST_REDIS_URL and SLUICE_TEST_KAFKA_BROKERS, and stops both
# afterwards, whatever the command's outcome.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1 ($2); its log:" >&2; cat "$run/$2.log" >&2; return 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$run/redis.log" 2>&1 &
pids+=($!)
kafka_port=$(free_port)
"$root/.deps/bin/tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ >"$run/broker.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" redis
wait_port "$kafka_port" broker

export SLUICE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export SLUICE_TEST_KAFKA_BROKERS="127.0.0.1:$kafka_port"
export SLUICE_TEST_TANSU="$root/.deps/bin/tansu"
echo "test services: redis $SLUICE_TEST_REDIS_URL, broker $SLUICE_TEST_KAFKA_BROKERS" >&2
"$@"
