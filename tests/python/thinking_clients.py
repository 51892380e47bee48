"""A thinking model's reply through the official `openai` and `anthropic` clients: the
reasoning and the answer land in their own fields, streamed and not.

    python tests/python/thinking_clients.py BASE_URL MODEL

The server runs a random-weight model whose template writes `<think>` blocks; looptree's
`regex` field makes it write a known reply, so what is checked is the server's split.
"""

import sys

import anthropic
from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
REASONING, ANSWER = "The capital of France is Paris.", "Paris"
FORCED = {"regex": "<think>\\nThe capital of France is Paris\\.\\n</think>\\n\\nParis"}
messages = [{"role": "user", "content": "What is the capital of France?"}]

oai = OpenAI(base_url=base_url + "/v1", api_key="local", max_retries=0, timeout=120)

r = oai.chat.completions.create(model=model, messages=messages, max_tokens=40, temperature=0, extra_body=FORCED)
m = r.choices[0].message
assert m.content == ANSWER, m
assert m.reasoning_content == REASONING and m.reasoning == REASONING, m
details = r.usage.completion_tokens_details
assert 0 < details.reasoning_tokens < r.usage.completion_tokens, r.usage

stream = oai.chat.completions.create(
    model=model, messages=messages, max_tokens=40, temperature=0, stream=True,
    stream_options={"include_usage": True}, extra_body=FORCED,
)
reasoning, reasoning_alias, content, usage = [], [], [], None
for chunk in stream:
    usage = chunk.usage or usage
    for c in chunk.choices:
        reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
        reasoning_alias.append(getattr(c.delta, "reasoning", None) or "")
        content.append(c.delta.content or "")
assert "".join(reasoning) == REASONING == "".join(reasoning_alias), reasoning
assert "".join(content) == ANSWER, content
assert usage.completion_tokens_details.reasoning_tokens == details.reasoning_tokens, usage

# The reasoning sent back on the assistant turn is rendered by this template (the turn
# follows the last user message), so the prompt grows by it.
turn = {"role": "assistant", "content": ANSWER}
plain = oai.chat.completions.create(model=model, messages=messages + [turn], max_tokens=1)
turn["reasoning_content"] = REASONING
with_reasoning = oai.chat.completions.create(model=model, messages=messages + [turn], max_tokens=1)
assert with_reasoning.usage.prompt_tokens > plain.usage.prompt_tokens + 5, (plain.usage, with_reasoning.usage)

# Responses: a reasoning item before the message, plain and through the client's stream
# accumulation (reasoning_text events).
r = oai.responses.create(model=model, input=messages, max_output_tokens=40, temperature=0, extra_body=FORCED)
assert [i.type for i in r.output] == ["reasoning", "message"], r.output
assert r.output[0].content[0].text == REASONING and r.output[0].summary == [], r.output[0]
assert r.output_text == ANSWER, r
assert r.usage.output_tokens_details.reasoning_tokens == details.reasoning_tokens, r.usage
reasoning = []
with oai.responses.stream(model=model, input=messages, max_output_tokens=40, temperature=0, extra_body=FORCED) as s:
    for ev in s:
        if ev.type == "response.reasoning_text.delta":
            reasoning.append(ev.delta)
    final = s.get_final_response()
assert "".join(reasoning) == REASONING, reasoning
assert [i.type for i in final.output] == ["reasoning", "message"], final.output
assert final.output[0].content[0].text == REASONING and final.output_text == ANSWER, final

ant = anthropic.Anthropic(base_url=base_url, api_key="local", max_retries=0, timeout=120)
kw = dict(model=model, max_tokens=40, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024}, extra_body=FORCED)

msg = ant.messages.create(**kw)
kinds = [b.type for b in msg.content]
assert kinds == ["thinking", "text"], msg
assert msg.content[0].thinking == REASONING and msg.content[0].signature, msg
assert msg.content[1].text == ANSWER, msg
assert msg.stop_reason == "end_turn", msg

thinking, text = [], []
with ant.messages.stream(**kw) as s:
    for ev in s:
        if ev.type == "content_block_delta" and ev.delta.type == "thinking_delta":
            thinking.append(ev.delta.thinking)
        if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
            text.append(ev.delta.text)
    final = s.get_final_message()
assert "".join(thinking) == REASONING and "".join(text) == ANSWER, (thinking, text)
assert [b.type for b in final.content] == ["thinking", "text"], final
assert final.content[0].thinking == REASONING and final.content[0].signature, final
assert final.content[1].text == ANSWER, final

# A thinking block sent back is the earlier turn's reasoning, as on the OpenAI route.
back = {"role": "assistant", "content": [
    {"type": "thinking", "thinking": REASONING, "signature": msg.content[0].signature},
    {"type": "text", "text": ANSWER},
]}
counted = ant.messages.count_tokens(model=model, messages=messages + [back])
assert counted.input_tokens == with_reasoning.usage.prompt_tokens, (counted, with_reasoning.usage)

# Thinking off: the template closes the block itself and the reply is all answer.
off = ant.messages.create(**{**kw, "thinking": {"type": "disabled"}, "extra_body": {"regex": "Paris"}})
assert [b.type for b in off.content] == ["text"] and off.content[0].text == ANSWER, off
print("thinking replies through the openai and anthropic clients: ok")
