"""An agent loop interrupted by a restart, with the KV disk tier (issue: "KV that outlives
memory and restarts").

One conversation grows turn by turn (a long system prompt, a user message per turn, the
model's greedy reply appended). It runs twice on servers with the disk tier: the first time
the turn after the halfway point goes to the running server (its context in memory); the
second time the server is stopped at the halfway point (SIGTERM, or with `--stop kill` a
SIGKILL right after the last reply, as a crash) and started again on the same `--kv-disk`
directory before that turn (its context on disk). Last, a server without
the disk tier and with nothing cached computes the same turn from scratch. For each of the
three it reports the prompt, its cached tokens and the time to first token (streamed), the
ratios the targets are about (cached share after the restart, time to first token after the
restart over computing the prompt), and whether the three replies are identical.

    PY=$(bash scripts/openai-venv.sh)
    "$PY" benches/scripts/kv_disk_restart.py --bin target/release/looptree --model qwen2.5-coder-0.5b

Prints a JSON report.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import httpx

WORDS = (
    "def return self value index list item parse token cache page tree node loop agent file "
    "edit test error result count total update apply check build read write open close"
).split()


def text(rng, words):
    lines = []
    while words > 0:
        n = min(words, rng.randint(6, 12))
        lines.append(" ".join(rng.choice(WORDS) for _ in range(n)))
        words -= n
    return "\n".join(lines)


class Server:
    def __init__(self, args, port, disk):
        cmd = [args.bin, "serve", "--model", args.model, "--port", str(port), "--threads", str(args.threads)]
        cmd += ["--kv-memory", args.kv_memory]
        if disk:
            cmd += ["--kv-disk", disk]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                break
        else:
            raise SystemExit(f"the server did not start; see {self.log.name}")

    def stop(self, how="term"):
        self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        self.proc.wait(timeout=120)


def turn(url, model, messages, max_tokens):
    """Sends one turn streamed; returns (reply, prompt tokens, cached tokens, TTFT seconds)."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.monotonic()
    first = None
    reply, usage = "", None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=3600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                delta = c["delta"].get("content")
                if delta:
                    if first is None:
                        first = time.monotonic() - start
                    reply += delta
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return reply, usage["prompt_tokens"], cached, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the looptree binary")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-memory", default="1GiB")
    ap.add_argument("--turns", type=int, default=8, help="turns in all; the restart comes halfway")
    ap.add_argument("--system-words", type=int, default=1200)
    ap.add_argument("--turn-words", type=int, default=150)
    ap.add_argument("--reply-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=18490)
    ap.add_argument(
        "--stop",
        choices=["term", "kill"],
        default="term",
        help="how the server is stopped halfway: SIGTERM, or SIGKILL (a crash) right after the last reply",
    )
    args = ap.parse_args()

    rng = random.Random(args.seed)
    history = [{"role": "system", "content": text(rng, args.system_words)}]
    users = [text(rng, args.turn_words) for _ in range(args.turns)]
    half = args.turns // 2

    def first_half(server):
        messages = list(history)
        for u in users[:half]:
            messages.append({"role": "user", "content": u})
            reply, *_ = turn(server.url, args.model, messages, args.reply_tokens)
            messages.append({"role": "assistant", "content": reply})
        return messages + [{"role": "user", "content": users[half]}]

    def measure(server, messages):
        reply, prompt, cached, ttft = turn(server.url, args.model, messages, args.reply_tokens)
        return reply, {"prompt": prompt, "cached": cached, "ttft_s": round(ttft, 3)}

    results, replies = {}, {}
    server = Server(args, args.port, tempfile.mkdtemp(prefix="kv-disk-"))
    messages = first_half(server)
    replies["before_restart"], results["before_restart"] = measure(server, messages)
    server.stop()

    disk = tempfile.mkdtemp(prefix="kv-disk-")
    server = Server(args, args.port, disk)
    assert first_half(server) == messages, "greedy replies differ between the two runs"
    server.stop(args.stop)
    server = Server(args, args.port, disk)
    replies["after_restart"], results["after_restart"] = measure(server, messages)
    server.stop()

    server = Server(args, args.port, None)
    replies["computed"], results["computed"] = measure(server, messages)
    server.stop()

    after, computed = results["after_restart"], results["computed"]
    report = {
        "model": args.model,
        "threads": args.threads,
        "turn_after_restart": half + 1,
        "stopped_with": args.stop,
        **results,
        "cached_share_after_restart": round(after["cached"] / after["prompt"], 3),
        "ttft_after_restart_over_computed": round(after["ttft_s"] / computed["ttft_s"], 3),
        "same_reply": len(set(replies.values())) == 1,
        "disk_bytes": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(disk) for f in fs),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
