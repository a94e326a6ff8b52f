"""salesforce-bulk (heroku, unpatched) Bulk 1.0 against the emulator over plain http.

Usage: python salesforce_bulk_check.py http://127.0.0.1:PORT
"""
import sys

import requests
import unicodecsv
from salesforce_bulk import CsvDictsAdapter, SalesforceBulk

base = sys.argv[1]
tok = requests.post(f"{base}/services/oauth2/token", data={
    "grant_type": "password", "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret",
    "username": "admin@ferry.local", "password": "ferry"}).json()
bulk = SalesforceBulk(sessionId=tok["access_token"], host=base, API_version="59.0")

# insert with concurrency='Serial', CSV batches, results
job = bulk.create_insert_job("Account", contentType="CSV", concurrency="Serial")
assert bulk.job_state(job) == "Open"
rows = [{"Name": f"SFB {i}", "NumberOfEmployees": str(i)} for i in range(40)]
b1 = bulk.post_batch(job, CsvDictsAdapter(iter(rows[:20])))
b2 = bulk.post_batch(job, CsvDictsAdapter(iter(rows[20:] + [{"Name": "", "NumberOfEmployees": "1"}])))
bulk.close_job(job)
for b in (b1, b2):
    bulk.wait_for_batch(job, b, timeout=60, sleep_interval=0.05)
r1 = bulk.get_batch_results(b1, job)
assert len(r1) == 20 and all(r.success == "true" and r.created == "true" for r in r1), r1[:2]
r2 = bulk.get_batch_results(b2, job)
assert len(r2) == 21, r2
assert r2[-1].success == "false" and "REQUIRED_FIELD_MISSING" in r2[-1].error, r2[-1]
assert bulk.job_state(job) == "Closed"
batches = bulk.get_batch_list(job)
assert len(batches) == 2 and all(b["state"] == "Completed" for b in batches), batches

# query job: SOQL batch, result list, CSV result
job = bulk.create_query_job("Account", contentType="CSV")
batch = bulk.query(job, "SELECT Id, Name, NumberOfEmployees FROM Account WHERE Name LIKE 'SFB%'")
bulk.close_job(job)
while not bulk.is_batch_done(batch):
    pass
names = []
for result in bulk.get_all_results_for_query_batch(batch):
    for row in unicodecsv.DictReader(result, encoding="utf-8"):
        names.append(row["Name"])
assert len(names) == 40, names

# JSON job: batch info and results parsed by exact Content-Type
job = bulk.create_insert_job("Contact", contentType="JSON")
import json
batch = bulk.post_batch(job, json.dumps([{"LastName": "Json One"}, {"FirstName": "no last"}]))
bulk.wait_for_batch(job, batch, timeout=60, sleep_interval=0.05)
res = bulk.get_batch_results(batch, job)
assert res[0].success is True and res[1].success is False, res
bulk.close_job(job)
print("salesforce-bulk OK")
