"""schemathesis against a live looptree: every operation in its /openapi.json gets a
bounded number of generated requests, ones that fit the schema and ones that break it.
No answer may be a 5xx (or no answer at all), and every 4xx must be an error in the
route's shape: OpenAI's {"error": {"message", "type", "param", "code"}}, Anthropic's
{"type": "error", "error": {"type", "message"}} on /v1/messages.

    python fuzz_api.py BASE_URL EXAMPLES_PER_OPERATION_AND_MODE
"""

import json
import sys

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

base, examples = sys.argv[1].rstrip("/"), int(sys.argv[2])

# Generation is what costs on a CPU; the schema's max_tokens bound is the context, so
# requests are held short here (the fuzzing is of the parsing, not of the model).
MAX_TOKENS = 3
MAX_N = 2
TIMEOUT_S = 30

schema = schemathesis.openapi.from_url(base + "/openapi.json")
session = requests.Session()


def is_number(v):
    """An int or a float: the server reads 3.0 as the integer 3, as JSON Schema does."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def bounded(body):
    """A generated body with its generation cost capped, whatever else it holds."""
    if not isinstance(body, dict):
        return body
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        v = body.get(key)
        if is_number(v) and v > MAX_TOKENS:
            body[key] = MAX_TOKENS
    if not any(k in body for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")):
        body["max_output_tokens" if "input" in body else "max_tokens"] = MAX_TOKENS
    for key in ("n", "best_of"):
        v = body.get(key)
        if is_number(v) and v > MAX_N:
            body[key] = MAX_N
    return body


def shape_problem(path, status, text):
    """What is wrong with a response, or None."""
    if status >= 500:
        return f"server error {status}: {text[:500]}"
    if status < 400:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status} with a body that is not JSON: {text[:500]}"
    if path.startswith("/v1/messages"):
        err = body.get("error") if isinstance(body, dict) else None
        ok = (
            body.get("type") == "error"
            and isinstance(err, dict)
            and isinstance(err.get("type"), str)
            and isinstance(err.get("message"), str)
            and err["message"]
        )
    else:
        err = body.get("error") if isinstance(body, dict) else None
        ok = (
            isinstance(err, dict)
            and isinstance(err.get("message"), str)
            and err["message"]
            and isinstance(err.get("type"), str)
            and "param" in err
            and "code" in err
        )
    return None if ok else f"{status} with a malformed error body: {text[:500]}"


failures = []
counts = {}
statuses = {}


def run(operation, mode):
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def test(case):
        case.body = bounded(case.body)
        counts[label] = counts.get(label, 0) + 1
        try:
            r = case.call(base_url=base, session=session, timeout=TIMEOUT_S)
        except requests.RequestException as e:
            raise AssertionError(f"no answer: {e}") from e
        statuses.setdefault(label, {}).setdefault(r.status_code, 0)
        statuses[label][r.status_code] += 1
        problem = shape_problem(operation.path, r.status_code, r.text)
        assert problem is None, problem

    has_body = operation.body is not None and len(operation.body) > 0
    if operation.method.lower() == "post" and not has_body:
        failures.append(f"{label}: schemathesis found no request body to generate")
        return
    try:
        test()
    except Unsatisfiable as e:
        # Only an operation without a body may have nothing to break (a path id is any
        # string); a body schema that yields no cases would hide its route from the fuzzer.
        if mode == GenerationMode.POSITIVE or has_body:
            failures.append(f"{label}: no cases could be generated: {e}")
        counts.setdefault(label, 0)
    except Exception as e:  # noqa: BLE001 - hypothesis may group or wrap the failure
        failures.append(f"{label}: {type(e).__name__}: {e}")
    if has_body and counts.get(label, 0) < examples // 2:
        failures.append(f"{label}: only {counts.get(label, 0)} of {examples} cases were sent")


operations = [result.ok() for result in schema.get_all_operations()]
assert operations, "no operations in /openapi.json"
for op in operations:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        run(op, mode)

for label, n in counts.items():
    seen = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.get(label, {}).items()))
    print(f"{n:4} requests  {label}  [{seen}]")
print(f"{sum(counts.values())} requests over {len(operations)} operations")
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
