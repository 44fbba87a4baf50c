#!/usr/bin/env bash
# The GraphQL-over-HTTP conformance audit: starts `fanout --demo` on a free loopback port,
# runs the graphql-http audit suite against it (audit.mjs), stops Fanout, and exits with the
# audit's status (non-zero if any MUST or SHOULD audit fails).
#
#   bash tests/http_audit/run.sh
#
# Needs node (>= 18) and npm; installs the pinned audit suite with `npm ci` on first use.
# FANOUT_BIN overrides the binary (default: target/debug/fanout, built if out of date).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [[ -n "${FANOUT_BIN:-}" ]]; then
  bin="$FANOUT_BIN"
else
  # A no-op after `cargo build`/`cargo test`; never audit a stale binary.
  cargo build --quiet --bin fanout
  bin="$root/target/debug/fanout"
fi
[[ -x "$bin" ]] || { echo "http_audit: no executable at $bin" >&2; exit 1; }

if [[ ! -d "$here/node_modules" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

# A free port: bind port 0, read it, release it.
port="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
base="http://127.0.0.1:$port"
log="$(mktemp "${TMPDIR:-/tmp}/fanout-http-audit.XXXXXX")"

"$bin" --demo --demo-latency 0ms --schema "$root/schema.graphql" --listen "127.0.0.1:$port" \
  >"$log" 2>&1 &
fanout_pid=$!
cleanup() {
  kill "$fanout_pid" 2>/dev/null || true
  wait "$fanout_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

# Wait for /readyz: at most 30 s, and stop early if Fanout exits.
ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$fanout_pid" 2>/dev/null; then
    break
  fi
  if node -e '
    fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));
  ' "$base/readyz"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  if kill -0 "$fanout_pid" 2>/dev/null; then
    echo "http_audit: Fanout was not ready on $base within 30 s; its output:" >&2
  else
    echo "http_audit: Fanout exited before it was ready on $base; its output:" >&2
  fi
  cat "$log" >&2
  exit 1
fi

status=0
node "$here/audit.mjs" "$base/graphql" || status=$?
if [[ $status -ne 0 ]]; then
  echo "http_audit: Fanout's output:" >&2
  cat "$log" >&2
fi
exit "$status"
