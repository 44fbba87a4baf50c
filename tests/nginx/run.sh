#!/usr/bin/env bash
# Fanout behind a real nginx (Debian's package): `fanout --demo --path-prefix /gw
# --trusted-proxy 127.0.0.1` on a free loopback port, nginx in front of it on another, and
# through nginx: the dashboard query, /gw/readyz, nginx's request id reaching Fanout, Fanout
# seeing the client nginx names in X-Forwarded-For, and a drain on SIGTERM (/gw/readyz 503
# while the in-flight query still completes).
#
#   bash tests/nginx/run.sh
#
# Needs curl and python3; installs nginx with apt-get when missing (as root).
# FANOUT_BIN overrides the binary (default: target/debug/fanout, built if out of date).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

if [[ -n "${FANOUT_BIN:-}" ]]; then
  bin="$FANOUT_BIN"
else
  cargo build --quiet --bin fanout
  bin="$root/target/debug/fanout"
fi
[[ -x "$bin" ]] || { echo "nginx: no executable at $bin" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d "${TMPDIR:-/tmp}/fanout-nginx.XXXXXX")"
fanout_pid=""
nginx_pid=""
cleanup() {
  [[ -n "$nginx_pid" ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  [[ -n "$fanout_pid" ]] && kill "$fanout_pid" 2>/dev/null && wait "$fanout_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "nginx: FAIL: $*" >&2
  echo "--- fanout's output:" >&2
  cat "$work/fanout.log" >&2 || true
  echo "--- nginx's error log:" >&2
  cat "$work/error.log" >&2 || true
  exit 1
}

# Polls URL until it answers 200, for at most 30 s; fails early if PID exits.
wait_ok() {
  local url="$1" pid="$2" name="$3"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || fail "$name exited before $url answered"
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  fail "$url did not answer 200 within 30 s"
}

fanout_port="$(free_port)"
nginx_port="$(free_port)"

# 500 ms per upstream call makes the dashboard query slow enough to be in flight at SIGTERM;
# the debug log of fanout::http::edge shows each request's client address.
RUST_LOG="info,fanout::http::edge=debug" "$bin" --demo --demo-latency 500ms \
  --schema "$root/schema.graphql" --listen "127.0.0.1:$fanout_port" --path-prefix /gw \
  --trusted-proxy 127.0.0.1 --drain-delay 1s --drain-grace 10s --log-format json \
  >"$work/fanout.log" 2>&1 &
fanout_pid=$!

mkdir -p "$work/tmp"
cat >"$work/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 64; }
http {
  access_log $work/access.log;
  client_body_temp_path $work/tmp/body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location /gw/ {
      proxy_pass http://127.0.0.1:$fanout_port;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Nginx-Request-Id \$request_id always;
    }
  }
}
EOF
"$nginx_bin" -e "$work/error.log" -c "$work/nginx.conf" -p "$work" 2>>"$work/error.log" &
nginx_pid=$!

gw="http://127.0.0.1:$nginx_port/gw"
wait_ok "http://127.0.0.1:$fanout_port/gw/readyz" "$fanout_pid" fanout
wait_ok "$gw/healthz" "$nginx_pid" nginx

# 1. /gw/readyz through nginx.
ready="$(curl -s -w '\n%{http_code}' "$gw/readyz")"
[[ "$(tail -n1 <<<"$ready")" == 200 ]] || fail "/gw/readyz: $ready"
grep -q '"status":"ready"' <<<"$ready" || fail "/gw/readyz body: $ready"
echo "ok: /gw/readyz through nginx is 200 ready"

# 2. The dashboard query; nginx's $request_id is what Fanout echoes. The client connects from
#    127.0.0.2 (not trusted; only nginx's 127.0.0.1 is) and forges X-Forwarded-For: nginx
#    appends 127.0.0.2, and Fanout takes that, the right-most untrusted hop, as the client.
query='{"query":"query Dashboard($id: ID!) { user(id: $id) { name email role team { name lead { name email } } permissions orders(first: 5) { id total status placedAt product { name price category } } } }","variables":{"id":"1"}}'
curl -s --interface 127.0.0.2 -D "$work/h1" -o "$work/b1" -H 'content-type: application/json' \
  -H 'x-forwarded-for: 198.51.100.7' --data "$query" "$gw/graphql"
python3 - "$work/h1" "$work/b1" "$work/fanout.log" <<'PY' || fail "dashboard query through nginx"
import json, sys
head = {}
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].split()[1] == "200", lines[0]
for line in lines[1:]:
    if ":" in line:
        k, v = line.split(":", 1)
        head[k.strip().lower()] = v.strip()
body = json.load(open(sys.argv[2]))
assert "errors" not in body, body
user = body["data"]["user"]
assert user["name"] and user["team"]["lead"]["name"], user
assert len(user["orders"]) == 5 and all(o["product"]["name"] for o in user["orders"]), user
nginx_id, fanout_id = head.get("x-nginx-request-id"), head.get("x-request-id")
assert nginx_id and len(nginx_id) == 32, head
assert fanout_id == nginx_id, f"Fanout echoed {fanout_id!r}, nginx sent {nginx_id!r}"
done = [json.loads(l) for l in open(sys.argv[3]) if l.startswith("{")]
done = [l for l in done if l.get("fields", {}).get("message") == "request done"
        and l.get("span", {}).get("id") == nginx_id]
assert done, "no request-done log line for " + nginx_id
span = done[0]["span"]
# The span names the path as the client sent it, prefix included, as nginx's own log does.
assert span["path"] == "/gw/graphql", span
assert span["client"] == "127.0.0.2", f"forged X-Forwarded-For believed: {span}"
print("ok: dashboard query through nginx; x-request-id", nginx_id, "reached Fanout; client", span["client"])
PY

# 3. Drain: a slow query in flight, then SIGTERM. During --drain-delay, /gw/readyz through
#    nginx is 503 while Fanout still serves; the in-flight query completes with data.
#    The dashboard query takes three rounds of 500 ms upstream calls, so 300 ms after it is
#    sent it is in flight; the log proves it afterwards (it started before the drain did).
curl -s -D "$work/h2" -o "$work/b2" -H 'content-type: application/json' \
  --data "$query" "$gw/graphql" &
slow_pid=$!
sleep 0.3
kill -TERM "$fanout_pid"
saw_503=""
code=""
for _ in $(seq 1 20); do
  code="$(curl -s -o "$work/b3" -w '%{http_code}' "$gw/readyz")"
  if [[ "$code" == 503 ]]; then
    grep -q '"status":"draining"' "$work/b3" || fail "/gw/readyz 503 body: $(cat "$work/b3")"
    saw_503=1
    break
  fi
  sleep 0.05
done
[[ -n "$saw_503" ]] || fail "/gw/readyz through nginx never turned 503 after SIGTERM (last: $code)"
echo "ok: /gw/readyz through nginx is 503 draining after SIGTERM"
wait "$slow_pid" || fail "the in-flight query's curl failed"
wait "$fanout_pid" && fanout_status=0 || fanout_status=$?
fanout_pid=""
[[ $fanout_status == 0 ]] || fail "fanout exited with $fanout_status after draining"
python3 - "$work/h2" "$work/b2" "$work/fanout.log" <<'PY' || fail "the query in flight at SIGTERM"
import json, sys
from datetime import datetime
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].split()[1] == "200", lines[0]
rid = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("x-nginx-request-id:")][0]
body = json.load(open(sys.argv[2]))
assert "errors" not in body and len(body["data"]["user"]["orders"]) == 5, body
log = [json.loads(l) for l in open(sys.argv[3]) if l.startswith("{")]
ts = lambda l: datetime.fromisoformat(l["timestamp"].replace("Z", "+00:00")).timestamp()
drain = [l for l in log if l["fields"].get("message", "").startswith("draining: /readyz is 503")]
assert drain, "no drain line in the log"
done = [l for l in log if l["fields"].get("message") == "request done"
        and l.get("span", {}).get("id") == rid]
assert done, "no request-done line for " + rid
started = ts(done[0]) - done[0]["fields"]["ms"] / 1000
assert started < ts(drain[0]), f"the query started {started - ts(drain[0]):.3f} s after the drain"
assert ts(done[0]) > ts(drain[0]), "the query was not in flight at SIGTERM"
print(f"ok: the query in flight at SIGTERM ({done[0]['fields']['ms']} ms) completed with data")
PY
grep -q 'drained; bye' "$work/fanout.log" || fail "no 'drained; bye' in Fanout's log"
echo "ok: Fanout drained and exited 0"
echo "nginx: all checks passed"
