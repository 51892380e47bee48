#!/usr/bin/env bash
# The whole test suite, from a fresh machine: fetches the real models the tests use (once,
# cached under ~/.cache/looptree), then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# House rules first (fast, and a failure says what to fix): rustfmt, clippy without warnings.
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
bash scripts/fetch-models.sh smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b gemma3-270m
python3 scripts/make-safetensors-fixture.py  # HF-layout SmolLM2 for tests/tests/safetensors_model.rs
bash scripts/openai-venv.sh >/dev/null  # the official `openai` client, for server/tests/server_openai_python.rs
bash scripts/schemathesis-venv.sh >/dev/null  # the API fuzzer, for server/tests/server_fuzz_api.rs
cargo test --workspace --all-targets "$@"
