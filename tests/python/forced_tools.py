"""Forced tool calls through the official `openai` client.

    python tests/python/forced_tools.py BASE_URL MODEL

tool_choice "required" and a named function must come back as `tool_calls` whose
arguments parse and match the tool's parameters, with n > 1 and streamed; a tool result
sent back continues the conversation. Exits non-zero on the first wrong behaviour.
"""

import json
import sys

from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=900)

tools = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        }, "required": ["city", "unit"], "additionalProperties": False},
    }},
    {"type": "function", "function": {
        "name": "add",
        "description": "Adds two integers.",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer", "minimum": -1000, "maximum": 1000},
            "b": {"type": "integer", "minimum": -1000, "maximum": 1000},
        }, "required": ["a", "b"], "additionalProperties": False},
    }},
]


def check_args(name, arguments):
    """Checks arguments (a JSON string) against the tool's parameters, by hand."""
    args = json.loads(arguments)
    if name == "get_weather":
        assert set(args) == {"city", "unit"}, args
        assert isinstance(args["city"], str) and 1 <= len(args["city"]) <= 40, args
        assert args["unit"] in ("celsius", "fahrenheit"), args
    elif name == "add":
        assert set(args) == {"a", "b"}, args
        for k in "ab":
            assert isinstance(args[k], int) and not isinstance(args[k], bool) and -1000 <= args[k] <= 1000, args
    else:
        raise AssertionError(f"called {name}, which was not offered")
    return args


messages = [{"role": "user", "content": "What is the weather like in Paris today?"}]

# "required", sampled at temperature 1.0, several choices.
r = client.chat.completions.create(
    model=model, messages=messages, tools=tools, tool_choice="required", temperature=1.0, n=5, max_tokens=120,
)
assert len(r.choices) == 5
for c in r.choices:
    assert c.finish_reason == "tool_calls", c
    assert c.message.tool_calls and len(c.message.tool_calls) == 1, c
    call = c.message.tool_calls[0]
    check_args(call.function.name, call.function.arguments)

# A named function: that one, whatever the question.
r = client.chat.completions.create(
    model=model, messages=messages, tools=tools, tool_choice={"type": "function", "function": {"name": "add"}},
    temperature=1.0, max_tokens=120,
)
call = r.choices[0].message.tool_calls[0]
assert call.function.name == "add", call
check_args("add", call.function.arguments)

# Streamed: the deltas assemble into one valid call.
stream = client.chat.completions.create(
    model=model, messages=messages, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}},
    temperature=1.0, max_tokens=120, stream=True,
)
name, arguments, finish = None, "", None
for chunk in stream:
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            name = tc.function.name or name
            arguments += tc.function.arguments or ""
        finish = c.finish_reason or finish
assert name == "get_weather" and finish == "tool_calls", (name, finish)
weather_args = check_args(name, arguments)

# The tool's result goes back; the model answers in words ("auto" leaves it free).
messages += [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(weather_args)}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"temperature": 18, "sky": "clear"})},
]
r = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="none", temperature=0, max_tokens=40)
reply = r.choices[0]
assert reply.message.content and not reply.message.tool_calls, reply
assert reply.finish_reason in ("stop", "length"), reply
print("forced tool calls ok:", weather_args, "->", reply.message.content[:60].replace("\n", " "))
