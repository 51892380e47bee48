#!/usr/bin/env bash
# Raw CPU speed side by side with llama.cpp, the same GGUF and thread count, in one run:
# prefill (pp512) and decode (tg128) at 1 and 2 threads, llama-bench against
# `looptree bench --offline`; and 16 streams decoding together at 2 threads,
# llama-batched-bench against `looptree bench --offline --batch 16` (both with 128 tokens
# of context per stream before the timed 128). The engines alternate over ROUNDS rounds so
# that a noisy neighbour hits both; the table gives the median over every rep of every
# round and looptree / llama.cpp. A benchmark a person runs, not part of CI.
#
#   bash benches/scripts/compare-cpu-speed.sh
#   ROUNDS=3 REPS=5 LOOPTREE_BIN=target/release/looptree bash benches/scripts/compare-cpu-speed.sh
#
# Environment: MODEL (GGUF; default SmolLM2-135M-Instruct Q4_1), ROUNDS (2), REPS (3),
# LOOPTREE_BIN (default: a release build of this checkout), OUT (a directory for raw records),
# LLAMA_NO_REPACK=1 (llama.cpp without its repacked and AMX weight layouts: for machines where
# its AMX path crashes; say so, since llama.cpp is then not at its best).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${MODEL:-$HOME/.cache/looptree/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
ROUNDS="${ROUNDS:-2}"
REPS="${REPS:-3}"
BENCH_EXTRA=() BATCHED_EXTRA=()
if [ "${LLAMA_NO_REPACK:-0}" = 1 ]; then
    BENCH_EXTRA=(--repack 0) BATCHED_EXTRA=(--no-repack)
fi
OUT="${OUT:-$(mktemp -d -t looptree-cpu-speed.XXXXXX)}"
[ -f "$MODEL" ] || { echo "no model at $MODEL (bash scripts/fetch-models.sh)" >&2; exit 1; }
mkdir -p "$OUT"
LLAMA_BIN=$(bash benches/scripts/install-llama-cpp.sh)
if [ -z "${LOOPTREE_BIN:-}" ]; then
    cargo build --release -p looptree >&2
    LOOPTREE_BIN="$PWD/target/release/looptree"
fi

for round in $(seq 1 "$ROUNDS"); do
    for t in 1 2; do
        echo "round $round, $t thread(s)" >&2
        "$LLAMA_BIN/llama-bench" -m "$MODEL" -p 512 -n 128 -r "$REPS" -t "$t" "${BENCH_EXTRA[@]}" -o jsonl 2>/dev/null \
            >>"$OUT/llama-t$t.jsonl"
        "$LOOPTREE_BIN" bench --offline --model "$MODEL" -t "$t" -p 512 -n 128 -r "$REPS" \
            --json "$OUT/looptree-t$t-r$round.json" >/dev/null 2>&1
    done
    echo "round $round, 16 streams" >&2
    for _ in $(seq 1 "$REPS"); do
        "$LLAMA_BIN/llama-batched-bench" -m "$MODEL" -c 8192 -npp 128 -ntg 128 -npl 16 -t 2 "${BATCHED_EXTRA[@]}" \
            --output-format jsonl 2>/dev/null | grep '^{' >>"$OUT/llama-batched.jsonl"
    done
    "$LOOPTREE_BIN" bench --offline --model "$MODEL" -t 2 -p 0 -n 128 --batch 16 --decode-context 128 \
        -r "$REPS" --json "$OUT/looptree-batched-r$round.json" >/dev/null 2>&1
done

python3 - "$OUT" "$MODEL" "$LOOPTREE_BIN" <<'EOF'
import glob, json, os, platform, statistics, subprocess, sys
out, model, looptree = sys.argv[1:4]

def llama(path, key):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [s for r in rows if r.get(key[0], 0) > 0 for s in r["samples_ts"]] if key[0] != "pl" else [r["speed_tg"] for r in rows]

def ours(pattern, field):
    vals = []
    for f in sorted(glob.glob(os.path.join(out, pattern))):
        rec = json.load(open(f))
        vals += rec.get(field.replace("_tok_s", "_runs_tok_s")) or [rec[field]]
    return vals

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"{cpu}, {os.cpu_count()} cores; {os.path.basename(model)}; looptree {commit} ({looptree})")
print()
print("| test | threads | llama.cpp tok/s (median) | looptree tok/s (median) | looptree / llama.cpp |")
print("|---|--:|--:|--:|--:|")
for t in (1, 2):
    for name, key, field in (("pp512", ("n_prompt",), "prefill_tok_s"), ("tg128", ("n_gen",), "decode_tok_s")):
        l = statistics.median(llama(os.path.join(out, f"llama-t{t}.jsonl"), key))
        o = statistics.median(ours(f"looptree-t{t}-r*.json", field))
        print(f"| {name} | {t} | {l:.1f} | {o:.1f} | {o / l:.2f} |")
l = statistics.median(llama(os.path.join(out, "llama-batched.jsonl"), ("pl",)))
o = statistics.median(ours("looptree-batched-r*.json", "decode_tok_s"))
print(f"| tg128 x16 streams (128 context) | 2 | {l:.1f} | {o:.1f} | {o / l:.2f} |")
print()
print(f"raw records: {out}")
EOF
