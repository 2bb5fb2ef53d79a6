"""PT-TLS served by several processes sharing one listening socket
(``[pt-tls] workers``): configuration, Connection ID allocation, the log relay
from the workers, their supervision, and the real server (``twistd -n nac``
with ``workers = 2``) serving real clients."""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.logger import LogLevel, Logger, formatEvent, formatEventAsClassicLogText
from twisted.python.failure import Failure
from twisted.trial import unittest

from nac import config as nac_config
from nac import metrics
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from tests.nacserver import REPO, NacServer, repo_env
from transports.pt_tls import service as pt_service
from nac import processes as w

PASSWORD = "erin's password"


# -- configuration and allocation -----------------------------------------------------------


class ConfigurationTests(unittest.TestCase):
    def load(self, text: str):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return nac_config.load(path)

    def test_default_is_one_process_per_cpu(self):
        cfg = nac_config.load(None)
        self.assertEqual(cfg.get("pt-tls", "workers"), "auto")
        self.assertEqual(w.process_count("auto"), len(os.sched_getaffinity(0)))

    def test_number_and_auto_in_any_case(self):
        self.assertEqual(self.load("[pt-tls]\nworkers = 3\n").get("pt-tls", "workers"), 3)
        self.assertEqual(self.load("[pt-tls]\nworkers = AUTO\n").get("pt-tls", "workers"), "auto")
        self.assertEqual(w.process_count(3), 3)

    def test_bad_values_name_the_key(self):
        for value in ("0", "many", "-1", "257"):
            with self.assertRaises(nac_config.ConfigError) as cm:
                self.load(f"[pt-tls]\nworkers = {value}\n")
            self.assertIn("[pt-tls] workers", str(cm.exception))
            self.assertIn("auto", str(cm.exception))

    def test_max_connections_is_shared_out(self):
        self.assertEqual([w.connection_share(1000, 3, i) for i in range(3)], [334, 333, 333])
        self.assertEqual(sum(w.connection_share(7, 2, i) for i in range(2)), 7)
        # never a process that must refuse everything
        self.assertEqual([w.connection_share(1, 2, i) for i in range(2)], [1, 1])


class ConnectionIdTests(unittest.TestCase):
    def test_each_process_has_its_own_series(self):
        peer = PeerInfo(transport="pt-tls", address="127.0.0.1")
        ids = []
        for k in range(3):
            core = TnccsCore(connection_ids=(k + 1, 3))
            ids.append([core.open_connection(peer).connection_id for _ in range(4)])
        self.assertEqual(ids, [[1, 4, 7, 10], [2, 5, 8, 11], [3, 6, 9, 12]])
        flat = [i for series in ids for i in series]
        self.assertEqual(len(set(flat)), len(flat))

    def test_default_is_one_by_one(self):
        core = TnccsCore()
        peer = PeerInfo(transport="pt-tls", address="127.0.0.1")
        self.assertEqual([core.open_connection(peer).connection_id for _ in range(3)], [1, 2, 3])

    def test_reserved_ids_are_announced_before_use(self):
        announced: list[tuple[int, list[int]]] = []
        handed: list[int] = []
        ids = w.ReservedConnectionIds(2, 2, lambda upto: announced.append((upto, list(handed))), block=3)
        core = TnccsCore(connection_ids=ids)
        peer = PeerInfo(transport="pt-tls", address="127.0.0.1")
        for _ in range(7):
            handed.append(core.open_connection(peer).connection_id)
        self.assertEqual(handed, [2, 4, 6, 8, 10, 12, 14])
        # each block is announced when nothing of it was handed out yet
        self.assertEqual(announced, [(6, []), (12, [2, 4, 6]), (18, [2, 4, 6, 8, 10, 12])])

    def test_nonsense_allocation_is_refused(self):
        for bad in ((0, 1), (1, 0)):
            self.assertRaises(ValueError, TnccsCore, connection_ids=bad)

    def test_service_refuses_a_core_whose_ids_would_repeat(self):
        state = self.mktemp()
        cfg = nac_config.load(None, {("nac", "state_dir"): state, ("pt-tls", "workers"): "2",
                                     ("pt-tls", "listen"): "127.0.0.1"})
        with self.assertRaises(ValueError) as cm:
            pt_service.make_service(cfg, TnccsCore())
        self.assertIn("connection_ids", str(cm.exception))
        svc = pt_service.make_service(cfg, TnccsCore(connection_ids=(1, 2)))
        self.assertEqual(svc.workers.processes, 2)
        self.assertEqual(svc.factory.max_connections, 500)


class ListeningSocketTests(unittest.TestCase):
    def test_family_follows_the_address(self):
        v4 = pt_service.listening_socket("127.0.0.1", 0)
        self.addCleanup(v4.close)
        self.assertEqual(v4.family, socket.AF_INET)
        try:
            v6 = pt_service.listening_socket("::1", 0)
        except error.CannotListenError as exc:
            raise unittest.SkipTest(f"no IPv6 loopback here: {exc}")
        self.addCleanup(v6.close)
        self.assertEqual(v6.family, socket.AF_INET6)

    def test_port_in_use_is_a_cannot_listen_error(self):
        first = pt_service.listening_socket("127.0.0.1", 0)
        self.addCleanup(first.close)
        port = first.getsockname()[1]
        with self.assertRaises(error.CannotListenError) as cm:
            pt_service.listening_socket("127.0.0.1", port)
        self.assertIn(str(port), str(cm.exception))


# -- the log relay -----------------------------------------------------------------------------


def worker_events(*calls) -> list[dict]:
    """Events a worker's Logger makes for ``calls`` of (method, format, fields)."""
    made: list[dict] = []
    log = Logger(namespace="nac.pt-tls", observer=made.append)
    for method, fmt, fields in calls:
        getattr(log, method)(fmt, **fields)
    return made


class LogRelayTests(unittest.TestCase):
    def relay(self, stream="stdout", max_line=w.MAX_LOG_LINE):
        got: list[dict] = []
        return w.LogRelay(1, 4242, got.append, stream=stream, max_line=max_line, kind="PT-TLS"), got

    def test_events_cut_anywhere_arrive_whole_with_the_worker(self):
        events = worker_events(("info", "accepting PT-TLS stream from {peer}", {"peer": "127.0.0.1[4000]"}),
                               ("warn", "braces {{kept}} and {n}", {"n": 3}))
        data = b"".join(w.event_line(e).encode() + b"\n" for e in events)
        relay, got = self.relay()
        for i in range(len(data)):  # one byte at a time
            relay.feed(data[i:i + 1])
        self.assertEqual(len(got), 2)
        first, second = got
        self.assertEqual((first["worker"], first["worker_pid"], first["peer"]), (1, 4242, "127.0.0.1[4000]"))
        self.assertEqual(first["log_level"], LogLevel.info)
        self.assertEqual(first["log_time"], events[0]["log_time"])
        text = formatEventAsClassicLogText(first)
        self.assertIn("[nac.pt-tls#info worker 1] accepting PT-TLS stream from 127.0.0.1[4000]", text)
        self.assertIn("[nac.pt-tls#warn worker 1] braces {kept} and 3", formatEventAsClassicLogText(second))

    def test_failure_traceback_is_relayed(self):
        made: list[dict] = []
        log = Logger(namespace="nac.pt-tls", observer=made.append)
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("internal error on PT-TLS session from {peer}", peer="127.0.0.1[1]")
        relay, got = self.relay()
        relay.feed(w.event_line(made[0]).encode() + b"\n")
        text = formatEventAsClassicLogText(got[0])
        self.assertIn("internal error on PT-TLS session from 127.0.0.1[1]", text)
        self.assertIn("ZeroDivisionError", text)
        self.assertEqual(got[0]["log_level"], LogLevel.critical)

    def test_objects_are_rendered_by_the_worker_and_left_out(self):
        class Peer:
            def __str__(self):
                return "peer-object"

        event = worker_events(("info", "from {peer} as {identity}", {"peer": Peer(), "identity": "erin"}))[0]
        back = w.event_from_line(w.event_line(event).encode())
        self.assertNotIn("peer", back)
        self.assertEqual(back["identity"], "erin")
        self.assertIn("from peer-object as erin", formatEventAsClassicLogText(back))

    def test_worker_text_is_what_twisted_renders(self):
        class Peer:
            def describe(self):
                return "a described peer"

        events = worker_events(
            ("info", "from {peer} as {identity!r}", {"peer": "127.0.0.1[9]", "identity": "erin"}),
            ("info", "call {p.describe()}", {"p": Peer()}),  # Twisted's call syntax
            ("info", "missing {field}", {}),  # a format that fails to render
            ("info", "{d[k]:>5}", {"d": {"k": "v"}}))
        for event in events:
            back = w.event_from_line(w.event_line(event).encode())
            self.assertEqual(formatEvent(back), formatEvent(event))
        self.assertEqual(formatEvent(events[1]), "call a described peer")
        self.assertIn("Unable to format event", formatEvent(events[2]))

    def test_other_output_becomes_an_error_line(self):
        relay, got = self.relay()
        relay.feed(b"not json\n{\"json\": \"but no event\"}\n")
        err, err_got = self.relay("stderr")
        err.feed(b"Traceback (most recent call last):\n  File \"x\"")
        err.end()  # the last line had no newline
        self.assertEqual([e["text"] for e in got], ["not json", '{"json": "but no event"}'])
        self.assertEqual([e["text"] for e in err_got], ["Traceback (most recent call last):", '  File "x"'])
        for e in got + err_got:
            self.assertEqual(e["log_level"], LogLevel.error)
            self.assertEqual(e["worker"], 1)
        self.assertIn("stderr of PT-TLS worker 1: Traceback", formatEventAsClassicLogText(err_got[0]))

    def test_overlong_line_is_dropped_and_the_next_one_kept(self):
        relay, got = self.relay(max_line=100)
        event = worker_events(("info", "short", {}))[0]
        relay.feed(b"x" * 150)
        relay.feed(b"y" * 150 + b"\n" + w.event_line(event).encode() + b"\n")
        self.assertEqual(len(got), 2)
        self.assertIn("longer than 100 bytes was dropped", formatEventAsClassicLogText(got[0]))
        self.assertIn("short", formatEventAsClassicLogText(got[1]))


class Pipe:
    """A file that writes into a list; ``interrupt`` runs inside one write,
    as a signal handler does when the write system call is interrupted."""

    def __init__(self):
        self.data: list[str] = []
        self.interrupt = None

    def write(self, text: str) -> None:
        half = len(text) // 2
        self.data.append(text[:half])
        if self.interrupt is not None:
            interrupt, self.interrupt = self.interrupt, None
            interrupt()
        self.data.append(text[half:])

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return "".join(self.data).splitlines()


class EventWriterTests(unittest.TestCase):
    def test_event_logged_during_a_write_follows_the_line(self):
        pipe = Pipe()
        writer = w.EventWriter(pipe, lambda: None)
        first, second = worker_events(("info", "first", {}), ("info", "Received SIGTERM, shutting down.", {}))
        pipe.interrupt = lambda: writer(second)
        writer(first)
        lines = pipe.lines()
        self.assertEqual(len(lines), 2)
        self.assertEqual([json.loads(line)["log_text"] for line in lines],
                         ["first", "Received SIGTERM, shutting down."])

    def test_threads_never_interleave(self):
        pipe = Pipe()
        writer = w.EventWriter(pipe, lambda: None)

        def log_some(k):
            for event in worker_events(*[("info", "thread {k} line {i}", {"k": k, "i": i}) for i in range(50)]):
                writer(event)

        threads = [threading.Thread(target=log_some, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = pipe.lines()
        self.assertEqual(len(lines), 200)
        self.assertEqual(len({json.loads(line)["log_text"] for line in lines}), 200)

    def test_broken_pipe_means_the_main_process_is_gone(self):
        class Broken:
            def write(self, text):
                raise BrokenPipeError(32, "Broken pipe")

            def flush(self):
                pass

        gone = []
        writer = w.EventWriter(Broken(), lambda: gone.append(True))
        for event in worker_events(("info", "a", {}), ("info", "b", {})):
            writer(event)
        self.assertEqual(gone, [True])


# -- supervision (a fake reactor; the real processes are tested below) ------------------------


class FakeProcess:
    def __init__(self, proto, pid):
        self.proto = proto
        self.pid = pid
        self.written = b""
        self.signals: list[str] = []
        self.gone = False

    def write(self, data):
        self.written += data

    def signalProcess(self, name):
        if self.gone:
            raise error.ProcessExitedAlready()
        self.signals.append(name)

    def end(self, exit_code=None, sig=None):
        self.gone = True
        if sig is None and exit_code == 0:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(exitCode=exit_code, signal=sig))
        self.proto.processEnded(reason)


class FakeReactor(Clock):
    def __init__(self):
        super().__init__()
        self.spawned: list[tuple] = []
        self._pid = 1000

    def spawnProcess(self, proto, executable, args, env=None, childFDs=None):
        self._pid += 1
        process = FakeProcess(proto, self._pid)
        self.spawned.append((process, executable, args, env, childFDs))
        proto.makeConnection(process)
        return process


class SupervisorTests(unittest.TestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.events: list[dict] = []
        self.socket = pt_service.listening_socket("127.0.0.1", 0)
        self.addCleanup(self.socket.close)
        self.sup = w.WorkerSupervisor("nac.conf", {("nac", "db"): "sqlite:////x.db"}, 3,
                                      reactor=self.reactor, publish=self.events.append,
                                      backoff=(0.5, 4.0), stable=30.0, stop_timeout=5.0)
        self.addCleanup(metrics.remove_source, self.sup)  # most tests leave it running
        self.share_pt_tls(3)
        self.logged: list[dict] = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def texts(self) -> str:
        return "\n".join(formatEventAsClassicLogText(e) or "" for e in self.logged)

    def share_pt_tls(self, processes: int) -> None:
        """What the PT-TLS service of the main process shares (PtTlsService.startService)."""
        sock = self.socket
        self.sup.share("pt-tls", processes, lambda worker: {"listen": sock.fileno()}, {"family": int(sock.family)},
                       label="PT-TLS")

    def ready(self, process):
        process.proto.outReceived(b'{"nac_control": "ready"}\n')

    def test_spawns_the_other_processes_on_the_listening_socket(self):
        self.sup.startService()
        self.assertEqual(len(self.reactor.spawned), 2)
        for k, (process, executable, args, env, fds) in enumerate(self.reactor.spawned, 1):
            self.assertEqual(executable, sys.executable)
            self.assertEqual(args[1:5], ["-m", "nac.processes", "--worker", str(k)])
            self.assertEqual(fds, {0: "w", 1: "r", 2: "r", 3: self.socket.fileno()})
            launch = json.loads(process.written)
            self.assertEqual(launch["transports"], {"pt-tls": {
                "processes": 3, "descriptors": {"listen": 3}, "data": {"family": int(self.socket.family)},
                "label": "PT-TLS"}})
            self.assertEqual(launch["config"], os.path.abspath("nac.conf"))
            self.assertEqual(launch["overrides"], [["nac", "db", "sqlite:////x.db"]])
            self.assertNotIn("sqlite", " ".join(args))  # overrides travel over the pipe, not argv
        for process, *_ in self.reactor.spawned:
            self.ready(process)
        self.assertIn("all 2 PT-TLS worker processes are accepting", self.texts())
        # their log lines are published, marked with the worker
        for process, *_ in reversed(self.reactor.spawned):
            event = worker_events(("info", "accepting PT-TLS stream", {}))[0]
            process.proto.outReceived(w.event_line(event).encode() + b"\n")
        self.assertEqual([(e["worker"], e["worker_pid"]) for e in self.events], [(2, 1002), (1, 1001)])

    def test_radius_socket_and_relay_ends_go_to_the_workers_that_serve_radius(self):
        from transports.radius.relay import mesh

        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        ends = mesh(3)
        self.addCleanup(lambda: [sock.close() for sock in ends.values()])
        # PT-TLS in processes 0 and 1, RADIUS in all three (as RadiusService.startService shares it)
        self.share_pt_tls(2)

        def radius_descriptors(worker):
            return {"udp": udp.fileno(), **{f"relay-{peer}": sock.fileno()
                                            for (i, peer), sock in ends.items() if i == worker}}

        self.sup.share("radius", 3, radius_descriptors, {"family": int(udp.family)}, label="RADIUS")
        self.assertEqual([self.sup.kind(k) for k in (1, 2)], ["PT-TLS and RADIUS", "RADIUS"])
        self.sup.startService()
        (one, _, _, _, fds1), (two, _, _, _, fds2) = self.reactor.spawned
        # each worker's descriptors from 3 on, transport by transport
        self.assertEqual(fds1, {0: "w", 1: "r", 2: "r", 3: self.socket.fileno(), 4: ends[1, 0].fileno(),
                                5: udp.fileno()})
        self.assertEqual(fds2, {0: "w", 1: "r", 2: "r", 3: ends[2, 0].fileno(), 4: udp.fileno()})
        launch1, launch2 = json.loads(one.written), json.loads(two.written)
        self.assertEqual(launch1["transports"]["pt-tls"]["descriptors"], {"listen": 3})
        self.assertNotIn("pt-tls", launch2["transports"])  # no PT-TLS in worker 2
        self.assertEqual(launch1["transports"]["radius"], {"processes": 3, "descriptors": {"relay-0": 4, "udp": 5},
                                                           "data": {"family": int(socket.AF_INET)}, "label": "RADIUS"})
        self.assertEqual(launch2["transports"]["radius"], {"processes": 3, "descriptors": {"relay-0": 3, "udp": 4},
                                                           "data": {"family": int(socket.AF_INET)}, "label": "RADIUS"})
        self.ready(one)
        self.ready(two)
        self.assertIn("all 2 nac worker processes are accepting", self.texts())
        self.assertIn("started RADIUS worker 2 of 2 (pid 1002)", self.texts())

    def test_dead_worker_is_restarted_with_backoff(self):
        self.sup.startService()
        first = self.reactor.spawned[0][0]
        self.ready(first)
        first.end(sig=signal.SIGKILL)
        self.assertIn("PT-TLS worker 1 (pid 1001) died after 0 s: killed by signal 9 (SIGKILL); "
                      "restarting it in 0.5 s", self.texts())
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.spawned), 3)
        second = self.reactor.spawned[2][0]
        self.assertEqual(second.proto.worker, 1)
        # failing to start again and again: the delay doubles up to the limit
        delays = []
        process = second
        for _ in range(4):
            process.end(exit_code=w.EXIT_CANNOT_START)
            delays.append(self.sup._restarts[1].getTime() - self.reactor.seconds())
            self.reactor.advance(delays[-1])
            process = self.reactor.spawned[-1][0]
        self.assertEqual(delays, [1.0, 2.0, 4.0, 4.0])
        self.assertIn("PT-TLS worker 1 (pid 1003) failed to start: exit status 2", self.texts())
        # a worker that served long enough starts the backoff afresh
        self.ready(process)
        self.reactor.advance(31)
        process.end(exit_code=1)
        self.assertEqual(self.sup._restarts[1].getTime() - self.reactor.seconds(), 0.5)

    def test_successor_goes_on_after_the_reserved_connection_ids(self):
        self.sup.startService()
        first = self.reactor.spawned[0][0]
        self.assertEqual(json.loads(first.written)["first_id"], 2)
        self.assertEqual(json.loads(self.reactor.spawned[1][0].written)["first_id"], 3)
        self.ready(first)
        # worker 1 of 3 processes reserved 2, 5, …, 2999 and then 3002, …, 5999
        first.proto.outReceived(b'{"nac_control": "ids", "upto": 2999}\n{"nac_control": "ids", "upto": 5999}\n')
        first.proto.outReceived(b'{"nac_control": "ids", "upto": 3000}\n')  # not its series: ignored
        first.end(sig=signal.SIGKILL)
        self.reactor.advance(0.5)
        successor = self.reactor.spawned[2][0]
        self.assertEqual(json.loads(successor.written)["first_id"], 6002)
        # control messages are not log lines
        self.assertNotIn("nac_control", self.texts())
        self.assertEqual(self.events, [])

    def test_stop_terminates_then_kills(self):
        self.sup.startService()
        one, two = (p for p, *_ in self.reactor.spawned)
        d = self.sup.stopService()
        self.assertEqual((one.signals, two.signals), (["TERM"], ["TERM"]))
        one.end(exit_code=0)
        self.assertFalse(d.called)
        self.reactor.advance(5.0)
        self.assertEqual(two.signals, ["TERM", "KILL"])
        two.end(sig=signal.SIGKILL)
        self.assertTrue(d.called)
        # stopping is not dying: nothing is restarted
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertIn("did not stop within 5 s; killing it", self.texts())

    def test_restart_pending_at_stop_is_cancelled(self):
        self.sup.startService()
        self.reactor.spawned[0][0].end(exit_code=2)
        self.sup.stopService()
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)

    # -- metrics ----------------------------------------------------------------------------

    def answer(self, process, request: int, assessments: int, open_: int = 1) -> None:
        families = [["nac_assessments", "counter", "a", [["nac_assessments_total", {"decision": "allowed"},
                                                          assessments]]],
                    ["nac_assessments_open", "gauge", "o", [["nac_assessments_open", {}, open_]]]]
        process.proto.outReceived(json.dumps({"nac_control": "metrics", "id": request,
                                              "families": families}).encode() + b"\n")

    def requests(self, process) -> list[int]:
        """The metrics requests written to a worker's stdin after its launch line."""
        return [json.loads(line)["metrics"] for line in process.written.split(b"\n")[1:] if line]

    def test_metrics_are_asked_of_every_ready_worker(self):
        self.sup.startService()
        one, two = (p for p, *_ in self.reactor.spawned)
        self.ready(one)
        self.ready(two)
        got = []
        self.sup.metrics().addCallback(got.append)
        (first,), (second,) = self.requests(one), self.requests(two)
        self.answer(one, first, 3)
        self.assertEqual(got, [])  # worker 2 has not answered yet
        self.answer(two, second, 4)
        self.assertEqual([snap[0][3][0][2] for snap in got[0]], [3, 4])
        self.assertNotIn("nac_control", self.texts())  # an answer is no log line

    def test_a_worker_that_does_not_answer_counts_with_its_last_figures(self):
        self.sup.startService()
        one, two = (p for p, *_ in self.reactor.spawned)
        self.ready(one)  # worker 2 is not ready: not asked
        got = []
        self.sup.metrics().addCallback(got.append)
        self.assertEqual(self.requests(two), [])
        self.answer(one, self.requests(one)[0], 3)
        self.assertEqual(len(got[0]), 1)
        self.ready(two)
        self.sup.metrics().addCallback(got.append)
        self.answer(two, self.requests(two)[0], 4)
        self.assertEqual(len(got), 1)  # worker 1 is silent now
        self.reactor.advance(w.METRICS_TIMEOUT)
        self.assertEqual([snap[0][3][0][2] for snap in got[1]], [3, 4])

    def test_a_dead_workers_counters_still_count(self):
        self.sup.startService()
        one, two = (p for p, *_ in self.reactor.spawned)
        self.ready(one)
        self.ready(two)
        families = dict((f.name, f) for f in self.sup.metric_families())
        self.assertEqual([s.value for s in families["nac_worker_processes"].samples], [2])
        self.sup.metrics()
        self.answer(one, self.requests(one)[0], 3, open_=2)
        self.answer(two, self.requests(two)[0], 4)
        got = []
        one.end(sig=signal.SIGKILL)
        self.sup.metrics().addCallback(got.append)
        self.answer(two, self.requests(two)[1], 5)
        # worker 2's figures, and worker 1's counters (not its gauge: it has nothing open any more)
        self.assertEqual(got[0][0][0][3][0][2], 5)
        self.assertEqual(got[0][1], [["nac_assessments", "counter", "a",
                                      [["nac_assessments_total", {"decision": "allowed"}, 3]]]])
        families = dict((f.name, f) for f in self.sup.metric_families())
        self.assertEqual([s.value for s in families["nac_worker_processes"].samples], [1])
        self.assertEqual([s.value for s in families["nac_worker_restarts"].samples if s.name.endswith("_total")],
                         [1])

    def test_a_request_pending_when_the_worker_dies_is_not_waited_for(self):
        self.sup.startService()
        one, two = (p for p, *_ in self.reactor.spawned)
        self.ready(one)
        got = []
        self.sup.metrics().addCallback(got.append)
        one.end(exit_code=1)
        self.assertEqual(got, [[]])


class ParentWatchTests(unittest.TestCase):
    def test_requests_are_lines_and_end_of_file_means_gone(self):
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        requests, gone = [], []
        watch = w.ParentWatch(lambda: gone.append(True), fd=read, on_request=requests.append)
        os.write(write, b'{"metrics": 1}\nnot json\n[1]\n{"metr')
        self.assertIsNone(watch.doRead())
        os.write(write, b'ics": 2}\n')
        self.assertIsNone(watch.doRead())
        self.assertEqual(requests, [{"metrics": 1}, {"metrics": 2}])
        os.close(write)
        self.assertIsNotNone(watch.doRead())  # CONNECTION_DONE: the reactor calls connectionLost
        watch.connectionLost(None)
        self.assertEqual(gone, [True])


# -- the real server ------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_server(**sections) -> NacServer:
    conf = {"pt-tls": {"workers": "2"}}
    for section, values in sections.items():
        conf.setdefault(section, {}).update(values)
    server = NacServer(conf)
    server.admin("init")
    server.admin("user", "add", "erin", "--password", PASSWORD)
    server.start()
    wait_for(lambda: "all 1 PT-TLS worker processes are accepting" in server.log_text(), 60,
             "the worker to accept")
    return server


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[[^\]]+\] ")


class TwoProcessServerTests(unittest.TestCase):
    """One ``twistd -n nac`` with ``[pt-tls] workers = 2`` for the class."""

    server: NacServer | None = None

    def setUp(self):
        cls = type(self)
        if cls.server is None:
            cls.server = start_server()
            atexit.register(cls.server.stop)

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log_text()[-4000:])

    def sessions(self) -> list[dict]:
        return json.loads(self.server.admin("sessions", "list", "--limit", "100000", "--json"))

    def load(self, count: int, concurrency: int = 16) -> dict:
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / "pt_tls_load.py"), "--live",
             "--server", f"127.0.0.1:{self.server.port}", "--server-pid", str(self.server.proc.pid),
             "--cacert", str(self.server.ca), "--client", "erin", "--secret", PASSWORD,
             "--collectors", "os", "--concurrency", str(concurrency), "--count", str(count),
             "--processes", "1", "--timeout", "60", "--json"],
            env=repo_env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr + self.server.log_text()[-3000:])
        return json.loads(done.stdout)["levels"][0]

    def workers(self) -> list[int]:
        return children(self.server.proc.pid)

    def test_concurrent_assessments_use_both_processes_and_unique_connection_ids(self):
        before = {s["id"] for s in self.sessions()}
        level = self.load(100)
        self.assertEqual((level["completed"], level["failed"]), (100, 0), level)
        # the decision is written just after the result is sent: wait for the writes
        for _ in range(100):
            new = [s for s in self.sessions() if s["id"] not in before]
            if len(new) == 100 and all(s["ended"] for s in new):
                break
            time.sleep(0.1)
        self.assertEqual(len(new), 100)
        ids = [s["connection_id"] for s in new]
        self.assertEqual(len(set(ids)), len(ids), "Connection IDs repeat")
        # process k of 2 hands out k + 1, k + 3, …: both served
        self.assertEqual({i % 2 for i in ids}, {0, 1})
        self.assertTrue(all(s["ended"] and s["access"] == "denied" for s in new))
        log = self.server.log_text()
        self.assertNotIn("database is locked", log)
        self.assertNotIn("Traceback", log)

    def test_worker_log_lines_reach_the_main_log_whole(self):
        self.load(40)
        log = self.server.log_text()
        self.assertRegex(log, r"\[nac\.workers#info worker 1\] PT-TLS worker 1 \(pid \d+\) accepting on "
                              r"127\.0\.0\.1\[\d+\]")
        self.assertIn("[nac.pt-tls#info worker 1] accepting PT-TLS stream from 127.0.0.1", log)
        self.assertIn("[nac.tnccs.pb#info worker 1] PB-TNC state transition from 'Init' to 'Server Working'",
                      log)
        for line in log.splitlines():
            if line and not line.startswith("\t"):  # a traceback's continuation
                self.assertRegex(line, LOG_LINE)
                self.assertEqual(len(LOG_LINE.findall(line)), 1, f"lines interleaved: {line!r}")
        self.assertNotIn("#debug", log)

    def test_killed_worker_is_restarted_and_serves_with_fresh_connection_ids(self):
        self.load(30)
        (old,) = self.workers()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: f"PT-TLS worker 1 (pid {old}) died" in self.server.log_text(), 30, "the death to be logged")
        self.assertIn(f"PT-TLS worker 1 (pid {old}) died after", self.server.log_text())
        wait_for(lambda: len(self.workers()) == 1 and self.workers()[0] != old
                 and re.search(rf"PT-TLS worker 1 \(pid {self.workers()[0]}\) accepting",
                               self.server.log_text()), 60, "the new worker")
        # the new worker goes on after every ID its predecessor reserved
        (new,) = self.workers()
        first = int(re.search(rf"PT-TLS worker 1 \(pid {new}\) accepting on \S+ \(Connection IDs (\d+),",
                              self.server.log_text()).group(1))
        self.assertGreater(first, 2)
        self.assertEqual(first % 2, 0)
        level = self.load(40)
        self.assertEqual((level["completed"], level["failed"]), (40, 0), level)
        ids = [s["connection_id"] for s in self.sessions()]
        self.assertEqual(len(set(ids)), len(ids), "Connection IDs repeat")
        self.assertTrue(any(i >= first for i in ids))


class WorkerLifetimeTests(unittest.TestCase):
    """Each test with a server of its own: they stop, kill or break it."""

    def test_stopping_the_server_stops_its_workers(self):
        server = start_server()
        self.addCleanup(server.stop)
        pids = children(server.proc.pid)
        self.assertEqual(len(pids), 1)
        server.stop()
        # twistd ends with the signal that stopped it
        self.assertIn(server.proc.returncode, (0, -signal.SIGTERM), server.log_text()[-3000:])
        self.assertFalse(any(running(pid) for pid in pids))
        log = server.log_text()
        self.assertRegex(log, rf"PT-TLS worker 1 \(pid {pids[0]}\) stopped: exit status 0")
        self.assertNotIn("killing it", log)

    def test_workers_exit_when_the_main_process_dies(self):
        server = start_server()
        self.addCleanup(server.stop)
        pids = children(server.proc.pid)
        self.assertEqual(len(pids), 1)
        server.proc.kill()
        server.proc.wait()
        wait_for(lambda: not any(running(pid) for pid in pids), 20, "the orphaned worker to exit")
        # nobody listens on the port any more
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()

    def test_worker_that_cannot_start_is_logged_and_retried(self):
        server = start_server()
        self.addCleanup(server.stop)
        (old,) = children(server.proc.pid)
        good = server.config.read_text()
        # the worker reads the file again; the main process already runs with the good one
        server.config.write_text(good.replace("[pt-tls]\n", "[pt-tls]\nworkerz = 2\n"))
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: "failed to start: exit status 3" in server.log_text(), 60, "the failed start")
        log = server.log_text()
        self.assertIn("[nac.workers#error worker 1] PT-TLS worker 1 cannot start: ", log)
        self.assertIn("[pt-tls] workerz: unknown key; did you mean 'workers'?", log)
        self.assertRegex(log, r"PT-TLS worker 1 \(pid \d+\) failed to start: exit status 3 \(its reason "
                              r"is logged above\); trying again in 1 s")
        server.config.write_text(good)
        wait_for(lambda: len(re.findall(r"PT-TLS worker 1 \(pid \d+\) accepting", server.log_text())) == 2,
                 60, "the retried worker")
        self.assertTrue(server.alive())
