"""Legitimate clients while nac is flooded before authentication: the
latency (p50, p99) and success of a legitimate client during each flood,
beside the same client without one.

    python bench/floods.py [--duration 10] [--floods idle,idle-many,sasl-guess,sasl-close,radius,ikev2]
                           [--set SECTION.KEY=VALUE ...] [--json]

It starts ``twistd -n nac`` on 127.0.0.1 with PT-TLS, RADIUS and IKEv2
(the demo PKI, one user whose password is also its EAP secret, ``[eap] tnc =
none``: what is measured is getting in, not the posture check) and nac's
defaults for everything else, the limits under test included, unless
``--set`` says otherwise.  The legitimate client runs from 127.0.0.1, one
at a time (``--legit-concurrency``):

* PT-TLS: ``bench/pt_tls_load.py --live``: a complete assessment with SASL
  PLAIN by nac's own client;
* RADIUS: ``bench/radius_load.py``: a complete EAP-TTLS authentication with
  inner PAP, relayed by NAS 127.0.0.1;
* IKEv2: complete handshakes as ``bench/ikev2.py`` runs them (EAP-TTLS with
  inner EAP-MD5, CHILD_SA, delete).

Each flood runs in a process of its own, from addresses of its own
(127.0.N.x: loopback answers on all of 127/8), for a second before and
throughout the measurement:

* ``idle``: 1,600 PT-TLS connections from one address that never send a
  byte, each opened again when the server closes it, at most
  ``--flood-rate`` new connections a second;
* ``idle-many``: the same from 50 addresses, 32 each;
* ``sasl-guess``: SASL PLAIN password guessing for the legitimate user from
  one address, 8 guesses in flight, each waiting for its answer;
* ``sasl-close``: connect, SASL PLAIN with a random user and password, close
  at once, from 64 addresses, 16 in flight: password checks that nobody
  waits for;
* ``radius``: EAP-Identity conversations that go no further
  (Access-Requests with valid Message-Authenticators, a new
  Calling-Station-Id each) from another NAS (127.0.5.1), at most
  ``--flood-rate`` a second;
* ``ikev2``: IKE_SA_INIT requests from one address (127.0.6.1) that echo
  the server's cookies (half-open IKE SAs), 64 outstanding.

Client, floods and server share the machine's CPUs: compare the rows of one
run, not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._measure import add_settings, level_figures  # noqa: E402
from tests.nacserver import NacServer, free_port, repo_env  # noqa: E402

USER, PASSWORD, SECRET = "bench", "bench-password", "bench-radius-secret"

FLOODS = {
    "idle": "PT-TLS: 1,600 idle connections, 1 address",
    "idle-many": "PT-TLS: 1,600 idle connections, 50 addresses",
    "sasl-guess": "PT-TLS: SASL PLAIN guessing, 1 address",
    "sasl-close": "PT-TLS: SASL PLAIN then close, 64 addresses",
    "radius": "RADIUS: EAP-Identity conversations, other NAS",
    "ikev2": "IKEv2: IKE_SA_INIT cookie echoes, 1 address",
}
CLIENT_OF = {"idle": "pt-tls", "idle-many": "pt-tls", "sasl-guess": "pt-tls", "sasl-close": "pt-tls",
             "radius": "radius", "ikev2": "ikev2"}
# the floods' addresses, to count the log lines about them
FLOOD_ADDRESSES = {"idle": "127.0.1.", "idle-many": "127.0.2.", "sasl-guess": "127.0.3.", "sasl-close": "127.0.4.",
                   "radius": "127.0.5.", "ikev2": "127.0.6."}
CLIENT_NAMES = {"pt-tls": "PT-TLS assessment", "radius": "RADIUS EAP-TTLS/PAP", "ikev2": "IKEv2 EAP-TTLS/MD5"}


# -- the server ----------------------------------------------------------------------------------


class FloodedNac:
    """``twistd -n nac`` with the three transports on 127.0.0.1."""

    def __init__(self, extra: list[str]):
        self.radius_port = free_port(socket.SOCK_DGRAM)
        self.ike_port = free_port(socket.SOCK_DGRAM)
        self.nat_port = free_port(socket.SOCK_DGRAM)
        sections = {
            "nac": {"transports": "pt-tls,radius,ikev2"},
            # nac's defaults (NacServer runs one process unless told)
            "pt-tls": {"workers": "auto"},
            "radius": {"listen": "127.0.0.1", "port": self.radius_port, "secret": SECRET,
                       "clients": "127.0.0.0/8", "workers": "auto"},
            "ikev2": {"listen": "127.0.0.1", "port": self.ike_port, "nat_port": self.nat_port},
            "eap": {"tnc": "none", "inner_methods": "md5,pap"},
        }
        self.server = NacServer(add_settings(sections, extra))
        self.server.admin("init")
        self.server.admin("user", "add", USER, "--password", PASSWORD, "--eap")
        self.server.start()
        time.sleep(2.0)  # the worker processes start after the port listens

    @property
    def port(self) -> int:
        return self.server.port

    def log_lines(self, about: str) -> int:
        """Lines of the log so far that name an address starting with ``about``."""
        return sum(about in line for line in self.server.log_text().splitlines())

    def stop(self) -> None:
        self.server.stop()


# -- the floods (each in a process of its own) ----------------------------------------------------


def _tls_context(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    return ctx


def _pt_tls(message_type: int, value: bytes, message_id: int) -> bytes:
    return struct.pack(">IIII", 0, message_type, 16 + len(value), message_id) + value


VERSION_REQUEST = _pt_tls(1, bytes([0, 1, 1, 1]), 0)


def _sasl_plain(user: str, password: str) -> bytes:
    return _pt_tls(4, bytes([5]) + b"PLAIN" + b"\0" + user.encode() + b"\0" + password.encode(), 1)


def idle_flood(port: int, sources: list[str], per_source: int, rate: float, stop, out) -> None:
    """Hold ``per_source`` connections from each source that send nothing;
    open again, at most ``rate`` a second, what the server closes."""
    import selectors

    sel = selectors.DefaultSelector()
    held = {source: 0 for source in sources}
    opened = closed = 0
    interval = 1.0 / rate
    next_open = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        for source in sources:
            while held[source] < per_source and next_open <= now:
                s = socket.socket()
                s.setblocking(False)
                s.bind((source, 0))
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_READ, source)
                held[source] += 1
                opened += 1
                next_open += interval
            if next_open > now:
                break
        next_open = max(next_open, now - 0.1)  # no burst to catch up after a pause
        for key, _ in sel.select(timeout=0.01):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                held[key.data] -= 1
                closed += 1
    out.send({"opened": opened, "closed by the server": closed})


def sasl_flood(port: int, ca: str, sources: list[str], in_flight: int, wait: bool, user: str | None,
               stop, out) -> None:
    """``in_flight`` loops of: connect from the next source, TLS, Version
    Request, SASL PLAIN with a wrong password (for ``user``, else a random
    one); wait for the SASL Result when ``wait``, else close at once."""
    ctx = _tls_context(ca)
    counts = {"attempts": 0, "answered": 0, "errors": 0}
    lock = threading.Lock()
    turn = iter(range(10 ** 12))

    def loop():
        while not stop.is_set():
            with lock:
                source = sources[next(turn) % len(sources)]
                counts["attempts"] += 1
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
                with ctx.wrap_socket(raw, server_hostname="nac.test") as s:
                    s.sendall(VERSION_REQUEST)
                    s.recv(4096)
                    name = user or secrets.token_hex(4)
                    s.sendall(_sasl_plain(name, secrets.token_hex(8)))
                    if wait:
                        data = b""
                        while len(data) < 16 + 1:
                            more = s.recv(4096)
                            if not more:
                                break
                            data += more
                        if len(data) >= 17:
                            with lock:
                                counts["answered"] += 1
            except (OSError, ssl.SSLError):
                with lock:
                    counts["errors"] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(in_flight)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(15)
    out.send(counts)


def radius_flood(port: int, rate: float, stop, out) -> None:
    """EAP-Response/Identity Access-Requests from NAS 127.0.5.1, each from a
    new Calling-Station-Id, at most ``rate`` a second."""
    from transports.radius.packet import Attribute, AttributeType, Code, RadiusPacket, eap_message_attributes, \
        sign_request

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.5.1", 0))
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    sent = answered = 0
    interval = 1.0 / rate
    next_send = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        while next_send <= now:
            station = ":".join(f"{b:02x}" for b in secrets.token_bytes(6))
            eap = struct.pack(">BBHB", 2, 0, 5 + 5, 1) + b"flood"
            attrs = (Attribute(AttributeType.USER_NAME, b"flood"),
                     Attribute(AttributeType.CALLING_STATION_ID, station.encode()),
                     *eap_message_attributes(eap), Attribute(AttributeType.MESSAGE_AUTHENTICATOR, bytes(16)))
            packet = sign_request(RadiusPacket(Code.ACCESS_REQUEST, sent & 0xFF, secrets.token_bytes(16), attrs),
                                  SECRET.encode())
            try:
                sock.send(packet)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            next_send += interval
        next_send = max(next_send, now - 0.1)
        try:
            while sock.recv(4096):
                answered += 1
        except (BlockingIOError, ConnectionRefusedError):
            time.sleep(0.001)
    out.send({"Access-Requests": sent, "answered": answered})


def ikev2_flood(port: int, seconds: float, out) -> None:
    from bench.ikev2 import flood

    result = flood(("127.0.0.1", port), None, seconds, 64, with_cookies=True, source="127.0.6.1")
    out.send({"IKE_SA_INIT sent": result["sent"], "COOKIE answers": result["cookies"],
              "full answers": result["full"]})


def start_flood(name: str, nac: FloodedNac, args, seconds: float):
    """The flood ``name`` in a process of its own: (process, stop event, pipe)."""
    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    ca, port = str(nac.server.ca), nac.port
    if name == "idle":
        target, fargs = idle_flood, (port, ["127.0.1.1"], 1600, args.flood_rate, stop, send)
    elif name == "idle-many":
        target, fargs = idle_flood, (port, [f"127.0.2.{n}" for n in range(1, 51)], 32, args.flood_rate, stop, send)
    elif name == "sasl-guess":
        target, fargs = sasl_flood, (port, ca, ["127.0.3.1"], 8, True, USER, stop, send)
    elif name == "sasl-close":
        target, fargs = sasl_flood, (port, ca, [f"127.0.4.{n}" for n in range(1, 65)], 16, False, None, stop, send)
    elif name == "radius":
        target, fargs = radius_flood, (nac.radius_port, args.flood_rate, stop, send)
    elif name == "ikev2":
        target, fargs = ikev2_flood, (nac.ike_port, seconds, send)
    else:
        raise ValueError(name)
    process = multiprocessing.Process(target=target, args=fargs, daemon=True)
    process.start()
    return process, stop, receive


# -- the legitimate clients -----------------------------------------------------------------------


def legit_pt_tls(nac: FloodedNac, args) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "pt_tls_load.py"), "--live", "--server", f"127.0.0.1:{nac.port}",
         "--cacert", str(nac.server.ca), "--client", USER, "--secret", PASSWORD, "--collectors", "",
         "--concurrency", str(args.legit_concurrency), "--processes", "1", "--duration", str(args.duration),
         "--timeout", "30", "--json"], env=repo_env(), capture_output=True, text=True, timeout=args.duration + 120)
    return _level(done)


def legit_radius(nac: FloodedNac, args) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "radius_load.py"), "--server", f"127.0.0.1:{nac.radius_port}",
         "--secret", SECRET, "--cacert", str(nac.server.ca), "--identity", USER, "--password", PASSWORD,
         "--inner", "pap", "--tnc", "none", "--concurrency", str(args.legit_concurrency), "--processes", "1",
         "--duration", str(args.duration), "--json"], env=repo_env(), capture_output=True, text=True,
        timeout=args.duration + 120)
    return _level(done)


def _level(done: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(done.stdout)["levels"][0]
    except (ValueError, KeyError, IndexError):
        return {"completed": 0, "failed": 0, "p50_ms": None, "p99_ms": None,
                "failures": {(done.stderr.strip().splitlines() or ["no output"])[-1][:140]: 1}}


def legit_ikev2(nac: FloodedNac, args) -> dict:
    from bench.ikev2 import handshakes

    started = time.monotonic()
    r = handshakes(("127.0.0.1", nac.ike_port), nac.server.ca, USER, PASSWORD, args.duration,
                   args.legit_concurrency, "1.2")
    failures = {"handshake failed or timed out": r["failed"]} if r["failed"] else {}
    return level_figures(args.legit_concurrency, r["latencies"], failures, time.monotonic() - started)


LEGIT = {"pt-tls": legit_pt_tls, "radius": legit_radius, "ikev2": legit_ikev2}


# -- the run --------------------------------------------------------------------------------------


def run(args) -> list[dict]:
    floods = [f for f in args.floods.split(",") if f]
    for name in floods:
        if name not in FLOODS:
            raise SystemExit(f"unknown flood {name!r} (known: {', '.join(FLOODS)})")
    clients = sorted({CLIENT_OF[f] for f in floods}, key=list(LEGIT).index)
    nac = FloodedNac(args.set)
    rows = []
    try:
        for client in clients:
            rows.append({"flood": "none", "client": client, **_figures(LEGIT[client](nac, args)), "flood_figures": {}})
            _print_row(rows[-1], args)
        for name in floods:
            lines_before = nac.log_lines(FLOOD_ADDRESSES[name])
            process, stop, receive = start_flood(name, nac, args, args.duration + 3.0)
            time.sleep(1.0)
            figures = LEGIT[CLIENT_OF[name]](nac, args)
            stop.set()
            flood = receive.recv() if receive.poll(30) else {}
            process.join(30)
            rows.append({"flood": name, "client": CLIENT_OF[name], **_figures(figures), "flood_figures": flood,
                         "log_lines": nac.log_lines(FLOOD_ADDRESSES[name]) - lines_before})
            _print_row(rows[-1], args)
            time.sleep(args.settle)
    finally:
        nac.stop()
    return rows


def _figures(level: dict) -> dict:
    return {"completed": level.get("completed", 0), "failed": level.get("failed", 0),
            "p50_ms": level.get("p50_ms"), "p99_ms": level.get("p99_ms"), "failures": level.get("failures", {})}


HEADER = f"{'flood':<47} {'legitimate client':<22} {'done':>5} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8}  flood"


def _print_row(row: dict, args) -> None:
    if args.json:
        return
    if not getattr(_print_row, "headed", False):
        print(HEADER)
        _print_row.headed = True
    flood = ", ".join(f"{v:,} {k}" for k, v in row["flood_figures"].items())
    if "log_lines" in row:
        flood += f"; {row['log_lines']:,} log lines about it"
    p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
    p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
    print(f"{FLOODS.get(row['flood'], 'none'):<47} {CLIENT_NAMES[row['client']]:<22} {row['completed']:>5} "
          f"{row['failed']:>6} {p50:>8} {p99:>8}  {flood}", flush=True)
    for reason, n in row["failures"].items():
        print(f"{'':<47} {n} × {reason}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--floods", default=",".join(FLOODS), help="floods to run (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measurement per row")
    p.add_argument("--legit-concurrency", type=int, default=1, help="legitimate clients at once")
    p.add_argument("--flood-rate", type=float, default=2000.0,
                   help="new connections (idle) or Access-Requests (radius) per second at most")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between floods")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="configuration of the nac started here, e.g. pt-tls.max_unauthenticated=64")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not args.json:
        print(f"legitimate clients under pre-authentication floods, {os.cpu_count()} CPUs shared by nac, "
              f"the floods and the clients; {args.duration:g} s per row", flush=True)
    rows = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
