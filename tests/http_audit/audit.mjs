// Runs the graphql-http GraphQL-over-HTTP audit suite against a running server.
//
//   node audit.mjs http://127.0.0.1:4000/graphql
//
// graphql-http classifies a failed audit by the first word of its name: a failed MUST is
// `error`, a failed SHOULD is `warn`, a failed MAY is `notice` (lib/audits/utils.js). This
// script prints every result and the counts per status, and exits 1 if any MUST or SHOULD
// audit failed (any `error` or `warn`); MAY audits are reported but never fail the run.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql endpoint URL>');
  process.exit(2);
}

const results = await auditServer({ url });

const order = { error: 0, warn: 1, notice: 2, ok: 3 };
results.sort((a, b) => order[a.status] - order[b.status] || a.id.localeCompare(b.id));

const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const r of results) {
  counts[r.status] += 1;
  console.log(`${r.status.padEnd(6)} ${r.id}  ${r.name}`);
  if (r.status !== 'ok') {
    console.log(`         reason: ${r.reason}`);
    const res = r.response;
    if (res) {
      let body = '';
      try {
        body = await res.text();
      } catch {
        // The audit may have read the body already.
      }
      const type = res.headers?.get('content-type') ?? '';
      console.log(`         got: ${res.status} ${type} ${body.slice(0, 300)}`);
    }
  }
}

console.log(
  `\ngraphql-http audit of ${url}: ` +
    `ok ${counts.ok}, notice ${counts.notice}, warn ${counts.warn}, error ${counts.error} ` +
    `(${results.length} audits)`,
);

if (counts.error > 0 || counts.warn > 0) {
  console.error('FAIL: a MUST (error) or SHOULD (warn) audit failed');
  process.exit(1);
}
