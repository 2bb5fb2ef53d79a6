"""RADIUS accounting (RFC 2866): nac beside FreeRADIUS, measured in one run.

    python bench/radius_accounting.py [--servers nac,freeradius] [--concurrency 1,16,64]
        [--duration 10] [--server HOST:PORT --secret S] [--json]

The load generator is this process: one UDP socket, K Accounting-Requests
in flight (each a Start, Interim-Update or Stop of its own session, signed
with the shared secret), a new one sent when an Accounting-Response comes
back (and checked).  Each server is loaded in turn, level by level; the
figures are completed requests per second, p50 / p99 latency and the
server's CPU time per request (utime + stime of its whole process tree,
/proc/PID/stat), the fair figure when client and server share the machine.

* nac: ``twistd -n nac`` (tests/nacserver.py), RADIUS with ``acct_port`` on
  127.0.0.1, its SQLite database in a temporary directory; each record is
  committed before the answer.
* FreeRADIUS: Debian's configuration copied into a temporary directory (as
  bench/radius_reference.py does), one ``acct`` listener on 127.0.0.1; its
  default accounting section (``detail`` file per NAS, ``unix`` radwtmp,
  ``exec``, ``attr_filter``) writes into the temporary directory.

``--server HOST:PORT`` loads any accounting server instead (no CPU figure).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import select
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import server_cpu_seconds  # noqa: E402
from bench.radius_reference import (  # noqa: E402
    FreeRadius,
    ServerUnavailable,
    Settings,
    _replace_listen_sections,
)

SECRET = "bench-accounting-secret"
TIMEOUT = 3.0


def _attr(t: int, value: bytes) -> bytes:
    return bytes((t, len(value) + 2)) + value


def accounting_request(identifier: int, number: int, secret: bytes) -> bytes:
    """Start, Interim-Update or Stop (by ``number``) of session ``number // 3``."""
    status = (1, 3, 2)[number % 3]
    session = number // 3
    attrs = (_attr(40, struct.pack(">I", status)) + _attr(44, b"bench-%08x" % session)
             + _attr(1, b"user%d" % (session % 1000)) + _attr(31, b"02-00-00-%02x-%02x-%02x" % (
                 (session >> 16) & 255, (session >> 8) & 255, session & 255))
             + _attr(30, b"AP-1:corp") + _attr(5, struct.pack(">I", session % 48))
             + _attr(4, bytes((127, 0, 0, 1))))
    if status != 1:
        attrs += (_attr(46, struct.pack(">I", 60)) + _attr(42, struct.pack(">I", 1000))
                  + _attr(43, struct.pack(">I", 2000)))
    head = bytes((4, identifier)) + struct.pack(">H", 20 + len(attrs))
    return head + hashlib.md5(head + bytes(16) + attrs + secret).digest() + attrs


def run_level(target: tuple[str, int], secret: bytes, concurrency: int, duration: float, first: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    in_flight: dict[int, tuple[float, bytes]] = {}
    free = list(range(min(concurrency, 256)))
    latencies: list[float] = []
    lost = bad = 0
    number = first
    end = time.monotonic() + duration

    def send(ident: int) -> None:
        nonlocal number
        data = accounting_request(ident, number, secret)
        number += 1
        in_flight[ident] = (time.monotonic(), data[4:20])
        sock.sendto(data, target)

    start = time.monotonic()
    while free and time.monotonic() < end:
        send(free.pop())
    while in_flight:
        now = time.monotonic()
        for ident, (sent, _auth) in list(in_flight.items()):
            if now - sent > TIMEOUT:
                del in_flight[ident]
                lost += 1
                if now < end:
                    send(ident)
        ready, _, _ = select.select([sock], [], [], 0.1)
        if not ready:
            continue
        while True:
            try:
                reply = sock.recv(4096)
            except BlockingIOError:
                break
            if len(reply) < 20 or reply[1] not in in_flight:
                continue
            sent, auth = in_flight.pop(reply[1])
            expected = hashlib.md5(reply[:4] + auth + reply[20:] + secret).digest()
            if reply[0] != 5 or reply[4:20] != expected:
                bad += 1
            else:
                latencies.append(time.monotonic() - sent)
            if time.monotonic() < end:
                send(reply[1])
    wall = time.monotonic() - start
    sock.close()
    latencies.sort()

    def pct(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else None

    return {"concurrency": concurrency, "completed": len(latencies), "rate": len(latencies) / wall,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "lost": lost, "bad": bad, "next": number}


class FreeRadiusAccounting(FreeRadius):
    """FreeRADIUS with one accounting listener on 127.0.0.1 and the bench's client."""

    def argv(self, executable: str) -> list[str]:
        argv = super().argv(executable)
        conf = self.dir / "raddb"
        (conf / "clients.conf").write_text(
            "client bench {\n\tipaddr = 127.0.0.1\n" f"\tsecret = {SECRET}\n" "}\n")
        return argv

    def _write_listeners(self, conf: Path) -> None:
        ours = f"listen {{\n\ttype = acct\n\tipaddr = 127.0.0.1\n\tport = {self.port}\n}}\n"
        for site, replacement in (("default", ours), ("inner-tunnel", "")):
            path = conf / "sites-available" / site
            text, found = _replace_listen_sections(path.read_text(), replacement)
            if site == "default" and not found:
                raise ServerUnavailable("no listen section in sites-available/default")
            path.write_text(text)


class NacAccounting:
    name = "nac"

    def __init__(self, workdir: Path, workers: str):
        from tests.nacserver import NacServer, free_port
        self.port = free_port(socket.SOCK_DGRAM)
        (workdir / "nac").mkdir()
        self.server = NacServer({
            "nac": {"transports": "radius", "imvs": ""},
            "radius": {"listen": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "acct_port": self.port,
                       "secret": SECRET, "clients": "127.0.0.1/32", "workers": workers,
                       "acct_rate_per_nas": "1000000", "acct_rate": "1000000", "acct_max_pending": "4096"},
        }, workdir=str(workdir / "nac"), ready="RADIUS accounting server listening")
        self.server.admin("init")
        self.version_text = "nac"

    def start(self) -> None:
        self.server.start()

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def stop(self) -> None:
        self.server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="nac,freeradius")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--nac-workers", default="1")
    parser.add_argument("--server", help="HOST:PORT of another accounting server (no CPU figure)")
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    levels = [int(x) for x in ns.concurrency.split(",")]
    report = []
    print(f"{'server':<12} {'K':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU/req':>10} {'lost':>5}",
          flush=True)

    def load(name: str, target, pid):
        number = 0
        for k in levels:
            before = server_cpu_seconds(pid) if pid else None
            r = run_level(target, ns.secret.encode(), k, ns.duration, number)
            number = r.pop("next")
            if pid:
                r["cpu_ms_per_request"] = (server_cpu_seconds(pid) - before) * 1000 / max(1, r["completed"])
            r["server"] = name
            report.append(r)
            cpu = f"{r['cpu_ms_per_request']:.3f} ms" if pid else "-"
            print(f"{name:<12} {k:>4} {r['rate']:>9.0f} {r['p50_ms'] or 0:>8.2f} {r['p99_ms'] or 0:>8.2f} "
                  f"{cpu:>10} {r['lost']:>5}", flush=True)

    if ns.server:
        host, _, port = ns.server.rpartition(":")
        load(ns.server, (host.strip("[]"), int(port)), None)
    else:
        with tempfile.TemporaryDirectory(prefix="nac-bench-acct-") as tmp:
            workdir = Path(tmp)
            for name in ns.servers.split(","):
                try:
                    if name == "nac":
                        server = NacAccounting(workdir, ns.nac_workers)
                    else:
                        settings = Settings(workdir, inner="md5", tls_version="1.2", fragment_size=1024,
                                            key_type="ecdsa")
                        server = FreeRadiusAccounting(settings)
                    server.start()
                except ServerUnavailable as exc:
                    print(f"{name}: skipped: {exc}", file=sys.stderr)
                    continue
                try:
                    time.sleep(0.5)
                    load(name, ("127.0.0.1", server.port), server.pid)
                finally:
                    server.stop()
    if ns.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
