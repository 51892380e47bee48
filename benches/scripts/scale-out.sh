#!/usr/bin/env bash
# Scale-out recipe: REPLICAS looptree replicas on loopback behind the Shepherd Model Gateway
# (PyPI `smg`, SGLang's router's successor) and the agent-loop workload run three ways, each on
# fresh replicas so no run inherits another's cache:
#   1. through the router in cache_aware mode,
#   2. the same with the replicas sharing prefixes (`--kv-export`, `--kv-peer` every other
#      replica): a replica an agent lands on first fetches the shared system prompt's K/V
#      from a replica that holds it instead of computing it (skip with KV_PEERS=0),
#   3. straight at one replica serving the whole workload,
#   4. through the router in round_robin mode.
# Prints the bench table (DTPB, trajectories/s, ...) for the three, and after each router run
# every replica's requests, session keys (one per agent that reached it) and prefix-cache hits:
# with cache-aware routing the session keys add up to the number of agents, i.e. each agent's
# requests all landed on one replica.
#
#   bash benches/scripts/scale-out.sh            # 3 replicas, 6 agents x 8 iterations
#   AGENTS=6 ITERATIONS=4 bash benches/scripts/scale-out.sh
#
# Settings (environment): REPLICAS (3), AGENTS (6), ITERATIONS (8), MODEL (smollm2-135m),
# THREADS per replica (1: three replicas share a small machine), KV_MEMORY per replica (1GiB),
# BASE_PORT (18400: router; replicas on the next ports), SMG_VENV (~/.cache/looptree/smg-venv),
# SMG_ARGS (router flags for cache_aware; default below), LOOPTREE_BIN (default: a
# release build of this checkout), OUT (a directory for logs and bench records), BENCH_ARGS
# (more `looptree bench` flags, e.g. "--system-tokens 400 --reply-tokens 16" for a quick run),
# KV_PEERS (1: also run cache_aware with the replicas sharing prefixes; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/../.."

REPLICAS="${REPLICAS:-3}"
AGENTS="${AGENTS:-6}"
ITERATIONS="${ITERATIONS:-8}"
MODEL="${MODEL:-smollm2-135m}"
THREADS="${THREADS:-1}"
# Enough for the whole workload on one replica (6 agents' contexts of up to ~3,800 tokens,
# f32 KV): the single-replica run must not lose to eviction what the router runs get from
# three times the memory.
KV_MEMORY="${KV_MEMORY:-1GiB}"
BASE_PORT="${BASE_PORT:-18400}"
SMG_VENV="${SMG_VENV:-$HOME/.cache/looptree/smg-venv}"
BENCH_ARGS="${BENCH_ARGS:-}"
KV_PEERS="${KV_PEERS:-1}"
# cache_aware sends a request to the replica with the longest matching prefix unless loads
# (requests in flight) are out of balance. With its defaults every agent matches the shared
# system prompt first and all pile onto one replica; balancing at a difference of more than 2
# spreads new agents while each keeps to the replica that holds its history.
SMG_ARGS="${SMG_ARGS:---balance-abs-threshold 2 --balance-rel-threshold 1.0}"
OUT="${OUT:-$(mktemp -d -t looptree-scale-out.XXXXXX)}"
mkdir -p "$OUT"

# --- the router, installed once into a cached venv --------------------------------------
if ! "$SMG_VENV/bin/smg" --help >/dev/null 2>&1; then
    echo "installing smg into $SMG_VENV" >&2
    python3 -m venv "$SMG_VENV"
    "$SMG_VENV/bin/pip" install --quiet --upgrade pip
    "$SMG_VENV/bin/pip" install --quiet smg
fi
SMG="$SMG_VENV/bin/smg"

# --- looptree ----------------------------------------------------------------------------
if [ -z "${LOOPTREE_BIN:-}" ]; then
    cargo build --release -p looptree >&2
    LOOPTREE_BIN="$PWD/target/release/looptree"
fi

PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT INT TERM

wait_http() { # URL, what
    for _ in $(seq 1 600); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.2
    done
    echo "$2 did not come up ($1); logs in $OUT" >&2
    exit 1
}

replica_port() { echo $((BASE_PORT + 1 + $1)); }

start_replicas() { # how many, log tag, "peers" to share prefixes between them
    for i in $(seq 0 $(($1 - 1))); do
        local port share=()
        port=$(replica_port "$i")
        if [ "${3:-}" = peers ]; then
            share=(--kv-export)
            for j in $(seq 0 $(($1 - 1))); do
                [ "$j" != "$i" ] && share+=(--kv-peer "http://127.0.0.1:$(replica_port "$j")")
            done
        fi
        RUST_LOG=warn "$LOOPTREE_BIN" serve --model "$MODEL" --port "$port" --threads "$THREADS" \
            --kv-memory "$KV_MEMORY" "${share[@]}" >"$OUT/$2-replica$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $(seq 0 $(($1 - 1))); do
        wait_http "http://127.0.0.1:$(replica_port "$i")/health" "replica $i"
    done
}

start_router() { # policy, extra flags
    local urls=()
    for i in $(seq 0 $((REPLICAS - 1))); do
        urls+=("http://127.0.0.1:$(replica_port "$i")")
    done
    # shellcheck disable=SC2086
    "$SMG" launch --host 127.0.0.1 --port "$BASE_PORT" --policy "$1" --worker-urls "${urls[@]}" \
        --prometheus-port $((BASE_PORT + 100)) --log-level warn ${2:-} >"$OUT/router-$1.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$BASE_PORT/v1/models" "the router ($1)"
    # The router registers workers in the background: wait until it lists their model.
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$BASE_PORT/v1/models" | grep -q "\"$MODEL\"" && return 0
        sleep 0.3
    done
    echo "the router ($1) lists no model; see $OUT/router-$1.log" >&2
    exit 1
}

metric() { # port, name
    # awk reads to the end: quitting early would fail curl with SIGPIPE (and pipefail).
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v n="$2" '!found && ($1 == n || index($1, n "{") == 1) { print $2; found = 1 }'
}

replica_table() { # how many replicas
    printf '%-8s %10s %10s %14s %14s\n' replica requests sessions "cache hits" "imported"
    local sessions=0
    for i in $(seq 0 $(($1 - 1))); do
        local port req ses q h
        port=$(replica_port "$i")
        req=$(metric "$port" looptree_requests_total)
        ses=$(metric "$port" looptree_sessions)
        q=$(metric "$port" looptree_prompt_tokens_total)
        h=$(metric "$port" looptree_cached_prompt_tokens_total)
        imp=$(metric "$port" looptree_kv_imported_tokens_total)
        printf '%-8s %10s %10s %13s%% %14s\n' "$i" "$req" "$ses" "$(awk -v h="$h" -v q="$q" 'BEGIN { printf "%.1f", (q > 0 ? 100 * h / q : 0) }')" "$imp"
        sessions=$((sessions + ${ses%.*}))
    done
    echo "session keys over all replicas: $sessions for $AGENTS agents ($AGENTS = every agent stayed on one replica)"
}

bench() { # url, label, record
    # The router has no /tokenize: the limit's token ids come from replica 0, which is up
    # in every run.
    # shellcheck disable=SC2086
    "$LOOPTREE_BIN" bench --url "$1" --label "$2" --workload agent-loop --agents "$AGENTS" \
        --iterations "$ITERATIONS" --request-model "$MODEL" --json "$3" \
        --tokenize-url "http://127.0.0.1:$(replica_port 0)" $BENCH_ARGS | tee "$3.txt"
}

echo "== $REPLICAS replicas behind smg, cache_aware" >&2
start_replicas "$REPLICAS" cache-aware
start_router cache_aware "$SMG_ARGS"
bench "http://127.0.0.1:$BASE_PORT/v1" "smg cache_aware x$REPLICAS" "$OUT/cache-aware.json"
replica_table "$REPLICAS" | tee "$OUT/cache-aware-replicas.txt"
cleanup

records=("$OUT/cache-aware.json")
if [ "$KV_PEERS" = 1 ]; then
    echo "== $REPLICAS replicas sharing prefixes behind smg, cache_aware" >&2
    start_replicas "$REPLICAS" kv-peers peers
    start_router cache_aware "$SMG_ARGS"
    bench "http://127.0.0.1:$BASE_PORT/v1" "smg cache_aware x$REPLICAS, kv peers" "$OUT/kv-peers.json"
    replica_table "$REPLICAS" | tee "$OUT/kv-peers-replicas.txt"
    cleanup
    records+=("$OUT/kv-peers.json")
fi

echo "== one replica, the whole workload" >&2
start_replicas 1 single
bench "http://127.0.0.1:$(replica_port 0)/v1" "one replica" "$OUT/single.json"
cleanup

echo "== $REPLICAS replicas behind smg, round_robin" >&2
start_replicas "$REPLICAS" round-robin
start_router round_robin
bench "http://127.0.0.1:$BASE_PORT/v1" "smg round_robin x$REPLICAS" "$OUT/round-robin.json"
replica_table "$REPLICAS" | tee "$OUT/round-robin-replicas.txt"
cleanup

echo
echo "== all runs (the first is the base of the ratios)"
"$LOOPTREE_BIN" bench --compare "${records[@]}" "$OUT/single.json" "$OUT/round-robin.json"
echo
echo "per-replica counters after the cache_aware run:"
cat "$OUT/cache-aware-replicas.txt"
if [ "$KV_PEERS" = 1 ]; then
    echo "per-replica counters after the cache_aware run with prefix sharing:"
    cat "$OUT/kv-peers-replicas.txt"
fi
echo "per-replica counters after the round_robin run:"
cat "$OUT/round-robin-replicas.txt"
echo "logs and records: $OUT"
