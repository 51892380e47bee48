#!/usr/bin/env bash
# Prints the path of a Python that has schemathesis (the API fuzzer the server's tests run
# against /openapi.json); installs it into its own cached venv the first time.
# Idempotent: once the venv imports it, this costs one Python start.
#
#   PY=$(bash scripts/schemathesis-venv.sh) && "$PY" tests/python/fuzz_api.py http://127.0.0.1:8080 20
#
# Its own venv (~/.cache/looptree/schemathesis-venv): its pinned dependencies stay apart
# from the openai clients' (openai-venv.sh).
set -euo pipefail
venv="$HOME/.cache/looptree/schemathesis-venv"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import schemathesis' 2>/dev/null; then
    echo "$py"
    exit 0
fi
if [ ! -x "$py" ]; then
    python=$(command -v python3 || command -v python) || { echo "schemathesis-venv: no python3 found" >&2; exit 1; }
    echo "schemathesis-venv: creating $venv" >&2
    "$python" -m venv "$venv" >&2
fi
echo "schemathesis-venv: installing schemathesis into $venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5' >&2
"$py" -c 'import schemathesis' >&2
echo "$py"
