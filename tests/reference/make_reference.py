"""Writes a reference file like ../../shared/reference/*.jsonl for a model that has none
there, from llama.cpp's server (an independent implementation) on the same GGUF.

    LLAMA=$(bash benches/scripts/install-llama-cpp.sh)
    $LLAMA/llama-server -m ~/.cache/looptree/models/gemma-3-270m-q4_k_m.gguf -t 2 -np 1 \\
        -ctk f32 -ctv f32 -fa off --port 8765 &
    python3 tests/reference/make_reference.py http://127.0.0.1:8765 48 > tests/reference/gemma3-270m-q4_k_m.jsonl

Each line: the prompt (plain text; special tokens in it are parsed), its token ids (special tokens parsed, BOS as the model requires), the
greedy completion (at most N tokens, stopping at end of generation) and, at each step, the
5 most likely [token id, logprob] before sampling. The KV cache is f32 (llama.cpp's
default f16 moves a 4-bit Gemma 3's greedy path in most cases). Standard library only.
"""

import json
import sys
import urllib.request

RAW = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "The three primary colors are",
    "Water boils at a temperature of",
    "<start_of_turn>user\nWhat is the largest planet in the solar system?<end_of_turn>\n<start_of_turn>model\n",
    "import numpy as np\n\nx = np.linspace(0, 1, 100)\n",
    "Photosynthesis is the process by which plants",
    # Longer than Gemma 3's 512-token sliding window, so the local layers' window matters.
    "Inventory log.\n"
    + "".join(
        f"Shelf {i}: {n} boxes of {item}, checked by {who}.\n"
        for i, (n, item, who) in enumerate(
            (3 + (7 * k) % 11, ["apples", "nails", "paper", "rope", "tea", "glue"][k % 6], ["Ana", "Ben", "Chen", "Dara"][k % 4])
            for k in range(45)
        )
    )
    + "Summary: the shelf with the most boxes is",
]


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def case(base, n_predict, i, kind, prompt):
    ids = post(f"{base}/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"]
    out = post(
        f"{base}/completion",
        {"prompt": ids, "n_predict": n_predict, "top_k": 1, "samplers": ["top_k"], "n_probs": 5, "cache_prompt": False},
    )
    probs = out["completion_probabilities"]
    line = {
        "id": i,
        "kind": kind,
        "prompt": prompt,
        "prompt_tokens": ids,
        "completion_tokens": [p["id"] for p in probs],
        "completion_text": out["content"],
        "stop_type": out.get("stop_type"),
        "top_logprobs": [[[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"]] for p in probs],
    }
    return line


def main():
    base, n_predict = sys.argv[1].rstrip("/"), int(sys.argv[2])
    i = 0
    for p in RAW:
        print(json.dumps(case(base, n_predict, i, "raw", p)))
        i += 1


if __name__ == "__main__":
    main()
