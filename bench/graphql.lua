-- wrk script: POSTs one GraphQL request body (JSON) read from the file named by
-- $BENCH_BODY_FILE, and counts responses whose body carries a GraphQL "errors" key, so errors
-- under load show up (wrk itself only counts non-2xx statuses and socket errors).

local path = os.getenv("BENCH_BODY_FILE") or error("BENCH_BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  responses = 0
  gql_errors = 0
  no_data = 0
end

function response(status, headers, body)
  responses = responses + 1
  if body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
  end
  if not body:find('"data":{', 1, true) then
    no_data = no_data + 1
  end
end

function done(summary, latency, requests)
  local r, e, n = 0, 0, 0
  for _, t in ipairs(threads) do
    r = r + t:get("responses")
    e = e + t:get("gql_errors")
    n = n + t:get("no_data")
  end
  io.write(string.format("BENCH responses=%d graphql_errors=%d no_data=%d\n", r, e, n))
end
