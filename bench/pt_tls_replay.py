"""The PT-TLS load generator's lean client (``bench/pt_tls_load.py --replay``).

../shared/baselines.md measured strongSwan's PDP with an in-process client
replaying a captured session.  This is that method for any PT-TLS server:

* :func:`record` runs two live assessments with nac's own TNC client
  (``run_assessment``, the collectors reading this host) against the
  server under test and keeps every PT-TLS message both ways, in order.
  The server's free choices are the identifiers of the PA-TNC messages in
  its batches (random, RFC 5792 §4.1; found by parsing the batches) and
  any other byte in which the two sessions' *server* messages differ;
  everything else the server sent must come back byte for byte.
* :func:`replay_worker` then runs many sessions at once in one process
  with non-blocking sockets and a selector (no reactor, no PB-TNC client):
  each session makes its own TLS handshake with the same TLS client as
  nac's (``ClientTls``: same OpenSSL, key exchange, chain and name checks),
  sends the recorded client messages, each once the server messages
  before it have arrived, and checks every server message against the
  recording.  A session counts as an assessment only when all of the
  server's messages, the assessment result batch included, matched.

What the server does per session is unchanged (it cannot tell a replayed
session from a live one: the TLS handshake is new, the messages are the
ones nac's client sent); what is left out is the client's work of
building the messages again, which on a shared machine would be measured
as much as the server.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from dataclasses import dataclass

from OpenSSL import SSL

from nac.pb.batch import PbBatch
from nac.pb.messages import PbPa, PbTncError
from transports.pt_tls.wire import HEADER_SIZE, PtTlsFramer, PtTlsMessageType, PtTlsProtocolError



@dataclass(frozen=True)
class Script:
    """One recorded session: ``steps`` are ``(sending, message)`` in the
    order the client sent and read them; ``free`` maps the index of a server
    message to the byte offsets the server may choose anew each time."""

    steps: tuple[tuple[bool, bytes], ...]
    free: dict[int, frozenset[int]]

    @classmethod
    def from_sessions(cls, first: list[tuple[str, bytes]], second: list[tuple[str, bytes]]) -> "Script":
        shape = [(d, len(m)) for d, m in first]
        if shape != [(d, len(m)) for d, m in second]:
            raise ValueError("two live sessions against the server differed in their messages' "
                             "order or sizes: the session cannot be replayed")
        free = {}
        for i, ((direction, a), (_, b)) in enumerate(zip(first, second)):
            if direction == "received":
                # a random identifier can repeat a byte by chance: its whole field is free
                chosen = pa_message_ids(a) | {k for k in range(len(a)) if a[k] != b[k]}
                if chosen:
                    free[i] = frozenset(chosen)
        return cls(tuple((d == "sending", m) for d, m in first), free)

    def difference(self, index: int, message: bytes) -> str | None:
        """Where ``message`` differs from the server's step ``index``, in a
        few words; None when it is the same but for the free bytes."""
        sending, expected = self.steps[index]
        if sending:
            return "the server sent a message where the client was to"
        if message == expected:
            return None
        if len(message) != len(expected):
            return f"{len(message)} bytes instead of {len(expected)}"
        free = self.free.get(index, ())
        for k in range(len(expected)):
            if message[k] != expected[k] and k not in free:
                return f"byte {k} is 0x{message[k]:02x}, not 0x{expected[k]:02x}"
        return None


def pa_message_ids(message: bytes) -> set[int]:
    """The offsets, in a PT-TLS message, of the identifiers of the PA-TNC
    messages it carries (RFC 5792 §4.1: each a random choice of the sender):
    in a PB-TNC Batch, each PB-PA message's body (after its 12-byte PB-TNC
    and 12-byte PB-PA headers) starts with the PA-TNC version and 3 reserved
    bytes, then the 4-byte identifier."""
    if len(message) < HEADER_SIZE or int.from_bytes(message[:8], "big") != PtTlsMessageType.PB_TNC_BATCH:
        return set()
    try:
        batch = PbBatch.parse(message[HEADER_SIZE:])
    except PbTncError:
        return set()
    found: set[int] = set()
    for pos, pb in zip(batch.offsets(), batch.messages):
        if isinstance(pb, PbPa):
            start = HEADER_SIZE + pos + 12 + 12 + 4
            found.update(range(start, start + 4))
    return found


def record(args: dict, out) -> None:
    """In a process of its own (it runs a reactor): two live assessments by
    nac's client with ``args``' server, credentials and collectors; sends
    a :class:`Script`, or a one-line reason it cannot be made, down ``out``."""
    from twisted.internet import defer, reactor

    from nac import log as nac_log
    from nac.client.pt_tls import client_tls_options, run_assessment

    nac_log.set_level("error")
    sessions: list[list[tuple[str, bytes]]] = []
    reply: list = []

    @defer.inlineCallbacks
    def run():
        try:
            tls = client_tls_options(cacert=args["cacert"], server_name=args["server_name"],
                                     cert=args["cert"], key=args["key"])
            for _ in range(2):
                messages: list[tuple[str, bytes]] = []
                outcome = yield run_assessment(
                    reactor, args["host"], args["port"], identity=args["client"], password=args["secret"],
                    collectors=args["collectors"], tls_options=tls, timeout=args["timeout"],
                    trace=lambda direction, message: messages.append((direction, message.build())))
                if not outcome.completed:
                    raise ValueError(f"the recorded session ended without a result: {outcome.error}")
                sessions.append(messages)
            reply.append(Script.from_sessions(*sessions))
        except Exception as exc:
            reply.append(f"cannot record a session to replay: {getattr(exc, 'reason', None) or exc}")
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run(installSignalHandlers=False)
    out.send(reply[0])
    out.close()


class _Session:
    """One replayed session on a non-blocking socket."""

    __slots__ = ("tls", "sock", "began", "step", "framer", "outbox", "shaking", "failed", "done")

    def __init__(self, tls: SSL.Connection, sock: socket.socket, began: float):
        self.tls, self.sock, self.began = tls, sock, began
        self.step = 0
        self.framer = PtTlsFramer()  # as nac's client: a header announcing too much fails the session
        self.outbox = b""
        self.shaking = True
        self.failed: str | None = None
        self.done = False

    def failVerification(self, failure) -> None:  # ClientTls reports a wrong server name here
        self.failed = "the server certificate does not match the expected server name"


class Replayer:
    """Keeps ``in_flight`` replayed sessions running until ``stop_at`` or
    ``quota`` sessions were started; collects latencies and failures."""

    def __init__(self, args: dict, script: Script, in_flight: int, stop_at: float, quota: int | None):
        from nac.client.pt_tls import client_tls_options

        self.address = (args["host"], args["port"])
        self.family = socket.AF_INET6 if ":" in args["host"] else socket.AF_INET
        self.tls = client_tls_options(cacert=args["cacert"], server_name=args["server_name"],
                                      cert=args["cert"], key=args["key"])
        self.timeout = args["timeout"]
        self.script = script
        self.in_flight, self.stop_at, self.quota = in_flight, stop_at, quota
        self.selector = selectors.DefaultSelector()
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self.started = 0
        self.vacant = 0
        self.differences: dict[str, tuple[str, bytes]] = {}
        """For each kind of mismatch, the first one: where, and the message."""
        self.live: set[_Session] = set()

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        self.vacant = self.in_flight
        check_at = time.monotonic() + 0.5
        while True:
            while self.vacant:
                self.vacant -= 1
                self._launch()
            if not self.live:
                break
            for key, _events in self.selector.select(timeout=0.5):
                self._advance(key.data)
            now = time.monotonic()
            if now >= check_at:
                check_at = now + 0.5
                for s in [s for s in self.live if now - s.began > self.timeout]:
                    s.failed = s.failed or f"no assessment result within {self.timeout:g} s"
                    self._finish(s)

    def _launch(self) -> None:
        if time.monotonic() >= self.stop_at or (self.quota is not None and self.started >= self.quota):
            return
        self.started += 1
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        s = _Session(None, sock, time.monotonic())
        s.tls = self.tls.connection(s, sock)
        s.tls.set_connect_state()
        self.live.add(s)
        self.selector.register(sock, selectors.EVENT_WRITE, s)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            s.failed = f"cannot connect: {errno.errorcode.get(code, code)}"
            self._finish(s)

    def _advance(self, s: _Session) -> None:
        want = selectors.EVENT_READ
        try:
            if s.shaking:
                s.tls.do_handshake()
                s.shaking = False
                self._send_due(s)
            if s.outbox:
                self._write(s)
            if not s.done:
                self._receive(s)
        except SSL.WantReadError:
            pass
        except SSL.WantWriteError:
            want = selectors.EVENT_WRITE
        except (SSL.Error, OSError) as exc:
            s.failed = s.failed or f"{type(exc).__name__}: {exc}"[:120]
        if s.failed or (s.done and not s.outbox):
            self._finish(s)
        else:
            self.selector.modify(s.sock, selectors.EVENT_WRITE if s.outbox else want, s)

    def _receive(self, s: _Session) -> None:
        """Read what TLS has, cut it into PT-TLS messages and check each."""
        closed = False
        while True:
            try:
                s.framer.receive(s.tls.recv(65536))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                closed = True
                break
        while not s.done:
            try:
                message = s.framer.next_message()
            except PtTlsProtocolError as exc:
                s.failed = f"server message {s.step} is not PT-TLS: {exc}"[:120]
                return
            if message is None:
                break
            raw = message.build()
            differs = self.script.difference(s.step, raw)
            if differs is not None:
                s.failed = f"server message {s.step} differs from the recorded session"
                self.differences.setdefault(s.failed, (differs, raw))
                return
            s.step += 1
            self._send_due(s)
        if closed and not s.done:
            s.failed = "the server closed the session before its last message"

    def _send_due(self, s: _Session) -> None:
        """Queue the client messages that follow, up to the next server one."""
        steps = self.script.steps
        while s.step < len(steps) and steps[s.step][0]:
            s.outbox += steps[s.step][1]
            s.step += 1
        if s.step == len(steps):
            s.done = True

    def _write(self, s: _Session) -> None:
        while s.outbox:
            sent = s.tls.send(s.outbox)  # WantWriteError: the socket is full, go on when writable
            s.outbox = s.outbox[sent:]

    def _finish(self, s: _Session) -> None:
        if s.done and not s.failed:
            self.latencies.append(time.monotonic() - s.began)
            try:
                s.tls.shutdown()  # close_notify, as nac's client ends a session
            except (SSL.Error, OSError):
                pass
        else:
            reason = s.failed or "incomplete"
            self.failures[reason] = self.failures.get(reason, 0) + 1
        self.live.discard(s)
        try:
            self.selector.unregister(s.sock)
        except (KeyError, ValueError):
            pass
        s.sock.close()
        self.vacant += 1  # the next session starts in the run loop


def replay_worker(args: dict, in_flight: int, start_at: float, stop_at: float, quota: int | None, out) -> None:
    """A load generator process (``bench._measure.run_workers``) replaying
    ``args["script"]``."""
    replayer = Replayer(args, args["script"], in_flight, stop_at, quota)
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu = time.process_time()
    replayer.run()
    out.send((replayer.latencies, replayer.failures, time.process_time() - cpu,
              {reason: (where, message.hex()) for reason, (where, message) in replayer.differences.items()}))
    out.close()
