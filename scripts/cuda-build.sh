#!/usr/bin/env bash
# Builds the CUDA binary (`--features cuda`) and leaves a stripped copy in .gpubin/looptree,
# ready to be carried to a GPU machine. Needs nvcc: from CUDA_HOME / PATH, or from a
# toolchain environment file given as LOOPTREE_CUDA_ENV (a script that exports CUDA_HOME,
# NVCC and CUDA_COMPUTE_CAP). The default build and CI stay CPU-only.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${LOOPTREE_CUDA_ENV:-$HOME/.cache/looptree/cuda13/cuda_env.sh}
if ! command -v nvcc >/dev/null && [ -z "${NVCC:-}" ]; then
    [ -f "$ENV_FILE" ] || { echo "no nvcc on PATH and no $ENV_FILE: install a CUDA toolkit (nvcc) first" >&2; exit 1; }
    # shellcheck disable=SC1090
    source "$ENV_FILE"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
# The binary runs on another machine: build for a portable x86-64 level (AVX2/FMA), not
# this machine's native CPU (.cargo/config.toml), whose extra instructions the GPU host may
# lack ("Illegal instruction" at start-up).
export RUSTFLAGS=${RUSTFLAGS:-"-C target-cpu=x86-64-v3"}
cargo build --release --features cuda -p looptree
mkdir -p .gpubin
strip -o .gpubin/looptree "$CARGO_TARGET_DIR/release/looptree"
ls -la .gpubin/looptree
