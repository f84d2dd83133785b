"""The `portkey-ai` SDK's prompt completions against the gateway.

Its base URL is the gateway's /v1; it calls POST /prompts/{id}/completions relative to
it and sends its API key as x-portkey-api-key. Run by GatewayClientTests with
PYTHONPATH=.deps/python-clients. Environment: SLUICE_GATEWAY_URL, SLUICE_API_KEY.
"""
import os
import sys

from portkey_ai import Portkey

client = Portkey(base_url=os.environ["SLUICE_GATEWAY_URL"] + "/v1", api_key=os.environ["SLUICE_API_KEY"])
variables = {"name": "Ada", "city": "London"}

completion = client.prompts.completions.create(prompt_id="welcome", variables=variables, max_tokens=32)
assert completion.object == "chat.completion", completion
text = completion.choices[0].message.content
assert text, completion
assert completion.usage.completion_tokens > 0, completion
print("non-streaming ok:", len(text), "chars")

stream = client.prompts.completions.create(prompt_id="welcome", variables=variables, max_tokens=32, stream=True)
chunks = list(stream)
assert chunks, "no chunks"
streamed = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
assert streamed, chunks
print("streaming ok:", len(chunks), "chunks")

try:
    client.prompts.completions.create(prompt_id="welcome", variables={"name": "Ada"})
    sys.exit("a missing variable did not fail")
except Exception as e:  # the SDK's BadRequestError
    assert getattr(e, "status_code", None) == 400 and 'missing variable "city"' in str(e), repr(e)
print("missing variable ok")
print("PORTKEY CLIENT OK")
