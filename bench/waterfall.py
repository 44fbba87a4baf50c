#!/usr/bin/env python3
"""REST waterfall against one query.

A frontend without Fanout builds the dashboard from the REST services one call after another
(each call needs the previous answer, or is simply made in sequence, as a naive frontend
does): GET /users/1, /teams/{teamId}, /users/{lead_id}, /users/1/permissions,
/users/1/orders?limit=5, then /products/{productId} for each order. Every call pays the
simulated network round trip (--rtt-ms, slept before the call) plus the service's own latency.
The same client then sends the one Dashboard query to Fanout: one round trip.

Prints one line per run and a final `RESULT waterfall_ms=... fanout_ms=... ratio=...` line
with the medians.
"""

import argparse
import json
import statistics
import sys
import time
import urllib.request

DASHBOARD = """query Dashboard($id: ID!) {
  user(id: $id) {
    name email role
    team { name lead { name email } }
    permissions
    orders(first: 5) { id total status placedAt product { name price category } }
  }
}"""


def get(url, rtt):
    time.sleep(rtt)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def waterfall(users, orders, catalog, rtt):
    """The dashboard from REST, one call after another. Returns (data, number of calls)."""
    calls = 0

    def call(url):
        nonlocal calls
        calls += 1
        return get(url, rtt)

    user = call(f"{users}/users/1")
    team = call(f"{users}/teams/{user['teamId']}")
    lead = call(f"{users}/users/{team['lead_id']}")
    permissions = call(f"{users}/users/{user['id']}/permissions")
    user_orders = call(f"{orders}/users/{user['id']}/orders?limit=5")
    products = [call(f"{catalog}/products/{o['productId']}") for o in user_orders]
    data = {
        "name": user["name"],
        "team": {"name": team["name"], "lead": {"name": lead["name"]}},
        "permissions": permissions,
        "orders": [
            {"id": o["id"], "product": {"name": p["name"]}}
            for o, p in zip(user_orders, products)
        ],
    }
    return data, calls


def one_query(fanout, rtt):
    time.sleep(rtt)
    body = json.dumps({"query": DASHBOARD, "variables": {"id": "1"}}).encode()
    req = urllib.request.Request(
        fanout, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.load(resp)
    if answer.get("errors") or not answer.get("data", {}).get("user"):
        sys.exit(f"waterfall.py: the Dashboard query failed: {answer}")
    return answer["data"]["user"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", required=True)
    ap.add_argument("--orders", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--fanout", required=True, help="the /graphql URL")
    ap.add_argument("--rtt-ms", type=float, default=80.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rtt = args.rtt_ms / 1000.0

    rest_ms, gql_ms = [], []
    for run in range(1, args.runs + 1):
        t0 = time.perf_counter()
        rest, calls = waterfall(args.users, args.orders, args.catalog, rtt)
        t1 = time.perf_counter()
        gql = one_query(args.fanout, rtt)
        t2 = time.perf_counter()
        # Both must describe the same dashboard, or the comparison means nothing.
        same = (
            gql["name"] == rest["name"]
            and gql["team"]["name"] == rest["team"]["name"]
            and gql["team"]["lead"]["name"] == rest["team"]["lead"]["name"]
            and gql["permissions"] == rest["permissions"]
            and [(o["id"], o["product"]["name"]) for o in gql["orders"]]
            == [(o["id"], o["product"]["name"]) for o in rest["orders"]]
        )
        if not same:
            sys.exit(f"waterfall.py: REST and Fanout disagree:\n  REST   {rest}\n  Fanout {gql}")
        rest_ms.append((t1 - t0) * 1000)
        gql_ms.append((t2 - t1) * 1000)
        print(
            f"    run {run}: REST waterfall {calls} calls {rest_ms[-1]:7.1f} ms | "
            f"one Fanout query {gql_ms[-1]:6.1f} ms"
        )
    w, g = statistics.median(rest_ms), statistics.median(gql_ms)
    print(f"RESULT waterfall_ms={w:.1f} fanout_ms={g:.1f} ratio={w / g:.2f} calls={calls}")


if __name__ == "__main__":
    main()
