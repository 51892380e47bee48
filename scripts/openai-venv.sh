#!/usr/bin/env bash
# Prints the path of a Python that has the official `openai` and `anthropic` clients and
# the OpenAI Agents SDK, which the server's end-to-end tests drive looptree with, and
# `httpx` for the soak (benches/scripts/soak.py);
# installs them into the cached venv the first time.
# Idempotent: once the venv imports it, this costs one Python start.
#
#   PY=$(bash scripts/openai-venv.sh) && "$PY" tests/python/openai_client.py http://127.0.0.1:8080/v1
#
# The venv lives in $LOOPTREE_VENV or ~/.cache/looptree/venv (shared with fixture-venv.sh).
set -euo pipefail
venv="${LOOPTREE_VENV:-$HOME/.cache/looptree/venv}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import openai, anthropic, agents, httpx' 2>/dev/null; then
    echo "$py"
    exit 0
fi
if [ ! -x "$py" ]; then
    python=$(command -v python3 || command -v python) || { echo "openai-venv: no python3 found" >&2; exit 1; }
    echo "openai-venv: creating $venv" >&2
    "$python" -m venv "$venv" >&2
fi
echo "openai-venv: installing openai, anthropic, openai-agents and httpx into $venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check 'openai>=1.66' 'anthropic>=0.40' 'openai-agents>=0.1' 'httpx>=0.27' >&2
"$py" -c 'import openai, anthropic, agents, httpx' >&2
echo "$py"
