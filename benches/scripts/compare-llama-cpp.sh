#!/usr/bin/env bash
# Runs the loop workloads against llama.cpp's server and looptree, one after the other,
# on the same GGUF and thread count, and writes the side-by-side table, the JSON record
# and an SVG chart under benches/results/. A benchmark a person runs, not part of CI.
#
#   bash benches/scripts/compare-llama-cpp.sh                      # agent-loop fanout tree
#   WORKLOADS="crowded" bash benches/scripts/compare-llama-cpp.sh --iterations 3
#
# Environment: MODEL (GGUF; default SmolLM2-135M-Instruct Q4_1), THREADS (2), SEED (1),
# WORKLOADS, OUT (benches/results), LOOPTREE_BIN (default: a release build). Extra arguments go to every `looptree bench` call.
# llama.cpp gets one slot per concurrent stream (-np) and a context holding them all;
# looptree the same KV memory in the same element type (f16: --kv-dtype f16), so the same tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${MODEL:-$HOME/.cache/looptree/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-2}"
SEED="${SEED:-1}"
WORKLOADS="${WORKLOADS:-agent-loop fanout tree}"
OUT="${OUT:-benches/results}"
LLAMA_PORT="${LLAMA_PORT:-18081}"
LOOPTREE_PORT="${LOOPTREE_PORT:-18080}"
# llama.cpp's f16 KV bytes per token for SmolLM2-135M: 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes.
KV_BYTES_PER_TOKEN="${KV_BYTES_PER_TOKEN:-23040}"
[ -f "$MODEL" ] || { echo "no model at $MODEL (bash scripts/fetch-models.sh)" >&2; exit 1; }
mkdir -p "$OUT"

LLAMA_BIN=$(bash benches/scripts/install-llama-cpp.sh)
if [ -n "${LOOPTREE_BIN:-}" ]; then
    LOOPTREE="$LOOPTREE_BIN"
else
    cargo build --release -p looptree
    LOOPTREE=target/release/looptree
fi

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

wait_ready() {
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$1/v1/models" >/dev/null 2>&1 && return 0
        kill -0 "$server_pid" 2>/dev/null || { echo "the server exited; see $OUT/*.log" >&2; return 1; }
        sleep 0.5
    done
    echo "the server on port $1 did not start" >&2
    return 1
}

# Concurrent streams and the context (tokens) that holds all of them, per workload.
slots_and_ctx() {
    case "$1" in
        agent-loop) echo "8 32768" ;;
        fanout) echo "64 65536" ;;
        tree) echo "64 32768" ;;
        # 32 agents but 8 slots: with a slot per agent, 32 first prompts of ~1,600 tokens
        # over-subscribe the unified cache and llama.cpp fails every request ("Context size
        # has been exceeded", measured); 8 slots of up to 6,144 tokens hold any agent's
        # context, and the others queue.
        crowded) echo "8 49152" ;;
        *) echo "unknown workload $1" >&2; return 1 ;;
    esac
}

# looptree's scheduler settings per workload (its counterpart to llama.cpp's slot count).
looptree_args() {
    case "$1" in
        # 32 loops outgrow the pool together (each holds ~2,100 tokens of its own by the
        # 8th turn; 49,152 hold about 22): 20 run at a time, and waiting ones barely age,
        # so the first 20 finish and free their memory before the rest start.
        crowded) echo "--max-running-seqs 20 --aging-tokens-per-step 2" ;;
        *) echo "" ;;
    esac
}

commit=$(git rev-parse --short HEAD)
records=()
for w in $WORKLOADS; do
    read -r slots ctx < <(slots_and_ctx "$w")
    kv_bytes=$((ctx * KV_BYTES_PER_TOKEN))
    # Crowded: equal KV memory means no host-RAM prompt cache beside llama.cpp's KV either.
    cram=()
    [ "$w" = crowded ] && cram=(-cram 0)

    echo "== $w: llama.cpp (-np $slots -c $ctx -kvu ${cram[*]}, $THREADS threads)" >&2
    "$LLAMA_BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" -t "$THREADS" -tb "$THREADS" \
        -np "$slots" -c "$ctx" -kvu --cache-prompt "${cram[@]}" >"$OUT/llama-$w.log" 2>&1 &
    server_pid=$!
    wait_ready "$LLAMA_PORT"
    "$LOOPTREE" bench --url "http://127.0.0.1:$LLAMA_PORT" --label llama.cpp --workload "$w" --seed "$SEED" \
        --json "$OUT/llama-$w.json" "$@" >&2
    stop_server

    read -r -a lt_args < <(looptree_args "$w")
    echo "== $w: looptree (--kv-memory $kv_bytes --kv-dtype f16 ${lt_args[*]}, $THREADS threads)" >&2
    "$LOOPTREE" serve --model "$MODEL" --host 127.0.0.1 --port "$LOOPTREE_PORT" --threads "$THREADS" \
        --kv-memory "$kv_bytes" --kv-dtype f16 "${lt_args[@]}" >"$OUT/looptree-$w.log" 2>&1 &
    server_pid=$!
    wait_ready "$LOOPTREE_PORT"
    "$LOOPTREE" bench --url "http://127.0.0.1:$LOOPTREE_PORT" --label looptree --workload "$w" --seed "$SEED" \
        --json "$OUT/looptree-$w.json" "$@" >&2
    stop_server
    records+=("$OUT/looptree-$w.json" "$OUT/llama-$w.json")
done

{
    echo "Commit $commit; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);"
    echo "model $(basename "$MODEL"), $THREADS threads, seed $SEED, load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    "$LOOPTREE" bench --compare "${records[@]}" --json "$OUT/compare.json" --plot "$OUT/compare.svg"
} | tee "$OUT/compare.md"
