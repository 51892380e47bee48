#!/usr/bin/env bash
# Prints the path of a Python with the packages the test-fixture scripts need (`gguf`, which
# reads and dequantizes GGUF tensors, and `numpy`) and the chat-template parity check
# (`transformers` and `jinja2`, which render templates as Python users see them, and
# `httpx`), creating a cached venv the first time.
# Idempotent: once the venv imports them all, this costs one Python start.
#
#   PY=$(bash scripts/fixture-venv.sh) && "$PY" scripts/make-safetensors-fixture.py
#
# The venv lives in $LOOPTREE_VENV or ~/.cache/looptree/venv.
set -euo pipefail
venv="${LOOPTREE_VENV:-$HOME/.cache/looptree/venv}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import gguf, numpy, transformers, jinja2, httpx' 2>/dev/null; then
    echo "$py"
    exit 0
fi
python=$(command -v python3 || command -v python) || { echo "fixture-venv: no python3 found" >&2; exit 1; }
echo "fixture-venv: installing gguf, numpy, transformers, jinja2 and httpx into $venv" >&2
[ -x "$py" ] || "$python" -m venv "$venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check 'gguf>=0.10,<1' 'numpy' 'transformers>=4.45' 'jinja2>=3.1' 'httpx>=0.27' >&2
"$py" -c 'import gguf, numpy, transformers, jinja2, httpx' >&2
echo "$py"
