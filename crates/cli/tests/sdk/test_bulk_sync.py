"""Polytomic's Python SDK drives a bulk sync (ELT) from Salesforce (the emulator) into
PostgreSQL through Ferry: bulk_sync.create with Account and some Contact fields,
bulk_sync.start, executions.get until completed, then the status, schemas and schedules
sub-resources. The runner compares the destination tables with the emulator afterwards.

Environment: FERRY_URL, FERRY_API_KEY, EMULATOR_URL, FERRY_PG_HOST, FERRY_PG_PORT,
FERRY_PG_USER, FERRY_PG_DATABASE, EXPECTED_ACCOUNTS, EXPECTED_CONTACTS.
"""

import os

from sdk_support import check, client, postgres_connection, salesforce_connection, wait as wait_for


def wait(sync_id, execution_id):
    return wait_for(lambda: client.bulk_sync.executions.get(sync_id, execution_id).data, 120)


salesforce = salesforce_connection()
warehouse = postgres_connection()

target = client.bulk_sync.get_destination(warehouse.id).data
check("table_prefix" in (target.configuration or {}).get("properties", {}), f"target schema: {target}")

sync = client.bulk_sync.create(
    name="Salesforce to PostgreSQL",
    source_connection_id=salesforce.id,
    destination_connection_id=warehouse.id,
    destination_configuration={"schema": "salesforce"},
    default_schedule={"frequency": "manual"},
    mode="replicate",
    schemas=["Account", {"id": "Contact", "fields": ["Email", "LastName", "AccountId"]}],
).data
check(sync.default_schedule.frequency == "manual", f"default schedule: {sync.default_schedule}")
check(sync.destination_configuration.get("schema") == "salesforce", f"config: {sync.destination_configuration}")

started = client.bulk_sync.start(sync.id, fetch_mode="incremental").data
execution = wait(sync.id, started.id)
check(execution.status == "completed", f"run: {execution}")
counts = {schema.schema_: schema.record_count for schema in execution.schemas}
expected = {"Account": int(os.environ["EXPECTED_ACCOUNTS"]), "Contact": int(os.environ["EXPECTED_CONTACTS"])}
check(counts == expected, f"per-schema counts {counts} != {expected}")
check(execution.record_count == sum(expected.values()), f"total: {execution.record_count}")

status = client.bulk_sync.get_status(sync.id).data
check(status.last_execution is not None and status.last_execution.id == started.id, f"status: {status}")
schemas = client.bulk_sync.schemas.list(sync.id).data
check(sorted(s.id for s in schemas) == ["Account", "Contact"], f"schemas: {schemas}")
schedules = client.bulk_sync.schedules.list(sync.id).data
check(len(schedules) == 1 and schedules[0].is_default, f"schedules: {schedules}")
logs = client.bulk_sync.executions.get_logs(sync.id, started.id).data
check(len(logs.ur_ls or []) >= 1 and logs.expires is not None, f"logs: {logs}")

print(f"BULK_SYNC_ID={sync.id}")
print(f"python sdk bulk sync: {sum(expected.values())} records replicated")
