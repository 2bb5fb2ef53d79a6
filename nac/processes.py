"""nac's worker processes: one reactor runs on one core, so with ``workers``
above 1 in a transport's section the main process (twistd) spawns worker
processes that serve the transports beside it.

Which process serves what, and how they share sockets, is the transports'
business; the process model only carries it out.  A transport of the main
process hands the :class:`WorkerSupervisor` (its
:class:`~nac.interfaces.IWorkerProcesses`) what its workers need before they
start (:meth:`WorkerSupervisor.share`): file descriptors they inherit (a
listening socket; the ends of socket pairs) and JSON data.  nac has as many
processes as the transport asking for the most; worker k serves each
transport that asks for more than k processes.  In the worker, the
transport's plugin builds the service from that share
(:meth:`~nac.interfaces.ITransportPlugin.make_worker_service`).  A worker
loads the same configuration file and command-line overrides as the main
process and builds its own policy store (the main process has migrated the
database; its sessions record the worker's number, and a worker started in
place of a dead one closes those its predecessor left open), TNCS core and
IMV instances (:mod:`nac.server`); process k of n
hands out Connection IDs k + 1, k + 1 + n, … so that they stay unique in
logs and in the sessions table.  A worker announces each block of IDs before
it uses one (:class:`ReservedConnectionIds`), so that the one started in
place of a dead worker goes on after the last block its predecessor may have
used.

The main process speaks to a worker over its standard streams only:

* stdin carries one JSON line, what to load and serve, and then stays open:
  its end of file tells the worker that the main process is gone, however
  it died.  Later lines ask for the worker's metrics (``{"metrics": N}``,
  for ``/metrics``, which sums every process's: :mod:`nac.metrics`);
* stdout carries the worker's log events, one JSON object a line (see
  :func:`event_line`), which the main process re-emits to its own log
  observers with the worker's number (``worker``, and in the text log
  ``[namespace#level worker N]``), so nothing is lost or cut mid-line
  whatever the log destination, and log rotation stays the main process's;
  and, as JSON lines with a ``nac_control`` key, that the worker is ready,
  which Connection IDs it has reserved, a configuration it cannot start
  with, the metrics asked for, and each decision it committed
  (``decided``, see below); kinds this module does not know go to the
  handler registered for them (:attr:`WorkerSupervisor.on_control`);
* stderr, normally silent, is relayed line by line as errors (a Python
  crash before logging was set up).

The listeners of the store's decisions (:attr:`nac.db.store.PolicyStore.decision_listeners`:
RADIUS CoA / Disconnect) are the main process's: it alone holds what they
need (the NASes' RadSec connections, :mod:`transports.radius.radsec_coa`).
A worker hands each decision it committed to the main process (session
number, access, group enforcement: :class:`~nac.tnccs.assessment.RelayedDecision`),
whose :func:`decision_relay` checks every field and tells its store's
listeners, as for a decision of its own.

Workers are spawned once the service has started, after ``twistd --uid``
has switched to the service user: they run as that user and only inherit
the sockets bound as root (see :mod:`nac.service_user`).

The main process stops its workers with SIGTERM (SIGKILL after a grace
period) and restarts, with exponential backoff, one that dies.

Run as ``python -m nac.processes`` by the main process only.  This module
knows no transport: the plugins (:mod:`nac.plugins`) do.
"""

from __future__ import annotations

import collections
import importlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from twisted.application import service
from twisted.internet import defer, error, fdesc, main as tmain, protocol
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import LogLevel
from zope.interface import implementer

from nac import metrics
from nac.interfaces import IWorkerProcesses, IWorkerShare
from nac.log import Logger, RepeatSummaryService, event_text
from nac.tnccs.assessment import RelayedDecision

__all__ = [
    "EventWriter",
    "LogRelay",
    "ReservedConnectionIds",
    "WorkerProcess",
    "WorkerShare",
    "WorkerSupervisor",
    "connection_share",
    "decision_relay",
    "descriptor_warning",
    "main",
    "process_count",
]

log = Logger(namespace="nac.workers")

#: The first file descriptor a worker inherits beyond its standard streams.
FIRST_SHARED_FD = 3
#: Longest log line accepted from a worker (a traceback is far shorter).
MAX_LOG_LINE = 1024 * 1024
#: Longest launch line the worker reads from stdin.
MAX_LAUNCH_LINE = 1024 * 1024
#: Exit status of a worker that could not start (configuration, database …).
EXIT_CANNOT_START = 2
#: Exit status of a worker that could not start with its configuration; it
#: sent the reason first (control message ``config_error``).
EXIT_CONFIG_ERROR = 3
#: Connection IDs a worker reserves at a time.
ID_BLOCK = 1000
#: Longest line of the main process on a worker's stdin after the launch line.
MAX_REQUEST_LINE = 4096
#: Seconds ``/metrics`` waits for a worker's figures before it uses the last ones.
METRICS_TIMEOUT = 2.0


def process_count(setting: str | int) -> int:
    """The number of processes for a ``workers`` setting:
    ``auto`` is the number of CPUs this process may run on."""
    if setting == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)
    return int(setting)


class WorkerTransportPlugin:
    """The part of an :class:`~nac.interfaces.ITransportPlugin` that
    transports served by worker processes share: as many processes as its
    section's ``workers`` key says (:func:`nac.config.workers_setting`), its
    services built by ``make_service(cfg, core, store, workers=)`` and
    ``make_worker_service(cfg, core, store, share)`` of the module named by
    ``service_module``, imported when first needed so that reading a
    configuration does not load every transport."""

    name: str
    service_module: str

    def _module(self):
        return importlib.import_module(self.service_module)

    def processes(self, cfg) -> int:
        return process_count(cfg.get(self.name, "workers"))

    def make_service(self, cfg, core, store, workers):
        return self._module().make_service(cfg, core, store, workers=workers)

    def make_worker_service(self, cfg, core, store, share):
        return self._module().make_worker_service(cfg, core, store, share)


def connection_share(total: int, processes: int, index: int) -> int:
    """Process ``index``'s share of ``total`` connections: the shares of
    ``processes`` processes add up to ``total`` (each has at least one)."""
    return max(1, total // processes + (1 if index < total % processes else 0))


#: Descriptors a process keeps open besides its connections' (listening
#: sockets, log file, database, epoll, the pipes of 4 to a worker)
RESERVED_DESCRIPTORS = 64


def descriptor_warning(cfg, counts: Mapping[str, int], soft_limit: int | None = None) -> str | None:
    """The line to log when the connections a process may hold (each
    transport's ``max_connections``, shared among its ``counts[name]``
    processes; one descriptor each) and what it needs besides exceed its
    open-file limit (``soft_limit``, by default RLIMIT_NOFILE's), else None."""
    import resource

    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        return None
    processes = max(counts.values(), default=1)
    needed = RESERVED_DESCRIPTORS + 4 * (processes - 1)
    keys = []
    for name, served_by in counts.items():
        try:
            total = cfg.get(name, "max_connections")
        except KeyError:
            continue  # a transport without connections of its own (datagrams)
        needed += connection_share(total, served_by, 0)
        keys.append(f"[{name}] max_connections = {total}" + (f" over {served_by} processes" if served_by > 1
                                                               else ""))
    if not keys or needed <= soft_limit:
        return None
    return (f"{cfg.source or 'defaults'}: {', '.join(keys)}: a nac process may need {needed} file descriptors, "
            f"more than its open-file limit (ulimit -n) of {soft_limit}, and refuse connections when they run "
            "out: raise LimitNOFILE= in the systemd unit (etc/nac.service) or ulimit -n, or lower max_connections")


# -- the log events' wire form ----------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))
_LEVELS = {level.name: level for level in LogLevel.iterconstants()}


def event_line(event: dict) -> str:
    """One log event as a line of JSON: level, namespace, time, the text as
    the worker rendered it (with the traceback of a logged failure, values
    from the network escaped: :func:`nac.log.event_text`), and
    the event's own fields whose values are JSON scalars.

    Rendering in the worker keeps whatever objects the format refers to out
    of the pipe, and costs half of ``twisted.logger.eventAsJSON`` +
    ``eventFromJSON``.
    """
    text = event_text(event)
    # log_level first: a line that starts with {"nac_control" is a control message
    fields = {"log_level": getattr(event.get("log_level"), "name", "info")}
    fields.update((key, value) for key, value in event.items()
                  if not key.startswith("log_") and isinstance(value, _SCALARS))
    fields["log_namespace"] = str(event.get("log_namespace", "-"))
    fields["log_time"] = event.get("log_time") if isinstance(event.get("log_time"), float) else time.time()
    if isinstance(event.get("log_system"), str):
        fields["log_system"] = event["log_system"]
    fields["log_text"] = text
    return json.dumps(fields, ensure_ascii=True, default=str)


def event_from_line(line: bytes) -> dict | None:
    """The event of an :func:`event_line`; None for anything else."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    level = _LEVELS.get(event.get("log_level"))
    text = event.pop("log_text", None)
    if level is None or not isinstance(text, str) or not isinstance(event.get("log_time"), (int, float)):
        return None
    event["log_level"] = level
    event["log_format"] = text.replace("{", "{{").replace("}", "}}")
    return event


# -- main process: relaying the workers' log ----------------------------------------------


class LogRelay:
    """Turns what a worker writes on one stream into log events.

    Bytes arrive in arbitrary pieces; only whole lines become events.  On
    ``stdout`` a line is a JSON log event or a control message (to
    ``control``); anything else (and every line on ``stderr``) becomes an
    error event carrying the text.  Each event gets the worker's number and
    pid and is passed to ``emit``; a worker's events then read in the main
    log as ``[nac.pt-tls#info worker 1] …``.
    """

    def __init__(self, worker: int, pid: int | None, emit: Callable[[dict], None], *,
                 stream: str = "stdout", max_line: int = MAX_LOG_LINE,
                 control: Callable[[dict], None] | None = None, kind: str = "nac"):
        self.worker = worker
        self.kind = kind
        self.pid = pid
        self.emit = emit
        self.control = control
        self.stream = stream
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if self._discarding:
                self._discarding = False
                continue
            self._line(line)
        if len(self._buffer) > self.max_line:
            if not self._discarding:
                self._text(f"a log line longer than {self.max_line} bytes was dropped", LogLevel.warn)
            self._discarding = True
            self._buffer.clear()

    def end(self) -> None:
        """The stream closed: a last line without its newline still counts."""
        if self._buffer and not self._discarding:
            self._line(bytes(self._buffer))
        self._buffer.clear()
        self._discarding = False

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        if self.stream == "stdout":
            if self.control is not None and line.startswith(b'{"nac_control"'):
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if isinstance(message, dict):
                    self.control(message)
                    return
            event = event_from_line(line)
            if event is not None:
                self._emit(event)
                return
        self._text(line.decode("utf-8", "backslashreplace"), LogLevel.error)

    def _text(self, text: str, level) -> None:
        self._emit({"log_level": level, "log_namespace": "nac.workers",
                    "log_format": "{stream} of {kind} worker {worker}: {text}",
                    "kind": self.kind, "stream": self.stream, "text": text, "log_time": time.time()})

    def _emit(self, event: dict) -> None:
        event["worker"] = self.worker
        event["worker_pid"] = self.pid
        event.setdefault("log_time", time.time())
        level = event.get("log_level")
        system = event.get("log_system")
        if not system:
            system = "{}#{}".format(event.get("log_namespace", "-"), getattr(level, "name", "-"))
        event["log_system"] = f"{system} worker {self.worker}"
        self.emit(event)


# -- main process: spawning and supervising --------------------------------------------------


def _exit_status(reason) -> str:
    value = reason.value
    sig = getattr(value, "signal", None)
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {sig} ({name})"
    return f"exit status {getattr(value, 'exitCode', '?')}"


class WorkerProcess(protocol.ProcessProtocol):
    """The main process's end of one worker: launch line, log relay, exit."""

    def __init__(self, supervisor: "WorkerSupervisor", worker: int, launch: bytes):
        self.supervisor = supervisor
        self.worker = worker
        self.launch = launch
        self.pid: int | None = None
        self.ready = False
        self.config_error: str | None = None
        self.started = supervisor.reactor.seconds()
        self.ended: defer.Deferred = defer.Deferred()
        #: the worker's last metrics snapshot, and the requests it has not answered yet
        self.metrics: metrics.Snapshot | None = None
        self.metrics_pending: dict[int, defer.Deferred] = {}
        kind = supervisor.kind(worker)
        self.stdout = LogRelay(worker, None, supervisor.publish, stream="stdout", control=self._control,
                               kind=kind)
        self.stderr = LogRelay(worker, None, supervisor.publish, stream="stderr", kind=kind)

    def connectionMade(self):
        self.pid = self.transport.pid
        self.stdout.pid = self.stderr.pid = self.pid
        # stdin stays open: its end of file is how the worker learns we are gone
        self.transport.write(self.launch)

    def outReceived(self, data: bytes):
        self.stdout.feed(data)

    def errReceived(self, data: bytes):
        self.stderr.feed(data)

    def outConnectionLost(self):
        self.stdout.end()

    def errConnectionLost(self):
        self.stderr.end()

    def _control(self, message: dict) -> None:
        what = message.get("nac_control")
        if what == "ready":
            self.ready = True
            self.supervisor.worker_ready(self)
        elif what == "ids" and isinstance(message.get("upto"), int):
            self.supervisor.ids_reserved(self.worker, message["upto"])
        elif what == "config_error" and isinstance(message.get("line"), str):
            self.config_error = message["line"]
        elif what == "metrics" and isinstance(message.get("families"), list):
            self.metrics = message["families"]
            waiting = self.metrics_pending.pop(message.get("id"), None)
            if waiting is not None:
                waiting.callback(None)
        elif isinstance(what, str) and what in self.supervisor.on_control:
            try:
                self.supervisor.on_control[what](self.worker, message)
            except Exception:
                log.failure("the handler of a {what!r} message of worker {worker} failed", what=what,
                            worker=self.worker)
        else:
            log.debug("worker {worker} sent a control message nac does not handle: {what!r}",
                      worker=self.worker, what=what)

    def ask_metrics(self, request: int) -> defer.Deferred:
        """Ask the worker for its metrics: a Deferred firing (with None) once
        :attr:`metrics` holds its answer."""
        answered = self.metrics_pending[request] = defer.Deferred()
        self.transport.write(json.dumps({"metrics": request}).encode() + b"\n")
        return answered

    def processEnded(self, reason):
        self.stdout.end()
        self.stderr.end()
        for waiting in list(self.metrics_pending.values()):
            waiting.callback(None)
        self.metrics_pending.clear()
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class _Share:
    """What workers 1 … ``processes`` - 1 get for one transport."""

    __slots__ = ("name", "processes", "descriptors", "data", "label")

    def __init__(self, name, processes, descriptors, data, label):
        self.name = name
        self.processes = processes
        self.descriptors = descriptors
        self.data = data
        self.label = label


@implementer(IWorkerProcesses)
class WorkerSupervisor(service.Service):
    """Spawns workers 1 … ``processes`` − 1 and keeps them running.

    The transports hand it what their workers need before it starts
    (:meth:`share`).  A worker that exits while the service runs is logged
    and started again after a delay that doubles from ``backoff[0]`` up to
    ``backoff[1]`` seconds with each failure, back to the start once a
    worker has served for ``stable`` seconds.  Stopping sends SIGTERM, and
    SIGKILL to a worker still there ``stop_timeout`` seconds later.

    A worker that cannot start with the configuration while nac starts (it
    was never ready before) is not started again: ``on_config_error`` gets
    its one-line reason and stops nac, as a configuration error of the main
    process would.  Later, once the file changed under a running nac, such a
    worker is retried like any other, until the file is mended.
    """

    name = "workers"

    def __init__(self, config_path: str | None, overrides: Mapping[tuple[str, str], str],
                 processes: int, *, reactor=None, publish: Callable[[dict], None] | None = None,
                 backoff: tuple[float, float] = (0.5, 30.0), stable: float = 30.0,
                 stop_timeout: float = 10.0):
        if processes < 2:
            raise ValueError("a WorkerSupervisor is for 2 or more processes")
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.overrides = dict(overrides)
        self.processes = processes
        self._shares: dict[str, _Share] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self.backoff = backoff
        self.stable = stable
        self.stop_timeout = stop_timeout
        self._reactor = reactor
        self._publish = publish
        self._failures: dict[int, int] = {}
        self._restarts: dict = {}
        self._ever_ready: set[int] = set()
        #: Called with the line of a worker that cannot start with the configuration.
        self.on_config_error: Callable[[str], None] | None = None
        #: ``on_control[kind](worker, message)``: what the main process does with
        #: the control messages ``{"nac_control": kind, …}`` this module does
        #: not know (``decided``: :func:`decision_relay`); the handler checks
        #: every field (a worker is our child, its message still untrusted data)
        self.on_control: dict[str, Callable[[int, dict], None]] = {}
        #: the counters of the workers that ended (their last snapshots), and how many ended
        self._retired: metrics.Snapshot = []
        self.restarts = 0
        self._metrics_requests = itertools.count(1)
        # the first Connection ID of each worker's next start
        self._first_id = {worker: worker + 1 for worker in range(1, processes)}

    def share(self, name: str, processes: int, descriptors: Callable[[int], dict[str, int]],
              data: Callable[[int], dict] | dict | None = None, label: str | None = None) -> None:
        """Workers 1 … ``processes`` - 1 serve transport ``name`` too, with
        the descriptors ``descriptors(worker)`` ({label: our descriptor})
        and ``data`` (a dict, or ``data(worker)``) of its main-process
        service (see :class:`~nac.interfaces.IWorkerProcesses`)."""
        if self.running:
            raise RuntimeError(f"transport {name!r} shared with the workers after they started")
        self._shares[name] = _Share(name, max(1, min(processes, self.processes)), descriptors,
                                    data if callable(data) else (lambda worker, fixed=dict(data or {}): fixed),
                                    label or name)

    def shared(self, name: str) -> int:
        """How many processes serve transport ``name`` (0: not shared)."""
        share = self._shares.get(name)
        return share.processes if share is not None else 0

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def publish(self, event: dict) -> None:
        """Hand a relayed worker event to this process's log observers."""
        (self._publish or log.observer)(event)

    # -- spawning --------------------------------------------------------------------------

    def serves(self, worker: int) -> list[str]:
        """The transports worker ``worker`` serves."""
        return [share.name for share in self._shares.values() if worker < share.processes]

    def kind(self, worker: int) -> str:
        """What worker ``worker`` is called in the log: 'PT-TLS', 'PT-TLS and RADIUS' …"""
        return " and ".join(self._shares[name].label for name in self.serves(worker)) or "idle"

    def _descriptors(self, worker: int) -> tuple[dict[int, int], dict[str, dict]]:
        """(the worker's descriptor -> ours, and what the launch line says
        of each transport it serves, its descriptors by label included)."""
        fds: dict[int, int] = {}
        transports: dict[str, dict] = {}
        child = FIRST_SHARED_FD
        for name in self.serves(worker):
            share = self._shares[name]
            labels = {}
            for label, ours in sorted(share.descriptors(worker).items()):
                fds[child] = ours
                labels[label] = child
                child += 1
            transports[name] = {"processes": share.processes, "descriptors": labels,
                                "data": share.data(worker), "label": share.label}
        return fds, transports

    def launch_line(self, worker: int) -> bytes:
        return json.dumps({
            "transports": self._descriptors(worker)[1],
            "first_id": self._first_id[worker],
            "config": self.config_path,
            "overrides": [[section, key, value] for (section, key), value in self.overrides.items()],
        }).encode() + b"\n"

    def command(self, worker: int) -> tuple[str, list[str], dict]:
        """Executable, argv and environment of worker ``worker``."""
        env = dict(os.environ)
        # import this very nac, wherever the main process found it
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        argv = [sys.executable, "-m", "nac.processes",
                "--worker", str(worker), "--processes", str(self.processes)]
        return sys.executable, argv, env

    def _spawn(self, worker: int) -> None:
        self._restarts.pop(worker, None)
        executable, argv, env = self.command(worker)
        proto = WorkerProcess(self, worker, self.launch_line(worker))
        fds: dict = {0: "w", 1: "r", 2: "r"}
        fds.update(self._descriptors(worker)[0])
        kind = self.kind(worker)
        try:
            self.reactor.spawnProcess(proto, executable, argv, env=env, childFDs=fds)
        except OSError as exc:
            log.error("cannot start {kind} worker {worker}: {error}", kind=kind, worker=worker, error=exc)
            self._again(worker, ready=False, lived=0.0)
            return
        self.workers[worker] = proto
        log.info("started {kind} worker {worker} of {n} (pid {pid})", kind=kind, worker=worker,
                 n=self.processes - 1, pid=proto.pid)

    def worker_ready(self, proto: WorkerProcess) -> None:
        self._ever_ready.add(proto.worker)
        if all(p.ready for p in self.workers.values()) and len(self.workers) == self.processes - 1:
            kinds = {self.kind(worker) for worker in range(1, self.processes)}
            log.info("all {n} {kind} worker processes are accepting", n=self.processes - 1,
                     kind=kinds.pop() if len(kinds) == 1 else "nac")

    def ids_reserved(self, worker: int, upto: int) -> None:
        """Worker ``worker`` may use Connection IDs up to ``upto``: its
        successor starts after them."""
        if upto % self.processes == (worker + 1) % self.processes:
            self._first_id[worker] = max(self._first_id[worker], upto + self.processes)

    def worker_ended(self, proto: WorkerProcess, reason) -> None:
        if self.workers.get(proto.worker) is proto:
            del self.workers[proto.worker]
        if proto.metrics:
            self._retired = metrics.sum_snapshots([self._retired, metrics.retired(proto.metrics)])
        status = _exit_status(reason)
        kind = self.kind(proto.worker)
        if not self.running:
            log.info("{kind} worker {worker} (pid {pid}) stopped: {status}",
                     kind=kind, worker=proto.worker, pid=proto.pid, status=status)
            return
        if proto.config_error is not None and proto.worker not in self._ever_ready \
                and self.on_config_error is not None:
            log.critical("{kind} worker {worker} (pid {pid}) cannot start with this configuration: "
                         "stopping nac", kind=kind, worker=proto.worker, pid=proto.pid)
            self.on_config_error(proto.config_error)
            return
        self.restarts += 1
        lived = self.reactor.seconds() - proto.started
        delay = self._again(proto.worker, ready=proto.ready, lived=lived)
        if proto.ready:
            log.error("{kind} worker {worker} (pid {pid}) died after {lived:.0f} s: {status}; "
                      "restarting it in {delay:g} s", kind=kind, worker=proto.worker, pid=proto.pid,
                      lived=lived, status=status, delay=delay)
        else:
            log.error("{kind} worker {worker} (pid {pid}) failed to start: {status} (its reason "
                      "is logged above); trying again in {delay:g} s", kind=kind, worker=proto.worker,
                      pid=proto.pid, status=status, delay=delay)

    def _again(self, worker: int, *, ready: bool, lived: float) -> float:
        if ready and lived >= self.stable:
            self._failures[worker] = 0
        failures = self._failures.get(worker, 0)
        self._failures[worker] = failures + 1
        delay = min(self.backoff[1], self.backoff[0] * 2 ** failures)
        self._restarts[worker] = self.reactor.callLater(delay, self._spawn, worker)
        return delay

    # -- metrics ---------------------------------------------------------------------------

    def metrics(self, timeout: float = METRICS_TIMEOUT) -> defer.Deferred:
        """The workers' metrics: a Deferred firing with a list of snapshots
        (:mod:`nac.metrics`), one for each worker that answered within
        ``timeout`` seconds (else its last answer), and one of the counters of
        the workers that ended."""
        asked = [proto.ask_metrics(next(self._metrics_requests)) for proto in self.workers.values()
                 if proto.ready and proto.transport is not None]
        done: defer.Deferred = defer.Deferred()
        late = self.reactor.callLater(timeout, lambda: done.called or done.callback(None))

        def answered(_):
            if late.active():
                late.cancel()
            if not done.called:
                done.callback(None)

        defer.DeferredList(asked).addCallback(answered)

        def collected(_):
            found = [proto.metrics for proto in self.workers.values() if proto.metrics]
            return found + ([self._retired] if self._retired else [])

        return done.addCallback(collected)

    def metric_families(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("nac_worker_processes", "Worker processes running and accepting",
                                value=sum(1 for proto in self.workers.values() if proto.ready))
        yield GaugeMetricFamily("nac_worker_processes_configured", "Worker processes nac runs beside its main "
                                "process", value=self.processes - 1)
        yield CounterMetricFamily("nac_worker_restarts", "Worker processes that ended while nac ran",
                                  value=self.restarts)

    # -- service ---------------------------------------------------------------------------

    def startService(self):
        if not self._shares:
            raise RuntimeError("WorkerSupervisor started without a transport to serve")
        super().startService()
        metrics.add_source(self, self.metric_families)
        for worker in range(1, self.processes):
            self._spawn(worker)

    def stopService(self):
        super().stopService()
        metrics.remove_source(self)
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        live = list(self.workers.values())
        for proto in live:
            try:
                proto.transport.signalProcess("TERM")
            except error.ProcessExitedAlready:
                pass
        if not live:
            return defer.succeed(None)
        killer = self.reactor.callLater(self.stop_timeout, self._kill, live)
        d = defer.DeferredList([proto.ended for proto in live])

        def done(result):
            if killer.active():
                killer.cancel()
            return None

        return d.addCallback(done)

    def _kill(self, live: list[WorkerProcess]) -> None:
        for proto in live:
            if not proto.ended.called:
                log.warn("{kind} worker {worker} (pid {pid}) did not stop within {s:g} s; killing it",
                         kind=self.kind(proto.worker), worker=proto.worker, pid=proto.pid, s=self.stop_timeout)
                try:
                    proto.transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass


def decision_relay(store) -> Callable[[int, dict], None]:
    """The main process's handler of the ``decided`` messages of the
    workers (:attr:`WorkerSupervisor.on_control`): a decision a worker
    committed, ``{"session": N, "decision": RelayedDecision.to_json()}``,
    goes to ``store``'s decision listeners (:meth:`~nac.db.store.PolicyStore.notify_decision`).
    A message with a field out of place is logged in one line and dropped."""

    def relayed(worker: int, message: dict) -> None:
        session = message.get("session")
        try:
            if type(session) is not int or not 0 < session < 2 ** 63:
                raise ValueError("session: not a session number")
            decision = RelayedDecision.from_json(message.get("decision"))
        except ValueError as exc:
            log.warn("worker {worker} sent a decision nac cannot use, dropped: {error}", worker=worker,
                     error=str(exc), log_limit=("unusable decision of a worker", str(worker)))
            return
        store.notify_decision(session, decision)

    return relayed


# -- worker process -----------------------------------------------------------------------


class EventWriter:
    """Log observer of a worker: one JSON event a line on the pipe to the
    main process.

    The database threads log too, so writes are serialised.  A signal
    handler (twisted logs "Received SIGTERM") can run in the middle of a
    write in the same thread: its event is queued and written by the
    interrupted call once its own line is complete, never inside it, and
    never deadlocking on the lock.  When the pipe breaks the main process is
    gone, and ``on_broken`` is called once.
    """

    def __init__(self, out, on_broken: Callable[[], None]):
        self.out = out
        self.on_broken = on_broken
        self.broken = False
        self._lock = threading.RLock()
        self._pending: collections.deque[str] = collections.deque()
        self._writing = False

    def __call__(self, event: dict) -> None:
        if not self.broken:
            self._write(event_line(event))

    def control(self, kind: str, **fields) -> None:
        """A control message for the main process (``{"nac_control": kind,
        …}``), written before this returns."""
        if not self.broken:
            self._write(json.dumps({"nac_control": kind, **fields}))

    def _write(self, line: str) -> None:
        with self._lock:
            self._pending.append(line + "\n")
            if self._writing:
                return  # re-entered from a signal handler: the outer call writes it
            self._writing = True
            try:
                while True:
                    while self._pending and not self.broken:
                        self.out.write(self._pending.popleft())
                        self.out.flush()
                    self._writing = False
                    if not self._pending or self.broken:
                        break
                    self._writing = True
            except (OSError, ValueError):
                self.broken = True
            finally:
                self._writing = False
        if self.broken:
            self._pending.clear()
            self.on_broken()


class ReservedConnectionIds:
    """Connection IDs ``first``, ``first + step``, … (an iterator for
    :class:`~nac.tnccs.core.TnccsCore`), each block of ``block`` IDs
    announced through ``reserve(last ID of the block)`` before its first ID
    is handed out.  The announcement is written to the pipe before the ID
    is used, so the main process knows it even if the worker is killed the
    next moment."""

    def __init__(self, first: int, step: int, reserve: Callable[[int], None], block: int = ID_BLOCK):
        self._next = first
        self.step = step
        self.block = block
        self.reserve = reserve
        self.reserved_upto = first - step

    def __iter__(self) -> "ReservedConnectionIds":
        return self

    def __next__(self) -> int:
        if self._next > self.reserved_upto:
            upto = self._next + self.step * (self.block - 1)
            self.reserve(upto)
            self.reserved_upto = upto
        cid, self._next = self._next, self._next + self.step
        return cid


@implementer(IReadDescriptor)
class ParentWatch:
    """Reads the worker's stdin after the launch line: each line a request
    of the main process (JSON, to ``on_request``; a line that is not a JSON
    object, or longer than :data:`MAX_REQUEST_LINE`, is dropped), and end of
    file, which means the main process is gone."""

    def __init__(self, on_gone: Callable[[], None], fd: int = 0,
                 on_request: Callable[[dict], None] | None = None):
        self.fd = fd
        self.on_gone = on_gone
        self.on_request = on_request
        self._buffer = b""
        fdesc.setNonBlocking(fd)

    def fileno(self) -> int:
        return self.fd

    def doRead(self):
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            return tmain.CONNECTION_DONE
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        if len(self._buffer) > MAX_REQUEST_LINE:
            self._buffer = b""
        for line in lines:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if isinstance(request, dict) and self.on_request is not None:
                self.on_request(request)
        return None

    def connectionLost(self, reason) -> None:
        self.on_gone()

    def logPrefix(self) -> str:
        return "nac-parent"


def _stop_reactor(reactor) -> None:
    try:
        reactor.stop()
    except error.ReactorNotRunning:
        pass


def _read_launch(fd: int = 0) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            raise SystemExit(EXIT_CANNOT_START)  # the main process went away first
        data += chunk
        if len(data) > MAX_LAUNCH_LINE:
            raise SystemExit(EXIT_CANNOT_START)
    return json.loads(data)


@implementer(IWorkerShare)
class WorkerShare:
    """What this worker got for one transport (see :class:`IWorkerShare`)."""

    def __init__(self, process: int, processes: int, all_processes: int, descriptors: dict[str, int],
                 data: dict):
        self.process = process
        self.processes = processes
        self.all_processes = all_processes
        self.descriptors = descriptors
        self.data = data


def main(argv: list[str] | None = None) -> None:
    """A worker's life: read the launch line, set up, serve until told to
    stop; it ends the process."""
    import argparse

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from nac import config as nac_config
    from nac import log as nac_log
    from nac import plugins, server

    parser = argparse.ArgumentParser(description="worker process of nac (started by nac itself)")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    args = parser.parse_args(argv)
    worker, processes = args.worker, args.processes
    # SIGUSR1 is the main process's (open the log file again): a worker logs
    # through it, and `systemctl kill -s USR1` reaches every process
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    launch = _read_launch()
    served: dict[str, dict] = launch.get("transports") or {}

    # the pipe to the main process carries log events only: a stray write to
    # fd 1 (a C library) goes to stderr, which is relayed as text
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="backslashreplace")
    os.dup2(2, 1)
    stopping = []
    kind = " and ".join(str(share.get("label") or name) for name, share in served.items()) or "idle"

    def stop(why: str | None = None) -> None:
        if stopping:
            return
        stopping.append(why)
        if why:
            log.warn("{kind} worker {worker} stops: {why}", kind=kind, worker=worker, why=why)
        reactor.callFromThread(_stop_reactor, reactor)

    writer = EventWriter(out, lambda: stop())
    globalLogBeginner.beginLoggingTo([writer], redirectStandardIO=True)

    try:
        overrides = {(section, key): value for section, key, value in launch["overrides"]}
        cfg = nac_config.load(launch["config"], overrides)
        nac_log.set_level(cfg.get("nac", "log_level"))
        transports = {name: plugins.transport_plugin(name) for name in served}
        store = server.build_store(cfg, migrate=False, process=worker)
        first_id = int(launch.get("first_id", worker + 1))
        ids = ReservedConnectionIds(first_id, processes,
                                    lambda upto: writer.control("ids", upto=upto))
        core = server.build_core(cfg, connection_ids=ids)
        server.attach_store(core, store)
        if store is not None:
            # the main process tells the NASes (RADIUS CoA over their RadSec connections)
            store.decision_listeners.append(lambda session_id, decision: writer.control(
                "decided", session=session_id, decision=RelayedDecision.of(decision).to_json()))
        top = service.MultiService()
        RepeatSummaryService().setServiceParent(top)
        store.setServiceParent(top)
        server.CoreService(core).setServiceParent(top)
        for name, plugin in transports.items():
            share = served[name]
            plugin.make_worker_service(cfg, core, store, WorkerShare(
                worker, int(share["processes"]), processes, dict(share["descriptors"]), dict(share["data"]))
            ).setServiceParent(top)
        top.startService()
    except (nac_config.ConfigError, server.StartupError, plugins.TransportPluginError) as exc:
        line = server.one_line(exc)
        log.error("{kind} worker {worker} cannot start: {error}", kind=kind, worker=worker, error=line)
        # what differs from the main process, which started with this configuration
        writer.control("config_error", line=f"{line} (in {kind} worker process {worker}, "
                                            f"{_user()}, directory {os.getcwd()})")
        _exit(EXIT_CONFIG_ERROR)
    except Exception:
        log.failure("{kind} worker {worker} cannot start", kind=kind, worker=worker)
        _exit(EXIT_CANNOT_START)

    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    # from here on the reactor closing stdin is no news
    reactor.addSystemEventTrigger("before", "shutdown", stopping.append, "shutdown")
    def request(message: dict) -> None:
        if isinstance(message.get("metrics"), int):
            writer.control("metrics", id=message["metrics"], families=metrics.snapshot())

    reactor.addReader(ParentWatch(lambda: stop("the main nac process is gone"), on_request=request))
    # Ctrl-C reaches the whole process group: the main process decides
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)
    where = [getattr(child, "where", None) for child in top]
    log.info("{kind} worker {worker} (pid {pid}) accepting on {where} (Connection IDs {first}, "
             "{first}+{step}, …)", kind=kind, worker=worker, pid=os.getpid(),
             where=", ".join(w for w in where if w), first=first_id, step=processes)
    writer.control("ready")
    reactor.run()
    _exit(0)


def _user() -> str:
    import pwd

    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"uid {os.geteuid()}"


def _exit(status: int) -> None:
    """End the worker now.  Its log lines are written (each one is flushed)
    and its services stopped, or never started; a thread that something
    (a pool half started, an IMV) left running must not keep a worker the
    main process believes stopped."""
    os._exit(status)


if __name__ == "__main__":
    main()
