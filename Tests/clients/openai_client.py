"""The official `openai` SDK against the gateway's /v1/chat/completions.

Run by GatewayClientTests with PYTHONPATH=.deps/python-clients; exits non-zero on the
first failed check. Environment: SLUICE_GATEWAY_URL, SLUICE_API_KEY.
"""
import os
import sys

import openai
from openai import OpenAI

base = os.environ["SLUICE_GATEWAY_URL"] + "/v1"
key = os.environ["SLUICE_API_KEY"]
client = OpenAI(base_url=base, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "Tell me a joke"}]

# Not streaming: a ChatCompletion, usage filled, Sluice's metrics kept as extra fields.
completion = client.chat.completions.create(model="default", messages=messages, temperature=0.2, max_tokens=40)
assert completion.object == "chat.completion", completion
text = completion.choices[0].message.content
assert text, completion
assert completion.choices[0].finish_reason == "stop", completion
assert completion.usage.completion_tokens > 0, completion.usage
extra = completion.model_extra or {}
assert extra.get("metrics", {}).get("output_tokens") == completion.usage.completion_tokens, extra
assert extra.get("status") == "succeeded", extra
print("non-streaming ok:", len(text), "chars")

# Streaming: chunks whose deltas make the reply; no usage chunk unless asked.
stream = client.chat.completions.create(model="default", messages=messages, stream=True)
chunks = list(stream)
assert chunks and all(c.object == "chat.completion.chunk" for c in chunks), chunks
assert all(c.choices for c in chunks), "a usage-only chunk was sent without stream_options"
streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
assert streamed, chunks
assert chunks[-1].choices[0].finish_reason == "stop"
print("streaming ok:", len(chunks), "chunks")

stream = client.chat.completions.create(
    model="default", messages=messages, stream=True, stream_options={"include_usage": True})
chunks = list(stream)
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0, chunks[-1]
print("include_usage ok")

# Errors map onto the SDK's exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    sys.exit("an unknown model did not fail")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "no-such-model" in str(e), e
try:
    OpenAI(base_url=base, api_key="not-a-key", max_retries=0).chat.completions.create(model="default", messages=messages)
    sys.exit("a bad key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and "not-a-key" not in str(e), e
try:
    for _ in client.chat.completions.create(model="mock/mock-fail-after=2", messages=messages, stream=True):
        pass
    sys.exit("a stream that failed midway ended without an error")
except openai.APIError as e:
    print("mid-stream failure raised:", type(e).__name__)
print("errors ok")
print("OPENAI CLIENT OK")
