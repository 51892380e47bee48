#!/usr/bin/env bash
# The soak: `looptree serve` under mixed traffic at 64 concurrent for 30 minutes (chat,
# completions with n > 1, streams, structured output, Anthropic and Responses requests,
# dropped streams, abandoned and bad requests; see soak.py), then checks that no response
# was a 5xx, every bad request a 4xx, no KV page or tree lock is held once idle, resident
# memory stayed flat after warm-up, and the server still answers. Prints soak.py's JSON
# report and exits non-zero if a check failed. The test suite runs a 30-second version
# (server/tests/server_soak.rs).
#
#   bash benches/scripts/soak.sh
#   DURATION=300 CONCURRENCY=32 bash benches/scripts/soak.sh
#
# Settings (environment): DURATION in seconds (1800), CONCURRENCY (64), MODEL
# (smollm2-135m), THREADS (2), KV_MEMORY (64MiB: small, so that eviction and preemption
# happen all along), PORT (18480), SEED (1), LOOPTREE_BIN (default: a release build of this
# checkout), OUT (where the report and the server's log go; default a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-1800}"
CONCURRENCY="${CONCURRENCY:-64}"
MODEL="${MODEL:-smollm2-135m}"
THREADS="${THREADS:-2}"
KV_MEMORY="${KV_MEMORY:-64MiB}"
PORT="${PORT:-18480}"
SEED="${SEED:-1}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

if [ -z "${LOOPTREE_BIN:-}" ]; then
    cargo build --release -p looptree >&2
    LOOPTREE_BIN="$PWD/target/release/looptree"
fi
PY=$(bash scripts/openai-venv.sh)

"$LOOPTREE_BIN" serve --port "$PORT" --model "$MODEL" --threads "$THREADS" \
    --kv-memory "$KV_MEMORY" >"$OUT/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q "listening on" "$OUT/serve.log" && break
    kill -0 "$server" 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 0.5
done

status=0
"$PY" benches/scripts/soak.py --url "http://127.0.0.1:$PORT" --pid "$server" --model "$MODEL" \
    --duration "$DURATION" --concurrency "$CONCURRENCY" --seed "$SEED" >"$OUT/report.json" || status=$?
cat "$OUT/report.json"
echo "soak: report and server log in $OUT" >&2
exit "$status"
