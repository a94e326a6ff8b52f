"""Polytomic's Python SDK drives a model sync into Salesforce (the emulator) through Ferry:
models.create on PostgreSQL, model_sync.create to Lead with the published Leads target
configuration, model_sync.start, executions.get until completed, then a second start that
sends nothing.

Environment: FERRY_URL, FERRY_API_KEY, EMULATOR_URL, FERRY_PG_HOST, FERRY_PG_PORT,
FERRY_PG_USER, FERRY_PG_DATABASE (with table public.leads of 3 rows).
"""

from sdk_support import check, client, postgres_connection, salesforce_connection, wait as wait_for


def wait(sync_id, execution_id):
    return wait_for(lambda: client.model_sync.executions.get(sync_id, execution_id).data, 60)


salesforce = salesforce_connection()
warehouse = postgres_connection()
model = client.models.create(
    connection_id=warehouse.id, name="Leads", configuration={"table": "public.leads"}, identifier="email"
).data

published_leads_configuration = {
    "bulk_batch_size": 100,
    "concurrency_mode": "Parallel",
    "ignore_invalid_references": False,
    "ingestion_api": "bulk",
    "insert_null_values": False,
    "invalid_relationships": "",
    "only_sync_different": False,
    "rest_batch_size": 200,
    "skip_converted": False,
    "sort_batches_by": "AccountId",
}


def field(name, target):
    return {"source": {"model_id": model.id, "field": name}, "target": target}


sync = client.model_sync.create(
    name="Leads to Salesforce",
    mode="updateOrCreate",
    target={"connection_id": salesforce.id, "object": "Lead", "configuration": published_leads_configuration},
    identity={"source": {"model_id": model.id, "field": "email"}, "target": "Email", "function": "Equality"},
    fields=[field("first_name", "FirstName"), field("last_name", "LastName"), field("company", "Company")],
    schedule={"frequency": "manual"},
).data

first = client.model_sync.start(sync.id).data
execution = wait(sync.id, first.id)
check(execution.status == "completed", f"first run: {execution}")
check(execution.counts.total == 3 and execution.counts.error == 0, f"first run counts: {execution.counts}")
check((execution.counts.insert or 0) + (execution.counts.upserts or 0) == 3, f"first run inserts: {execution.counts}")
# The published configuration sorts by AccountId, which Lead lacks: said once, as a warning.
check(execution.counts.warnings == 1, f"sort warning: {execution.counts}")

second = client.model_sync.start(sync.id).data
execution = wait(sync.id, second.id)
check(execution.status == "completed" and execution.counts.total == 0, f"second run sends nothing: {execution.counts}")
status = client.model_sync.get_status(sync.id).data
check(status.last_execution is not None and status.last_execution.id == second.id, f"status: {status}")
print("python sdk model sync: 3 leads written, second run sent nothing")
