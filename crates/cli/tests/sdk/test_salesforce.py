"""Polytomic's Python SDK creates a Salesforce connection in `api` mode against Ferry, with a
refresh token obtained from the Salesforce emulator by the OAuth web-server flow, and reads
back the username Ferry learned. Environment: FERRY_URL, FERRY_API_KEY, EMULATOR_URL.
"""

import os
import re
import sys
from urllib.parse import parse_qs, urlparse

import httpx
from polytomic import Polytomic

FERRY_URL = os.environ["FERRY_URL"]
KEY = os.environ["FERRY_API_KEY"]
EMULATOR = os.environ["EMULATOR_URL"]


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


# 1. A refresh token from the emulator, as a browser would get one.
http = httpx.Client(follow_redirects=False, timeout=30)
page = http.get(
    f"{EMULATOR}/services/oauth2/authorize",
    params={"response_type": "code", "client_id": "ferry-emulator", "redirect_uri": "http://localhost/cb", "state": "s1"},
)
if page.status_code != 200:
    fail(f"authorize page: {page.status_code}")
form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
form["approve"] = "allow"
decision = http.post(f"{EMULATOR}/services/oauth2/authorize", data=form)
code = parse_qs(urlparse(decision.headers["location"]).query)["code"][0]
token = http.post(
    f"{EMULATOR}/services/oauth2/token",
    data={
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "ferry-emulator",
        "client_secret": "ferry-emulator-secret",
        "redirect_uri": "http://localhost/cb",
    },
).json()
refresh_token = token["refresh_token"]

# 2. The SDK creates the connection; Ferry authenticates for real and learns the username.
client = Polytomic(base_url=FERRY_URL, token=KEY)
created = client.connections.create(
    name="Salesforce (api mode)",
    type="salesforce",
    configuration={
        "domain": EMULATOR,
        "connect_mode": "api",
        "client_id": "ferry-emulator",
        "client_secret": "ferry-emulator-secret",
        "oauth_refresh_token": refresh_token,
    },
).data
if created.status != "healthy":
    fail(f"status {created.status}: {created.status_error}")
got = client.connections.get(created.id).data
if got.configuration.get("username") != "admin@ferry.local":
    fail(f"username: {got.configuration}")
if got.configuration.get("oauth_refresh_token") != "********" or refresh_token in str(got):
    fail("refresh token must be masked")
print("python sdk salesforce: api-mode connection healthy as admin@ferry.local")
