"""Chat-template parity with Python `transformers`: the conversations below (plain,
multi-turn, tools offered, a tool call and its result, thinking on and off, earlier
reasoning sent back) rendered by `transformers`' own Jinja rendering of the GGUF's
template, then tokenized, must give the same token ids as looptree's `/tokenize` of the
same messages.

    python tests/python/template_parity.py http://127.0.0.1:8080 model.gguf

Exits 1 naming the first conversation that differs, with both renderings' tokens.
"""

import json
import sys

import gguf
import httpx
from transformers.utils.chat_template_utils import render_jinja_template

base, path = sys.argv[1], sys.argv[2]
reader = gguf.GGUFReader(path)


def field(name):
    f = reader.fields.get(name)
    return None if f is None else f.contents()


template = field("tokenizer.chat_template")
tokens = field("tokenizer.ggml.tokens")
special = {
    k: tokens[i] if (i := field(f"tokenizer.ggml.{k}_token_id")) is not None else None
    for k in ("bos", "eos")
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CASES = [
    ("plain", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there!"}], None, {}),
    (
        "multi-turn",
        [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one, please."},
        ],
        None,
        {},
    ),
    ("tools offered", [{"role": "user", "content": "Weather in Paris?"}], [WEATHER], {}),
    (
        "a call and its result",
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        ],
        [WEATHER],
        {},
    ),
    ("thinking on", [{"role": "user", "content": "Why is the sky blue?"}], None, {"enable_thinking": True}),
    ("thinking off", [{"role": "user", "content": "Why is the sky blue?"}], None, {"enable_thinking": False}),
    (
        "earlier reasoning sent back",
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."},
            {"role": "user", "content": "And 3+3?"},
        ],
        None,
        {},
    ),
]


def wire(messages):
    """The messages as an OpenAI client sends them: call arguments as a JSON string."""
    out = []
    for m in messages:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def ids(body):
    r = httpx.post(f"{base}/tokenize", json=body, timeout=60)
    assert r.status_code == 200, (body, r.text)
    return r.json()["tokens"]


failed = 0
for name, messages, tools, kwargs in CASES:
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages],
            tools=tools,
            chat_template=template,
            add_generation_prompt=True,
            bos_token=special["bos"],
            eos_token=special["eos"],
            **kwargs,
        )
    except Exception as e:  # the template itself refuses this conversation
        print(f"{name}: transformers refuses it ({e}); skipped")
        continue
    want = ids({"prompt": rendered[0], "add_special_tokens": False})
    body = {"messages": wire(messages), "chat_template_kwargs": kwargs}
    if tools:
        body["tools"] = tools
    got = ids(body)
    bos = ids({"prompt": "", "add_special_tokens": True})
    # A tokenizer that adds BOS where the template writes none: looptree adds it as
    # llama.cpp does; transformers' text has none.
    if got[: len(bos)] == bos and want[: len(bos)] != bos:
        got = got[len(bos) :]
    if got != want:
        failed += 1
        r = httpx.post(f"{base}/detokenize", json={"tokens": got}, timeout=60).json()
        print(f"{name}: differs\n--- transformers:\n{rendered[0]!r}\n--- looptree:\n{r.get('prompt')!r}")
    else:
        print(f"{name}: same ({len(got)} tokens)")
sys.exit(1 if failed else 0)
