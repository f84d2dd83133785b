#!/usr/bin/env bash
# Checks the gateway against its API description (`make api-test`, part of `make test`):
#   1. lints Sources/SluiceGateway/Resources/openapi.json with openapi-spec-validator;
#   2. starts the whole stack with `sluice dev` (Tansu, Redis, the mock provider, a worker,
#      the gateway with an API key) on free loopback ports, the mock as the only provider;
#   3. runs schemathesis against the live gateway with the document it serves at
#      /openapi.json: no 5xx, every status and content type answered is documented for
#      its route, and every JSON body matches its documented schema.
# The tools live in a venv, .deps/api-tools, pinned by scripts/api-test-requirements.txt.
# SLUICE_API_TEST_EXAMPLES (default 20) bounds the cases per operation and phase,
# SLUICE_API_TEST_SEED (default 1) fixes them: the same seed runs the same requests.
# SLUICE_API_TEST_ARGS adds schemathesis arguments (e.g. `--include-path /v1/jobs`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sluice=${SLUICE_BIN:-$root/.build/debug/sluice}
document="$root/Sources/SluiceGateway/Resources/openapi.json"
examples=${SLUICE_API_TEST_EXAMPLES:-20}
seed=${SLUICE_API_TEST_SEED:-1}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- the tools ------------------------------------------------------------------
venv="$root/.deps/api-tools"
requirements="$root/scripts/api-test-requirements.txt"
# A venv only works where it was made: one moved or made through a symlinked folder is
# made again.
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null || ! "$venv/bin/openapi-spec-validator" --help >/dev/null 2>&1; then
  say "installing schemathesis and openapi-spec-validator (PyPI) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

# --- 1. the document is valid OpenAPI -------------------------------------------
say "linting $(realpath --relative-to="$root" "$document")"
"$venv/bin/openapi-spec-validator" "$document"

# --- 2. a stack to test ---------------------------------------------------------
[ -x "$sluice" ] || { echo "no $sluice: run make build first" >&2; exit 1; }
run=$(mktemp -d "${TMPDIR:-/tmp}/sluice-api-test.XXXXXX")
dev_pid=
mock_pid=
cleanup() {
  for pid in $dev_pid $mock_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $dev_pid $mock_pid; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
gateway_port=$(free_port)
base="http://127.0.0.1:$gateway_port"
SLUICE_API_TEST_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
SLUICE_API_TEST_ADMIN_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export SLUICE_API_TEST_KEY SLUICE_API_TEST_ADMIN_KEY
# The provider is a mock of the run's own that answers at once (`sluice dev`'s paces its
# chunks like a real model, which would make the run take minutes): no request of the
# run leaves this machine, and no real provider is configured.
mock_port=$(free_port)
cat >"$run/sluice.yaml" <<YAML
gateway:
  api_keys:
    - { key_env: SLUICE_API_TEST_KEY, tenant: api-test }
  admin_key_env: SLUICE_API_TEST_ADMIN_KEY
providers:
  - { name: quick, kind: mock, base_url: "http://127.0.0.1:$mock_port/v1" }
models:
  default: { provider: quick, model: mock-1 }
prompts_dir: $run/prompts
YAML
# The example template, served by the quick mock.
mkdir -p "$run/prompts"
sed 's/^provider: .*/provider: quick/' "$root/prompts/welcome.yaml" >"$run/prompts/welcome.yaml"

say "starting the quick mock provider on 127.0.0.1:$mock_port"
"$sluice" mock-provider --listen "127.0.0.1:$mock_port" --chunks 3 --log-level warning >"$run/mock.out" 2>&1 &
mock_pid=$!
say "starting the stack (sluice dev) with the gateway on $base"
"$sluice" dev --config "$run/sluice.yaml" --run-dir "$run/dev" --log-level warning \
  --kafka-port "$(free_port)" --redis-port "$(free_port)" --gateway-port "$gateway_port" --mock-port "$(free_port)" \
  >"$run/dev.out" 2>&1 &
dev_pid=$!
ready=
for _ in $(seq 1 300); do
  if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$base/readyz" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$dev_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "the stack did not become ready; its output:" >&2
  cat "$run/dev.out" >&2
  tail -n 50 "$run"/dev/logs/*.log >&2 2>/dev/null || true
  exit 1
fi

# --- 3. schemathesis against it -------------------------------------------------
# One worker: schemathesis's coverage phase calls ast.parse, which CPython 3.11 does not
# run safely from several threads at once ("AST constructor recursion depth mismatch").
say "schemathesis: $examples examples per operation, seed $seed"
status=0
# (From the run's directory: schemathesis keeps what it found under ./.schemathesis and
# replays it the next time, which would make runs depend on earlier ones.)
(cd "$run" && "$venv/bin/st" --config-file "$root/scripts/schemathesis.toml" run "$base/openapi.json" --url "$base" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing --max-examples "$examples" --seed "$seed" \
  --generation-database none --workers 1 --request-timeout 30 --no-color \
  --header "Authorization: Bearer $SLUICE_API_TEST_KEY" ${SLUICE_API_TEST_ARGS:-}) || status=$?
if [ "$status" != 0 ]; then
  echo "schemathesis found failures (above); the gateway's logs:" >&2
  tail -n 30 "$run"/dev/logs/gateway.log >&2 2>/dev/null || true
fi
exit "$status"
