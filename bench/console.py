"""Latency of the web console's pages on a large database, and the
server's CPU per page.

Starts ``twistd nac`` with ``transports = pt-tls, http`` (bench/_http_server.py)
with ``--devices`` devices (10,000), each with one decided session, logs in
as a console user, then asks for each kind of page ``--rounds`` times in
turn on one keep-alive HTTPS connection: the device list (pages walking
the whole list), the device list filtered by last decision and by a name,
a device, the session list, a session, the overview.  Prints p50/p99 per
kind and the server's CPU time per page.  Figures only: nothing is asserted.

    python3 bench/console.py [--devices 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import http.client
import re
import ssl
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._http_server import HttpBenchServer  # noqa: E402
from bench._measure import level_figures, server_cpu_seconds  # noqa: E402


class Client:
    def __init__(self, port: int, context):
        self.connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read().decode()
        for line in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(line)
            self.cookies.update({k: m.value for k, m in jar.items() if m.value})
        return response.status, text

    def log_in(self, name: str, password: str) -> None:
        _, page = self.request("GET", "/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, _ = self.request("POST", "/console/login", {"csrf": csrf, "name": name, "password": password})
        if status != 303:
            raise RuntimeError(f"login failed: {status}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)

    bench = HttpBenchServer(args.devices, sessions=True)
    bench.admin("console-user", "add", "bench", "--role", "read", "--password", "bench-password")
    with bench:
        client = Client(bench.port, ssl.create_default_context(cafile=str(bench.server.ca)))
        client.log_in("bench", "bench-password")
        pages = max(1, args.devices // 50)
        kinds = {
            "device list": lambda n: f"/console/devices?page={n % pages + 1}",
            "devices by decision": lambda n: f"/console/devices?decision=isolate&page={n % 10 + 1}",
            "devices by name": lambda n: f"/console/devices?q={n:04x}",
            "device": lambda n: f"/console/devices/{n * 37 % max(args.devices, 1) + 1}",
            "session list": lambda n: f"/console/sessions?page={n % pages + 1}",
            "session": lambda n: f"/console/sessions/{n * 37 % max(args.devices, 1) + 1}",
            "overview": lambda n: "/console/overview",
        }
        timings: dict[str, list[float]] = {kind: [] for kind in kinds}
        failures = 0
        cpu_before = server_cpu_seconds(bench.server.proc.pid)
        for n in range(args.rounds):
            for kind, path in kinds.items():
                begun = time.monotonic()
                status, _ = client.request("GET", path(n))
                timings[kind].append(time.monotonic() - begun)
                failures += status != 200
        cpu = server_cpu_seconds(bench.server.proc.pid) - cpu_before
        count = sum(len(t) for t in timings.values())
        print(f"devices and sessions in the database: {args.devices}; {args.rounds} rounds, failures {failures}")
        for kind, values in timings.items():
            figures = level_figures(1, values, {}, sum(values))
            print(f"{kind:>20}: p50 {figures['p50_ms']:7.1f} ms, p99 {figures['p99_ms']:7.1f} ms")
        print(f"server CPU per page: {cpu / count * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
