"""Requests/s of the HTTP API listing devices, and the server's CPU per request.

Starts ``twistd nac`` with ``transports = pt-tls, http`` in a temporary
directory (SQLite, demo certificates), writes ``--devices`` devices (10,000)
straight into its database, makes an API token, then keeps ``--concurrency``
keep-alive HTTPS connections asking for pages of ``GET /api/devices``
(``--limit`` devices a page, offsets walking the whole list) for
``--duration`` seconds.  Prints requests/s, p50/p99 latency and the
server's CPU time per request over its process tree (``/proc``, as the
other benches measure it).  Figures only: nothing is asserted.

    python3 bench/http_api.py [--devices 10000] [--limit 50] [--duration 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import server_cpu_seconds  # noqa: E402
from bench._http_server import HttpBenchServer  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)

    bench = HttpBenchServer(args.devices)
    server, port = bench.server, bench.port
    token = json.loads(bench.admin("--json", "token", "add", "bench", "--role", "read"))["token"]
    with bench:
        context = ssl.create_default_context(cafile=str(server.ca))
        latencies: list[float] = []
        failures = [0]
        stop = time.monotonic() + args.duration
        lock = threading.Lock()

        def client(worker: int) -> None:
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
            offset = worker * args.limit
            mine = []
            while time.monotonic() < stop:
                begun = time.monotonic()
                connection.request("GET", f"/api/devices?limit={args.limit}&offset={offset}",
                                   headers={"Authorization": f"Bearer {token}"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or len(json.loads(body)["items"]) == 0:
                    failures[0] += 1
                mine.append(time.monotonic() - begun)
                offset = (offset + args.limit * args.concurrency) % max(args.devices, 1)
            with lock:
                latencies.extend(mine)

        cpu_before = server_cpu_seconds(server.proc.pid)
        begun = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - begun
        cpu = server_cpu_seconds(server.proc.pid) - cpu_before
        latencies.sort()
        n = len(latencies)
        print(f"devices in the database: {args.devices}, page size {args.limit}, {args.concurrency} connections")
        print(f"requests: {n} in {wall:.1f} s = {n / wall:.1f} requests/s, failures {failures[0]}")
        if n:
            print(f"latency p50 {latencies[n // 2] * 1000:.1f} ms, p99 {latencies[min(n - 1, n * 99 // 100)] * 1000:.1f} ms")
            print(f"server CPU per request: {cpu / n * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
