#!/usr/bin/env bash
# `/metrics` against Prometheus' own checker: `fanout --demo` on a free loopback port, traffic
# that includes refusals before execution (400, 405, 413, 415, 431) and an upstream failure,
# then `promtool check metrics` on the text format and on OpenMetrics.
#
#   bash tests/metrics/run.sh
#
# Needs curl and python3; installs Debian's `prometheus` package (for promtool) with apt-get
# when missing (as root). FANOUT_BIN overrides the binary (default: target/debug/fanout).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v promtool >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [[ -n "${FANOUT_BIN:-}" ]]; then
  bin="$FANOUT_BIN"
else
  cargo build --quiet --bin fanout
  bin="$root/target/debug/fanout"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d "${TMPDIR:-/tmp}/fanout-metrics.XXXXXX")"
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The demo's own services, on free ports too (FANOUT_* variables of the caller do not leak in).
env -u RUST_LOG $(env | sed -n 's/^\(FANOUT_[A-Z_]*\)=.*/-u \1/p') \
  "$bin" --demo --demo-latency 0ms --listen "127.0.0.1:$port" --max-body-bytes 2000 \
  >"$work/fanout.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 200); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/fanout.log"; exit 1; }
  sleep 0.05
done

post() { curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/graphql" "$@"; }
expect() { # want got what
  [[ "$1" == "$2" ]] || { echo "metrics: $3 answered $2, not $1" >&2; exit 1; }
}
json=(-H 'content-type: application/json')
expect 200 "$(post "${json[@]}" -d '{"query":"{ user(id: \"1\") { name team { name } } }"}')" "a query"
expect 200 "$(post "${json[@]}" -d '{"query":"{ user(id: \"nope\") { name } }"}')" "a query with an upstream error"
expect 400 "$(post "${json[@]}" -d '{')" "malformed JSON"
expect 415 "$(post -H 'content-type: text/plain' -d '{}')" "a text/plain POST"
big="$(python3 -c 'print("{\"query\": \"" + "x" * 4000 + "\"}")')"
expect 413 "$(post "${json[@]}" -d "$big")" "a body over --max-body-bytes"
expect 405 "$(curl -sS -o /dev/null -w '%{http_code}' "$base/graphql?query=mutation%7Bx%7D")" "a GET mutation"
huge="x-huge: $(python3 -c 'print("h" * 70000)')"
expect 431 "$(curl -sS -o /dev/null -w '%{http_code}' -H "$huge" "$base/graphql")" "a huge header"
expect 404 "$(curl -sS -o /dev/null -w '%{http_code}' "$base/nowhere")" "an unknown path"

curl -fsS "$base/metrics" >"$work/metrics.txt"
curl -fsS -H 'accept: application/openmetrics-text; version=1.0.0' "$base/metrics" >"$work/metrics.om"
for want in 'route="/graphql",status="413"' 'route="/graphql",status="415"' 'route="/graphql",status="405"' \
  'route="/graphql",status="400"' 'route="none",status="431"' 'route="other",status="404"'; do
  grep -q "^fanout_http_responses_total{$want" "$work/metrics.txt" ||
    { echo "metrics: no fanout_http_responses_total{$want...}" >&2; cat "$work/metrics.txt" >&2; exit 1; }
done
promtool check metrics <"$work/metrics.txt"
# promtool lints the text format only; OpenMetrics is the same samples with counter families
# named without `_total`, and an end marker.
tail -n 1 "$work/metrics.om" | grep -qx '# EOF' || { echo "metrics: OpenMetrics does not end with # EOF" >&2; exit 1; }
grep -q '^# TYPE fanout_http_responses counter$' "$work/metrics.om" ||
  { echo "metrics: OpenMetrics counter family not renamed" >&2; exit 1; }
echo "metrics: promtool check metrics passed on $(grep -c '^[a-z]' "$work/metrics.txt") samples"
