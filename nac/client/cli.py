"""``nac-pt-tls-client``: one posture assessment of this host over PT-TLS.

Like strongSwan's ``pt-tls-client``: connect over TLS, authenticate with a
client certificate or SASL PLAIN, run the OS, Scanner and SWIMA collectors
and print the server's verdict.  With ``--stay`` it keeps the connection
open and answers the server's re-assessments (PB-TNC SRETRY), printing each
verdict.  Exit status 0 means an assessment
completed, whatever its outcome; anything else is printed as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner, \
    textFileLogObserver
from twisted.python.failure import Failure

from nac import log as nac_log
from nac.client.collectors import COLLECTORS, DEFAULT_COLLECTORS, make_collectors
from nac.client.mutual import MutualVerdict, load_imvs
from nac.client.pb_client import AssessmentOutcome
from nac.client.remediation import printable, remediation_lines
from nac.client.pt_tls import PT_TLS_PORT, AssessmentError, SetupError, run_assessment
from nac.console import print_output

PROG = "nac-pt-tls-client"

EPILOG = """\
exit status:
  0  an assessment completed (whatever the recommendation)
  2  bad arguments or unreadable CA / certificate / key / secret file
  3  connection or TLS handshake failed (server certificate not trusted, wrong name...)
  4  SASL authentication refused
  5  PT-TLS or PB-TNC protocol error, or the server ended without a result
  6  no result within --timeout
"""


def parse_target(text: str, default_port: int = PT_TLS_PORT) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPV6]:PORT or a bare IPv6 address; ``default_port``
    when no port is given."""
    port = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [IPV6] or [IPV6]:PORT")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    if not host:
        raise ValueError(f"bad address {text!r}: no host")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r} in {text!r}")
    return host, int(port)


def positive_seconds(value: str) -> float:
    """argparse type of a duration in seconds above 0."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Assess this host's posture with a TNC server over PT-TLS (RFC 6876).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", metavar="HOST[:PORT]", help=f"PT-TLS server (port {PT_TLS_PORT} by default)")
    parser.add_argument("--cacert", required=True, metavar="FILE",
                        help="CA certificate(s) (PEM) the server certificate must chain to")
    parser.add_argument("--server-name", metavar="NAME",
                        help="name (DNS or IP) the server certificate must carry; default: HOST")
    auth = parser.add_argument_group("client authentication (a certificate, SASL PLAIN, or both)")
    auth.add_argument("--client", metavar="ID", help="SASL PLAIN identity")
    auth.add_argument("--secret", metavar="PW", help="SASL PLAIN password (visible to other local users; "
                                                     "prefer --secret-file)")
    auth.add_argument("--secret-file", metavar="FILE", help="file whose first line is the SASL PLAIN password")
    auth.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    auth.add_argument("--key", metavar="FILE", help="private key of --cert (PEM)")
    parser.add_argument("--collectors", default=",".join(DEFAULT_COLLECTORS), metavar="LIST",
                        help=f"collectors to run, comma-separated: {', '.join(COLLECTORS)} "
                             f"(default: %(default)s); empty for none")
    add_test_collector_arguments(parser)
    add_mutual_arguments(parser)
    parser.add_argument("--language", default="en", metavar="TAG",
                        help="preferred language of reason strings (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="S",
                        help="give up after this many seconds (default: %(default)g); with --stay, "
                             "each assessment")
    stay = parser.add_argument_group("re-assessment on one connection (the server's [pt-tls] "
                                     "reassess_interval)")
    stay.add_argument("--stay", action="store_true",
                      help="keep the connection open after the decision and answer the server's "
                           "handshake retry (PB-TNC SRETRY) with a new assessment, fresh measurements "
                           "included, until the server closes the connection; each decision is printed "
                           "as it comes (with --json, one JSON object a line)")
    stay.add_argument("--reassessments", type=non_negative_count, metavar="N",
                      help="with --stay: close after N re-assessments (N + 1 decisions); implies --stay")
    add_output_arguments(parser)
    return parser


def non_negative_count(value: str) -> int:
    """argparse type of a count, 0 or more."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a number: {value!r}")
    return int(value)


def add_mutual_arguments(parser: argparse.ArgumentParser) -> None:
    """--mutual and --mutual-imvs: judge the server too (mutual PB-TNC)."""
    group = parser.add_argument_group("mutual PB-TNC (the server's host judged by IMVs here)")
    group.add_argument("--mutual", action="store_true",
                       help="ask the server for mutual PB-TNC and judge its host with --mutual-imvs; "
                            "the verdict is printed after the server's")
    group.add_argument("--mutual-imvs", metavar="LIST",
                       help="IMVs judging the server, comma-separated: registered names (os, scanner, ...) "
                            "or dotted paths, with their default options and no policy database "
                            "(default: os); implies --mutual")


def mutual_imvs(args) -> list:
    """The IMVs of --mutual / --mutual-imvs (none without either);
    SetupError when one does not load."""
    if not args.mutual and args.mutual_imvs is None:
        return []
    names = [n.strip() for n in (args.mutual_imvs or "os").split(",") if n.strip()]
    if not names:
        raise SetupError("--mutual-imvs names no IMV")
    try:
        return load_imvs(names)
    except ValueError as exc:
        raise SetupError(str(exc)) from None


def non_negative_size(value: str) -> int:
    """argparse type of a size in bytes, 0 or more."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}")
    return int(value)


def add_test_collector_arguments(parser: argparse.ArgumentParser) -> None:
    """The collectors that report what they are told: the ITA test
    collector and a printer described in a file; and where the attestation
    collector finds the TPM and the measurement logs."""
    group = parser.add_argument_group("test collectors (each adds its collector to --collectors)")
    group.add_argument("--test-command", metavar="CMD",
                       help="run the ITA test collector sending CMD: allow, isolate, block, none or retry "
                            "(default with --collectors test: none)")
    group.add_argument("--test-retry-command", metavar="CMD",
                       help="the test collector's command after a handshake retry (default: --test-command)")
    group.add_argument("--test-dummy-size", type=non_negative_size, metavar="N",
                       help="bytes of ITA Dummy attribute the test collector sends with its command")
    group.add_argument("--hcd-attributes", metavar="FILE",
                       help="run the HCD collector, playing the printer FILE describes (JSON, see "
                            "nac.client.collectors.hcd)")
    tpm = parser.add_argument_group("attestation collector (--collectors attestation): the TPM 2.0 and the "
                                    "measurement logs")
    tpm.add_argument("--tpm-tcti", metavar="TCTI",
                     help="how tpm2-tools reach the TPM, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 "
                          "(default: TPM2TOOLS_TCTI, else the tools' own default)")
    tpm.add_argument("--aik-handle", type=lambda v: int(v, 0), metavar="HANDLE",
                     help="persistent handle of the AIK (default: 0x81010003)")
    tpm.add_argument("--bios-log", metavar="FILE",
                     help="the BIOS/UEFI event log (default: /sys/kernel/security/tpm0/binary_bios_measurements)")
    tpm.add_argument("--ima-log", metavar="FILE",
                     help="the IMA measurement list (default: /sys/kernel/security/ima/binary_runtime_measurements)")
    tpm.add_argument("--startup-locality", type=int, choices=range(5), metavar="N",
                     help="the locality the TPM was started from (default: the event log's StartupLocality "
                          "event, else 0)")


def collector_settings(args, collectors: list[str]) -> dict:
    """The settings of the test, HCD and attestation collectors given on
    the command line, adding each to ``collectors`` when it is not listed."""
    settings: dict = {}
    test = {key: value for key, value in (("command", args.test_command),
                                          ("retry_command", args.test_retry_command),
                                          ("dummy_size", args.test_dummy_size)) if value is not None}
    if test:
        settings["test"] = test
    if args.hcd_attributes is not None:
        settings["hcd"] = {"path": args.hcd_attributes}
    attestation = {key: value for key, value in (
        ("tcti", args.tpm_tcti), ("aik_handle", args.aik_handle), ("bios_log", args.bios_log),
        ("ima_log", args.ima_log), ("startup_locality", args.startup_locality)) if value is not None}
    if attestation:
        settings["attestation"] = attestation
        if "attestation" not in {c.lower() for c in collectors}:
            collectors.append("attestation")
    listed = {c.lower() for c in collectors}
    collectors.extend(name for name in settings if name not in listed)
    return settings


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--json and -v, the last options of both clients."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log to stderr (-v: progress, -vv: every message)")


def parse_collectors(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The comma-separated --collectors list; a usage error names unknown ones."""
    collectors = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in collectors if c.lower() not in COLLECTORS]
    if unknown:
        parser.error(f"unknown collector(s) {', '.join(unknown)}; choose from {', '.join(COLLECTORS)}")
    return collectors


def read_first_line(path: str, what: str) -> str:
    """The first line of a secret or password file (a file keeps it out of
    the process list); SetupError naming the file when it cannot be read."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SetupError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    return lines[0] if lines else ""


def _secret(args, parser) -> str | None:
    if args.secret is not None and args.secret_file is not None:
        parser.error("give --secret or --secret-file, not both")
    if args.secret_file is not None:
        return read_first_line(args.secret_file, "secret")
    return args.secret


def _labelled(label: str, body: list[str], indent: str = "", language: str = "") -> list[str]:
    """``label: first line [language]``, the other lines indented under it."""
    first = f"{indent}{label}: {body[0]}" + (f" [{printable(language)}]" if language else "")
    return [first] + [f"{indent}  {line}" for line in body[1:]]


def format_text(outcome: AssessmentOutcome) -> str:
    """The outcome as ``--json`` gives it, for people: the same names, the
    remediation instructions as lines of text (not the XML they came in),
    and nothing from the server that could drive the terminal."""
    lines = [f"assessment result: {outcome.assessment_label or 'none'}",
             f"access recommendation: {outcome.recommendation_label or 'none'}"]
    for reason in outcome.reasons:
        lines += _labelled("reason", printable(reason.text).splitlines() or [""], language=reason.language)
    for item in outcome.remediation:
        if item.uri is not None:
            lines.append(f"remediation: {printable(item.uri)}")
        elif item.text is not None:
            lines += _labelled("remediation", remediation_lines(item.text), language=item.language)
        else:
            lines.append(f"remediation: parameters 0x{item.vendor:06x}/{item.type}")
    for result in outcome.imv_results:
        lines.append(f"IMC {result.imc_id} \"{printable(result.imc_name)}\" assessed by IMV {result.imv_id}: "
                     f"{result.result_label}")
        for text in result.remediation:
            lines += _labelled("remediation", remediation_lines(text), indent="  ")
    if outcome.mutual is not None:
        lines += mutual_lines(outcome.mutual)
    return "\n".join(lines)


def mutual_lines(verdict: MutualVerdict) -> list[str]:
    """The verdict of this side's IMVs on the server, in the words of the
    server's verdict above it."""
    if not verdict.agreed:
        return ["mutual PB-TNC: the server did not take part"]
    lines = [f"server assessment result: {verdict.assessment_label or 'none'}",
             f"server access recommendation: {verdict.recommendation_label or 'none'}"]
    for text, language in (verdict.decision.reasons if verdict.decision else ()):
        lines += _labelled("server reason", printable(text).splitlines() or [""], language=language)
    for result in (verdict.decision.imv_results if verdict.decision else ()):
        lines.append(f"IMV {result.imv_id} \"{printable(result.imv_name)}\" assessed the server: "
                     f"{result.evaluation.label} ({result.recommendation.label})")
    if verdict.error is not None:
        lines.append(f"mutual PB-TNC failed: {printable(verdict.error)}")
    return lines


def start_logging(verbosity: int) -> None:
    """Nothing logged by default; -v: info and up to stderr, -vv: debug."""
    if verbosity <= 0:
        nac_log.set_level("error")  # nobody reads the events: do not make them
        globalLogBeginner.beginLoggingTo([], redirectStandardIO=False, discardBuffer=True)
        return
    level = LogLevel.info if verbosity == 1 else LogLevel.debug
    nac_log.set_level(level.name)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_target(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    collectors = parse_collectors(parser, args.collectors)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    if args.client is None and args.cert is None:
        parser.error("authenticate with --cert/--key or --client with --secret/--secret-file")
    try:
        password = _secret(args, parser)
    except AssessmentError as exc:
        return fail(PROG, exc)
    if args.client is not None and password is None:
        parser.error("--client needs --secret or --secret-file")

    settings = collector_settings(args, collectors)
    try:
        imcs = make_collectors(collectors, settings=settings)
        imvs = mutual_imvs(args)
    except ValueError as exc:
        return fail(PROG, SetupError(str(exc)))
    except AssessmentError as exc:
        return fail(PROG, exc)

    stay = args.stay or args.reassessments is not None
    if stay and imvs:
        parser.error("--stay and --reassessments do not go with --mutual")

    def show(outcome: AssessmentOutcome) -> None:
        if args.json:
            # one object a line when several may follow
            print_output(json.dumps(outcome.to_json(), indent=None if stay else 2, ensure_ascii=False))
        else:
            print_output(format_text(outcome) + ("\n" if stay else ""))

    start_logging(args.verbose)
    result = run_reactor(lambda reactor: run_assessment(
        reactor, host, port, cacert=args.cacert, identity=args.client, password=password, cert=args.cert,
        key=args.key, server_name=args.server_name, collectors=imcs, timeout=args.timeout,
        language=args.language, mutual_imvs=imvs, stay=stay, reassessments=args.reassessments,
        on_decision=show if stay else None))
    if isinstance(result, AssessmentError):
        return fail(PROG, result)
    if not isinstance(result, AssessmentOutcome):
        return fail(PROG, AssessmentError(f"internal error: {result!r}"))
    if not stay:
        show(result)
    return 0


def run_reactor(start: Callable[[object], Deferred]) -> object:
    """Run the reactor until the Deferred ``start(reactor)`` returns fires;
    its result, or the exception it failed with (AssessmentError when the
    reactor was stopped first)."""
    from twisted.internet import reactor

    outcome: list = []

    def run():
        d = start(reactor)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    result = outcome[0] if outcome else AssessmentError("interrupted")
    return result.value if isinstance(result, Failure) else result


def fail(prog: str, error: Exception) -> int:
    """Print ``error`` as one line after the program's name; its exit status."""
    print(f"{prog}: {' '.join(str(error).split())}", file=sys.stderr)
    return getattr(error, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())
