"""Drives Ferry with Polytomic's official Python SDK (PyPI `polytomic`), unpatched.

Run by crates/cli/tests/python_sdk.rs against a spawned `ferry serve`. Environment:
FERRY_URL, FERRY_API_KEY, FERRY_PG_HOST, FERRY_PG_PORT, FERRY_PG_USER, FERRY_PG_DATABASE.
Exits non-zero on the first failed expectation.
"""

import os
import sys
import uuid

from polytomic import Polytomic
from polytomic.core.api_error import ApiError
from polytomic.errors import NotFoundError, UnauthorizedError, UnprocessableEntityError

URL = os.environ["FERRY_URL"]
KEY = os.environ["FERRY_API_KEY"]

client = Polytomic(base_url=URL, token=KEY)
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


# Connection types and their schemas.
types = client.connections.get_types().data
ids = {t.id for t in types}
check({"salesforce", "postgresql", "mysql", "sqlite"} <= ids, f"connection types: {ids}")
for t in types:
    check(t.capabilities is not None and t.capabilities.source is not None, f"capabilities of {t.id}")
schema = client.connections.get_connection_type_schema("salesforce")
props = schema.properties or {}
check("domain" in props and "connect_mode" in props, "salesforce schema properties")
check(props["client_secret"].get("sensitive") is True, "client_secret is sensitive")
check(props["username"].get("readOnly") is True, "username is read-only")

# Identity.
me = client.identity.get().data
check(me.organization_name == "default", f"me: {me}")

# A validated PostgreSQL connection to the local server.
pg_config = {
    "hostname": os.environ["FERRY_PG_HOST"],
    "port": int(os.environ["FERRY_PG_PORT"]),
    "username": os.environ["FERRY_PG_USER"],
    "password": "not-needed-with-trust-auth",
    "database": os.environ["FERRY_PG_DATABASE"],
    "ssl": False,
}
pg = client.connections.create(name="warehouse", type="postgresql", configuration=pg_config, validate=True).data
check(pg.status == "healthy", f"postgres status {pg.status} {pg.status_error}")
check(pg.configuration["password"] == "********", "password masked on create")

# The published Salesforce example, accepted verbatim without validation.
sf_config = {
    "client_id": "a45gadsfdsaf47byor2ugfbhsgllpf12gf56gfds",
    "client_secret": "ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq",
    "connect_mode": "api",
    "daily_api_calls": 0,
    "domain": "http://instance.my.salesforce.com",
    "enable_multicurrency_lookup": False,
    "enable_tooling": False,
    "enforce_api_limits": False,
    "oauth_refresh_token": "dasfdasz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq",
}
sf = client.connections.create(name="Salesforce connection", type="salesforce", configuration=sf_config, validate=False).data
check(sf.status != "healthy", f"salesforce is not claimed healthy before authorization: {sf.status}")

# List and get: secrets masked, nothing leaks.
listed = client.connections.list().data
check({c.id for c in listed} >= {pg.id, sf.id}, "list contains both")
got = client.connections.get(sf.id).data
check(got.configuration["client_secret"] == "********", "client_secret masked")
check(got.configuration["oauth_refresh_token"] == "********", "refresh token masked")
check(got.configuration["domain"] == "http://instance.my.salesforce.com", "domain returned")
check(got.api_calls_last24hours == 0, "api_calls_last_24_hours present")
check(sf_config["client_secret"] not in str(got), "secret never returned")

# Update sending the mask back keeps the secret (the masked config round-trips).
updated = client.connections.update(sf.id, name="Salesforce (renamed)", configuration=dict(got.configuration), validate=False).data
check(updated.name == "Salesforce (renamed)", "renamed")
check(updated.configuration["client_secret"] == "********", "secret still set after mask echo")
pg_masked = dict(client.connections.get(pg.id).data.configuration)
client.connections.update(pg.id, name="warehouse", configuration=pg_masked, validate=True)

# Test: good configuration passes, a missing database fails with the driver's reason.
client.connections.test_connection(type="postgresql", configuration=pg_config)
client.connections.test_connection(type="postgresql", configuration={"password": "********"}, connection_id=pg.id)
try:
    client.connections.test_connection(type="postgresql", configuration=dict(pg_config, database="ferry_no_such_db"))
    check(False, "test with a missing database must fail")
except ApiError as error:
    check(error.status_code == 422 and "ferry_no_such_db" in str(error.body), f"missing database: {error.body}")

# Error classes.
try:
    Polytomic(base_url=URL, token="ferry_wrong_key_0000000000").connections.create(
        name="x", type="sqlite", configuration={"path": "/tmp/x.db"})
    check(False, "bad key must be rejected")
except UnauthorizedError as error:
    check(error.body.status == 401, "401 body")
try:
    client.connections.get(str(uuid.uuid4()))
    check(False, "unknown id must 404")
except NotFoundError as error:
    check(error.body.status == 404, "404 body")
try:
    client.connections.create(name="bad", type="salesforce", configuration={"domain": "x.my.salesforce.com", "connect_mode": "telepathy"}, validate=False)
    check(False, "bad connect_mode must be rejected")
except UnprocessableEntityError as error:
    check("connect_mode" in error.body.message and "browser" in error.body.message, f"message: {error.body.message}")

# Idempotent create: the same key twice creates one connection.
before = len(client.connections.list().data)
key = "sdk-test-" + uuid.uuid4().hex
first = client.connections.create(name="idem", type="sqlite", configuration={"path": os.environ["FERRY_SQLITE_PATH"]}, idempotency_key=key).data
second = client.connections.create(name="idem", type="sqlite", configuration={"path": os.environ["FERRY_SQLITE_PATH"]}, idempotency_key=key).data
check(first.id == second.id, "idempotent replay returns the same connection")
check(len(client.connections.list().data) == before + 1, "one connection created")

# Delete.
for connection in (pg, sf, first):
    client.connections.delete(connection.id)
remaining = {c.id for c in client.connections.list().data}
check(not remaining & {pg.id, sf.id, first.id}, "deleted")

print(f"python sdk: {checks} checks passed")
