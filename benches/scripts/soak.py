"""Soak: mixed traffic against a running `looptree serve` at a fixed concurrency for a
while, then checks that the server held up.

Each worker picks, from a seeded random stream, one of: chat (plain and streamed, some as
a loop whose conversation grows turn by turn), completions with n > 1 (plain and streamed),
structured output, Anthropic messages (streamed), the Responses API, a stream the client
drops after a few events, a request the client abandons before the answer, and a bad
request. It fails if

- any response is a 5xx, or a connection fails on the server's side;
- a bad request gets anything but a 4xx;
- once idle, requests still hold KV pages or tree locks (`vllm:kv_cache_usage_perc` and
  `looptree_kv_locked_tokens` must both be 0): a leak;
- resident memory grows past warm-up by more than `--rss-slack` (fraction) plus 64 MiB;
- the server does not answer a plain request afterwards.

    PY=$(bash scripts/openai-venv.sh)   # has httpx
    "$PY" benches/scripts/soak.py --url http://127.0.0.1:8080 --pid PID --duration 1800

Prints a JSON report on stdout; exits 1 if a check failed.
"""

import argparse
import asyncio
import json
import random
import sys
import time

import httpx

WORDS = (
    "loop agent cache token tree page prefix model batch stream fork sample reply file "
    "edit test build error function value list map index parse write read time step"
).split()
SYSTEM = "You are a careful coding agent. Answer briefly. " + " ".join(WORDS * 4)
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
BAD = [
    {"messages": []},
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1},
    {"messages": [{"role": "user", "content": "hi"}], "n": 100000},
    {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 99},
    {"messages": [{"role": "tool", "content": "no call before", "tool_call_id": "x"}]},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": "not a list"},
]


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Soak:
    def __init__(self, args):
        self.args = args
        self.model = args.model
        self.counts = {}
        self.failures = []
        self.loops = {}

    def count(self, kind, status, body=""):
        key = f"{kind} {status}"
        self.counts[key] = self.counts.get(key, 0) + 1
        # A valid request may be turned away for load (429), nothing else.
        if status >= 500 or (kind != "bad" and status >= 400 and status != 429):
            self.failures.append(f"{kind}: HTTP {status} {body[:300]}")

    async def drain(self, kind, r):
        """Reads a stream to its end and counts it."""
        if r.status_code != 200:
            await r.aread()
            self.count(kind, r.status_code, r.text)
            return
        async for _ in r.aiter_lines():
            pass
        self.count(kind, r.status_code)

    def chat_body(self, rng, worker):
        # A third of the chats are loop turns: the worker's conversation grows, as an
        # agent's does, until it starts over.
        if rng.random() < 0.33:
            conv = self.loops.setdefault(worker, [])
            if len(conv) > 12:
                conv.clear()
            conv.append({"role": "user", "content": sentence(rng, 12)})
            messages = [{"role": "system", "content": SYSTEM}] + conv
        else:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": sentence(rng, 10)},
            ]
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": rng.randint(4, 24),
            "temperature": rng.choice([0, 0.7]),
            "seed": rng.randint(0, 1 << 30),
        }

    async def chat(self, c, rng, worker):
        body = self.chat_body(rng, worker)
        r = await c.post("/v1/chat/completions", json=body)
        self.count("chat", r.status_code, r.text)
        if r.status_code == 200 and worker in self.loops and body["messages"][-1] in self.loops[worker]:
            self.loops[worker].append(r.json()["choices"][0]["message"])

    async def chat_stream(self, c, rng, worker):
        body = self.chat_body(rng, worker) | {"stream": True, "stream_options": {"include_usage": True}}
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            await self.drain("chat_stream", r)

    async def completions_n(self, c, rng, worker):
        stream = rng.random() < 0.5
        body = {
            "model": self.model,
            "prompt": SYSTEM + " " + sentence(rng, 8),
            "max_tokens": rng.randint(4, 16),
            "n": rng.randint(2, 4),
            "temperature": 1.0,
            "stream": stream,
        }
        if stream:
            async with c.stream("POST", "/v1/completions", json=body) as r:
                await self.drain("completions_n", r)
        else:
            r = await c.post("/v1/completions", json=body)
            self.count("completions_n", r.status_code, r.text)

    async def structured(self, c, rng, worker):
        body = self.chat_body(rng, worker) | {
            "max_tokens": 32,
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}},
        }
        r = await c.post("/v1/chat/completions", json=body)
        self.count("structured", r.status_code, r.text)

    async def messages(self, c, rng, worker):
        body = {
            "model": self.model,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": sentence(rng, 10)}],
            "max_tokens": rng.randint(4, 16),
            "stream": True,
        }
        async with c.stream("POST", "/v1/messages", json=body) as r:
            await self.drain("messages", r)

    async def responses(self, c, rng, worker):
        body = {
            "model": self.model,
            "instructions": SYSTEM,
            "input": sentence(rng, 10),
            "max_output_tokens": rng.randint(4, 16),
        }
        r = await c.post("/v1/responses", json=body)
        self.count("responses", r.status_code, r.text)

    async def dropped_stream(self, c, rng, worker):
        body = self.chat_body(rng, worker) | {"stream": True, "max_tokens": 64}
        keep = rng.randint(1, 4)
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await self.drain("dropped_stream", r)
                return
            seen = 0
            async for line in r.aiter_lines():
                seen += line.startswith("data: ")
                if seen >= keep:
                    break  # leaving the block closes the connection mid-stream
        self.count("dropped_stream", r.status_code)

    async def abandoned(self, c, rng, worker):
        body = self.chat_body(rng, worker) | {"max_tokens": 64}
        try:
            r = await c.post("/v1/chat/completions", json=body, timeout=rng.uniform(0.05, 0.5))
            self.count("abandoned", r.status_code, r.text)
        except httpx.TimeoutException:
            self.count("abandoned", 0)

    async def bad(self, c, rng, worker):
        body = dict(rng.choice(BAD), model=self.model)
        r = await c.post("/v1/chat/completions", json=body)
        self.count("bad", r.status_code)
        if not 400 <= r.status_code < 500:
            self.failures.append(f"bad request {body} got HTTP {r.status_code}")

    KINDS = [
        (chat, 4),
        (chat_stream, 4),
        (completions_n, 2),
        (structured, 1),
        (messages, 2),
        (responses, 2),
        (dropped_stream, 2),
        (abandoned, 1),
        (bad, 1),
    ]

    async def worker(self, c, worker, deadline):
        rng = random.Random(self.args.seed * 1000 + worker)
        kinds = [k for k, w in self.KINDS for _ in range(w)]
        while time.monotonic() < deadline:
            kind = rng.choice(kinds)
            try:
                await kind(self, c, rng, worker)
            except httpx.HTTPError as e:
                self.failures.append(f"{kind.__name__}: {type(e).__name__}: {e}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out.setdefault(name.split("{")[0], float(value))
    return out


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--model", default="default")
    ap.add_argument("--pid", type=int, required=True, help="the server's process, for its memory")
    ap.add_argument("--duration", type=float, default=1800, help="seconds of traffic")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before memory is judged")
    ap.add_argument("--rss-slack", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    soak = Soak(args)
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=args.url, timeout=600, limits=limits) as c:
        start = time.monotonic()
        deadline = start + args.duration
        rss = []

        async def sample_memory():
            while time.monotonic() < deadline:
                rss.append((round(time.monotonic() - start, 1), rss_kib(args.pid)))
                await asyncio.sleep(max(1.0, args.duration / 120))

        await asyncio.gather(
            sample_memory(), *(soak.worker(c, w, deadline) for w in range(args.concurrency))
        )
        # Idle: nothing may still hold pages or locks.
        m = {}
        for _ in range(120):
            m = metrics((await c.get("/metrics")).text)
            if m.get("looptree_requests_running", 1) == 0 and m.get("looptree_requests_waiting", 1) == 0:
                break
            await asyncio.sleep(0.5)
        else:
            soak.failures.append("the server never went idle")
        if m.get("vllm:kv_cache_usage_perc", 1) != 0 or m.get("looptree_kv_locked_tokens", 1) != 0:
            soak.failures.append(
                f"idle but KV held: usage {m.get('vllm:kv_cache_usage_perc')}, "
                f"locked tokens {m.get('looptree_kv_locked_tokens')}"
            )
        r = await c.post(
            "/v1/chat/completions",
            json={"model": args.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=30,
        )
        if r.status_code != 200:
            soak.failures.append(f"a plain request afterwards got HTTP {r.status_code}")
        rss.append((round(time.monotonic() - start, 1), rss_kib(args.pid)))

    warm = [kib for t, kib in rss if t >= args.duration * args.warmup]
    base, last, peak = warm[0], rss[-1][1], max(warm)
    if last > base * (1 + args.rss_slack) + 64 * 1024:
        soak.failures.append(f"resident memory grew from {base} KiB after warm-up to {last} KiB")
    total = sum(soak.counts.values())
    report = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "requests": total,
        "requests_per_s": round(total / args.duration, 2),
        "by_kind_and_status": dict(sorted(soak.counts.items())),
        "rss_kib": {"after_warmup": base, "peak_after_warmup": peak, "end": last},
        "idle_metrics": {k: m.get(k) for k in ("vllm:kv_cache_usage_perc", "looptree_kv_locked_tokens", "looptree_kv_pages_used", "looptree_preemptions_total")},
        "failures": soak.failures[:50],
        "ok": not soak.failures,
    }
    print(json.dumps(report, indent=1))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    asyncio.run(main())
