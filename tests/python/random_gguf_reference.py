"""Teacher-forced top-5 logprobs of a random-weight GGUF (make_random_gguf.py) from
llama.cpp's server, an independent implementation, on fixed token sequences.

    LLAMA=$(bash benches/scripts/install-llama-cpp.sh)
    $LLAMA/llama-server -m /tmp/qwen3.gguf -t 2 -np 1 -ctk f32 -ctv f32 -fa off --port 8766 &
    python3 tests/python/random_gguf_reference.py http://127.0.0.1:8766 > tests/reference/random-qwen3.jsonl

Each line has the format of ../../shared/reference/*.jsonl (kind `tokens`: the prompt is
given as token ids). The greedy path is llama.cpp's, 16 tokens, asked for one token per
request (over several, the server merges the entries of tokens that end inside a UTF-8
character, common in a random model's output, which would misalign the steps). The server
reports nothing for such a token alone, so a case ends before its first one.
Standard library only.
"""

import json
import random
import sys
import urllib.request

N_PREDICT = 16


def prompts():
    # Fixed ids from the ordinary (non-special) part of Qwen2.5's vocabulary.
    r = random.Random(1234)
    return [[r.randrange(0, 151643) for _ in range(n)] for n in (1, 2, 3, 5, 7, 9, 12, 16, 20, 27, 33, 40, 50, 64, 80, 100)]


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main():
    base = sys.argv[1].rstrip("/")
    for i, ids in enumerate(prompts()):
        tokens, text, tops = [], "", []
        for _ in range(N_PREDICT):
            out = post(
                f"{base}/completion",
                {"prompt": ids + tokens, "n_predict": 1, "top_k": 1, "samplers": ["top_k"], "n_probs": 5,
                 "cache_prompt": False},
            )
            if not out.get("completion_probabilities"):
                break
            [p] = out["completion_probabilities"]
            tokens.append(p["id"])
            text += out["content"]
            tops.append([[t["id"], round(t["logprob"], 5)] for t in p["top_logprobs"]])
        print(json.dumps({
            "id": i,
            "kind": "tokens",
            "prompt": "",
            "prompt_tokens": ids,
            "completion_tokens": tokens,
            "completion_text": text,
            "top_logprobs": tops,
        }))

if __name__ == "__main__":
    main()
