"""``nac-eap-client``: one 802.1X-style authentication of this host over RADIUS.

Plays the supplicant and the NAS at once, like wpa_supplicant's
``eapol_test``: EAP-TTLS (inner EAP-MD5, EAP-MSCHAPv2 or PAP) with the
posture exchange inside the tunnel (PT-EAP carrying PB-TNC from nac's TNC
client and its collectors), relayed in RADIUS Access-Requests to the
server.  Prints the RADIUS outcome, the reply attributes the NAS would
enforce (Filter-Id, Tunnel-*, Session-Timeout...), whether the MS-MPPE keys
match the peer's own MSK, and the posture result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nac.client.cli import _positive, _start_logging, format_text, parse_target
from nac.client.collectors import COLLECTORS
from nac.client.pt_tls import PT_TLS_PORT, AssessmentError, ConnectionFailed, ProtocolFailure, SetupError
from nac.client.radius import MAX_TRANSMISSIONS, RADIUS_PORT, RETRANSMIT_INTERVAL, RadiusResult, authenticate
from nac.eap.peer import INNER_METHOD_NAMES, POSTURE_METHOD_NAMES, EapPeer, PeerSettings, peer_context

PROG = "nac-eap-client"
#: EAP-TTLS type-data that still fits an Access-Request with the usual attributes
MAX_FRAGMENT_SIZE = 3800

EPILOG = """\
exit status:
  0  the server answered with Access-Accept or Access-Reject at the end of the EAP conversation
  2  bad arguments or unreadable CA / secret / password file
  3  the server could not be trusted (certificate, name) or could not be reached
  5  RADIUS or EAP protocol error
  6  no result within --timeout
"""


def parse_server(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPV6]:PORT or a bare IPv6 address; port 1812 by default."""
    host, port = parse_target(text)
    if port == PT_TLS_PORT and not text.rstrip().endswith(f":{PT_TLS_PORT}"):
        port = RADIUS_PORT  # no port given: parse_target's default is PT-TLS's
    return host, port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Authenticate this host over RADIUS with EAP-TTLS and a posture "
                               "assessment (PT-EAP, RFC 7171), as a NAS and a supplicant together.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, metavar="HOST[:PORT]",
                        help=f"RADIUS server (port {RADIUS_PORT} by default)")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret", metavar="S", help="RADIUS shared secret (visible to other local users; "
                                                      "prefer --secret-file)")
    secret.add_argument("--secret-file", metavar="FILE", help="file whose first line is the shared secret")
    parser.add_argument("--identity", required=True, metavar="ID", help="user name (inner identity of EAP-TTLS)")
    password = parser.add_mutually_exclusive_group(required=True)
    password.add_argument("--password", metavar="PW", help="password (visible to other local users; "
                                                           "prefer --password-file)")
    password.add_argument("--password-file", metavar="FILE", help="file whose first line is the password")
    parser.add_argument("--anonymous-identity", metavar="ID",
                        help="outer EAP identity and RADIUS User-Name (default: --identity)")
    parser.add_argument("--cacert", required=True, metavar="FILE",
                        help="CA certificate(s) (PEM) the EAP-TTLS server certificate must chain to")
    parser.add_argument("--server-name", metavar="NAME",
                        help="name (DNS or IP) the server certificate must carry (default: not checked)")
    parser.add_argument("--inner", choices=INNER_METHOD_NAMES, default="md5",
                        help="phase 2 authentication (default: %(default)s)")
    parser.add_argument("--tnc", choices=POSTURE_METHOD_NAMES, default="pt-eap",
                        help="posture method answered inside the tunnel; none refuses it (default: %(default)s)")
    parser.add_argument("--collectors", default="os,scanner", metavar="LIST",
                        help=f"collectors for the posture exchange, comma-separated: {', '.join(COLLECTORS)} "
                             "(default: %(default)s); empty for none")
    parser.add_argument("--tls-version", choices=("1.2", "1.3"), metavar="V",
                        help="only this TLS version (1.2 or 1.3; default: either)")
    parser.add_argument("--fragment-size", type=int, default=1024, metavar="N",
                        help=f"largest EAP-TTLS fragment sent, 64-{MAX_FRAGMENT_SIZE} (default: %(default)s)")
    parser.add_argument("--nas-identifier", default=PROG, metavar="NAME",
                        help="NAS-Identifier of the requests (default: %(default)s)")
    parser.add_argument("--calling-station-id", metavar="ID", help="Calling-Station-Id (the endpoint's MAC)")
    parser.add_argument("--language", default="en", metavar="TAG",
                        help="preferred language of reason strings (default: %(default)s)")
    parser.add_argument("--timeout", type=_positive, default=30.0, metavar="S",
                        help="give up after this many seconds (default: %(default)g)")
    parser.add_argument("--retransmit", type=_positive, default=RETRANSMIT_INTERVAL, metavar="S",
                        help="first retransmission after this many seconds, then doubling (default: %(default)g)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log to stderr (-v: progress, -vv: every message)")
    return parser


def _first_line(path: str, what: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SetupError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    return lines[0] if lines else ""


def format_result(result: RadiusResult) -> str:
    lines = [f"RADIUS {result.code_name} after {result.round_trips} round trips",
             f"EAP {result.eap_method or 'no method'}: {result.eap_status.value}"
             + (f" ({result.reason})" if result.reason else "")]
    lines += [f"  {attr.text()}" for attr in result.attributes]
    lines.append(result.mppe_text)
    if result.posture is not None:
        lines.append(format_text(result.posture))
    else:
        lines.append("no posture assessment")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_server(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    collectors = [c.strip() for c in args.collectors.split(",") if c.strip()]
    unknown = [c for c in collectors if c.lower() not in COLLECTORS]
    if unknown:
        parser.error(f"unknown collector(s) {', '.join(unknown)}; choose from {', '.join(COLLECTORS)}")
    if not 64 <= args.fragment_size <= MAX_FRAGMENT_SIZE:
        parser.error(f"--fragment-size must be 64-{MAX_FRAGMENT_SIZE} (an Access-Request holds 4096 bytes)")
    try:
        secret = args.secret if args.secret is not None else _first_line(args.secret_file, "secret")
        password = args.password if args.password is not None else _first_line(args.password_file, "password")
        if not secret:
            raise SetupError("the RADIUS shared secret is empty")
        low, high = (args.tls_version, args.tls_version) if args.tls_version else ("1.2", "1.3")
        try:
            context = peer_context(cacert=args.cacert, min_tls_version=low, max_tls_version=high)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        imcs = ()
        if args.tnc != "none":
            from nac.client.collectors import make_collectors
            imcs = tuple(make_collectors(collectors))
        settings = PeerSettings(identity=args.identity, password=password,
                                outer_identity=args.anonymous_identity, inner=args.inner, tls_context=context,
                                server_name=args.server_name, fragment_size=args.fragment_size, tnc=args.tnc,
                                imcs=imcs, language=args.language)
        peer = EapPeer(settings)
    except AssessmentError as exc:
        return _fail(exc)
    except ValueError as exc:
        return _fail(SetupError(str(exc)))

    _start_logging(args.verbose)
    from twisted.internet import reactor

    outcome: list = []

    def run():
        d = authenticate(reactor, host, port, secret.encode("utf-8"), peer, timeout=args.timeout,
                         retransmit_interval=args.retransmit, max_transmissions=MAX_TRANSMISSIONS,
                         nas_identifier=args.nas_identifier, calling_station_id=args.calling_station_id)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    result = outcome[0] if outcome else AssessmentError("interrupted")
    if hasattr(result, "value"):  # a Failure
        result = result.value
    if isinstance(result, AssessmentError):
        return _fail(result)
    if not isinstance(result, RadiusResult):
        return _fail(AssessmentError(f"internal error: {result!r}"))
    if result.peer_error is not None and not result.accepted:
        # we ended it: the server was not to be trusted, or broke the protocol
        failure = ConnectionFailed if result.tls_error else ProtocolFailure
        return _fail(failure(f"{result.peer_error}; the server answered {result.code_name}"))
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_result(result))
    return 0


def _fail(error: Exception) -> int:
    print(f"{PROG}: {' '.join(str(error).split())}", file=sys.stderr)
    return getattr(error, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())
