#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the repository root, with the binary that
# scripts/cuda-build.sh made: the CUDA path's correctness checks and its offline bench,
# beside HF transformers' generate on the same weights. No Rust toolchain needed.
#
#   bash scripts/gpu-check.sh MODEL.gguf REFERENCE.jsonl [OUT_DIR]
#
# Writes device-check.json, bench-b1.json, bench-b64.json, transformers.json and a log
# to OUT_DIR (default gpu-results/). Exits non-zero when a correctness check fails.
set -uo pipefail
MODEL=${1:?usage: gpu-check.sh MODEL.gguf REFERENCE.jsonl [OUT_DIR]}
REFERENCE=${2:?usage: gpu-check.sh MODEL.gguf REFERENCE.jsonl [OUT_DIR]}
OUT=${3:-gpu-results}
BIN=${LOOPTREE_BIN:-.gpubin/looptree}
mkdir -p "$OUT"

# The binary links the CUDA runtime libraries dynamically; PyTorch's wheels carry them.
NVL=$(python3 -c "import site,glob,os;print(':'.join(sorted({os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(s+'/nvidia/**/lib*.so*',recursive=True)})))" 2>/dev/null || true)
export LD_LIBRARY_PATH=$NVL:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}
if ldd "$BIN" | grep 'not found'; then echo "missing libraries for $BIN" >&2; exit 1; fi
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"

status=0
echo "== correctness: kernels, teacher-forced logprobs vs CPU and reference, greedy alone vs batched"
"$BIN" device-check --device cuda --model "$MODEL" --reference "$REFERENCE" --json "$OUT/device-check.json" || status=1

echo "== offline bench on the GPU (pp512, tg128)"
for b in 1 64; do
    "$BIN" bench --offline --device cuda --model "$MODEL" --kv-dtype f16 -p 512 -n 128 --batch "$b" -r 3 \
        --json "$OUT/bench-b$b.json" || status=1
done

echo "== HF transformers generate on the same weights"
python3 "$(dirname "$0")/../benches/scripts/hf_generate_bench.py" --gguf "$MODEL" --batch 1 64 --reps 3 \
    --json "$OUT/transformers.json" || echo "transformers bench failed (is the gguf package installed?)"
exit $status
