#!/usr/bin/env bash
# GraphiQL in a real browser, without the internet: fetches GraphiQL's assets (assets.sh),
# starts `fanout --demo --graphiql-dir DIR --path-prefix /gw` on a free loopback port, and runs
# graphiql.mjs, which types the dashboard query into GraphiQL, runs it, waits for the answer,
# and fails if the page tried to reach anything but 127.0.0.1.
#
#   bash tests/browser/run.sh            # screenshot in /tmp/graphiql.png (SCREENSHOT=...)
#
# Needs node (>= 18), npm and Chromium at /usr/bin/chromium (Debian: apt-get install chromium;
# CHROMIUM=... for another). FANOUT_BIN overrides the binary (default: target/debug/fanout,
# built if out of date).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if [[ -n "${FANOUT_BIN:-}" ]]; then
  bin="$FANOUT_BIN"
else
  cargo build --quiet --bin fanout
  bin="$root/target/debug/fanout"
fi
[[ -x "$bin" ]] || { echo "browser: no executable at $bin" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fanout-browser.XXXXXX")"
fanout_pid=""
cleanup() {
  if [[ -n "$fanout_pid" ]]; then
    kill "$fanout_pid" 2>/dev/null || true
    wait "$fanout_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

bash "$here/assets.sh" "$work/assets" >/dev/null

# A free port: bind port 0, read it, release it.
port="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
base="http://127.0.0.1:$port/gw"
log="$work/fanout.log"

"$bin" --demo --demo-latency 0ms --schema "$root/schema.graphql" --listen "127.0.0.1:$port" \
  --path-prefix /gw --graphiql-dir "$work/assets" >"$log" 2>&1 &
fanout_pid=$!

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
  echo "browser: Fanout was not ready on $base (or exited); its output:" >&2
  cat "$log" >&2
  exit 1
fi

status=0
node "$here/graphiql.mjs" "$base/graphql" "${SCREENSHOT:-/tmp/graphiql.png}" || status=$?
if [[ $status -ne 0 ]]; then
  echo "browser: Fanout's output:" >&2
  cat "$log" >&2
fi
exit "$status"
