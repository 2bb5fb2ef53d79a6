"""RADIUS EAP-TTLS authentication load generator: rate, latency and server CPU per authentication.

    python bench/radius_load.py [--server HOST:PORT --secret S --server-pid PID \\
        --cacert CA.pem --identity ID --password PW] \\
        [--inner md5|pap|mschapv2] [--tnc pt-eap|none] [--collectors os,scanner] \\
        [--concurrency 1,16,64] [--duration 10 | --count N] [--processes 2] [--json]

Each authentication is a complete EAP conversation relayed over RADIUS, as a
NAS and an 802.1X supplicant run it, by nac's own client code
(:mod:`nac.client.radius` and :mod:`nac.eap.peer`): outer identity, the
EAP-TTLS handshake (TLS 1.3 unless ``--tls-version``), phase 2 with inner
EAP-MD5, EAP-MSCHAPv2 or PAP and, with ``--tnc pt-eap``, the PT-EAP posture
exchange with the chosen collectors; then the Access-Accept, whose MS-MPPE
keys are checked against the peer's own MSK.  Any RADIUS server speaking
EAP-TTLS can be the target (``--server``): nac, hostapd or FreeRADIUS side
by side.  The client runs in ``--processes`` worker processes with one
reactor each; every conversation in flight has its own UDP socket, reused
for the conversations that follow on it.

Without ``--server`` the script starts nac itself (``twistd -n nac`` with a
temporary state directory, the demo PKI, RADIUS on a free loopback port and
a user whose password is also its EAP secret), with the IMVs of ``--imvs``
(by default the OS IMV when a posture method is asked for).  With
``--server``, pass ``--server-pid`` (the server's main process) to get its
CPU figure.

Figures, per concurrency level (../shared/baselines.md explains the method):
completed authentications per second (an Access-Accept with EAP-Success and
matching MPPE keys; with posture, the assessment completed too), p50 and p99
latency, failures, RADIUS round trips per authentication, retransmissions,
and the server's CPU time (utime + stime + children's, from
``/proc/PID/stat``, over the server process and its live descendants)
divided by the authentications completed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import (  # noqa: E402
    add_failures,
    add_settings,
    cpu_text,
    level_figures,
    measure_once,
    parse_server,
    run_levels,
    run_workers,
)


# -- starting nac when no server is given --------------------------------------------------

class LocalNac:
    """``twistd -n nac`` with RADIUS on 127.0.0.1 and a user with an EAP secret."""

    IDENTITY, PASSWORD, SECRET = "bench", "bench-password", "bench-radius-secret"

    def __init__(self, *, imvs: str, tnc: str, extra: list[str], workdir: str | None = None):
        from tests.nacserver import NacServer, free_port

        self.radius_port = free_port(socket.SOCK_DGRAM)
        sections = {
            "nac": {"transports": "pt-tls,radius", "imvs": imvs},
            # NacServer waits for the PT-TLS port; one process serves it
            "pt-tls": {"workers": "1"},
            # the server's default: one process per CPU
            "radius": {"listen": "127.0.0.1", "port": self.radius_port, "secret": self.SECRET,
                       "clients": "127.0.0.1/32", "max_conversations": "65536", "workers": "auto"},
            "eap": {"tnc": tnc},
        }
        self.server = NacServer(add_settings(sections, extra), workdir=workdir)
        self.server.start()
        try:
            self.server.admin("user", "add", self.IDENTITY, "--password", self.PASSWORD, "--eap")
        except BaseException:
            self.server.stop()
            raise

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def stop(self) -> None:
        self.server.stop()


# -- the client workers ----------------------------------------------------------------------

def client_context(args: dict):
    """The peer's TLS context: the CA, the TLS version and, with
    ``--groups``, the key exchange groups it offers.  The OpenSSL that
    pyOpenSSL brings may put a post-quantum hybrid (X25519MLKEM768) first,
    whose key shares make the ClientHello and the server's flight longer
    (more EAP fragments) against servers that know it; a server on an older
    OpenSSL picks X25519 instead.  Raises ValueError for unknown groups."""
    from nac.eap.peer import peer_context

    context = peer_context(cacert=args["cacert"], min_tls_version=args["tls_version"] or "1.2",
                           max_tls_version=args["tls_version"] or "1.3")
    if args.get("groups"):
        from OpenSSL._util import lib  # pyOpenSSL has no setter for the groups

        if lib.SSL_CTX_set1_curves_list(context._context, args["groups"].encode()) != 1:
            raise ValueError(f"TLS groups {args['groups']!r}: not all known to OpenSSL")
    return context


def _worker(args: dict, in_flight: int, start_at: float, stop_at: float, quota: int | None, out) -> None:
    """One process: keep ``in_flight`` conversations running, each on its own
    socket, until ``stop_at`` or until ``quota`` were started."""
    from twisted.internet import reactor

    from nac.client.collectors import make_collectors
    from nac.client.radius import RadiusClientProtocol, RadiusEapExchange
    from nac.eap.peer import EapPeer, PeerSettings, PeerStatus

    context = client_context(args)
    imcs = ()
    if args["tnc"] != "none":
        imcs = tuple(make_collectors(args["collectors"]))
        if not args["fresh"]:
            for imc in imcs:
                measure_once(imc)
    settings = PeerSettings(identity=args["identity"], password=args["password"],
                            outer_identity=args["anonymous_identity"], inner=args["inner"], tls_context=context,
                            fragment_size=args["fragment_size"], tnc=args["tnc"], imcs=imcs,
                            phase2_with_finished=args.get("phase2_with_finished", True))
    secret = args["secret"].encode()
    latencies: list[float] = []
    round_trips: list[int] = []
    failures: dict[str, int] = {}
    counts = {"running": 0, "started": 0, "retransmissions": 0}
    sockets = []
    # --max-rate: this process's share, as the earliest time of its next start
    interval = 1.0 / args["rate_share"] if args.get("rate_share") else 0.0
    pace = {"next": 0.0}

    def failed(reason: str) -> None:
        failures[reason[:140]] = failures.get(reason[:140], 0) + 1

    def launch(proto) -> None:
        now = time.monotonic()
        at = max(now, pace["next"])
        if at >= stop_at or (quota is not None and counts["started"] >= quota):
            counts["running"] -= 1
            if counts["running"] == 0:
                reactor.stop()
            return
        counts["started"] += 1
        if interval:
            pace["next"] = at + interval
            if at > now:
                reactor.callLater(at - now, start, proto)
                return
        start(proto)

    def start(proto) -> None:
        began = time.monotonic()
        exchange = RadiusEapExchange(EapPeer(settings), secret, identifier=proto.next_identifier)
        d = proto.run(exchange, args["timeout"])

        def ok(result):
            proto.next_identifier = exchange.identifier + 1
            if not result.accepted:
                failed(f"{result.code_name}: {result.reason or result.peer_error or 'no reason'}")
            elif result.eap_status is not PeerStatus.SUCCESS:
                failed(f"Access-Accept without EAP-Success: {result.reason}")
            elif result.mppe_keys_ok is False:
                failed("MPPE keys mismatch")
            elif args["tnc"] != "none" and (result.posture is None or not result.posture.completed):
                failed("no posture result")
            else:
                latencies.append(time.monotonic() - began)
                round_trips.append(result.round_trips)

        def bad(failure):
            proto.next_identifier = exchange.identifier + 1
            failed(getattr(failure.value, "reason", None) or failure.getErrorMessage())

        d.addCallbacks(ok, bad).addBoth(lambda _: reactor.callLater(0, launch, proto))

    cpu = []

    def begin():
        cpu.append(time.process_time())
        counts["running"] = in_flight
        for _ in range(in_flight):
            proto = RadiusClientProtocol.connect(reactor, args["host"], args["port"])
            proto.next_identifier = 0
            sockets.append(proto)
            launch(proto)

    reactor.callLater(max(0.0, start_at - time.monotonic()), begin)
    reactor.run(installSignalHandlers=False)
    counts["retransmissions"] = sum(p.retransmissions for p in sockets)
    out.send((latencies, round_trips, failures, counts["retransmissions"],
              time.process_time() - cpu[0] if cpu else 0.0))
    out.close()


def run_level(args: dict, concurrency: int, processes: int, duration: float, pid: int | None,
              count: int | None = None) -> dict:
    if args.get("max_rate"):
        # run_workers forks at most one process per conversation in flight
        args = {**args, "rate_share": args["max_rate"] / max(1, min(processes, concurrency))}
    replies, wall, cpu, busy = run_workers(_worker, args, concurrency, processes, duration, pid, count)
    latencies: list[float] = []
    round_trips: list[int] = []
    failures: dict[str, int] = {}
    retransmissions = 0
    client_cpu = 0.0
    for lat, trips, fail, again, used in replies:
        client_cpu += used
        latencies.extend(lat)
        round_trips.extend(trips)
        retransmissions += again
        add_failures(failures, fail)
    done = len(latencies)
    return {
        **level_figures(concurrency, latencies, failures, wall, busy),
        "round_trips": round(statistics.fmean(round_trips), 1) if round_trips else None,
        "retransmissions": retransmissions,
        "server_cpu_ms_per_authentication": round(cpu * 1e3 / done, 2) if (cpu is not None and done) else None,
        "client_cpu_ms_per_authentication": round(client_cpu * 1e3 / done, 2) if done else None,
    }


# -- command line ----------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--server", metavar="HOST:PORT", help="RADIUS server to load (default: start nac here)")
    p.add_argument("--server-pid", type=int, metavar="PID", help="server process, for its CPU time")
    p.add_argument("--secret", help="RADIUS shared secret (default with a local nac: its own)")
    p.add_argument("--cacert", help="CA of the EAP-TTLS server certificate (default with a local nac: its demo CA)")
    p.add_argument("--identity", help="user name (inner identity)")
    p.add_argument("--password", help="its password")
    p.add_argument("--anonymous-identity", help="outer EAP identity (default: --identity)")
    p.add_argument("--inner", default="md5", choices=("md5", "mschapv2", "pap"),
                   help="phase 2 authentication (default: %(default)s)")
    p.add_argument("--tnc", default="pt-eap", choices=("pt-eap", "eap-tnc", "none"),
                   help="posture method inside the tunnel (default: %(default)s)")
    p.add_argument("--collectors", default="os", help="collectors of the posture exchange (default: %(default)s)")
    p.add_argument("--fresh", action="store_true",
                   help="let the collectors measure the host in every authentication (default: once per worker)")
    p.add_argument("--tls-version", default="1.3", choices=("1.2", "1.3", ""),
                   help="TLS version; empty: either (default: %(default)s)")
    p.add_argument("--fragment-size", type=int, default=1398,
                   help="EAP-TTLS fragment size of the peer (default: %(default)s, wpa_supplicant's)")
    p.add_argument("--groups", metavar="G1:G2",
                   help="TLS key exchange groups the peer offers, e.g. X25519 (default: OpenSSL's)")
    p.add_argument("--phase2-with-finished", action=argparse.BooleanOptionalAction, default=True,
                   help="TLS 1.3: start phase 2 in the client Finished's message (default: %(default)s); "
                        "hostapd 2.10 wants it on the next round trip")
    p.add_argument("--imvs", help="IMVs of the local nac (default: imvs.os:OsImv with a posture method, else none)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra configuration of the local nac, e.g. radius.fragment_size=1400")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated levels (default: %(default)s)")
    p.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="client worker processes (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N",
                   help="run exactly N authentications per level instead of --duration seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="per-authentication timeout")
    p.add_argument("--max-rate", type=float, metavar="R",
                   help="start at most R authentications per second in all (hostapd's RADIUS server "
                        "rejects new conversations above 200/s: it keeps each finished one 5 s, 1000 at most)")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(argv)

    local = None
    if ns.server:
        host, port = parse_server(ns.server)
        pid = ns.server_pid
        missing = [f"--{n}" for n in ("secret", "cacert", "identity", "password") if not getattr(ns, n)]
        if missing:
            p.error(f"{', '.join(missing)} required with --server")
    else:
        imvs = ns.imvs if ns.imvs is not None else ("imvs.os:OsImv" if ns.tnc != "none" else "")
        local = LocalNac(imvs=imvs, tnc=ns.tnc, extra=ns.set)
        host, port, pid = "127.0.0.1", local.radius_port, local.pid
        ns.cacert = ns.cacert or str(local.server.ca)
        ns.secret = ns.secret or LocalNac.SECRET
        ns.identity = ns.identity or LocalNac.IDENTITY
        ns.password = ns.password or LocalNac.PASSWORD
    args = {"host": host, "port": port, "secret": ns.secret, "cacert": ns.cacert, "identity": ns.identity,
            "password": ns.password, "anonymous_identity": ns.anonymous_identity, "inner": ns.inner,
            "tnc": ns.tnc, "collectors": [c for c in ns.collectors.split(",") if c], "fresh": ns.fresh,
            "tls_version": ns.tls_version or None, "fragment_size": ns.fragment_size, "timeout": ns.timeout,
            "phase2_with_finished": ns.phase2_with_finished, "max_rate": ns.max_rate, "groups": ns.groups}
    try:
        client_context(args)
    except ValueError as exc:
        if local:
            local.stop()
        p.error(str(exc))
    method = f"EAP-TTLS/{ns.inner.upper()}" + ("" if ns.tnc == "none" else f" + {ns.tnc.upper()}")
    results = {"server": f"{host}:{port}", "server_pid": pid, "method": method,
               "tls_version": ns.tls_version or "any", "collectors": args["collectors"] if ns.tnc != "none" else [],
               "client_processes": ns.processes, "max_rate": ns.max_rate, "groups": ns.groups or "default",
               "levels": []}
    if not ns.json:
        print(f"{method} against {host}:{port}" + (f" (pid {pid})" if pid else ""), flush=True)
    duration = ns.duration if ns.count is None else 3600.0
    try:
        results["levels"] = run_levels(
            ns.concurrency, lambda level: run_level(args, level, ns.processes, duration, pid, ns.count),
            quiet=ns.json,
            details=lambda r: (f"{r['round_trips'] or 0:>4} round trips  {r['retransmissions']} retransmitted  "
                               f"{cpu_text(r['server_cpu_ms_per_authentication'], 'authentication')}  "
                               f"(load generator {r['client_cpu_ms_per_authentication'] or 0:.2f} ms)"))
    finally:
        if local:
            local.stop()
    if ns.json:
        print(json.dumps(results, indent=2))
    return 0 if all(r["completed"] and not r["failed"] for r in results["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())
