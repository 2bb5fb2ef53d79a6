"""Three nac instances (real ``twistd nac`` processes) on one PostgreSQL
database under load: one instance killed (-9) and started again, the
database stopped and started again; then every decision a client got is
in the database, with that decision, by the instance that made it, and no
session is left open.

The clients are nac's own (PT-TLS with a client certificate, RADIUS
EAP-TTLS/PAP with PT-EAP), each assessment reporting a Device ID of its
own, which names its session row.  The database is a private PostgreSQL
server of this test's (tests/postgres.py), stopped with ``pg_ctl -m fast``
(what a restart does to the sessions).  Progress, not time, moves the test
from one phase to the next; what it measured is printed.
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from nac import certs
from nac.client.pt_tls import AssessmentError, client_tls_options, run_assessment
from nac.client.radius import authenticate
from nac.db.engine import make_engine, upgrade
from nac.db.models import INTERRUPTED
from nac.db.store import PolicyDb
from nac.eap.peer import EapPeer, PeerSettings
from nac.eap.tls import peer_context
from tests.nacserver import NacServer, free_port, private_postgres_schema
from tests.postgres import PostgresUnavailable, private_cluster
from tests.test_collectors import SWIMA_PACKAGES, Host

PASSWORD = "carol's password"
SECRET = "scale-out-nas-secret"
ACCESS = {"Access Allowed": "allowed", "Access Denied": "denied", "Quarantined": "isolate"}
#: The test gives up after this long (it takes 20-50 s on two busy cores).
DEADLINE = 120.0


class Load:
    """Clients assessing in loops until stopped, each assessment reporting
    a Device ID of its own; ``records`` say what each one got."""

    def __init__(self, testcase, host: Host, tls, ca: Path, pt_tls: dict, radius: dict):
        self.tc = testcase
        self.host, self.tls, self.ca = host, tls, ca
        self.pt_tls, self.radius = pt_tls, radius  # instance -> port
        self.numbers = itertools.count(1)
        self.records: list[dict] = []
        self.running = True
        self.loops: list[defer.Deferred] = []

    def start(self, per_target: int = 1) -> None:
        for instance in self.pt_tls:
            for _ in range(per_target):
                self.loops.append(defer.ensureDeferred(self._loop("pt-tls", instance)))
        self.loops.append(defer.ensureDeferred(self._loop("radius", None)))

    def decided(self, instance: str | None = None, after: int = 0) -> int:
        return sum(1 for r in self.records[after:] if r["access"] and (instance is None or r["instance"] == instance))

    async def stop(self) -> None:
        self.running = False
        await defer.gatherResults(self.loops)

    async def _loop(self, transport: str, instance: str | None) -> None:
        radius_targets = itertools.cycle(sorted(self.radius))
        while self.running:
            n = next(self.numbers)
            device = f"scale-device-{n:05d}"
            imc = self.host.os_imc(device_id=device)
            record = {"n": n, "device": device, "transport": transport, "access": None, "error": None}
            try:
                if transport == "pt-tls":
                    record["instance"] = instance
                    outcome = await run_assessment(reactor, "127.0.0.1", self.pt_tls[instance], tls_options=self.tls,
                                                   collectors=[imc], timeout=30)
                else:
                    record["instance"] = next(radius_targets)
                    peer = EapPeer(PeerSettings(identity="carol", password=PASSWORD, inner="pap",
                                                tls_context=peer_context(cacert=self.ca), imcs=(imc,)))
                    result = await authenticate(reactor, "127.0.0.1", self.radius[record["instance"]],
                                                SECRET.encode(), peer, timeout=30)
                    outcome = result.posture
                if outcome is not None and outcome.completed:
                    record["access"] = ACCESS[outcome.recommendation_label]
                else:
                    record["error"] = getattr(outcome, "error", None) or "no posture decision"
            except AssessmentError as exc:
                record["error"] = str(exc)
            self.records.append(record)
            if record["error"]:
                await task.deferLater(reactor, 0.1, lambda: None)  # a refused port: not a busy loop


class ScaleOutTests(unittest.TestCase):
    timeout = DEADLINE + 60

    def setUp(self):
        try:
            self.cluster = private_cluster()
        except PostgresUnavailable as why:
            raise unittest.SkipTest(str(why))
        self.started = time.monotonic()
        self.url, drop = private_postgres_schema(self.cluster.url, "nac_scale")
        self.addCleanup(drop)
        self.addCleanup(self.cluster.ensure_running)
        self.work = Path(tempfile.mkdtemp(prefix="nac-scale-"))
        self.addCleanup(shutil.rmtree, self.work, True)
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.addCleanup(self.engine.dispose)
        PolicyDb(self.engine).add_user("carol", PASSWORD)
        state = self.work / "state"  # shared: the same certificates and secret key everywhere
        pki = certs.ensure_demo_pki(state)
        self.client_cert, self.client_key = self.work / "carol.pem", self.work / "carol.key"
        certs.issue_certificate(pki.ca_cert, pki.ca_key, "carol", self.client_cert, self.client_key, client=True)
        self.ca = Path(pki.ca_cert)
        self.servers: dict[str, NacServer] = {}
        self.radius_ports: dict[str, int] = {}
        for name, radius in (("nac-a", True), ("nac-b", False), ("nac-c", True)):
            sections = {
                "nac": {"db": self.url, "instance": name, "imvs": "os", "state_dir": str(state),
                        "transports": "pt-tls,radius" if radius else "pt-tls"},
                "pt-tls": {"ca": str(self.ca)},
            }
            if radius:
                self.radius_ports[name] = free_port(socket.SOCK_DGRAM)
                sections["radius"] = {"listen": "127.0.0.1", "port": self.radius_ports[name], "secret": SECRET}
            (self.work / name).mkdir()
            self.servers[name] = NacServer(sections, workdir=str(self.work / name))
        for server in self.servers.values():
            server.spawn()
            self.addCleanup(server.stop)
        for server in self.servers.values():
            server.wait_started(60)
        self.phases = {"set up": round(time.monotonic() - self.started, 1)}

    def phase(self, name: str) -> None:
        self.phases[name] = round(time.monotonic() - self.started, 1)

    def remaining(self) -> float:
        return DEADLINE - (time.monotonic() - self.started)

    async def until(self, what: str, condition) -> None:
        """Wait (letting the load run) until ``condition()``; fail saying ``what`` at the deadline."""
        while not condition():
            if self.remaining() <= 0:
                self.fail(f"gave up waiting for {what}")
            await task.deferLater(reactor, 0.05, lambda: None)

    def open_sessions(self, instance: str) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(sa.text(
                "SELECT count(*) FROM sessions WHERE instance = :i AND ended IS NULL"), {"i": instance})

    @defer.inlineCallbacks
    def test_every_decision_is_recorded_through_a_kill_and_a_database_restart(self):
        yield defer.ensureDeferred(self.run_phases())

    async def run_phases(self) -> None:
        host = Host(self.work / "host", SWIMA_PACKAGES)
        tls = client_tls_options(cacert=self.ca, server_name="127.0.0.1", cert=self.client_cert, key=self.client_key)
        load = Load(self, host, tls, self.ca, {name: s.port for name, s in self.servers.items()},
                    self.radius_ports)
        load.start()
        figures = {}
        try:
            await self.until("assessments on every instance, over RADIUS too",
                             lambda: all(load.decided(name) >= 2 for name in self.servers)
                             and any(r["access"] for r in load.records if r["transport"] == "radius"))
            self.phase("warm")
            # nac-b is killed with an assessment open in the database
            b = self.servers["nac-b"]
            await self.until("an open session of nac-b", lambda: self.open_sessions("nac-b") > 0)
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait()
            b.proc.stdout.close()
            killed_at = len(load.records)
            self.phase("killed")
            orphans = figures["open sessions of nac-b when killed"] = self.open_sessions("nac-b")
            await self.until("assessments by the other instances",
                             lambda: load.decided("nac-a", killed_at) >= 1 and load.decided("nac-c", killed_at) >= 1)
            await threads.deferToThread(lambda: b.spawn().wait_started(60))
            restarted_at = len(load.records)
            self.phase("restarted")
            await self.until("assessments by the restarted nac-b", lambda: load.decided("nac-b", restarted_at) >= 2)
            # the database restarts under load
            self.phase("restarted instance working")
            await threads.deferToThread(self.cluster.stop, "fast")
            outage_at, stopped = len(load.records), time.monotonic()
            await task.deferLater(reactor, 2.3, lambda: None)
            await threads.deferToThread(self.cluster.start)
            figures["database outage (s)"] = round(time.monotonic() - stopped, 1)
            back_at = len(load.records)
            figures["decisions during the outage"] = load.decided(after=outage_at) - load.decided(after=back_at)
            self.phase("database back")
            await self.until("assessments after the database came back",
                             lambda: all(load.decided(name, back_at) >= 1 for name in self.servers))
            self.phase("assessing again")
        finally:
            await load.stop()
        self.phase("load stopped")
        # the instances stop as they would (SIGTERM): what they queued is committed first
        for server in self.servers.values():
            self.assertTrue(server.alive(), server.log_text()[-3000:])
        await threads.deferToThread(lambda: [server.stop() for server in self.servers.values()])
        self.phase("instances stopped")
        self.check(load, figures, orphans)

    def check(self, load: Load, figures: dict, orphans: int) -> None:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT s.id, s.instance, s.connection_id, s.access, s.ended, d.device_id FROM sessions s "
                "LEFT JOIN devices d ON d.id = s.device_id")).all()
        by_device = {row.device_id: row for row in rows if row.device_id}
        decided = [r for r in load.records if r["access"]]
        missing = [r for r in decided if r["device"] not in by_device]
        self.assertEqual(missing, [], f"{len(missing)} decisions a client got are not recorded")
        wrong = [(r, by_device[r["device"]]) for r in decided
                 if (by_device[r["device"]].access, by_device[r["device"]].instance) != (r["access"], r["instance"])]
        self.assertEqual(wrong, [], "recorded otherwise than the client was told")
        still_open = [row for row in rows if row.ended is None]
        self.assertEqual(still_open, [], "sessions left open")
        # what nac-b had open when killed (almost always one or more), closed when it came back
        interrupted = [row for row in rows if row.access == INTERRUPTED]
        self.assertEqual(len(interrupted), orphans)
        self.assertTrue(all(row.instance == "nac-b" for row in interrupted))
        # the logs: the instance on every line, the outage in a few lines, no traceback
        for name, server in self.servers.items():
            log = server.log_text()
            at = log.find("Traceback")
            self.assertEqual(at, -1, f"{name}: {log[max(0, at - 1500):at + 4000]}")
            self.assertIn(f" [{name} nac.", log)
            unavailable = len(re.findall(r"database (?:still )?unavailable", log))
            self.assertLessEqual(unavailable, 6, name)
            if unavailable:
                self.assertRegex(log, r"database back after \d+\.\d s, \d+ queued writes done")
        if orphans:
            self.assertIn(f"closed {orphans} session(s) of nac instance 'nac-b' left open when it last stopped "
                          "(recorded as 'interrupted')", self.servers["nac-b"].log_text())
        figures.update({
            "assessments": len(load.records), "decisions": len(decided),
            "by instance": {name: load.decided(name) for name in self.servers},
            "RADIUS decisions": sum(1 for r in decided if r["transport"] == "radius"),
            "client errors (no decision)": len(load.records) - len(decided),
            "sessions recorded": len(rows), "interrupted (nac-b's orphans)": len(interrupted),
            "aborted": sum(1 for row in rows if row.access == "aborted"),
            "seconds": round(time.monotonic() - self.started, 1), "phases (s)": self.phases,
        })
        print(f"\nscale-out: {figures}")
