"""A plain Python SSE reader of /v1/jobs/{id}/events that drops the connection in the
middle of a live stream and resumes with Last-Event-ID: it must see every event once.

Standard library only. Environment: SLUICE_GATEWAY_URL, SLUICE_API_KEY.
"""
import http.client
import json
import os
import sys
import urllib.parse

url = urllib.parse.urlparse(os.environ["SLUICE_GATEWAY_URL"])
auth = {"Authorization": "Bearer " + os.environ["SLUICE_API_KEY"]}


def connect():
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def events(response):
    """Yields (id, event, data) per SSE event; comments are skipped."""
    fields = {}
    data = []
    while True:
        line = response.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data or fields:
                yield fields.get("id"), fields.get("event"), "\n".join(data)
            fields, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


c = connect()
c.request("POST", "/v1/jobs", body=json.dumps({"model": "default", "chat_input": "resume me from Python"}),
          headers={**auth, "Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 202, (r.status, r.read())
job = json.loads(r.read())["id"]
c.close()

seen = []
c = connect()
c.request("GET", f"/v1/jobs/{job}/events", headers=auth)
r = c.getresponse()
assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream", r.status
for event_id, name, data in events(r):
    seen.append((int(event_id), name, json.loads(data)))
    if name == "chunk" and int(event_id) >= 6:
        break
c.close()  # drop the connection mid-stream
last = seen[-1][0]

c = connect()
c.request("GET", f"/v1/jobs/{job}/events", headers={**auth, "Last-Event-ID": str(last)})
r = c.getresponse()
assert r.status == 200, r.status
resumed = [(int(i), n, json.loads(d)) for i, n, d in events(r)]
c.close()

ids = [i for i, _, _ in seen + resumed]
assert resumed and resumed[0][0] == last + 1, (last, resumed[:1])
assert ids == list(range(1, len(ids) + 1)), ids
assert resumed[-1][1] == "chat_finished", resumed[-1]
assert all(e["seq"] == i and e["job_id"] == job for i, _, e in seen + resumed)
print(f"resumed after {last}: {len(seen)} + {len(resumed)} events, no gap, no repeat")
print("SSE RESUME OK")
