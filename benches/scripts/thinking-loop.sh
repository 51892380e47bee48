#!/usr/bin/env bash
# The thinking variant of agent-loop (`looptree bench --workload thinking`), run twice on
# the same model: once under a template that drops earlier turns' reasoning, as Qwen3's
# does once a newer user message follows, and once under the same template keeping it.
# The model is a random-weight Qwen3 GGUF with Qwen3's vocabulary (`<think>` and `</think>`
# are tokens; no real thinking model is reachable from these machines); looptree's `regex`
# makes every reply reason, then answer. Cache efficiency and the limit do not depend on
# what the words mean. A benchmark a person runs, not part of CI.
#
#   bash benches/scripts/thinking-loop.sh
#   bash benches/scripts/thinking-loop.sh --agents 4 --iterations 12
#
# Environment: THREADS (2), SEED (1), OUT (a directory for the records), LOOPTREE_BIN
# (default: a release build). Extra arguments go to both `looptree bench` calls.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${THREADS:-2}"
SEED="${SEED:-1}"
PORT="${PORT:-18090}"
OUT="${OUT:-$(mktemp -d -t looptree-thinking.XXXXXX)}"
mkdir -p "$OUT"
if [ -n "${LOOPTREE_BIN:-}" ]; then
    LOOPTREE="$LOOPTREE_BIN"
else
    cargo build --release -p looptree >&2
    LOOPTREE=target/release/looptree
fi
PY=$(bash scripts/fixture-venv.sh)
bash scripts/fetch-models.sh qwen2.5-coder-0.5b >/dev/null  # the vocabulary the fixture borrows

drop=server/tests/thinking/think.jinja
# The same template with the condition on the last user message taken out.
sed 's/loop.index0 > ns.last_user and //' "$drop" >"$OUT/think-keep.jinja"
grep -q 'ns.last_user and' "$OUT/think-keep.jinja" && { echo "the keep template still drops" >&2; exit 1; }

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

records=()
for mode in drop keep; do
    template="$drop"
    [ "$mode" = keep ] && template="$OUT/think-keep.jinja"
    model="$OUT/thinking-$mode.gguf"
    "$PY" tests/python/make_random_gguf.py qwen3 --seed 7 --qwen3-vocab --layers 4 --hidden 512 \
        --heads 8 --kv-heads 4 --ffn 1536 --chat-template "$template" --out "$model"
    "$LOOPTREE" serve --model "$model" --host 127.0.0.1 --port "$PORT" --threads "$THREADS" \
        >"$OUT/serve-$mode.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1 && break
        kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; see $OUT/serve-$mode.log" >&2; exit 1; }
        sleep 0.5
    done
    "$LOOPTREE" bench --url "http://127.0.0.1:$PORT" --label "reasoning $mode" --workload thinking \
        --seed "$SEED" --json "$OUT/$mode.json" "$@" >&2
    stop_server
    records+=("$OUT/$mode.json")
done
"$LOOPTREE" bench --compare "${records[@]}" | tee "$OUT/compare.md"
