"""PT-TLS assessment load generator: rate, latency and server CPU per assessment.

    python bench/pt_tls_load.py [--server HOST:PORT --server-pid PID] \\
        --cacert CA.pem (--client ID --secret PW | --cert C.pem --key K.pem) \\
        [--concurrency 1,4,16] [--duration 10] [--processes 2] [--collectors os,scanner] \\
        [--live [--fresh]] [--idle N] [--json]

Each assessment is a complete RFC 6876 session (TLS handshake, version
exchange, SASL PLAIN or a client certificate, PB-TNC with the chosen
collectors' measurements of this host) against any PT-TLS server: nac, or
strongSwan's PDP for a side-by-side figure.  By default two sessions are
recorded live by nac's own TNC client library and then replayed over new
TLS sessions, every server message checked against the recording
(bench/pt_tls_replay.py: the method of ../shared/baselines.md); with
``--live`` nac's client builds every session.  The client runs in
``--processes`` worker processes, each with ``concurrency / processes``
assessments in flight.

Without ``--server`` the script starts nac itself (``twistd -n nac`` with a
temporary state directory, the demo PKI, a SASL user and the PT-TLS worker
processes of the default ``[pt-tls] workers = auto``) with the IMVs of
``--imvs``, and knows its pid.  With ``--server``, pass ``--server-pid`` (the
server's main process) to get its CPU figure.

Figures, per concurrency level (see ../shared/baselines.md for the method):
completed assessments per second, p50 and p99 latency of a whole assessment,
failures, the load generator's own CPU time per assessment (it shares the
machine when both run here), and the server's CPU time (utime + stime + children's, from
``/proc/PID/stat``, summed over the server process and its live descendants
such as nac's PT-TLS workers) divided by the assessments completed.
``--idle N`` additionally opens N connections that stop after the PT-TLS
version exchange and reports the server's resident memory (all its
processes) per idle connection.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pt_tls_replay import record, replay_worker  # noqa: E402
from bench._measure import (  # noqa: E402
    add_failures,
    add_settings,
    cpu_text,
    level_figures,
    measure_once,
    parse_server,
    run_levels,
    run_workers,
    server_cpu_seconds,
    server_rss_bytes,
)


# -- starting nac when no server is given --------------------------------------------------

class LocalNac:
    """``twistd -n nac`` on 127.0.0.1 with a SASL user, for a self-contained run."""

    USER, PASSWORD = "bench", "bench-password"

    def __init__(self, imvs: str, extra: list[str]):
        from tests.nacserver import NacServer, repo_env

        # the server's own default, one PT-TLS process per CPU, unless --set says otherwise;
        # room for --idle's connections however the kernel spreads them over the processes
        # and for the load generator's connections, which all come from 127.0.0.1
        sections = {"pt-tls": {"workers": "auto", "max_connections": "4096", "max_unauthenticated": "4096",
                               "max_unauthenticated_per_source": "4096"},
                    "auth": {"max_password_checks": "4096", "max_password_checks_per_source": "4096"}}
        if imvs:
            sections["nac"] = {"imvs": imvs}
        self.server = NacServer(add_settings(sections, extra))
        subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config), "init"],
                       check=True, env=repo_env(), stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "nac.admin", "--config", str(self.server.config),
                        "user", "add", self.USER, "--password", self.PASSWORD],
                       check=True, env=repo_env(), stdout=subprocess.DEVNULL)
        self.server.start()
        self._wait_for_workers()

    def _wait_for_workers(self, timeout: float = 60.0) -> None:
        """Wait until the server (with nac's PT-TLS worker processes, if any)
        has finished starting: their start-up must not count as CPU spent on
        the first level's assessments.  Settled is two half-seconds in a row
        in which all its processes together used under 5 % of a CPU."""
        deadline = time.monotonic() + timeout
        quiet = 0
        before = server_cpu_seconds(self.pid)
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            now = server_cpu_seconds(self.pid)
            quiet = quiet + 1 if now - before < 0.025 else 0
            before = now

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def stop(self) -> None:
        self.server.stop()


# -- the client workers ----------------------------------------------------------------------

def recorded_session(args: dict):
    """A :class:`~bench.pt_tls_replay.Script` recorded from ``args``' server
    by nac's client, in a process of its own (it runs a reactor, which this
    one must not before forking the workers); or the reason there is none."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=record, args=(args, child))
    p.start()
    child.close()
    try:
        return parent.recv()
    except EOFError:
        return "the recording process died"
    finally:
        p.join()


def _worker(args: dict, in_flight: int, start_at: float, stop_at: float, quota: int | None, out) -> None:
    """One process: keep ``in_flight`` assessments running until ``stop_at``
    or until ``quota`` assessments were started."""
    from twisted.internet import reactor

    from nac import log as nac_log
    from nac.client.collectors import make_collectors
    from nac.client.pt_tls import client_tls_options, run_assessment

    nac_log.set_level("error")  # the load generator's own log lines are read by nobody

    tls = client_tls_options(cacert=args["cacert"], server_name=args["server_name"],
                             cert=args["cert"], key=args["key"])
    imcs = make_collectors(args["collectors"])
    if not args["fresh"]:
        for imc in imcs:
            measure_once(imc)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    running = [0]
    started = [0]

    def launch():
        if time.monotonic() >= stop_at or (quota is not None and started[0] >= quota):
            if running[0] == 0:
                reactor.stop()
            return
        running[0] += 1
        started[0] += 1
        began = time.monotonic()
        d = run_assessment(reactor, args["host"], args["port"], identity=args["client"],
                           password=args["secret"], collectors=imcs, tls_options=tls,
                           timeout=args["timeout"])

        def ok(outcome):
            if outcome.completed:
                latencies.append(time.monotonic() - began)
            else:
                failures["incomplete"] = failures.get("incomplete", 0) + 1

        def bad(failure):
            reason = getattr(failure.value, "reason", None) or failure.getErrorMessage()
            failures[reason[:120]] = failures.get(reason[:120], 0) + 1

        def next_one(_):
            running[0] -= 1
            launch()

        d.addCallbacks(ok, bad).addBoth(next_one)

    def begin():
        for _ in range(in_flight):
            launch()

    cpu = []

    def begin_measured():
        cpu.append(time.process_time())
        begin()

    reactor.callLater(max(0.0, start_at - time.monotonic()), begin_measured)
    reactor.run(installSignalHandlers=False)
    out.send((latencies, failures, time.process_time() - cpu[0] if cpu else 0.0))
    out.close()


def run_level(args: dict, concurrency: int, processes: int, duration: float, pid: int | None,
              count: int | None = None) -> dict:
    worker = replay_worker if args.get("script") else _worker
    replies, wall, cpu, busy = run_workers(worker, args, concurrency, processes, duration, pid, count)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    client_cpu = 0.0
    mismatches: dict[str, tuple[str, str]] = {}
    for lat, fail, used, *more in replies:
        latencies.extend(lat)
        add_failures(failures, fail)
        client_cpu += used
        for reason, first in (more[0] if more else {}).items():
            mismatches.setdefault(reason, first)
    done = len(latencies)
    return {
        **level_figures(concurrency, latencies, failures, wall, busy),
        # replaying: the first server message that differed, for each kind (where, hex)
        "mismatches": mismatches,
        "server_cpu_ms_per_assessment": round(cpu * 1e3 / done, 2) if (cpu is not None and done) else None,
        "client_cpu_ms_per_assessment": round(client_cpu * 1e3 / done, 2) if done else None,
    }


# -- idle connections ------------------------------------------------------------------------

# RFC 6876 §3.5: IETF vendor, type 1 (Version Request), length 20, id 0; min = max = pref = 1
VERSION_REQUEST = struct.pack("!IIII", 0, 1, 20, 0) + bytes((0, 1, 1, 1))


def _authenticate(s, args: dict, framer) -> None:
    """Version exchange and, when the server offers SASL PLAIN, log in."""
    from transports.pt_tls.wire import (PtTlsMessage, PtTlsMessageType, SaslMechanismSelection,
                                        SaslMechanisms, SaslPlainResponse)

    def receive():
        while True:
            pending = framer.feed(s.recv(65536))
            if pending:
                return pending

    s.sendall(VERSION_REQUEST)
    messages = []
    while not any(m.type == PtTlsMessageType.SASL_MECHANISMS for m in messages):
        messages += receive()
    offered = SaslMechanisms.parse([m for m in messages if m.type == PtTlsMessageType.SASL_MECHANISMS][0].value)
    if "PLAIN" in offered.names and args["client"]:
        initial = SaslPlainResponse(args["client"], args["secret"]).build()
        s.sendall(PtTlsMessage(0, PtTlsMessageType.SASL_MECHANISM_SELECTION, 1,
                               SaslMechanismSelection("PLAIN", initial).to_value()).build())
        while not any(m.type == PtTlsMessageType.SASL_RESULT for m in receive()):
            pass


def idle_memory(args: dict, count: int, pid: int) -> dict:
    """Server RSS growth per authenticated connection left idle (after the
    version exchange and SASL PLAIN, or a client certificate)."""
    from transports.pt_tls.wire import PtTlsFramer

    ctx = ssl.create_default_context(cafile=args["cacert"])
    ctx.check_hostname = False
    if args["cert"]:
        ctx.load_cert_chain(args["cert"], args["key"])
    before = server_rss_bytes(pid)
    held = []
    try:
        for _ in range(count):
            try:
                raw = socket.create_connection((args["host"], args["port"]), timeout=30)
                s = ctx.wrap_socket(raw, server_hostname=args["server_name"])
                _authenticate(s, args, PtTlsFramer())
            except (OSError, ValueError) as exc:
                raise SystemExit(f"idle: the server refused connection {len(held) + 1} of {count} "
                                 f"({type(exc).__name__}: {exc}); is its [pt-tls] max_connections lower?")
            held.append(s)
        time.sleep(0.5)
        after = server_rss_bytes(pid)
    finally:
        for s in held:
            s.close()
    return {"idle_connections": count,
            "server_rss_growth_kib": round((after - before) / 1024),
            "kib_per_idle_connection": round((after - before) / 1024 / count, 1)}


# -- command line ----------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--server", metavar="HOST:PORT", help="PT-TLS server to load (default: start nac here)")
    p.add_argument("--server-pid", type=int, metavar="PID", help="server process, for its CPU and memory")
    p.add_argument("--server-name", help="name the server certificate must carry (default: HOST)")
    p.add_argument("--cacert", help="CA of the server certificate (default with a local nac: its demo CA)")
    p.add_argument("--client", help="SASL PLAIN identity")
    p.add_argument("--secret", help="SASL PLAIN password")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="client private key (PEM)")
    p.add_argument("--collectors", default="os,scanner", help="collectors to run (default: %(default)s)")
    p.add_argument("--live", action="store_true",
                   help="build every session with nac's client and collectors instead of replaying two "
                        "recorded ones (the default, bench/pt_tls_replay.py: new TLS sessions, every "
                        "server message checked); the load generator then costs about twice the CPU")
    p.add_argument("--fresh", action="store_true",
                   help="let the collectors measure the host in every assessment (default: once per worker)")
    p.add_argument("--imvs", default="", help="IMVs of the local nac, e.g. imvs.os:OsImv (default: none)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra configuration of the local nac, e.g. imv:scanner.tcp_ports=22")
    p.add_argument("--concurrency", default="1,16,256", help="comma-separated levels (default: %(default)s)")
    p.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="client worker processes (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N",
                   help="run exactly N assessments per level instead of --duration seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="per-assessment timeout")
    p.add_argument("--idle", type=int, default=0, metavar="N", help="also measure N idle connections")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(argv)
    if ns.fresh and not ns.live:
        p.error("--fresh measures the host in every assessment: it needs --live")

    local = None
    if ns.server:
        host, port = parse_server(ns.server)
        pid = ns.server_pid
        if not ns.cacert:
            p.error("--cacert is required with --server")
    else:
        local = LocalNac(ns.imvs, ns.set)
        host, port, pid = "127.0.0.1", local.server.port, local.pid
        ns.cacert = ns.cacert or str(local.server.ca)
        if not ns.cert:
            ns.client = ns.client or LocalNac.USER
            ns.secret = ns.secret or LocalNac.PASSWORD
    args = {"host": host, "port": port, "server_name": ns.server_name or host, "cacert": ns.cacert,
            "client": ns.client, "secret": ns.secret, "cert": ns.cert, "key": ns.key,
            "collectors": [c for c in ns.collectors.split(",") if c], "timeout": ns.timeout,
            "fresh": ns.fresh}
    results = {"server": f"{host}:{port}", "server_pid": pid, "collectors": args["collectors"],
               "client_processes": ns.processes, "client": "nac" if ns.live else "replay", "levels": []}
    duration = ns.duration if ns.count is None else 3600.0
    try:
        if not ns.live:
            args["script"] = recorded_session(args)
            if isinstance(args["script"], str):
                print(args["script"], file=sys.stderr)
                return 1
            if not ns.json:
                steps = args["script"].steps
                print(f"replaying a recorded session: {sum(s for s, _ in steps)} client and "
                      f"{sum(not s for s, _ in steps)} server messages, "
                      f"{sum(len(m) for s, m in steps if s)} bytes sent", flush=True)
        results["levels"] = run_levels(
            ns.concurrency, lambda level: run_level(args, level, ns.processes, duration, pid, ns.count),
            quiet=ns.json,
            details=lambda r: (f"{cpu_text(r['server_cpu_ms_per_assessment'], 'assessment')}  "
                               f"(load generator {r['client_cpu_ms_per_assessment'] or 0:.2f} ms)"
                               + "".join(f"\n        {reason}: first at {where}; the message: {message}"
                                         for reason, (where, message) in r["mismatches"].items())))
        if ns.idle and pid:
            results["idle"] = idle_memory(args, ns.idle, pid)
            if not ns.json:
                i = results["idle"]
                print(f"idle: {i['idle_connections']} connections, server RSS +{i['server_rss_growth_kib']} KiB, "
                      f"{i['kib_per_idle_connection']} KiB per idle connection")
    finally:
        if local:
            local.stop()
    if ns.json:
        print(json.dumps(results, indent=2))
    return 0 if all(r["completed"] and not r["failed"] for r in results["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
