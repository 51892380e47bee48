"""The cost of constrained decoding: decode tokens per second of a running looptree server
with and without a constraint, the same number of tokens generated either way.

    python3 benches/scripts/mask_cost.py http://127.0.0.1:8080 [--n 1 16] [--tokens 128] [--reps 3]

Free: `ignore_eos` keeps the model going for exactly --tokens. Constrained: a JSON schema
(one long string field) and a regex whose shortest match is longer than --tokens, so the
constraint never lets the reply finish early; every step computes a mask. Reports the
median of --reps runs per case, tokens summed over the n choices. Standard library only.
"""

import argparse
import json
import statistics
import time
import urllib.request

CASES = {
    "free": {"ignore_eos": True},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "essay", "schema": {
        "type": "object", "properties": {"essay": {"type": "string", "minLength": 2000}},
        "required": ["essay"], "additionalProperties": False}}}},
    "regex": {"regex": "[a-z ,.]{2000,}"},
}


def post(base, body):
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    base = a.url.rstrip("/").removesuffix("/v1")
    print("| n | case | decode tok/s (median) | vs free |")
    print("|--:|---|--:|--:|")
    for n in a.n:
        rates = {}
        for name, extra in CASES.items():
            runs = []
            for rep in range(a.reps + 1):
                # A fresh prompt each time (the seed word), so prefill is the same work.
                body = {"prompt": f"Essay {rep} of {n}: the history of the", "max_tokens": a.tokens, "n": n,
                        "temperature": 1.0, "seed": rep, **extra}
                start = time.perf_counter()
                r = post(base, body)
                wall = time.perf_counter() - start
                toks = r["usage"]["completion_tokens"]
                assert toks == n * a.tokens, f"{name}: {toks} tokens, expected {n * a.tokens}: {r}"
                if rep > 0:  # the first is a warm-up (and compiles the grammar once)
                    runs.append(toks / wall)
            rates[name] = statistics.median(runs)
            ratio = rates[name] / rates["free"]
            print(f"| {n} | {name} | {rates[name]:.1f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
