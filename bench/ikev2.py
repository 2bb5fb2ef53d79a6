"""IKEv2 responder benchmark: IKE_SA_INIT rates with and without cookies,
complete IKE_AUTH handshakes (EAP-TTLS with inner EAP-MD5) per second, and
memory per half-open IKE SA under a flood of IKE_SA_INIT requests.

    python bench/ikev2.py [--duration 5] [--concurrency 8] [--flood 6000 --max-half-open 3000]
    python bench/ikev2.py --server 127.0.0.1:500 [--server-pid PID] [--ca ca.pem --user carol --password PW]

Without ``--server`` it starts ``twistd -n nac`` (``transports = ikev2``
on free UDP ports of 127.0.0.1, a temporary state directory with the demo
PKI, the EAP user ``carol``, ``[eap] tnc = none``) once per phase, with the
cookie threshold and half-open limit the phase needs.  With ``--server`` it
targets any IKE responder (strongSwan's charon too): the rate phases need
nothing else, the handshake phase needs ``--ca`` (the CA of the gateway's
and EAP-TTLS server certificate), ``--user``/``--password`` and an
``aes256-sha256-x25519`` IKE proposal on the gateway; server CPU and
memory are read only when ``--server-pid`` says which process to look at.

Phases:

* ``init``: IKE_SA_INIT requests from fresh SPIs, ``--window`` outstanding,
  below the cookie threshold: full responses (DH, key derivation, state)
  per second.
* ``cookie``: the same above the threshold: stateless COOKIE responses per
  second, then requests carrying the cookie (two round trips each) answered
  in full per second.
* ``auth``: complete handshakes (IKE_SA_INIT, IKE_AUTH with EAP-Identity,
  EAP-TTLS TLS 1.2 handshake, inner EAP-MD5, EAP-Success, AUTH from the MSK,
  CHILD_SA with a virtual IP) per second, ``--concurrency`` in flight,
  each deleted afterwards.
* ``flood``: ``--flood`` IKE_SA_INIT requests against ``--max-half-open``:
  how many were answered (no more than the limit: the rest are dropped),
  and the server's resident memory per half-open IKE SA.

Server CPU per operation is utime + stime (and children's) of the server
process and its live descendants (``/proc/PID/stat``) over the phase
divided by what the phase completed; memory is their resident set.
Client and server share the machine: compare figures of one run.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._measure import parse_server, server_cpu_seconds, server_rss_bytes  # noqa: E402
from tests.nacserver import TWISTD, free_port, repo_env  # noqa: E402
from tests.test_eap_ttls import TtlsPeer  # noqa: E402
from tests.test_ikev2_sa import ScriptedInitiator  # noqa: E402
from transports.ikev2 import crypto  # noqa: E402
from transports.ikev2.message import (  # noqa: E402
    Delete,
    Eap,
    ExchangeType,
    IkeMessage,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    ProtocolId,
    SecurityAssociation,
)
from transports.ikev2.transforms import parse_proposals  # noqa: E402

PASSWORD = "bench-Secret-1"


# -- the server -----------------------------------------------------------------------------------


class BenchServer:
    """``twistd -n nac`` with only the IKEv2 transport, for one phase."""

    def __init__(self, workdir: Path, *, cookie_threshold: int, max_half_open: int, log_level: str) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(socket.SOCK_DGRAM)
        self.nat_port = free_port(socket.SOCK_DGRAM)
        self.config = self.dir / "nac.conf"
        self.config.write_text(f"""[nac]
state_dir = {workdir.parent / 'state'}
transports = ikev2
log_level = {log_level}

[ikev2]
listen = 127.0.0.1
port = {self.port}
nat_port = {self.nat_port}
cookie_threshold = {cookie_threshold}
max_half_open = {max_half_open}

[eap]
methods = ttls
inner_methods = md5
tnc = none
""")
        self.log = self.dir / "nac.log"
        self.proc = subprocess.Popen(TWISTD + ["-n", "--pidfile=", "--logfile", str(self.log), "nac",
                                               "--config", str(self.config)],
                                     cwd=self.dir, env=repo_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "IKEv2 responder listening" not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nac did not start:\n{self.log_text()}")
            time.sleep(0.1)
        self.pid = self.proc.pid
        self.ca = workdir.parent / "state" / "ca.pem"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def admin(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.config), *args], env=repo_env(),
                       check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- IKE_SA_INIT floods ---------------------------------------------------------------------------


class InitRequests:
    """IKE_SA_INIT requests with fresh SPIs (one KE value for all: the server
    cannot tell, and the client stays cheap)."""

    def __init__(self, proposal: str = "aes256-sha256-x25519") -> None:
        self.sa = SecurityAssociation(parse_proposals([proposal]))
        self.dh = crypto.DiffieHellman.generate(31)
        self.nonce = crypto.new_nonce()

    def make(self, cookie: bytes | None = None, spi: bytes | None = None) -> tuple[bytes, bytes]:
        spi = spi or crypto.new_spi()
        payloads = ([Notify(NotifyType.COOKIE, cookie)] if cookie else []) + [
            self.sa, KeyExchange(31, self.dh.public_value), Nonce(self.nonce)]
        return spi, IkeMessage(spi, bytes(8), ExchangeType.IKE_SA_INIT, 0, tuple(payloads), initiator=True).build()


def flood(server: tuple[str, int], count: int | None, duration: float, window: int, *, with_cookies: bool,
          pace: float = 1.0, source: str | None = None) -> dict:
    """Send IKE_SA_INIT requests, ``window`` outstanding; count the answers.

    With ``with_cookies`` a COOKIE answer is followed by the request with
    the cookie, and only full answers count as done.  ``source``: the
    address to send from."""
    requests = InitRequests()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if source:
        sock.bind((source, 0))
    sock.connect(server)
    sock.setblocking(False)
    sent = answered = cookies = full = errors = 0
    outstanding: dict[bytes, float] = {}
    started = time.monotonic()
    deadline = started + duration
    while True:
        now = time.monotonic()
        if now > deadline or (count is not None and sent >= count and not outstanding):
            break
        while len(outstanding) < window and (count is None or sent < count):
            spi, data = requests.make()
            try:
                sock.send(data)
            except BlockingIOError:
                break
            outstanding[spi] = now
            sent += 1
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            # forget requests the server dropped (flood limits) after a while
            if outstanding:
                stale = [spi for spi, t in outstanding.items() if now - t > pace]
                for spi in stale:
                    del outstanding[spi]
            time.sleep(0.0002)
            continue
        answered += 1
        message = IkeMessage.parse(data)
        notify = message.payloads[0] if message.payloads and isinstance(message.payloads[0], Notify) else None
        if notify is not None and notify.notify_type == NotifyType.COOKIE:
            cookies += 1
            if with_cookies and message.spi_i in outstanding:
                _, retry = requests.make(cookie=notify.data, spi=message.spi_i)
                sock.send(retry)
                outstanding[message.spi_i] = time.monotonic()
            else:
                outstanding.pop(message.spi_i, None)
            continue
        outstanding.pop(message.spi_i, None)
        if notify is not None and notify.is_error:
            errors += 1
        else:
            full += 1
    elapsed = time.monotonic() - started
    sock.close()
    return {"sent": sent, "answered": answered, "cookies": cookies, "full": full, "errors": errors,
            "seconds": elapsed}


# -- complete handshakes --------------------------------------------------------------------------


def handshake(initiator: ScriptedInitiator):
    """The initiator's side of one handshake, as a generator: yields the
    datagrams to send, is sent back each datagram received, returns at the end."""
    while True:
        answer = yield [initiator.ike_sa_init()]
        status = initiator.receive_init(answer)
        if status == "ok":
            break
        if status not in ("cookie", "invalid_ke"):
            raise RuntimeError(f"IKE_SA_INIT answered with {status}")
    inner = yield from _exchange(initiator, initiator.first_ike_auth())
    request = initiator.check_first_response(inner)
    while True:
        inner = yield from _exchange(initiator, initiator.request(
            ExchangeType.IKE_AUTH, [Eap(initiator.eap_peer.respond(request))]))
        eap = next((p for p in inner if isinstance(p, Eap)), None)
        if eap is None or eap.data[0] != 1:
            break
        request = eap.data
    if eap is None or eap.data[0] != 3:
        raise RuntimeError(f"EAP ended without success: {[type(p).__name__ for p in inner]}")
    initiator.eap_peer.respond(eap.data)
    initiator.msk = initiator.eap_peer.keys()[0]
    initiator.check_final_response((yield from _exchange(initiator, initiator.final_ike_auth())))
    yield from _exchange(initiator, initiator.request(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.IKE)]))


def _exchange(initiator: ScriptedInitiator, datagrams: list[bytes]):
    answer = yield datagrams
    while True:
        if not answer[19] & 0x20:  # a request of the responder's (a DELETE): not what is awaited
            answer = yield []
            continue
        inner = initiator.receive_one(answer)
        if inner is not None:
            return inner
        answer = yield []


def handshakes(server: tuple[str, int], ca: Path, user: str, password: str, duration: float,
               concurrency: int, tls_version: str) -> dict:
    selector = selectors.DefaultSelector()
    done = failed = 0
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + duration

    def launch():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.connect(server)
        peer = TtlsPeer(ca, user, password, inner="md5", tls_version=tls_version, outer_identity=user)
        # many clients of one identity at once: no INITIAL_CONTACT, which would replace the others
        initiator = ScriptedInitiator(eap_peer=peer, address=sock.getsockname(), identity=f"{user}@bench",
                                      initial_contact=False)
        steps = handshake(initiator)
        state = {"steps": steps, "last": next(steps), "at": time.monotonic(), "tries": 0,
                 "began": time.monotonic()}
        for data in state["last"]:
            sock.send(data)
        selector.register(sock, selectors.EVENT_READ, state)

    for _ in range(concurrency):
        launch()
    while selector.get_map():
        now = time.monotonic()
        for key, _ in selector.select(timeout=0.2):
            sock, state = key.fileobj, key.data
            data = sock.recv(65535)
            try:
                out = state["steps"].send(data)
            except StopIteration:
                done += 1
                latencies.append(time.monotonic() - state["began"])
                selector.unregister(sock)
                sock.close()
                if time.monotonic() < deadline:
                    launch()
                continue
            except Exception as exc:
                failed += 1
                print(f"  handshake failed: {exc}", file=sys.stderr)
                selector.unregister(sock)
                sock.close()
                if time.monotonic() < deadline:
                    launch()
                continue
            if out:
                state["last"], state["at"], state["tries"] = out, time.monotonic(), 0
                for datagram in out:
                    sock.send(datagram)
        for key in list(selector.get_map().values()):
            state = key.data
            if now - state["at"] > 2.0:  # retransmit like an initiator does
                state["tries"] += 1
                state["at"] = now
                if state["tries"] > 3:
                    failed += 1
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    if now < deadline:
                        launch()
                    continue
                for datagram in state["last"]:
                    key.fileobj.send(datagram)
    return {"done": done, "failed": failed, "seconds": time.monotonic() - started, "latencies": latencies}


# -- the run --------------------------------------------------------------------------------------


def per_op(cpu: float | None, n: int) -> str:
    if cpu is None or not n:
        return "n/a"
    return f"{cpu / n * 1000:.2f} ms"


def run_phase(name: str, args, work: Path, *, cookie_threshold: int, max_half_open: int, body):
    server = None
    if args.server:
        target, pid = parse_server(args.server), args.server_pid
    else:
        server = BenchServer(work / name, cookie_threshold=cookie_threshold, max_half_open=max_half_open,
                             log_level=args.log_level)
        if not (work / "user-added").exists():
            server.admin("user", "add", args.user, "--password", args.password, "--eap")
            (work / "user-added").touch()
        target, pid = ("127.0.0.1", server.port), server.pid
    try:
        time.sleep(0.3)
        cpu0 = server_cpu_seconds(pid) if pid else None
        rss0 = server_rss_bytes(pid) if pid else None
        result = body(target, server)
        cpu = server_cpu_seconds(pid) - cpu0 if pid else None
        rss = server_rss_bytes(pid) - rss0 if pid else None
        return result, cpu, rss, rss0
    finally:
        if server is not None:
            server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT of an IKE responder to target instead of starting nac")
    parser.add_argument("--server-pid", type=int, help="process to read CPU and memory of (with --server)")
    parser.add_argument("--ca", type=Path, help="CA certificate of the gateway (with --server)")
    parser.add_argument("--user", default="carol")
    parser.add_argument("--password", default=PASSWORD)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate phase")
    parser.add_argument("--window", type=int, default=32, help="IKE_SA_INIT requests outstanding")
    parser.add_argument("--concurrency", type=int, default=4, help="handshakes in flight")
    parser.add_argument("--tls", default="1.2", choices=("1.2", "1.3"), help="EAP-TTLS TLS version")
    parser.add_argument("--flood", type=int, default=6000, help="IKE_SA_INIT requests of the flood phase")
    parser.add_argument("--max-half-open", type=int, default=3000, help="the server's limit in the flood phase")
    parser.add_argument("--phases", default="init,cookie,auth,flood")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"),
                        help="the started nac's [nac] log_level")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    work = Path(tempfile.mkdtemp(prefix="nac-bench-ikev2-"))
    print(f"IKEv2 responder benchmark ({'server ' + args.server if args.server else 'nac started here'}), "
          f"{os.cpu_count()} CPUs shared by client and server")
    try:
        if "init" in phases:
            r, cpu, _, _ = run_phase("init", args, work, cookie_threshold=10 ** 6, max_half_open=10 ** 6,
                                     body=lambda t, s: flood(t, None, args.duration, args.window,
                                                             with_cookies=False))
            print(f"IKE_SA_INIT, no cookies: {r['full'] / r['seconds']:.0f} responses/s "
                  f"({r['full']} in {r['seconds']:.1f} s), server CPU {per_op(cpu, r['full'])} per response"
                  + (f"; {r['cookies']} COOKIE responses: the server's cookie threshold was reached"
                     if r["cookies"] else ""))
        if "cookie" in phases:
            r, cpu, _, _ = run_phase("cookie", args, work, cookie_threshold=1, max_half_open=10 ** 6,
                                     body=lambda t, s: flood(t, None, args.duration, args.window,
                                                             with_cookies=False))
            print(f"IKE_SA_INIT above the cookie threshold: {r['cookies'] / r['seconds']:.0f} COOKIE responses/s, "
                  f"server CPU {per_op(cpu, r['cookies'])} per COOKIE")
            r, cpu, _, _ = run_phase("cookie2", args, work, cookie_threshold=1, max_half_open=10 ** 6,
                                     body=lambda t, s: flood(t, None, args.duration, args.window,
                                                             with_cookies=True))
            print(f"IKE_SA_INIT with cookies (two round trips): {r['full'] / r['seconds']:.0f} full responses/s, "
                  f"server CPU {per_op(cpu, r['full'])} per IKE SA (COOKIE included)")
        if "auth" in phases:
            def auth(target, server):
                ca = server.ca if server is not None else args.ca
                if ca is None:
                    raise SystemExit("--ca is needed for the handshake phase with --server")
                return handshakes(target, ca, args.user, args.password, args.duration, args.concurrency, args.tls)
            r, cpu, _, _ = run_phase("auth", args, work, cookie_threshold=10 ** 6, max_half_open=10 ** 6, body=auth)
            print(f"complete IKE_AUTH handshakes (EAP-TTLS TLS {args.tls} + EAP-MD5, CHILD_SA, virtual IP): "
                  f"{r['done'] / r['seconds']:.1f}/s with {args.concurrency} in flight ({r['done']} done, "
                  f"{r['failed']} failed), server CPU {per_op(cpu, r['done'])} per handshake")
        if "flood" in phases:
            stages = {}

            def flood_body(target, server):
                pid = server.pid if server is not None else args.server_pid
                # up to the limit: every request makes a half-open IKE SA (they live 30 s) ...
                first = flood(target, args.max_half_open, 60.0, args.window, with_cookies=False)
                stages["rss_full"] = server_rss_bytes(pid) if pid else None
                # ... beyond it: dropped, nothing more is kept
                stages["beyond"] = flood(target, max(args.flood - args.max_half_open, 0), 60.0, args.window,
                                         with_cookies=False, pace=0.05)
                return first
            r, cpu, rss, rss0 = run_phase("flood", args, work, cookie_threshold=10 ** 6,
                                          max_half_open=args.max_half_open, body=flood_body)
            beyond = stages["beyond"]
            limit = "the server's own limits" if args.server else f"max_half_open {args.max_half_open}"
            line = (f"flood of {r['sent'] + beyond['sent']} IKE_SA_INIT requests against {limit}: "
                    f"{r['full'] + beyond['full']} answered in full, {r['cookies'] + beyond['cookies']} with a "
                    "COOKIE, "
                    f"{beyond['sent'] - beyond['answered']} of the {beyond['sent']} beyond the limit dropped")
            if rss is not None:
                held = max(r["full"], 1)
                full = stages["rss_full"]
                line += (f"; server RSS {rss0 / 2**20:.1f} MiB -> {full / 2**20:.1f} MiB with {r['full']} half-open "
                         f"({(full - rss0) / held / 1024:.1f} KiB each) -> {(rss0 + rss) / 2**20:.1f} MiB after the "
                         "requests beyond the limit")
            print(line)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
