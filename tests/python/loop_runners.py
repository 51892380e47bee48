"""Drives a running looptree server the way loop runners do: the official `openai`
client's Responses API (streamed and not, with a function tool, previous_response_id),
the `anthropic` client (messages, a system turn mid-conversation, count_tokens, a tool
round trip, streaming) and the OpenAI Agents SDK on the Responses API.

    python tests/python/loop_runners.py BASE_URL SERVED_NAME

BASE_URL is the server root (http://127.0.0.1:8080). Exits non-zero on the first wrong
behaviour. Kept fast: short outputs, a small model.
"""

import json
import sys

import anthropic
import openai
from openai import OpenAI

base, served = sys.argv[1].rstrip("/"), sys.argv[2]
client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)

weather_tool = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}

# --- openai: client.responses ---------------------------------------------------------

# Plain text, under a runner's own model name: answered under the served name.
r = client.responses.create(model="gpt-5-codex", instructions="You are terse.", input="Say hello.",
                            max_output_tokens=8, temperature=0)
assert r.object == "response" and r.model == served, r
assert r.status in ("completed", "incomplete"), r
assert r.output_text, r
assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, r.usage

# Streamed: the same text, the lifecycle events, usage with the prompt now cached.
# (Read raw: the SDK's stream helper wants response.completed, and 8 tokens may end
# the reply as response.incomplete.)
kinds, final = [], None
for event in client.responses.create(model="gpt-5-codex", instructions="You are terse.", input="Say hello.",
                                     max_output_tokens=8, temperature=0, stream=True):
    kinds.append(event.type)
    if event.type in ("response.completed", "response.incomplete"):
        final = event.response
assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete"), kinds
assert "response.output_text.delta" in kinds, kinds
assert final.output_text == r.output_text, (final.output_text, r.output_text)
assert final.usage.input_tokens_details.cached_tokens > 0, final.usage

# A function tool (forced), developer-role input and Codex's fields: one function_call.
codex_like = dict(
    model="gpt-5-codex",
    instructions="You answer with tools.",
    input=[
        {"role": "developer", "content": "Use the tools."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]},
    ],
    tools=[weather_tool, {"type": "web_search"}],
    tool_choice="required",
    parallel_tool_calls=False,
    max_output_tokens=40,
    temperature=0,
    include=["reasoning.encrypted_content"],
    prompt_cache_key="loop-1",
)
r = client.responses.create(store=True, **codex_like)
calls = [item for item in r.output if item.type == "function_call"]
assert len(calls) == 1 and calls[0].name == "get_weather", r.output
assert isinstance(json.loads(calls[0].arguments)["city"], str), calls[0].arguments

# Streamed, as Codex reads it: the call's arguments arrive in delta/done events.
args_delta, args_done, items = "", None, []
for event in client.responses.create(stream=True, store=False, **codex_like):
    if event.type == "response.function_call_arguments.delta":
        args_delta += event.delta
    elif event.type == "response.function_call_arguments.done":
        args_done = event.arguments
    elif event.type == "response.output_item.done":
        items.append(event.item)
    elif event.type == "response.completed":
        completed = event.response
assert args_done == args_delta and json.loads(args_done), (args_delta, args_done)
assert [i.type for i in items] == ["function_call"] and items[0].arguments == args_done, items
assert completed.status == "completed" and completed.output[0].call_id == items[0].call_id

# The same through the client's own accumulation (the stream helper): the arguments
# arrive in pieces and add up to the call the final response holds.
pieces = []
with client.responses.stream(store=False, **codex_like) as stream:
    for event in stream:
        if event.type == "response.function_call_arguments.delta":
            pieces.append(event.delta)
    final = stream.get_final_response()
[call] = [item for item in final.output if item.type == "function_call"]
assert len(pieces) >= 2 and "".join(pieces) == call.arguments, (pieces, call)
assert json.loads(call.arguments) == json.loads(calls[0].arguments), (call, calls[0])

# Stored responses are read back and deleted; a deleted one is a 404.
assert client.responses.retrieve(r.id).output[0].call_id == calls[0].call_id

# The tool's output sent against previous_response_id: only the new item travels.
follow = client.responses.create(
    model="gpt-5-codex", previous_response_id=r.id, instructions="You answer with tools.",
    tools=[weather_tool], max_output_tokens=8, temperature=0,
    input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}],
)
assert follow.status in ("completed", "incomplete"), follow
assert follow.usage.input_tokens > r.usage.input_tokens, (follow.usage, r.usage)
assert follow.usage.input_tokens_details.cached_tokens >= r.usage.input_tokens - 1, follow.usage
try:
    client.responses.create(model="x", previous_response_id="resp_nope", input="hi", max_output_tokens=1)
    raise AssertionError("an unknown previous_response_id was accepted")
except openai.NotFoundError as e:
    assert e.code == "previous_response_not_found", e
client.responses.delete(r.id)
try:
    client.responses.retrieve(r.id)
    raise AssertionError("a deleted response was found")
except openai.NotFoundError:
    pass

# --- anthropic --------------------------------------------------------------------------

# (This client version takes no `temperature` argument: sent as an extra field.)
GREEDY = {"temperature": 0}
claude = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0, timeout=120)
system = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.0.abc; cc_entrypoint=cli;"},
    {"type": "text", "text": "You are terse."},
]
messages = [
    {"role": "user", "content": "Hello."},
    {"role": "assistant", "content": "Hi."},
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Name a colour."},
]
m = claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, extra_body=GREEDY, system=system, messages=messages)
assert m.model == served and m.content and m.content[0].type == "text", m
counted = claude.messages.count_tokens(model="claude-sonnet-4-5", system=system, messages=messages)
assert counted.input_tokens == m.usage.input_tokens + m.usage.cache_read_input_tokens, (counted, m.usage)

# A tool round trip, streamed: the forced call comes back as a tool_use block.
tools = [{"name": "get_weather", "description": "The weather in a city.",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=40, extra_body=GREEDY, tools=tools,
                            tool_choice={"type": "any"},
                            messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
    reply = s.get_final_message()
uses = [b for b in reply.content if b.type == "tool_use"]
assert reply.stop_reason == "tool_use" and len(uses) == 1 and isinstance(uses[0].input["city"], str), reply
done = claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, extra_body=GREEDY, tools=tools, messages=[
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [b.model_dump() for b in reply.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny"}]},
])
assert done.content, done

# --- the OpenAI Agents SDK, on the Responses API ----------------------------------------

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

set_tracing_disabled(True)
sdk_model = OpenAIResponsesModel(model="gpt-5", openai_client=AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0))
seen = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    seen.append(city)
    return f"Sunny in {city}"


agent = Agent(name="weather", instructions="Answer with the tool.", model=sdk_model, tools=[get_weather],
              tool_use_behavior="stop_on_first_tool",
              model_settings=ModelSettings(tool_choice="required", max_tokens=40, temperature=0))
result = Runner.run_sync(agent, "What is the weather in Paris?")
assert len(seen) == 1 and result.final_output == f"Sunny in {seen[0]}", (seen, result.final_output)
# Room to finish: the SDK takes a reply cut at max_tokens (response.incomplete) as an error.
chat = Agent(name="chat", instructions="You are terse.", model=sdk_model, model_settings=ModelSettings(max_tokens=200, temperature=0))
assert Runner.run_sync(chat, "Say hello in one word.").final_output

print("loop runners: all checks passed")
