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
import ipaddress
import json
import sys

from nac.client.cli import (
    add_mutual_arguments,
    add_output_arguments,
    add_test_collector_arguments,
    collector_settings,
    fail,
    format_text,
    mutual_imvs,
    parse_collectors,
    parse_target,
    positive_seconds,
    read_first_line,
    run_reactor,
    start_logging,
)
from nac.client.collectors import COLLECTORS
from nac.client.pt_tls import AssessmentError, ConnectionFailed, ProtocolFailure, SetupError
from nac.client.radius import MAX_TRANSMISSIONS, RADIUS_PORT, RETRANSMIT_INTERVAL, RadiusResult, authenticate
from nac.console import print_output
from nac.eap.peer import (
    DEFAULT_FRAGMENT_SIZE,
    INNER_METHOD_NAMES,
    POSTURE_METHOD_NAMES,
    EapPeer,
    PeerSettings,
    peer_context,
)

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
    name = parser.add_mutually_exclusive_group()
    name.add_argument("--server-name", metavar="NAME",
                      help="name (DNS or IP) the EAP-TTLS server certificate must carry (default: the "
                           "HOST of --server; the RADIUS server and the EAP server are one here)")
    name.add_argument("--no-server-name-check", action="store_true",
                      help="accept any server certificate that chains to --cacert, whatever name it "
                           "carries: then anyone holding a certificate from that CA can pose as the "
                           "server and collect the password (PAP) or crackable responses (MD5, MSCHAPv2)")
    parser.add_argument("--inner", choices=INNER_METHOD_NAMES, default="md5",
                        help="phase 2 authentication (default: %(default)s)")
    parser.add_argument("--tnc", choices=POSTURE_METHOD_NAMES, default="pt-eap",
                        help="posture method answered inside the tunnel; none refuses it (default: %(default)s)")
    parser.add_argument("--collectors", default="os,scanner", metavar="LIST",
                        help=f"collectors for the posture exchange, comma-separated: {', '.join(COLLECTORS)} "
                             "(default: %(default)s); empty for none")
    add_test_collector_arguments(parser)
    add_mutual_arguments(parser)
    parser.add_argument("--tls-version", choices=("1.2", "1.3"), metavar="V",
                        help="only this TLS version (1.2 or 1.3; default: either)")
    parser.add_argument("--fragment-size", type=int, default=DEFAULT_FRAGMENT_SIZE, metavar="N",
                        help=f"largest EAP-TTLS fragment sent, 64-{MAX_FRAGMENT_SIZE} (default: %(default)s)")
    parser.add_argument("--nas-identifier", default=PROG, metavar="NAME",
                        help="NAS-Identifier of the requests (default: %(default)s)")
    parser.add_argument("--calling-station-id", metavar="ID", help="Calling-Station-Id (the endpoint's MAC)")
    parser.add_argument("--source", metavar="ADDR",
                        help="send from this address of the host, the NAS address the server sees "
                             "(default: the server's loopback address for a server on loopback, else "
                             "the system's choice)")
    parser.add_argument("--language", default="en", metavar="TAG",
                        help="preferred language of reason strings (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="S",
                        help="give up after this many seconds (default: %(default)g)")
    parser.add_argument("--retransmit", type=positive_seconds, default=RETRANSMIT_INTERVAL, metavar="S",
                        help="first retransmission after this many seconds, then doubling (default: %(default)g)")
    add_output_arguments(parser)
    return parser


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
        host, port = parse_target(args.server, RADIUS_PORT)
    except ValueError as exc:
        parser.error(str(exc))
    collectors = parse_collectors(parser, args.collectors)
    if args.tnc == "none" and (args.mutual or args.mutual_imvs is not None):
        parser.error("--mutual needs a posture exchange (--tnc pt-eap or eap-tnc)")
    if args.source is not None:
        try:
            source = ipaddress.ip_address(args.source.strip("[]"))
        except ValueError:
            parser.error(f"--source {args.source!r} is not an IP address")
        args.source = str(source)
    if not 64 <= args.fragment_size <= MAX_FRAGMENT_SIZE:
        parser.error(f"--fragment-size must be 64-{MAX_FRAGMENT_SIZE} (an Access-Request holds 4096 bytes)")
    try:
        secret = args.secret if args.secret is not None else read_first_line(args.secret_file, "secret")
        password = args.password if args.password is not None else read_first_line(args.password_file, "password")
        if not secret:
            raise SetupError("the RADIUS shared secret is empty")
        low, high = (args.tls_version, args.tls_version) if args.tls_version else ("1.2", "1.3")
        try:
            context = peer_context(cacert=args.cacert, min_tls_version=low, max_tls_version=high)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        imcs, imvs = (), ()
        if args.tnc != "none":
            from nac.client.collectors import make_collectors
            imcs = tuple(make_collectors(collectors, settings=collector_settings(args, collectors)))
            imvs = tuple(mutual_imvs(args))
        settings = PeerSettings(identity=args.identity, password=password,
                                outer_identity=args.anonymous_identity, inner=args.inner, tls_context=context,
                                server_name=None if args.no_server_name_check else args.server_name or host,
                                fragment_size=args.fragment_size, tnc=args.tnc,
                                imcs=imcs, mutual_imvs=imvs, language=args.language)
        peer = EapPeer(settings)
    except AssessmentError as exc:
        return fail(PROG, exc)
    except ValueError as exc:
        return fail(PROG, SetupError(str(exc)))

    start_logging(args.verbose)
    result = run_reactor(lambda reactor: authenticate(
        reactor, host, port, secret.encode("utf-8"), peer, timeout=args.timeout,
        retransmit_interval=args.retransmit, max_transmissions=MAX_TRANSMISSIONS,
        nas_identifier=args.nas_identifier, calling_station_id=args.calling_station_id, source=args.source))
    if isinstance(result, AssessmentError):
        return fail(PROG, result)
    if not isinstance(result, RadiusResult):
        return fail(PROG, AssessmentError(f"internal error: {result!r}"))
    if result.peer_error is not None and not result.accepted:
        # we ended it: the server was not to be trusted, or broke the protocol
        failure = ConnectionFailed if result.tls_error else ProtocolFailure
        return fail(PROG, failure(f"{result.peer_error}; the server answered {result.code_name}"))
    if args.json:
        print_output(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print_output(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
