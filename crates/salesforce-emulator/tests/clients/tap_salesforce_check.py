"""tap-salesforce (unpatched) in BULK mode extracting Account from the emulator.

Usage: python tap_salesforce_check.py http://127.0.0.1:PORT /path/to/tap-salesforce WORKDIR

The tap hard-codes https://login.salesforce.com for its refresh-token login; a
`sitecustomize.py` on PYTHONPATH rewrites that prefix to the emulator inside the tap's
process (spec §11, trick T2). Everything after login uses the token's instance_url.
"""
import json
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import requests

base, tap, work = sys.argv[1], sys.argv[2], sys.argv[3]
client = {"client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}

# a refresh token through the web-server flow
redirect = "http://localhost/callback"
r = requests.post(f"{base}/services/oauth2/authorize", data={
    **client, "redirect_uri": redirect, "response_type": "code", "approve": "allow",
    "scope": "api refresh_token"}, allow_redirects=False)
code = parse_qs(urlparse(r.headers["Location"]).query)["code"][0]
tok = requests.post(f"{base}/services/oauth2/token", data={
    **client, "grant_type": "authorization_code", "code": code, "redirect_uri": redirect}).json()
assert "refresh_token" in tok, tok

# data: 30 accounts; batches start at once so the tap's first poll finds them done
r = requests.post(f"{base}/__emulator/generate/Account",
                  json={"count": 30, "fields": {"Name": "Tap {n}", "NumberOfEmployees": 7}})
assert r.status_code < 300, r.text
r = requests.put(f"{base}/__emulator/bulk", json={"startDelayMs": 0})
assert r.status_code == 200, r.text

with open(os.path.join(work, "sitecustomize.py"), "w") as f:
    f.write(f"""
import requests.adapters
_send = requests.adapters.HTTPAdapter.send
def send(self, request, *a, **k):
    for p in ("https://login.salesforce.com", "https://test.salesforce.com"):
        if request.url.startswith(p):
            request.url = {base!r} + request.url[len(p):]
    return _send(self, request, *a, **k)
requests.adapters.HTTPAdapter.send = send
""")
config = {**client, "refresh_token": tok["refresh_token"], "start_date": "2000-01-01T00:00:00Z",
          "api_type": "BULK", "select_fields_by_default": True, "is_sandbox": False}
cfg_path = os.path.join(work, "config.json")
with open(cfg_path, "w") as f:
    json.dump(config, f)
env = {**os.environ, "PYTHONPATH": work}
out = subprocess.run([tap, "--config", cfg_path, "--discover"], env=env, capture_output=True,
                     text=True, timeout=600)
assert out.returncode == 0, out.stderr[-4000:]
catalog = json.loads(out.stdout)
streams = [s for s in catalog["streams"] if s["tap_stream_id"] == "Account"]
assert streams, [s["tap_stream_id"] for s in catalog["streams"]][:20]
catalog["streams"] = streams
for m in streams[0]["metadata"]:
    if m["breadcrumb"] == []:
        m["metadata"]["selected"] = True
cat_path = os.path.join(work, "catalog.json")
with open(cat_path, "w") as f:
    json.dump(catalog, f)
out = subprocess.run([tap, "--config", cfg_path, "--properties", cat_path], env=env,
                     capture_output=True, text=True, timeout=600)
assert out.returncode == 0, out.stderr[-4000:]
records = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
recs = [m["record"] for m in records if m.get("type") == "RECORD" and m.get("stream") == "Account"]
assert len(recs) == 30, (len(recs), out.stderr[-3000:])
assert all(r["Name"].startswith("Tap ") for r in recs), recs[0]
assert "/services/async/61.0/job" in out.stderr, out.stderr[-2000:]
print("tap-salesforce OK")
