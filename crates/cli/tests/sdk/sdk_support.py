"""What the SDK scripts share: the client from the environment, `check`, waiting for an
execution to end, and the two connections most scripts create (the emulator through the
client-credentials flow, and the test PostgreSQL database).

Environment: FERRY_URL, FERRY_API_KEY; EMULATOR_URL for `salesforce_connection`;
FERRY_PG_HOST, FERRY_PG_PORT, FERRY_PG_USER, FERRY_PG_DATABASE for `postgres_connection`.
"""

import os
import sys
import time

from polytomic import Polytomic

client = Polytomic(base_url=os.environ["FERRY_URL"], token=os.environ["FERRY_API_KEY"])

TERMINAL = ("completed", "failed", "canceled", "interrupted")


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def wait(get_execution, seconds):
    """Polls `get_execution()` every 0.1 s until its status is terminal."""
    for _ in range(seconds * 10):
        execution = get_execution()
        if execution.status in TERMINAL:
            return execution
        time.sleep(0.1)
    check(False, f"execution did not finish in {seconds} s")


def salesforce_connection():
    connection = client.connections.create(
        name="Salesforce (emulator)",
        type="salesforce",
        configuration={
            "domain": os.environ["EMULATOR_URL"],
            "connect_mode": "clientcredentials",
            "client_id": "ferry-emulator",
            "client_secret": "ferry-emulator-secret",
        },
    ).data
    check(connection.status == "healthy", f"salesforce: {connection.status} {connection.status_error}")
    return connection


def postgres_connection(name="warehouse"):
    return client.connections.create(
        name=name,
        type="postgresql",
        configuration={
            "hostname": os.environ["FERRY_PG_HOST"],
            "port": int(os.environ["FERRY_PG_PORT"]),
            "username": os.environ["FERRY_PG_USER"],
            "database": os.environ["FERRY_PG_DATABASE"],
            "ssl": False,
        },
    ).data
