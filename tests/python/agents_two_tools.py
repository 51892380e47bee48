"""The OpenAI Agents SDK runs a two-tool agent to completion on the Responses API.

The agent must look the weather up, then convert the temperature with the second tool;
the run ends at the conversion (StopAtTools), whose result is the final output. Every call
goes through looptree's function calling: the model's tool calls parsed, the SDK's
`function_call_output` items rendered back for the next turn.

    python tests/python/agents_two_tools.py http://127.0.0.1:8080
"""

import sys

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, StopAtTools, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

base = sys.argv[1]
set_tracing_disabled(True)
model = OpenAIResponsesModel(model="gpt-5", openai_client=AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0))
calls = []


@function_tool
def get_weather(city: str) -> str:
    """Current temperature in a city, in degrees Celsius."""
    calls.append(("get_weather", city))
    return f"{city}: 20 degrees Celsius, sunny"


@function_tool
def celsius_to_fahrenheit(celsius: float) -> str:
    """Converts a temperature from degrees Celsius to degrees Fahrenheit."""
    calls.append(("celsius_to_fahrenheit", celsius))
    return f"{celsius * 9 / 5 + 32:g} degrees Fahrenheit"


agent = Agent(
    name="weather",
    instructions="Use the tools: first get_weather, then celsius_to_fahrenheit on its result. Then answer in one sentence.",
    model=model,
    tools=[get_weather, celsius_to_fahrenheit],
    tool_use_behavior=StopAtTools(stop_at_tool_names=["celsius_to_fahrenheit"]),
    model_settings=ModelSettings(max_tokens=120, temperature=0),
)
result = Runner.run_sync(agent, "What is the temperature in Paris in Fahrenheit?", max_turns=6)
names = [name for name, _ in calls]
assert "get_weather" in names and names[-1] == "celsius_to_fahrenheit", calls
assert names.index("get_weather") < names.index("celsius_to_fahrenheit"), calls
assert ("get_weather", "Paris") in calls, calls
assert calls[-1][1] == 20, f"the conversion took the weather tool's result: {calls}"
assert result.final_output == "68 degrees Fahrenheit", result.final_output
print("agents two tools:", calls, repr(result.final_output))
