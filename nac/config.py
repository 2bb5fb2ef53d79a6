"""nac's configuration: an INI file (``etc/nac.conf``) plus command-line overrides.

Every section and key is declared in :data:`SCHEMA` with a parser and a
default, so a typo or a bad value stops the server at start-up with a message
that names where it came from, the section, the key, the offending value and
what is expected::

    etc/nac.conf: [pt-tls] port: '70000' is not a port number (1-65535)

Secrets (``secret``, ``password`` …) are never echoed, neither in errors nor
in ``repr(config)``; a password inside a database URL is masked.

``[imv:NAME]`` sections are kept as raw strings: an IMV declares its own
options and validates them through :meth:`NacConfig.imv_options` when it is
loaded.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "COMMAND_LINE",
    "ConfigError",
    "NacConfig",
    "Option",
    "SCHEMA",
    "address",
    "boolean",
    "byte_size",
    "choice",
    "cidr",
    "comma_list",
    "comma_list_of",
    "db_url",
    "declare_named_section",
    "declare_section",
    "default_state_dir",
    "int_range",
    "load",
    "non_negative_int",
    "optional",
    "path",
    "port",
    "positive_int",
    "seconds",
    "secret_text",
    "text",
    "tls_version",
]

#: Where overrides come from, as named in error messages.
COMMAND_LINE = "command line"
#: Where values come from when no file is given, as named in error messages.
DEFAULTS = "defaults"

IMV_SECTION_PREFIX = "imv:"


class ConfigError(Exception):
    """The configuration cannot be used.

    Each problem is one line naming its origin (the file or ``command line``),
    the section and the key; all problems found are reported at once.
    """

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


@dataclass(frozen=True)
class Option:
    """One key of a section.

    ``kind`` turns the raw string into the typed value or raises
    :class:`ValueError` with a short reason that reads after the value
    (``"is not a port number (1-65535)"``).  ``secret`` hides the value in
    messages and ``repr``; keys named like ``secret`` or ``password`` are
    hidden anyway.
    """

    name: str
    kind: Callable[[str], Any]
    default: Any = None
    help: str = ""
    secret: bool = False


# -- parsers ---------------------------------------------------------------
#
# Each takes the raw string (already stripped by configparser) and returns the
# typed value, or raises ValueError whose text completes "<value> ...".

_DIGITS = re.compile(r"[0-9]+")


def _integer(raw: str, what: str) -> int:
    value = raw.strip()
    # int() would also take "+5", "1_000" and non-ASCII digits
    if not _DIGITS.fullmatch(value):
        raise ValueError(f"is not {what}")
    return int(value)


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    bounds = f"{low}-{high}" if high is not None else f">= {low}"

    def parse(raw: str) -> int:
        value = _integer(raw, f"a whole number ({bounds})")
        if value < low or (high is not None and value > high):
            raise ValueError(f"is out of range ({bounds})")
        return value

    parse.__name__ = f"int_range_{low}_{high}"
    return parse


def port(raw: str) -> int:
    """A TCP/UDP port number, 1-65535."""
    value = raw.strip()
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= 65535:
        raise ValueError("is not a port number (1-65535)")
    return int(value)


def positive_int(raw: str) -> int:
    """A whole number greater than zero."""
    value = _integer(raw, "a positive whole number")
    if value == 0:
        raise ValueError("must be greater than zero")
    return value


def non_negative_int(raw: str) -> int:
    """A whole number, zero or more."""
    return _integer(raw, "a whole number (0 or more)")


_BYTE_SIZE = re.compile(r"([0-9]+)\s*(k|kib|m|mib)?", re.IGNORECASE)
_BYTE_UNITS = {None: 1, "k": 1024, "kib": 1024, "m": 1024 * 1024, "mib": 1024 * 1024}


def byte_size(low: int, high: int) -> Callable[[str], int]:
    """A size in bytes in ``[low, high]``: ``65536``, ``64K``, ``2M`` (binary units)."""

    def parse(raw: str) -> int:
        m = _BYTE_SIZE.fullmatch(raw.strip())
        if not m:
            raise ValueError("is not a size in bytes (e.g. 65536, 64K, 2M)")
        unit = m.group(2).lower() if m.group(2) else None
        value = int(m.group(1)) * _BYTE_UNITS[unit]
        if not low <= value <= high:
            raise ValueError(f"is out of range ({low}-{high} bytes)")
        return value

    parse.__name__ = "byte_size"
    return parse


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(raw: str) -> float:
    m = _DURATION.fullmatch(raw.strip())
    if not m:
        raise ValueError("is not a duration (e.g. 30, 1.5, 30s, 2m, 7d)")
    unit = m.group(2).lower() if m.group(2) else None
    value = float(m.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(value):
        raise ValueError("is not a finite duration")
    return value


def non_negative_seconds(raw: str) -> float:
    """A duration, zero allowed: ``0``, ``30``, ``2m``, ``1h``, ``30d``."""
    return _duration(raw)


def seconds(raw: str) -> float:
    """A duration greater than zero: ``30``, ``1.5``, ``30s``, ``2m``, ``500ms``, ``1h``, ``7d``."""
    value = _duration(raw)
    if value <= 0:
        raise ValueError("must be a duration greater than zero")
    return value


_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


def boolean(raw: str) -> bool:
    """yes/no, true/false, on/off, 1/0 (any case)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("is not a boolean (yes/no, true/false, on/off, 1/0)")


def comma_list(raw: str) -> list[str]:
    """Comma-separated strings, surrounding blanks and empty items dropped."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def comma_list_of(item: Callable[[str], Any], *, allow_empty: bool = True,
                  unique: bool = False) -> Callable[[str], list]:
    """A comma-separated list whose items are each parsed by ``item``."""

    def parse(raw: str) -> list:
        items = comma_list(raw)
        if not items and not allow_empty:
            raise ValueError("is empty: give at least one value")
        out, seen = [], set()
        for entry in items:
            try:
                value = item(entry)
            except ValueError as exc:
                raise ValueError(f"has item {entry!r}, which {exc}") from None
            if unique:
                if value in seen:
                    raise ValueError(f"lists {entry!r} more than once")
                seen.add(value)
            out.append(value)
        return out

    parse.__name__ = f"comma_list_of_{getattr(item, '__name__', 'item')}"
    return parse


def eap_only_mode(raw: str) -> str:
    """auto, yes or no; the booleans of earlier versions count as yes and no."""
    value = raw.strip().lower()
    if value == "auto":
        return "auto"
    try:
        return "yes" if boolean(value) else "no"
    except ValueError:
        raise ValueError("is not one of: auto, yes, no") from None


eap_only_mode.choices = ("auto", "yes", "no")


def choice(*values: str) -> Callable[[str], str]:
    """One of ``values`` (compared case-insensitively, returned as declared)."""
    by_lower = {v.lower(): v for v in values}

    def parse(raw: str) -> str:
        try:
            return by_lower[raw.strip().lower()]
        except KeyError:
            raise ValueError(f"is not one of: {', '.join(values)}") from None

    parse.__name__ = "choice"
    parse.choices = values  # for documentation and tests
    return parse


def optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """``kind``, except that an empty value means "not set" (None)."""

    def parse(raw: str) -> Any:
        return None if not raw.strip() else kind(raw)

    parse.__name__ = f"optional_{getattr(kind, '__name__', 'value')}"
    return parse


def text(raw: str) -> str:
    """A non-empty string."""
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def secret_text(raw: str) -> str:
    """A non-empty secret; whatever it contains, it is never echoed."""
    if not raw:
        raise ValueError("is empty")
    return raw


def path(raw: str) -> str:
    """A filesystem path; ``~`` is expanded."""
    value = raw.strip()
    if not value:
        raise ValueError("is empty: give a path")
    if "\0" in value:
        raise ValueError("is not a valid path (contains a NUL character)")
    return os.path.expanduser(value)


def _absolute_path(raw: str) -> str:
    return os.path.abspath(path(raw))


_DB_URL = re.compile(r"(?P<dialect>[A-Za-z][A-Za-z0-9_]*)(?:\+(?P<driver>[A-Za-z0-9_]+))?://.*", re.DOTALL)


def db_url(raw: str) -> str:
    """A SQLAlchemy database URL, ``dialect[+driver]://...``."""
    value = raw.strip()
    if not _DB_URL.fullmatch(value):
        raise ValueError(
            "is not a database URL of the form dialect[+driver]://... "
            "(e.g. sqlite:////var/lib/nac/nac.db, postgresql+psycopg://nac@localhost/nac)")
    return value


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def ip_literal(raw: str):
    """An IPv4 or IPv6 address literal."""
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        raise ValueError("is not an IP address") from None


def address(raw: str) -> str:
    """An IPv4/IPv6 literal (``0.0.0.0`` and ``::`` included) or a hostname."""
    value = raw.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]  # "[::1]" as written in URLs
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    last_label = value.rstrip(".").rsplit(".", 1)[-1]
    # an all-numeric last label is a mistyped IPv4 address, not a host name
    if len(value) > 253 or not _HOSTNAME.fullmatch(value) or last_label.isdigit():
        raise ValueError("is not an IP address or host name")
    return value


def cidr(raw: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP network ``address/prefix``; a bare address is a host network (/32, /128)."""
    value = raw.strip()
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            net = ipaddress.ip_network(value, strict=False)
            raise ValueError(f"has host bits set (the network is {net})") from None
        raise ValueError("is not an IP network (address/prefix, e.g. 10.10.0.0/24)") from None


def tls_version(raw: str) -> str:
    """``1.2`` or ``1.3`` (``TLSv1.2`` and ``TLS1.3`` are accepted too)."""
    value = raw.strip().lower()
    for prefix in ("tlsv", "tls"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    if value not in ("1.2", "1.3"):
        raise ValueError("is not a supported TLS version (1.2 or 1.3)")
    return value


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def _language_tag(raw: str) -> str:
    if not _LANGUAGE_TAG.fullmatch(raw):
        raise ValueError("is not a language tag (RFC 5646, e.g. en, de-CH)")
    return raw


_IMV_SPEC = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?")


def _imv_spec(raw: str) -> str:
    if not _IMV_SPEC.fullmatch(raw):
        raise ValueError("is not an IMV name or dotted path (e.g. os, package.module:Class)")
    return raw


def cipher_string(raw: str) -> str:
    """An OpenSSL cipher string OpenSSL accepts (empty: its default)."""
    value = raw.strip()
    if value:
        # ask OpenSSL now rather than fail obscurely when the listener starts
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
        except ssl.SSLError:
            raise ValueError("selects no cipher OpenSSL knows (see 'openssl ciphers')") from None
    return value



# -- schema ----------------------------------------------------------------

#: Declared sections: section name -> key -> Option.
SCHEMA: dict[str, dict[str, Option]] = {}
#: What each declared section is for (the sample configuration's words).
SECTION_HELP: dict[str, str] = {}


def declare_section(name: str, options: Iterable[Option], help: str | None = None) -> None:
    """Declare a section (or add keys to an already declared one).

    A key declared again replaces the earlier declaration.  Declare before
    :func:`load` runs: sections unknown at load time are rejected.  ``help``
    says what the section is for, in the sample configuration.
    """
    if name.startswith(IMV_SECTION_PREFIX):
        raise ValueError(f"[{name}]: IMV sections are validated with NacConfig.imv_options")
    if help is not None:
        SECTION_HELP[name] = help
    section = SCHEMA.setdefault(name, {})
    for option in options:
        section[option.name.lower()] = option


#: Sections that come in any number, one per thing they describe
#: (``[radius-client:NAME]``): prefix -> key -> Option.
NAMED_SECTIONS: dict[str, dict[str, Option]] = {}
_SECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def declare_named_section(prefix: str, options: Iterable[Option], help: str | None = None) -> None:
    """Declare ``[PREFIX:NAME]`` sections, whose keys are checked as a
    declared section's; their names are short names (letters, digits,
    ``.``, ``_``, ``-``).  Only the keys given are kept
    (:meth:`NacConfig.named_sections`), so that a missing key can mean
    "as the main section says".  ``help``: what such a section is for, in
    the sample configuration."""
    if help is not None:
        SECTION_HELP[f"{prefix}:NAME"] = help
    NAMED_SECTIONS.setdefault(prefix, {}).update((o.name.lower(), o) for o in options)


def _transport_name(raw: str) -> str:
    """The name of an installed transport (nac.plugins)."""
    from nac import plugins

    name = raw.strip().lower()
    installed = plugins.transport_plugins()
    if name not in installed:
        raise ValueError(f"is not an installed transport (installed: {', '.join(installed) or 'none'})")
    return name


_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def instance_name(raw: str) -> str:
    """A nac instance's name: 1-64 letters, digits, '.', '_', '-', starting
    with a letter or digit."""
    value = raw.strip()
    if not _INSTANCE.fullmatch(value):
        raise ValueError("is not an instance name (1-64 letters, digits, '.', '_' or '-', starting with "
                         "a letter or digit)")
    return value


def default_instance() -> str:
    """This host's name, made an :func:`instance_name` (``nac`` without one)."""
    import socket

    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip("._-")[:64]
    return name or "nac"


def default_state_dir() -> str:
    """``/var/lib/nac`` for root, else ``$XDG_STATE_HOME/nac`` or ``~/.local/state/nac``."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/nac"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # the XDG spec says relative values are to be ignored
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "nac")
    return os.path.join(os.path.expanduser("~"), ".local", "state", "nac")


def listen_option() -> Option:
    """A transport's ``listen`` key: every address, IPv6 and IPv4, by default."""
    return Option("listen", address, "::",
                  "Address to listen on. :: (the default): every address, IPv6 and IPv4 (one dual-stack "
                  "socket; 0.0.0.0 where the machine has no IPv6); 0.0.0.0: IPv4 only.")


def tls_paths(demo: str) -> list[Option]:
    """``cert`` and ``key`` of a server certificate, the demo one ``demo``.pem by default."""
    return [
        Option("cert", optional(path), None,
               f"Server certificate (PEM), with any intermediate CA certificates after it. Empty: "
               f"the demo certificate {demo}.pem in state_dir, generated with a demo CA (ca.pem) on "
               "first start. Set both cert and key, or neither."),
        Option("key", optional(path), None,
               f"Private key of the server certificate (PEM, unencrypted). Empty: the demo key "
               f"{demo}.key in state_dir."),
    ]


declare_section("nac", help=(
    "The server as a whole: state, policy database, transports, IMVs, logging."), options=[
    Option("state_dir", optional(_absolute_path), None,
           "Directory for the embedded SQLite database and the demo certificates generated on "
           "first start (created with mode 0700). Empty: /var/lib/nac when run as root, else "
           "$XDG_STATE_HOME/nac or ~/.local/state/nac."),
    Option("db", optional(db_url), None,
           "SQLAlchemy database URL. Empty: sqlite:///<state_dir>/nac.db. For several nac "
           "instances sharing one database, use PostgreSQL, e.g.\n"
           "  db = postgresql+psycopg://nac@localhost/nac"),
    Option("transports", comma_list_of(_transport_name, allow_empty=False, unique=True),
           ["pt-tls"], "Transports to enable: pt-tls, radius, ikev2 (at least one)."),
    Option("imvs", comma_list_of(_imv_spec, unique=True), [],
           "IMVs to load, best first, by registered name (os, scanner, swima) or dotted path "
           "(package.module:Class). Without IMVs every assessment ends in \"no recommendation\", "
           "which is Access Denied."),
    Option("recommendation_policy", choice("default", "any", "all"), "default",
           "How the IMVs' recommendations combine into one:\n"
           "  default  the most restrictive recommendation wins\n"
           "  any      one IMV recommending access is enough\n"
           "  all      all IMVs must agree, else no recommendation"),
    Option("language", comma_list_of(_language_tag, allow_empty=False), ["en"],
           "Language tags (RFC 5646) the server prefers for reason strings and remediation "
           "instructions, best first."),
    Option("log_level", choice("debug", "info", "warn", "error"), "info",
           "Least severe log level written: debug, info, warn, error (twistd nac --log-level "
           "overrides it). At info each assessment logs its milestones (connection accepted, client "
           "authenticated, PB-TNC state transitions, each IMV's verdict and reason, the final "
           "recommendation, close); debug adds every attribute the IMVs received, segmentation "
           "contracts and the messages exchanged."),
    Option("log_format", choice("text", "json"), "text",
           "How log lines are written (twistd nac --log-format overrides it): text, twistd's "
           "'<time> [<system>] <message>' lines; or json, one JSON object a line for log shippers: "
           "time (ISO 8601, UTC), level, namespace, system, message and the event's own fields "
           "(connection_id, peer, identity, worker, ...). Either goes where twistd logs, its log "
           "file or, with -n, standard output; with twistd --syslog or --logger, those decide."),
    Option("max_connections", positive_int, 10000,
           "Most TNCCS connections (assessments in progress) open at once over all transports."),
    Option("max_rounds", positive_int, 10,
           "Most PB-TNC round trips before the server decides with the recommendations it has "
           "(and, in mutual PB-TNC, before it gives up on an endpoint's IMVs that do not decide)."),
    Option("segment_memory", byte_size(1024 * 1024, 64 * 1024 * 1024 * 1024), 256 * 1024 * 1024,
           "Memory all connections of one nac process together may hold for attributes an endpoint "
           "sends in IF-M segments (TCG Attribute Segmentation: SWIMA inventories, package lists) that "
           "are not complete yet. A segment beyond it is refused with a PA-TNC error (Invalid "
           "Parameter) and the attribute dropped; the IMV decides without it."),
    Option("segment_memory_per_connection", byte_size(64 * 1024, 64 * 1024 * 1024 * 1024), 32 * 1024 * 1024,
           "The same for one connection, over all its IMVs: at least the largest max_attribute_size "
           "of the IMVs (16M for the SWIMA IMV by default), or their largest attributes cannot arrive."),
    Option("segment_timeout", seconds, 120.0,
           "An attribute sent in IF-M segments must be complete this long after its first segment; "
           "otherwise it is dropped (with a PA-TNC error) and its memory given back."),
    Option("mutual", boolean, False,
           "Mutual PB-TNC (strongSwan's ITA-HSR PB-Mutual-Capability, half duplex): when an endpoint "
           "announces it, nac also describes its own host with the collectors of mutual_collectors "
           "and answers the endpoint's IMVs in the same PB-TNC connection (PT-TLS, PT-EAP, EAP-TNC), "
           "so that the endpoint can judge the server too. nac's access decision does not depend on "
           "the endpoint's verdict on it, which is only logged. no (the default, as strongSwan's "
           "libtnccs.plugins.tnccs-20.mutual): the announcement is ignored and the exchange is as "
           "without it."),
    Option("mutual_collectors", comma_list_of(choice("os", "scanner", "swima"), allow_empty=False, unique=True),
           ["os"],
           "With mutual = yes, the collectors describing this host to an endpoint's IMVs, as nac's "
           "client describes an endpoint: os (operating system, IP forwarding, installed packages "
           "when asked), scanner (open ports), swima (software inventory). Every authenticated "
           "endpoint asking for mutual PB-TNC may read what they report."),
    Option("secret_key_file", optional(path), None,
           "Key (base64, 32 bytes) sealing the EAP-MD5/MSCHAPv2 secrets stored in the database, so "
           "a copy of the database alone reveals none. Created (mode 0600) when first needed; one that "
           "its group or others may use, or owned by another user than nac's (or root), is refused. "
           "Every nac instance and nac-admin sharing one database must use the same file. Empty: "
           "<state_dir>/secret.key."),
    Option("db_inline", boolean, True,
           "With a SQLite database file, an assessment's writes and a login's user lookup run in "
           "the server's own thread whenever the database is not locked (they are a few indexed "
           "statements, without file syncs); handing each to the database thread costs more CPU "
           "than the work itself. A locked database (another process writing) and anything that "
           "fails go to the database thread as before, and that thread checkpoints the write-ahead "
           "log. no: everything in the database thread. PostgreSQL always uses it."),
    Option("instance", optional(instance_name), None,
           "This nac instance's name, unique among the instances sharing one database: every session "
           "row records it with the Connection ID (nac-admin sessions list shows both), JSON log lines "
           "carry it (the field instance), and when it is set here, text log lines name it too "
           "('[nac-a nac.tnccs#info] ...'), so that the log lines and rows of several instances can be "
           "matched. At start an instance closes the sessions it left open when it last stopped (a "
           "crash, kill -9) as 'interrupted'. 1-64 letters, digits, '.', '_', '-'. Empty: this host's "
           "name (not shown in text log lines)."),
    Option("db_wait", non_negative_seconds, 2.0,
           "Longest a decision waits for its record to be committed before it is sent anyway (its "
           "writes then wait in memory until the database takes them). While the database works, an "
           "endpoint hears no decision the database lacks, even if nac is killed the next moment. "
           "0: never wait."),
    Option("db_timeout", seconds, 5.0,
           "Longest an assessment or a login waits for the database to look something up or keep "
           "something (a policy check, a user's row, the SWIMA IMV's inventory), and how long "
           "connecting to PostgreSQL or waiting for a SQLite lock may take. What fails or takes longer "
           "counts as not done: the check fails closed (never allows), the login fails."),
    Option("db_queue", positive_int, 20000,
           "Most assessment writes (sessions, decisions, devices, measurements) kept in memory while "
           "the database is unavailable; they are committed once it is back. Beyond it new writes are "
           "dropped, and the log says so once per 10 seconds."),
    Option("reevaluate_interval", non_negative_seconds, 0.5,
           "How often the main process looks for a policy change (one query of the generation "
           "counters that products, packages, releases, groups and policies move on, whoever changes "
           "them: nac-admin, the API, the console, plain SQL, another nac). After one, every device "
           "with an open RADIUS accounting session is judged again against the new policy with what "
           "it reported last (installed packages, OS settings); a decision that changes is recorded "
           "as a 're-evaluation' session and its NAS gets a CoA-Request or Disconnect-Request "
           "([radius-client:NAME] coa). 0: off (a change applies at the next assessment)."),
    Option("reevaluate_max", positive_int, 10000,
           "Most devices judged again after one policy change (the most recently active first); "
           "the log says how many were left out."),
    Option("credential_cache_ttl", non_negative_int, 300,
           "Seconds a verified SASL/EAP password is remembered, as a keyed hash in memory only, so "
           "endpoints that re-authenticate do not pay the deliberately slow scrypt check (about 60 "
           "ms) every time. Wrong passwords are never remembered; changing the password or "
           "disabling the user takes effect at once. 0 disables."),
])

declare_section("auth", help=(
    "Password checks and failed logins, for SASL PLAIN (pt-tls) and EAP-TTLS/PAP, EAP-MD5 and "
    "EAP-MSCHAPv2 (radius, ikev2). A source is the client's address (an IPv6 address counts as its "
    "/64); on RADIUS the NAS and the endpoint's Calling-Station-Id (a NAS that sends none is never "
    "delayed or locked out as a whole). Every limit holds in each nac process on its own. A refused "
    "login gets the protocol's own failure (SASL Abort, EAP-Failure / Access-Reject), and each "
    "lock-out one log line."), options=[
    Option("max_password_checks", positive_int, 64,
           "Password checks (scrypt: about 60 ms and 16 MiB each) waiting or running at once in each "
           "process. A login beyond is refused at once, unless a source with more waiting checks "
           "gives up its oldest. A user name that logged in from the same source within the last hour "
           "is checked at once, past these (one at a time; a wrong password ends that)."),
    Option("max_password_checks_per_source", positive_int, 16,
           "Password checks one source may have waiting or running at once; the checks of different "
           "sources are taken in turn, so one address cannot keep the others' waiting."),
    Option("failure_delay", non_negative_seconds, 1.0,
           "Wait before checking the next password of a source after its first failed login; it "
           "doubles with each further failure, up to max_failure_delay. 0: no wait."),
    Option("max_failure_delay", non_negative_seconds, 4.0,
           "Longest such wait (keep it well below [pt-tls] negotiation_timeout and the NASes' RADIUS "
           "retransmission time)."),
    Option("max_failures_per_source", positive_int, 10,
           "Failed logins after which a source is locked out for `lockout`: its logins are refused "
           "without a check, whatever the user name. Behind a NAT every client shares this count."),
    Option("max_failures_per_user", positive_int, 10,
           "Failed logins of one user name, from any sources, after which that user name is locked "
           "out for `lockout` for the sources that failed for it (and any that fail for it "
           "meanwhile), not for the others: a guesser cannot lock the real user out of the "
           "addresses it logs in from, and each new address it tries gets one guess."),
    Option("lockout", seconds, 300.0, "How long a lock-out lasts; then the failures count from zero again."),
    Option("failure_window", seconds, 900.0,
           "Failed logins are forgotten this long after a source's (or user name's) last failure."),
])

def workers_setting(raw: str) -> str | int:
    """``auto`` or a number of processes, 1-256 (nac.processes.process_count counts the CPUs)."""
    if raw.strip().lower() == "auto":
        return "auto"
    value = _integer(raw, "'auto' or a whole number (1-256)")
    if not 1 <= value <= 256:
        raise ValueError("is out of range ('auto' or 1-256)")
    return value


declare_section("eap", help=(
    "The EAP authenticator behind the radius and ikev2 transports: EAP-TTLS (RFC 5281, TLS 1.2 and "
    "1.3) with a password method inside, then the posture exchange with the IMVs. Users and "
    "passwords come from the policy database (`nac-admin user add`)."), options=[
    Option("methods", comma_list_of(choice("ttls", "md5", "mschapv2"), allow_empty=False, unique=True),
           ["ttls"], "EAP methods offered, most preferred first: ttls, md5, mschapv2. A peer that "
           "refuses one (Nak) gets the next one it proposes. md5 alone has no keys and no posture "
           "check: only for IKEv2 gateways that authenticate themselves with a certificate."),
    Option("inner_methods", comma_list_of(choice("md5", "mschapv2", "pap"), allow_empty=False, unique=True),
           ["md5", "mschapv2", "pap"], "Authentication inside EAP-TTLS (phase 2), tried in this order: "
           "md5 (EAP-MD5), mschapv2 (EAP-MSCHAPv2, or the non-EAP MS-CHAP-V2 a peer may choose), pap "
           "(User-Password)."),
    Option("tnc", choice("pt-eap", "eap-tnc", "none"), "pt-eap",
           "Posture exchange after the authentication, inside EAP-TTLS:\n"
           "  pt-eap   PT-EAP (RFC 7171) carrying PB-TNC, as strongSwan's clients\n"
           "  eap-tnc  EAP-TNC carrying IF-TNCCS 1.1 or PB-TNC, detected from the\n"
           "           client's first batch (wpa_supplicant / eapol_test speak 1.1)\n"
           "  none     no posture check: authentication only\n"
           "Access Denied ends in EAP-Failure; Allowed and Isolate in EAP-Success. A client without "
           "a posture client (Debian's strongSwan lacks the PB-TNC plugins) fails with pt-eap: use "
           "none for such deployments."),
    *tls_paths("server"),
    Option("ca", optional(path), None,
           "CA certificates (PEM) client certificates must chain to. Empty: the demo CA, ca.pem in "
           "state_dir."),
    Option("client_cert", choice("none", "optional", "required"), "none",
           "Client certificates in EAP-TTLS: none (not requested), optional, required. A verified "
           "certificate replaces the password authentication of phase 2; the posture exchange "
           "still runs."),
    Option("min_tls_version", tls_version, "1.2", "Lowest TLS version accepted in EAP-TTLS: 1.2 or 1.3."),
    Option("max_tls_version", tls_version, "1.3", "Highest TLS version offered in EAP-TTLS: 1.2 or 1.3."),
    Option("ciphers", cipher_string, "",
           "OpenSSL cipher string for TLS 1.2 (see `openssl ciphers`). Empty: OpenSSL's default."),
    Option("fragment_size", int_range(64, 65530), 1024,
           "Largest EAP-TTLS fragment (type-data bytes: flags, length, data) for transports without "
           "their own fragment_size ([radius] has one)."),
    Option("posture_fragment_size", int_range(0, 65530), 0,
           "Largest PT-EAP / EAP-TNC fragment inside the tunnel. 0: a whole TNCCS batch per message, "
           "as strongSwan sends them (the tunnel fragments anyway); hostapd uses its fragment_size "
           "minus 98."),
    Option("max_message_size", byte_size(4096, 1024 * 1024), 65536,
           "Largest EAP-TTLS message reassembled from a peer's fragments."),
    Option("max_rounds", positive_int, 200,
           "Most EAP requests in one conversation, fragments and acknowledgements included; the "
           "conversation fails beyond."),
])

# -- loading ---------------------------------------------------------------

_SECRET_NAME = re.compile(r"(?:^|[_-])(?:secret|password|passphrase|psk)$", re.IGNORECASE)
# "user:password@" in a URL, well-formed or not
_URL_PASSWORD = re.compile(r"([^\s:/@]*:)[^\s:/@]+@")
HIDDEN = "***"


def _is_secret(option: Option | None, key: str) -> bool:
    return (option is not None and option.secret) or bool(_SECRET_NAME.search(key))


def _mask_url(url: str) -> str:
    return _URL_PASSWORD.sub(rf"\1{HIDDEN}@", url)


def _shown(option: Option | None, key: str, raw: str) -> str:
    if _is_secret(option, key):
        return "the value (not shown)"
    # a database URL may carry a password
    return repr(_mask_url(raw))


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# raw value as written, and where it came from (the file or COMMAND_LINE)
_Raw = dict[str, tuple[str, str]]


def _read_file(path: str) -> dict[str, _Raw]:
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, empty_lines_in_values=False,
        # no DEFAULT section whose keys leak into every other section
        default_section="\0no default section")
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh, source=path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: a setting before any [section] header") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: section [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}: [{exc.section}] {exc.option}: key set twice in the section") from None
    except configparser.ParsingError as exc:
        # the offending lines may hold a secret: point at them by number only
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        raise ConfigError(f"{path}: line {lines}: not a 'key = value' setting") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    return {section: {key: (value, path) for key, value in parser.items(section)}
            for section in parser.sections()}


def load(path: str | None, overrides: Mapping[tuple[str, str], str] | None = None) -> NacConfig:
    """Read ``path`` (None: built-in defaults only), apply ``overrides`` and validate.

    ``overrides`` maps ``(section, key)`` to the raw string given on the
    command line; it wins over the file.  Raises :class:`ConfigError`
    listing every problem found.
    """
    from nac import plugins

    plugins.transport_plugins()  # each declares its section(s) when first loaded
    raw = _read_file(path) if path is not None else {}
    file_sections = set(raw)
    for (section, key), value in (overrides or {}).items():
        raw.setdefault(section, {})[key.strip().lower()] = (str(value), COMMAND_LINE)

    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    imv_raw: dict[str, _Raw] = {}
    named: dict[str, dict[str, dict[str, Any]]] = {}
    for section, entries in raw.items():
        if section.startswith(IMV_SECTION_PREFIX):
            name = section[len(IMV_SECTION_PREFIX):].strip()
            if not name:
                where = path if section in file_sections else COMMAND_LINE
                problems.append(f"{where}: [{section}]: an IMV section needs a name, like [imv:os]")
            imv_raw[name] = entries
            continue
        prefix, colon, name = section.partition(":")
        if colon and prefix.strip() in NAMED_SECTIONS:
            prefix, name = prefix.strip(), name.strip()
            if not _SECTION_NAME.fullmatch(name):
                where = path if section in file_sections else COMMAND_LINE
                problems.append(f"{where}: [{section}]: {name[:80]!r} is not a short name (1-64 letters, "
                                f"digits, '.', '_' or '-', starting with a letter or digit)")
                continue
            options = NAMED_SECTIONS[prefix]
            parsed = named.setdefault(prefix, {}).setdefault(name, {})
            for key, (value, origin) in entries.items():
                option = options.get(key)
                if option is None:
                    problems.append(f"{origin}: [{section}] {key}: unknown key{_suggest(key, options)} "
                                    f"(valid keys: {', '.join(options)})")
                    continue
                try:
                    parsed[key] = option.kind(value)
                except ValueError as exc:
                    problems.append(f"{origin}: [{section}] {key}: {_shown(option, key, value)} {exc}")
                else:
                    origins[(f"{prefix}:{name}", key)] = origin
            continue
        options = SCHEMA.get(section)
        if options is None:
            known = ", ".join([*sorted(SCHEMA), IMV_SECTION_PREFIX + "NAME",
                               *(f"{prefix}:NAME" for prefix in NAMED_SECTIONS)])
            hint = _suggest(section, SCHEMA)
            if section in file_sections:
                problems.append(f"{path}: [{section}]: unknown section{hint} (known sections: {known})")
            for key, (_, origin) in entries.items():
                if origin == COMMAND_LINE:
                    problems.append(f"{origin}: [{section}] {key}: unknown section{hint} (known sections: {known})")
            continue
        parsed = values.setdefault(section, {})
        for key, (value, origin) in entries.items():
            option = options.get(key)
            if option is None:
                problems.append(f"{origin}: [{section}] {key}: unknown key{_suggest(key, options)} "
                                f"(valid keys: {', '.join(options)})")
                continue
            try:
                parsed[key] = option.kind(value)
            except ValueError as exc:
                problems.append(f"{origin}: [{section}] {key}: {_shown(option, key, value)} {exc}")
            else:
                origins[(section, key)] = origin
    if problems:
        raise ConfigError(*problems)

    cfg = NacConfig(values, imv_raw, origins, path, named)
    _derive_defaults(cfg)
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(*problems)
    return cfg


def _derive_defaults(cfg: NacConfig) -> None:
    nac = cfg._values.setdefault("nac", {})
    if nac.get("state_dir") is None:
        nac["state_dir"] = default_state_dir()
    if nac.get("db") is None:
        nac["db"] = f"sqlite:///{nac['state_dir']}/nac.db"
    if nac.get("secret_key_file") is None:
        nac["secret_key_file"] = f"{nac['state_dir']}/secret.key"
    cfg.instance_named = nac.get("instance") is not None
    if not cfg.instance_named:
        nac["instance"] = default_instance()


def check_tls_pair(cfg: NacConfig, section: str) -> list[str]:
    """``[section] cert`` and ``key`` come together (or neither: the demo pair)."""
    cert, key = cfg.get(section, "cert"), cfg.get(section, "key")
    if (cert is None) == (key is None):
        return []
    missing, given = ("key", "cert") if key is None else ("cert", "key")
    return [f"{cfg.origin(section, given)}: [{section}] {missing}: required because [{section}] {given} "
            "is set (set both, or neither to use the demo certificate)"]


def _cross_check(cfg: NacConfig) -> list[str]:
    """Rules that span keys; each problem is named on the key to fix.  Each
    transport plugin checks its own sections
    (:meth:`~nac.interfaces.ITransportPlugin.check`)."""
    from nac import plugins

    problems = []
    for plugin in plugins.transport_plugins().values():
        problems += plugin.check(cfg)
    return problems


def _copy(value: Any) -> Any:
    # typed values are immutable except lists: hand out copies
    return list(value) if isinstance(value, list) else value


class NacConfig:
    """A validated configuration: typed values with defaults filled in."""

    def __init__(self, values: dict[str, dict[str, Any]], imv_raw: dict[str, _Raw],
                 origins: dict[tuple[str, str], str], source: str | None,
                 named: dict[str, dict[str, dict[str, Any]]] | None = None):
        self._values = values
        self._named = named or {}
        self._imv_raw = imv_raw
        self._origins = origins
        self._imvs_validated: set[str] = set()
        #: The configuration file read, or None.
        self.source = source
        #: Whether ``[nac] instance`` was given (else it is the host name).
        self.instance_named = False

    def get(self, section: str, key: str) -> Any:
        """The typed value of ``[section] key``, or its default.  KeyError if undeclared."""
        given = self._values.get(section, {})
        if key in given:
            return _copy(given[key])
        try:
            return _copy(SCHEMA[section][key].default)
        except KeyError:
            raise KeyError(f"[{section}] {key} is not a declared configuration key") from None

    def section(self, name: str) -> dict[str, Any]:
        """All keys of a declared section, defaults filled in."""
        if name not in SCHEMA:
            raise KeyError(f"[{name}] is not a declared configuration section")
        return {key: self.get(name, key) for key in SCHEMA[name]}

    def origin(self, section: str, key: str) -> str:
        """Where ``[section] key`` came from: the file, ``command line``, or the file/defaults."""
        return self._origins.get((section, key), self.source or DEFAULTS)

    @property
    def state_dir(self) -> str:
        return self.get("nac", "state_dir")

    @property
    def db_url(self) -> str:
        return self.get("nac", "db")

    @property
    def transports(self) -> list[str]:
        return self.get("nac", "transports")

    @property
    def imvs(self) -> list[str]:
        return self.get("nac", "imvs")

    def named_sections(self, prefix: str) -> dict[str, dict[str, Any]]:
        """The ``[PREFIX:NAME]`` sections (:func:`declare_named_section`) in
        the file's order: name -> the typed values of the keys given (no
        defaults: an absent key may mean the main section's value)."""
        if prefix not in NAMED_SECTIONS:
            raise KeyError(f"[{prefix}:NAME] is not a declared kind of section")
        return {name: {key: _copy(value) for key, value in values.items()}
                for name, values in self._named.get(prefix, {}).items()}

    @property
    def imv_section_names(self) -> list[str]:
        """Names of the ``[imv:NAME]`` sections present."""
        return list(self._imv_raw)

    def unused_imv_sections(self) -> list[str]:
        """``[imv:NAME]`` sections no loaded IMV asked for (likely a misspelled name)."""
        return [name for name in self._imv_raw if name not in self._imvs_validated]

    def imv_options(self, name: str, options: Iterable[Option]) -> dict[str, Any]:
        """Validate ``[imv:NAME]`` against the IMV's declared options; defaults filled in.

        Option names are matched in lower case, as the INI reader folds keys.
        """
        declared = {option.name.lower(): option for option in options}
        section = IMV_SECTION_PREFIX + name
        self._imvs_validated.add(name)
        out = {key: _copy(option.default) for key, option in declared.items()}
        problems = []
        for key, (value, origin) in self._imv_raw.get(name, {}).items():
            option = declared.get(key)
            if option is None:
                valid = ", ".join(declared) if declared else "none, this IMV has no options"
                problems.append(f"{origin}: [{section}] {key}: unknown key{_suggest(key, declared)} "
                                f"(valid keys: {valid})")
                continue
            try:
                out[key] = option.kind(value)
            except ValueError as exc:
                problems.append(f"{origin}: [{section}] {key}: {_shown(option, key, value)} {exc}")
        if problems:
            raise ConfigError(*problems)
        return out

    def __repr__(self) -> str:
        sections = {}
        for name in SCHEMA:
            shown = {}
            for key, value in self.section(name).items():
                option = SCHEMA[name][key]
                if value is not None and _is_secret(option, key):
                    value = HIDDEN
                elif isinstance(value, str):
                    value = _mask_url(value)
                shown[key] = value
            sections[name] = shown
        for prefix, by_name in self._named.items():
            for name, values in by_name.items():
                options = NAMED_SECTIONS[prefix]
                sections[f"{prefix}:{name}"] = {
                    key: HIDDEN if value is not None and _is_secret(options.get(key), key) else value
                    for key, value in values.items()}
        for name, entries in self._imv_raw.items():
            sections[IMV_SECTION_PREFIX + name] = {
                key: HIDDEN if _is_secret(None, key) else _mask_url(value)
                for key, (value, _) in entries.items()}
        return f"NacConfig(source={self.source!r}, sections={sections!r})"
