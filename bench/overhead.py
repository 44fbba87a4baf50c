#!/usr/bin/env python3
"""Gateway overhead at low load, from the queries' own traces.

Sends the Dashboard query N times, one after another on one keep-alive connection, with
`x-fanout-trace: 1`. For each query the trace gives every upstream call's start and duration
(as Fanout saw them, since the request began). The time covered by at least one upstream call
in flight is the critical path of upstream latency for that query; the rest of the
client-measured time is overhead: Fanout's own work before, between and after the calls,
plus the client's round trip to Fanout on loopback.

For scale it also times two requests sent after the same idle time as the client spends
waiting on a dashboard query (--idle-ms): a GraphQL query that calls no upstream
(--floor-body), and a GET of an HTTP endpoint that does no work (--floor-url, the demo
services' call counter). On a small virtual machine, waking an idle process costs a
noticeable part of a millisecond, and every request pays it, whatever the server.

Prints the medians and a final `RESULT total_ms=... critical_ms=... overhead_ms=...
overhead_p90_ms=... floor_ms=...` line.
"""

import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse


def covered_ms(calls):
    """Length of the union of the calls' [start, start + duration] intervals."""
    spans = sorted(
        (c["startMs"], c["startMs"] + c["durationMs"])
        for c in calls
        if not c.get("deduplicated")
    )
    total, end = 0.0, None
    start = None
    for s, e in spans:
        if end is None or s > end:
            if end is not None:
                total += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if end is not None:
        total += end - start
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fanout", required=True, help="the /graphql URL")
    ap.add_argument("--body", required=True, help="a JSON file with the request body")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--floor-body", required=True, help="a query that calls no upstream")
    ap.add_argument("--floor-url", required=True, help="an HTTP endpoint that does no work")
    ap.add_argument("--idle-ms", type=float, default=60, help="idle time before each floor query")
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.fanout)
    body = open(args.body, "rb").read()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"content-type": "application/json", "x-fanout-trace": "1"}
    totals, criticals, overheads = [], [], []
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        conn.request("POST", url.path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        total = (time.perf_counter() - t0) * 1000
        doc = json.loads(data)
        if resp.status != 200 or doc.get("errors"):
            sys.exit(f"query failed ({resp.status}): {data[:500]!r}")
        calls = doc.get("extensions", {}).get("fanout", {}).get("calls")
        if not calls:
            sys.exit("no trace in the answer: is the trace allowed (--profile development)?")
        if i < args.warmup:
            continue
        critical = covered_ms(calls)
        totals.append(total)
        criticals.append(critical)
        overheads.append(total - critical)

    def after_idle(c, method, path, body, headers):
        """Median round trip of a request sent after --idle-ms of idle time."""
        times = []
        for i in range(args.warmup + args.runs):
            time.sleep(args.idle_ms / 1000)
            t0 = time.perf_counter()
            c.request(method, path, body, headers)
            resp = c.getresponse()
            data = resp.read()
            if resp.status != 200 or b'"errors"' in data:
                sys.exit(f"{method} {path} failed ({resp.status}): {data[:500]!r}")
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    floor_body = open(args.floor_body, "rb").read()
    floor = after_idle(conn, "POST", url.path, floor_body, {"content-type": "application/json"})
    bare_url = urllib.parse.urlsplit(args.floor_url)
    bare_conn = http.client.HTTPConnection(bare_url.hostname, bare_url.port, timeout=10)
    bare = after_idle(bare_conn, "GET", bare_url.path, None, {})

    def p(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    med = statistics.median
    print(f"  {args.runs} queries, one at a time: median total {med(totals):.2f} ms, "
          f"critical path of upstream calls {med(criticals):.2f} ms, "
          f"overhead {med(overheads):.2f} ms (p90 {p(overheads, 0.9):.2f} ms)")
    print(f"  after {args.idle_ms:.0f} ms idle, a GraphQL query that calls no upstream takes "
          f"{floor:.2f} ms; a GET of an endpoint that does nothing {bare:.2f} ms")
    print(f"RESULT total_ms={med(totals):.2f} critical_ms={med(criticals):.2f} "
          f"overhead_ms={med(overheads):.2f} overhead_p90_ms={p(overheads, 0.9):.2f} "
          f"floor_ms={floor:.2f} bare_ms={bare:.2f}")


if __name__ == "__main__":
    main()
