// jsforce (unpatched) against the emulator over plain http.
// Usage: node jsforce_check.js http://127.0.0.1:PORT /path/to/node_modules
const assert = require('assert');
const base = process.argv[2];
const jsforce = require(require('path').join(process.argv[3], 'jsforce'));

const creds = { clientId: 'ferry-emulator', clientSecret: 'ferry-emulator-secret', loginUrl: base };

async function main() {
  // OAuth password flow
  const conn = new jsforce.Connection({ loginUrl: base, oauth2: creds, version: '59.0' });
  const info = await conn.login('admin@ferry.local', 'ferry');
  assert.ok(info.id.startsWith('005'), JSON.stringify(info));
  assert.ok(info.organizationId.startsWith('00D'));
  assert.strictEqual(conn.instanceUrl, base);

  // describe
  const d = await conn.sobject('Account').describe();
  assert.strictEqual(d.name, 'Account');
  const g = await conn.describeGlobal();
  assert.ok(g.sobjects.some((o) => o.name === 'Lead'));

  // CRUD
  const ret = await conn.sobject('Account').create({ Name: 'From jsforce' });
  assert.ok(ret.success && ret.id.startsWith('001'), JSON.stringify(ret));
  const rec = await conn.sobject('Account').retrieve(ret.id);
  assert.strictEqual(rec.Name, 'From jsforce');
  const up = await conn.sobject('Account').update({ Id: ret.id, Name: 'Updated' });
  assert.ok(up.success, JSON.stringify(up));
  assert.strictEqual((await conn.sobject('Account').retrieve(ret.id)).Name, 'Updated');
  const del = await conn.sobject('Account').destroy(ret.id);
  assert.ok(del.success, JSON.stringify(del));

  // query with paging (autoFetch follows nextRecordsUrl's locator)
  await fetch(`${base}/__emulator/generate/Account`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ count: 2500, fields: { Name: 'JS {n}' } }) });
  const first = await conn.query('SELECT Id, Name FROM Account');
  assert.strictEqual(first.done, false);
  assert.strictEqual(first.records.length, 2000);
  const all = await conn.query('SELECT Id FROM Account', { autoFetch: true, maxFetch: 10000 });
  assert.strictEqual(all.totalSize, 2500);
  assert.strictEqual(all.records.length, 2500);

  // web-server flow: consent page, Allow, code exchange
  const oauth2 = new jsforce.OAuth2({ ...creds, redirectUri: 'http://localhost:9/callback' });
  const authUrl = oauth2.getAuthorizationUrl({ state: 'st-1', scope: 'api refresh_token' });
  const page = await fetch(authUrl);
  const html = await page.text();
  assert.ok(html.includes('Allow'), html);
  const form = new URLSearchParams(new URL(authUrl).search);
  form.set('approve', 'allow');
  const allow = await fetch(`${base}/services/oauth2/authorize`, { method: 'POST', body: form, redirect: 'manual' });
  assert.strictEqual(allow.status, 302);
  const loc = new URL(allow.headers.get('location'));
  assert.strictEqual(loc.searchParams.get('state'), 'st-1');
  const conn2 = new jsforce.Connection({ oauth2, version: '59.0' });
  await conn2.authorize(loc.searchParams.get('code'));
  assert.ok(conn2.refreshToken, 'refresh token expected');

  // refresh on expiry: every session dies, jsforce refreshes and retries by itself
  const before = conn2.accessToken;
  let refreshed = false;
  conn2.on('refresh', () => { refreshed = true; });
  await fetch(`${base}/__emulator/faults/expireSessions`, { method: 'POST' });
  const users = await conn2.query('SELECT Id, Username FROM User');
  assert.strictEqual(users.totalSize, 1);
  assert.ok(refreshed && conn2.accessToken !== before, 'expected a token refresh');
  // SOAP login (no client secret)
  const soap = new jsforce.Connection({ loginUrl: base, version: '59.0' });
  const si = await soap.login('admin@ferry.local', 'ferry');
  assert.strictEqual(si.organizationId, info.organizationId);
  assert.strictEqual((await soap.query('SELECT Id FROM User')).totalSize, 1);
  console.log('jsforce OK');
}

main().catch((e) => { console.error(e); process.exit(1); });
