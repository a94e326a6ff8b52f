"""Polytomic's Python SDK manages a model over a PostgreSQL table through Ferry.

Environment: FERRY_URL, FERRY_API_KEY, FERRY_PG_HOST, FERRY_PG_PORT, FERRY_PG_USER,
FERRY_PG_DATABASE (a database holding table public.people with 3 rows).
"""

from polytomic.errors import UnprocessableEntityError

from sdk_support import check, client, postgres_connection

pg = postgres_connection()

model = client.models.create(
    connection_id=pg.id,
    name="People",
    configuration={"table": "public.people"},
    identifier="email",
    labels=["crm"],
).data
names = {f.name for f in model.fields}
check({"id", "email", "first_name", "signed_up_at"} <= names, f"fields: {names}")
check(model.identifier == "email", f"identifier: {model.identifier}")
types = {f.name: f.type for f in model.fields}
check(types["id"] == "number" and types["email"] == "string" and types["signed_up_at"] == "datetime", f"types: {types}")

got = client.models.get(model.id).data
check(got.name == "People" and got.connection_id == pg.id, "get")
check(any(m.id == model.id for m in client.models.list().data), "list")
sample = client.models.sample(model.id).data
records = sample.records or []
check(len(records) == 3, f"sample: {sample}")

try:
    client.connections.delete(pg.id)
    check(False, "a connection a model uses cannot be deleted")
except UnprocessableEntityError as error:
    check("in use" in error.body.message, error.body.message)

client.models.delete(model.id)
client.connections.delete(pg.id)
print("python sdk models: model over public.people created, sampled and deleted")
