"""Drives a running looptree server with the official `openai` client.

    python tests/python/openai_client.py BASE_URL MODEL

Exits non-zero (an AssertionError or an API error) on the first wrong behaviour. Kept
fast: short max_tokens, a small model.
"""

import json
import sys

import openai
from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)

# /v1/models names the served model.
assert [m.id for m in client.models.list().data] == [model]

messages = [{"role": "user", "content": "What is the capital of France?"}]

# Chat, plain and streamed with usage: the same greedy text.
r = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
text = r.choices[0].message.content
assert r.object == "chat.completion" and text, r
assert r.choices[0].finish_reason in ("stop", "length")
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0

stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        parts.append(c.delta.content or "")
        finish = c.finish_reason or finish
assert "".join(parts) == text, (parts, text)
assert finish == r.choices[0].finish_reason
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens
# The prompt was just sent: the streamed request found it cached.
assert usage.prompt_tokens_details.cached_tokens > 0, usage

# n = 2 chat samples, indexed 0 and 1.
r = client.chat.completions.create(model=model, messages=messages, max_tokens=6, n=2, temperature=1.0, seed=3)
assert sorted(c.index for c in r.choices) == [0, 1], r

# A long prompt sent twice: the second time at least 90% of it is cached.
system = "You are a careful assistant. " + " ".join(f"Rule {i}: answer briefly and precisely." for i in range(40))
long_messages = [{"role": "system", "content": system}, {"role": "user", "content": "Say hi."}]
first = client.chat.completions.create(model=model, messages=long_messages, max_tokens=2, temperature=0)
second = client.chat.completions.create(model=model, messages=long_messages, max_tokens=2, temperature=0)
assert first.usage.prompt_tokens > 300, first.usage
cached = second.usage.prompt_tokens_details.cached_tokens
assert cached >= 0.9 * second.usage.prompt_tokens, second.usage

# Completions: n = 4, echo with logprobs, stop strings, seeds.
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, n=4, temperature=1.0, seed=1)
assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
again = client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, n=4, temperature=1.0, seed=1)
assert [c.text for c in again.choices] == [c.text for c in r.choices], "same seed, same samples"

r = client.completions.create(model=model, prompt="Hello there", max_tokens=4, temperature=0, echo=True, logprobs=2)
c = r.choices[0]
assert c.text.startswith("Hello there")
assert c.logprobs.token_logprobs[0] is None
assert len(c.logprobs.tokens) == r.usage.prompt_tokens + r.usage.completion_tokens
assert all(lp <= 0 for lp in c.logprobs.token_logprobs[1:])

full = client.completions.create(model=model, prompt="One, two, three,", max_tokens=8, temperature=0).choices[0].text
stop_at = full.split()[1]
r = client.completions.create(model=model, prompt="One, two, three,", max_tokens=8, temperature=0, stop=[stop_at])
assert r.choices[0].text == full[: full.index(stop_at)] and r.choices[0].finish_reason == "stop", (full, r)

streamed = "".join(
    ch.choices[0].text
    for ch in client.completions.create(model=model, prompt="One, two, three,", max_tokens=8, temperature=0, stream=True)
    if ch.choices
)
assert streamed == full

# A forced tool call, streamed: the client's own accumulation (the stream helper) puts
# the call together from OpenAI-shaped deltas (id, type and name first, then the
# arguments in pieces) into the same call as the plain reply.
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
plain = client.chat.completions.create(model=model, messages=ask, tools=tools, tool_choice="required",
                                       max_tokens=40, temperature=0)
[want] = plain.choices[0].message.tool_calls
pieces = []
with client.chat.completions.stream(model=model, messages=ask, tools=tools, tool_choice="required",
                                    max_tokens=40, temperature=0) as stream:
    for event in stream:
        if event.type == "tool_calls.function.arguments.delta":
            pieces.append(event.arguments_delta)
    final = stream.get_final_completion()
[got] = final.choices[0].message.tool_calls
assert final.choices[0].finish_reason == "tool_calls", final
assert got.type == "function" and got.function.name == "get_weather" and got.id.startswith("call_"), got
assert len(pieces) >= 2 and "".join(pieces) == got.function.arguments, pieces
assert json.loads(got.function.arguments) == json.loads(want.function.arguments), (got, want)

# Errors arrive as the client's typed exceptions.
for bad in [dict(temperature=5), dict(max_tokens=-1), dict(n=0)]:
    try:
        client.chat.completions.create(model=model, messages=messages, **bad)
        raise AssertionError(f"{bad} was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body and e.body.get("message"), e
# One model served: a runner's own model name is served, under the served name.
r = client.chat.completions.create(model="gpt-5-codex", messages=messages, max_tokens=1)
assert r.model == model, r
try:
    client.models.retrieve("no-such-model")
    raise AssertionError("unknown model found")
except openai.NotFoundError:
    pass

print("openai client: all checks passed")
