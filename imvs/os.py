"""The OS IMV (IETF PA subtype Operating System, RFC 5792 §4.2): judges the
operating system of an endpoint and its installed packages.

What strongSwan's imv-os does (read for facts, written anew), per connection:

1. The OS collector's first message brings Product Information, String and
   Numeric Version, Operational Status, Forwarding Enabled, Factory Default
   Password Enabled and the ITA-HSR Device ID.  At the end of that batch the
   IMV proposes a TCG segmentation contract and asks with an Attribute
   Request for what is missing, Installed Packages included when a policy
   database is there to check them (the list of a Debian host is tens of
   kilobytes: over PT-EAP it arrives in segments, reassembled here).
2. The device (ITA-HSR Device ID) is recorded with its product
   (``"<name> <version>"``, e.g. ``Debian 12 x86_64``) in the policy store.
3. Every installed package is checked against the store's releases of that
   product, with one query per 500 packages (5,000 on PostgreSQL; no
   per-package round trip), read from an index holding every column asked
   for, judged as the rows arrive and with Debian versions compared by
   cached sort keys, only where the order matters: a blacklisted release
   is a major violation; a release older than the newest security release
   (``package_updates = security``, or than the newest release at all with
   ``all``) a minor one; a package the store does not know is only
   counted.  Forwarding enabled is a minor violation, a factory default
   password a major one.  (``bench/imv_os.py`` measures it: 3,000
   installed packages against 100,000 releases.)
4. The verdict goes to the collector (Assessment Result and strongSwan's
   XML remediation instructions), to the TNCS (recommendation by the
   ``[imv:os]`` policy, reason string, remediation) and into the session's
   measurements.

An endpoint whose groups enforce OS policies (``installed-packages`` with
its update policy, ``forwarding-enabled``, ``default-password``,
``forbidden-packages``: names or patterns that must not be installed) is
judged by those due instead of ``[imv:os]``, each failed one recommending
its ``rec_fail`` (``nac.policy``).  The Device ID and product the OS
collector reports identify the endpoint to the TNCS for that policy.

Without a policy database the settings are judged and packages are not
asked for.  A collector that never answers leaves the IMV with its
no-result recommendation when the TNCS solicits it.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import hashlib
import itertools
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql
from twisted.internet import defer
from twisted.python.failure import Failure

from imvs.policy import (
    ImvState,
    Judgement,
    LangText,
    PaTncImv,
    RemediationString,
    checks_recommendation,
    combine_checks,
    verdict_options,
)
from nac.config import Option, choice, non_negative_int
from nac.db.models import NAME_LENGTH, Package, PolicyType, Product, Version, has_control_characters
from nac.db.outage import log_store_failure
from nac.db.store import policy_generation
from nac.ifimv import ANY_IMC_ID, ActionRecommendation, EvaluationResult
from nac.log import Logger
from nac.pa import PaAttribute, PaSubtype, PaVendor, vendor_name
from nac.pa.ietf import (
    AttributeRequest,
    FactoryDefaultPasswordEnabled,
    ForwardingEnabled,
    ForwardingStatus,
    IetfAttributeType,
    InstalledPackages,
    NumericVersion,
    OperationalStatus,
    ProductInformation,
    StringVersion,
)
from nac.pa.ita import DeviceId, ItaAttributeType

__all__ = [
    "KnownRelease",
    "OsImv",
    "OsState",
    "PackageReport",
    "PackageReports",
    "PackageStatus",
    "UpdatePolicy",
    "check_installed_packages",
    "check_packages",
    "compare_debian_versions",
    "debian_version_key",
    "known_releases",
    "package_status",
    "releases_by_package",
]

log = Logger(namespace="nac.imv.os")

A = ActionRecommendation
E = EvaluationResult

#: the group policy types this IMV checks
OS_POLICIES = (PolicyType.INSTALLED_PACKAGES, PolicyType.FORWARDING_ENABLED, PolicyType.DEFAULT_PASSWORD,
               PolicyType.FORBIDDEN_PACKAGES)

#: Installed packages one assessment accepts (Installed Packages attributes
#: may come several times; each holds at most 65535).
MAX_PACKAGES = 200_000
#: Package names looked up per SQL statement (bound parameters).
SQL_CHUNK = 500


# -- Debian package versions (deb-version(7)) -------------------------------------------------
#
# dpkg orders versions by epoch (a number), then upstream version, then Debian
# revision; it walks each of the two as alternating runs of non-digits,
# compared character by character ('~' first, then the end of the run, then
# letters, then everything else), and of digits, compared as numbers; a part
# that is shorter goes on as if with empty runs and zeros.  Here a version
# becomes one string whose plain string order is that order: a run of
# non-digits recoded so that code points order as dpkg orders the
# characters, closed by a mark ordered as the run's end; a number as its
# length and digits.  Sorting and max() then compare in C, and a version is
# parsed once (keys are cached: every assessment meets the same releases).


def _run_order() -> dict[int, int]:
    ascii_chars = [chr(i) for i in range(128)]
    letters = [c for c in ascii_chars if c.isalpha()]
    others = [c for c in ascii_chars if not c.isalnum() and c != "~"]
    table = {ord("~"): 1}
    table.update((ord(c), 3 + i) for i, c in enumerate(letters))
    table.update((ord(c), 3 + len(letters) + i) for i, c in enumerate(others))
    return table


#: The characters of a non-digit run recoded in dpkg's order: '~' (1), the
#: run's end (:data:`_RUN_END`, 2), letters (3–54), other ASCII (55–119);
#: non-ASCII keeps its code point (≥ 128: after all of them, in code point
#: order, which is the order of its UTF-8 bytes that dpkg compares).
_RUN_ORDER = _run_order()
_RUN_END = "\x02"
#: A number is chr(_NUMBER + its digit count) and its digits without leading
#: zeros: more digits sort after fewer, equally many by the digits.
_NUMBER = 0x20
_RUN = re.compile(r"([^0-9]*)([0-9]*)")


def _number_key(digits: str) -> str:
    digits = digits.lstrip("0")
    return chr(_NUMBER + len(digits)) + digits


def _part_key(part: str) -> str:
    keys = []
    for text, digits in _RUN.findall(part):
        if text or digits:
            keys += (text.translate(_RUN_ORDER), _RUN_END, _number_key(digits))
    if not keys:
        keys = [_RUN_END, _number_key("")]  # an empty part is an empty run and 0
    # then, in place of the runs it lacks, an empty run: ordered against the
    # other part's next run (never empty) as dpkg orders a run's end
    keys.append(_RUN_END)
    return "".join(keys)


@functools.lru_cache(maxsize=65536)
def debian_version_key(version: str) -> str:
    """Sort key for Debian versions (``[epoch:]upstream[-revision]``), in
    dpkg's order: ``sorted(versions, key=debian_version_key)``.  Versions
    dpkg calls equal (``1.0`` and ``1.0-0``, ``007`` and ``7``) get one key."""
    epoch, colon, rest = version.partition(":")
    if not (colon and epoch.isascii() and epoch.isdigit()):
        epoch, rest = "", version
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    return _number_key(epoch) + _part_key(upstream) + _part_key(revision)


def compare_debian_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` (``[epoch:]upstream[-revision]``)
    sorts before, with or after ``b``, as dpkg orders them."""
    if a == b:
        return 0
    ka, kb = debian_version_key(a), debian_version_key(b)
    return (ka > kb) - (ka < kb)


# -- the package check ---------------------------------------------------------------------------


class UpdatePolicy(enum.Enum):
    """When an installed release counts as outdated (``[imv:os] package_updates``)."""

    SECURITY = "security"
    """older than the newest security release of the package"""
    ALL = "all"
    """older than the newest release the store knows"""
    NONE = "none"
    """never: only blacklisted releases fail"""


class PackageStatus(enum.Enum):
    OK = "ok"
    OUTDATED = "vulnerable"
    BLACKLISTED = "blacklisted"
    UNKNOWN = "unknown"


class KnownRelease(NamedTuple):
    """A release of a package on a product, as the store has it ('*': any release)."""

    release: str
    security: bool
    blacklisted: bool


#: The releases of the packages named in ``names`` (expanded: one bound
#: parameter each) on one product, a package's releases together.  ``+ 0``
#: keeps SQLite's planner off the product index, which it would otherwise
#: take (it has no statistics unless ANALYZE ran) although one product has
#: nearly every release: the names pick a few rows each through the index on
#: (package, product, release, security, blacklisted), which holds every
#: column read (migration 0003).
_RELEASES = (sa.select(Package.name, Version.release, Version.security, Version.blacklisted)
             .join(Version, Version.package_id == Package.id)
             .where(Version.product_id + 0 == sa.bindparam("product_id"),
                    Package.name.in_(sa.bindparam("names", expanding=True)))
             .order_by(Package.name))
_WANTED = (sa.func.unnest(sa.bindparam("names", type_=postgresql.ARRAY(sa.String)))
           .table_valued("name").alias("wanted"))
#: The same on PostgreSQL, the names in one array parameter: no hundreds of
#: placeholders to render, send and parse for each query, and with a few
#: thousand names at once the planner hashes them against the packages and
#: reads the releases through the index (it has statistics).
_RELEASES_ARRAY = (sa.select(Package.name, Version.release, Version.security, Version.blacklisted)
                   .select_from(_WANTED)
                   .join(Package, Package.name == _WANTED.c.name)
                   .join(Version, Version.package_id == Package.id)
                   .where(Version.product_id == sa.bindparam("product_id"))
                   .order_by(Package.name))
#: Package names looked up per query in one array parameter.
ARRAY_CHUNK = 5000
#: Rows taken from the cursor at a time.  Few, so that they are gone before
#: the garbage collector's next pass: the thousands of rows of a whole query
#: alive at once would be moved to its oldest generation, and walking the
#: whole heap for them every few assessments cost more than the check.
_FETCH_ROWS = 100
_NAME = operator.itemgetter(0)


def releases_by_package(session, product: str,
                        names: Iterable[str]) -> Iterator[tuple[str, list[KnownRelease]]]:
    """(package name, its releases) for each package of ``names`` the store
    knows on ``product``, each release a (release, security, blacklisted)
    tuple, the fields of :class:`KnownRelease`; in one query for the
    product and one per SQL_CHUNK names (ARRAY_CHUNK on PostgreSQL), each
    package's releases handed on as they arrive (run by PolicyStore.run)."""
    product_id = session.scalar(sa.select(Product.id).where(Product.name == product))
    if product_id is None:
        return
    unique = sorted(set(names))
    # plain rows: no ORM bookkeeping for thousands of them
    connection = session.connection() if isinstance(session, orm.Session) else session
    if connection.dialect.name == "postgresql":
        query, chunk = _RELEASES_ARRAY, ARRAY_CHUNK
    else:
        query, chunk = _RELEASES, SQL_CHUNK
    for start in range(0, len(unique), chunk):
        result = connection.execute(query, {"product_id": product_id, "names": unique[start:start + chunk]})
        rows = itertools.chain.from_iterable(result.partitions(_FETCH_ROWS))
        for name, releases in itertools.groupby(rows, _NAME):
            yield name, [row[1:] for row in releases]


def known_releases(session, product: str, names: Iterable[str]) -> dict[str, list[KnownRelease]]:
    """The store's releases of the packages ``names`` on ``product``, by
    package name (see :func:`releases_by_package`)."""
    return dict(releases_by_package(session, product, names))


@dataclass(slots=True)
class PackageReport:
    """The outcome of checking one endpoint's packages."""

    count: int = 0
    ok: int = 0
    unknown: int = 0
    outdated: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, installed release, release to update to)"""
    blacklisted: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, release: str, status: PackageStatus, newer: str = "") -> None:
        """Count installed package ``name`` ``release`` as ``status``."""
        self.count += 1
        if status is PackageStatus.OK:
            self.ok += 1
        elif status is PackageStatus.OUTDATED:
            self.outdated.append((name, release, newer))
        elif status is PackageStatus.BLACKLISTED:
            self.blacklisted.append((name, release))
        else:
            self.unknown += 1

    @property
    def evaluation(self) -> EvaluationResult:
        if self.blacklisted:
            return E.NONCOMPLIANT_MAJOR
        if self.outdated:
            return E.NONCOMPLIANT_MINOR
        return E.COMPLIANT

    def summary(self) -> str:
        # strongSwan's wording
        return (f"processed {self.count} packages: {len(self.outdated)} vulnerable, "
                f"{len(self.blacklisted)} blacklisted, {self.ok} ok, {self.unknown} unknown")


_UNKNOWN = (PackageStatus.UNKNOWN, "")


def check_packages(installed: Iterable[tuple[str, str]], known: Mapping[str, Sequence[KnownRelease]],
                   updates: UpdatePolicy = UpdatePolicy.SECURITY) -> PackageReport:
    """Judge each installed (name, release) against the store's releases."""
    report = PackageReport()
    for name, release in installed:
        rows = known.get(name)
        status, newer = package_status(release, rows, updates) if rows else _UNKNOWN
        report.add(name, release, status, newer)
    return report


def check_installed_packages(session, product: str, installed: Sequence[tuple[str, str]],
                             updates: UpdatePolicy = UpdatePolicy.SECURITY) -> PackageReport:
    """:func:`check_packages` against the store, run by PolicyStore.run (the
    query and the comparisons both off the reactor).  Each package's
    releases are judged as they arrive and dropped; until the report is
    made, OK verdicts are kept as (name, release) pairs of strings, which
    the garbage collector soon stops tracking, and only the others with
    their details."""
    wanted: dict[str, str | tuple[str, ...]] = {}
    for name, release in installed:
        if "\0" in name:
            continue  # never stored (no control characters), and PostgreSQL refuses NULs
        other = wanted.setdefault(name, release)
        if other != release:  # a name installed twice (multi-arch, other releases)
            others = (other,) if isinstance(other, str) else other
            if release not in others:
                wanted[name] = others + (release,)
    ok: set[tuple[str, str]] = set()
    found: dict[tuple[str, str], tuple[PackageStatus, str]] = {}
    for name, releases in releases_by_package(session, product, wanted):
        mine = wanted[name]
        for release in (mine,) if isinstance(mine, str) else mine:
            verdict = package_status(release, releases, updates)
            if verdict[0] is PackageStatus.OK:
                ok.add((name, release))
            else:
                found[name, release] = verdict
    report = PackageReport()
    for name, release in installed:
        if (name, release) in ok:
            report.add(name, release, PackageStatus.OK)
        else:
            report.add(name, release, *found.get((name, release), _UNKNOWN))
    return report


class PackageReports:
    """Package reports remembered while the package policy stays the same.

    Hosts installed from one image send the same package list assessment
    after assessment; judging it again against the store would give the
    same report as long as no product, package or release changed, which
    the store's policy generation (migration 0004: database triggers, so
    changes by nac-admin, other servers or plain SQL all count) tells.
    Reports are kept by (product, update policy, digest of the list), the
    ``size`` most recently used ones; the first lookup in a new generation
    forgets them all.  Safe to share between the store's threads.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._reports: OrderedDict[tuple, PackageReport] = OrderedDict()

    @staticmethod
    def combine(digests: Sequence[bytes] | None) -> bytes | None:
        """One digest for a list received in several Installed Packages
        attributes, from theirs (None: no digest)."""
        if not digests:
            return None
        if len(digests) == 1:
            return digests[0]
        return hashlib.blake2b(b"".join(digests), digest_size=16).digest()

    def cached(self, product: str, updates: UpdatePolicy, digest: bytes | None,
               generation: int | None) -> PackageReport | None:
        """The report kept for this list if it was made in ``generation``
        (one the store read at or after this assessment's start), else None:
        then :meth:`check` it."""
        if digest is None or generation is None:
            return None
        key = (product, updates, digest)
        with self._lock:
            if generation != self._generation:
                return None
            report = self._reports.get(key)
            if report is not None:
                self._reports.move_to_end(key)
                self.hits += 1
            return report

    def check(self, session, product: str, installed: Sequence[tuple[str, str]],
              updates: UpdatePolicy = UpdatePolicy.SECURITY, *, digest: bytes | None = None) -> PackageReport:
        """:func:`check_installed_packages`, or the report it gave for the
        same list in this generation (run by PolicyStore.read or .run).
        ``digest`` names the list (:attr:`InstalledPackages.digest`, or
        :meth:`combine` of several); a list without one is judged afresh."""
        if self.size <= 0 or digest is None:
            return check_installed_packages(session, product, installed, updates)
        generation = policy_generation(session)
        key = (product, updates, digest)
        with self._lock:
            if generation != self._generation:
                self._reports.clear()
                self._generation = generation
            report = self._reports.get(key)
            if report is not None:
                self._reports.move_to_end(key)
                self.hits += 1
                return report
            self.misses += 1
        report = check_installed_packages(session, product, installed, updates)
        with self._lock:
            # a report read before a change stays out of the next generation
            if generation == self._generation:
                self._reports[key] = report
                if len(self._reports) > self.size:
                    self._reports.popitem(last=False)
        return report


def package_status(release: str, rows: Iterable[KnownRelease],
                   updates: UpdatePolicy = UpdatePolicy.SECURITY) -> tuple[PackageStatus, str]:
    """How installed ``release`` of a package stands against the store's
    releases of it, and the release to update to when it is outdated.

    Versions are compared only where the order matters: the installed
    release against the newest release it could be updated to, that one
    found among the others by their cached keys.
    """
    candidates = updates is not UpdatePolicy.NONE
    any_release = updates is UpdatePolicy.ALL
    exact = False
    newest, newest_key = "", None
    for known, security, blacklisted in rows:
        if known == release or known == "*":
            if blacklisted:
                return PackageStatus.BLACKLISTED, ""
            exact = exact or known == release
        elif candidates and not blacklisted and (security or any_release):
            key = debian_version_key(known)
            if newest_key is None or key > newest_key:
                newest, newest_key = known, key
    # the installed release itself is no newer release to update to: leaving
    # it out of the candidates changes nothing
    if newest_key is not None and debian_version_key(release) < newest_key:
        return PackageStatus.OUTDATED, newest
    return (PackageStatus.OK if exact else PackageStatus.UNKNOWN), ""


# -- texts (strongSwan's, in English and German) -----------------------------------------------

REASON_PACKAGES: LangText = {
    "en": "Vulnerable or blacklisted software packages were found",
    "de": "Schwachstellenbehaftete oder gesperrte Softwarepakete wurden gefunden",
}
REASON_SETTINGS: LangText = {
    "en": "Improper OS settings were detected",
    "de": "Unzulässige OS Einstellungen wurden festgestellt",
}
REASON_NO_RESULT: LangText = {
    "en": "No operating system information was received",
    "de": "Es wurden keine Angaben zum Betriebssystem empfangen",
}
REASON_INCOMPLETE: LangText = {
    "en": "The operating system could not be fully assessed",
    "de": "Das Betriebssystem konnte nicht vollständig beurteilt werden",
}
UPDATE_TITLE: LangText = {"en": "Software Security Updates", "de": "Software Sicherheitsupdates"}
UPDATE_DESCRIPTION: LangText = {
    "en": "Packages with security vulnerabilities were found",
    "de": "Softwarepakete mit Sicherheitsschwachstellen wurden gefunden",
}
UPDATE_HEADER: LangText = {
    "en": "Please update the following software packages:",
    "de": "Bitte updaten Sie die folgenden Softwarepakete:",
}
REMOVE_TITLE: LangText = {"en": "Blacklisted Software Packages", "de": "Gesperrte Softwarepakete"}
REMOVE_DESCRIPTION: LangText = {
    "en": "Dangerous software packages were found",
    "de": "Gefährliche Softwarepakete wurden gefunden",
}
REMOVE_HEADER: LangText = {
    "en": "Please remove the following software packages:",
    "de": "Bitte entfernen Sie die folgenden Softwarepakete:",
}
FORWARDING_TITLE: LangText = {"en": "IP Packet Forwarding", "de": "Weiterleitung von IP Paketen"}
FORWARDING_DESCRIPTION: LangText = {
    "en": "Please disable the forwarding of IP packets",
    "de": "Bitte deaktivieren Sie das Forwarding von IP Paketen",
}
PASSWORD_TITLE: LangText = {"en": "Default Password", "de": "Default Passwort"}
PASSWORD_DESCRIPTION: LangText = {
    "en": "Please change the default password",
    "de": "Bitte ändern Sie das Default Passwort",
}


# -- the IMV --------------------------------------------------------------------------------------

_IETF, _ITA = PaVendor.IETF, PaVendor.ITA_HSR
_T = IetfAttributeType


@dataclass(slots=True)
class OsState(ImvState):
    """What the OS IMV knows about one connection."""

    product_name: str | None = None
    product_vendor: int | None = None
    version: str | None = None
    numeric_version: tuple[int, int] | None = None
    operational: bool = False
    forwarding: ForwardingStatus | None = None
    default_password: bool | None = None
    device_id: str | None = None
    packages: list[tuple[str, str]] | None = None
    package_digests: list[bytes] | None = field(default_factory=list)
    """Digests of the Installed Packages attributes received whole (None
    once a list was cut short): together they name ``packages``."""
    packages_requested: bool = False

    @property
    def product(self) -> str | None:
        """strongSwan's OS info string: name and version, e.g. 'Debian 12 x86_64'."""
        if not self.product_name or self.version is None:
            return None
        return f"{self.product_name} {self.version}" if self.version else self.product_name


class OsImv(PaTncImv):
    """IETF Operating System (PA subtype 1) verifier, strongSwan's imv-os."""

    name = "os"
    label = "OS"
    subtype = PaSubtype.OPERATING_SYSTEM
    subtype_name = "Operating System"
    state_class = OsState
    LANGUAGES = ("en", "de")

    CONFIG_HELP = (
        "Operating System (IETF PA subtype 1, strongSwan's imv-os): product and version, IP "
        "forwarding, factory default password, Device ID and, with the policy database, every "
        "installed package against the releases recorded with `nac-admin packages import` / "
        "`packages blacklist` for the host's product (e.g. 'Debian 12 x86_64'). A blacklisted "
        "release or a factory default password is non-compliant major; an outdated package or IP "
        "forwarding is non-compliant minor. Load with `imvs = os, ...`.")

    OPTIONS = [
        Option("package_updates", choice(*(p.value for p in UpdatePolicy)), UpdatePolicy.SECURITY.value,
               "When an installed package is outdated (a minor violation): security (older than "
               "its newest security release), all (older than its newest known release) or none."),
        Option("package_report_cache", non_negative_int, 256,
               "Package reports kept in memory for package lists seen again (hosts from one "
               "image), until the package policy in the database changes (any change to products, "
               "packages or releases, by nac-admin or plain SQL, moves a generation counter on); 0: "
               "judge every list against the database."),
        *verdict_options(server_checks=True),
        PaTncImv.attribute_size_option(),
    ]

    def __init__(self, options: Mapping | None = None):
        super().__init__(options)
        self.updates = UpdatePolicy(self.options["package_updates"])
        self.reports = PackageReports(self.options["package_report_cache"])

    # -- receiving ---------------------------------------------------------------------------

    def handle_attribute(self, connection, state: OsState, attribute: PaAttribute) -> None:
        imv_id = connection.imv_id
        if isinstance(attribute, ProductInformation):
            state.product_name, state.product_vendor = attribute.name, attribute.vendor_id
            if attribute.vendor_id:
                log.debug("operating system name is '{name}' from vendor {pen}",
                         name=attribute.name, pen=vendor_name(attribute.vendor_id))
            else:
                log.debug("operating system name is '{name}'", name=attribute.name)
        elif isinstance(attribute, StringVersion):
            state.version = attribute.version
            if attribute.version:
                log.debug("operating system version is '{version}'", version=attribute.version)
        elif isinstance(attribute, NumericVersion):
            state.numeric_version = (attribute.major, attribute.minor)
            log.debug("operating system numeric version is {major}.{minor}",
                     major=attribute.major, minor=attribute.minor)
        elif isinstance(attribute, OperationalStatus):
            state.operational = True
            log.debug("operational status: {status}, result: {result}",
                     status=attribute.status.name.lower().replace("_", " "),
                     result=attribute.result.name.lower())
            log.debug("last boot: {last_use}", last_use=attribute.last_use)
        elif isinstance(attribute, ForwardingEnabled):
            state.forwarding = attribute.status
            log.debug("IPv4 forwarding is {status}", status=attribute.status.name.lower())
        elif isinstance(attribute, FactoryDefaultPasswordEnabled):
            state.default_password = attribute.enabled
            log.debug("factory default password is {state}", state="enabled" if attribute.enabled else "disabled")
        elif isinstance(attribute, DeviceId):
            value = attribute.device_id
            if not value or len(value) > NAME_LENGTH or has_control_characters(value):
                log.warn("IMV {imv_id} ignores an unusable Device ID of {n} characters",
                         imv_id=imv_id, n=len(value))
            else:
                state.device_id = value
                log.debug("device ID is {device}", device=value)
        elif isinstance(attribute, InstalledPackages):
            packages = state.packages if state.packages is not None else []
            room = MAX_PACKAGES - len(packages)
            if len(attribute.packages) > room:
                log.warn("IMV {imv_id}: more than {n} installed packages; the rest is ignored",
                         imv_id=imv_id, n=MAX_PACKAGES)
                state.package_digests = None
            elif state.package_digests is not None:
                state.package_digests.append(attribute.digest)
            packages.extend(attribute.packages[:max(room, 0)])
            state.packages = packages
            log.debug("IMV {imv_id} received {n} installed packages", imv_id=imv_id,
                      n=len(attribute.packages))
        else:
            log.debug("IMV {imv_id} ignores attribute {attr}", imv_id=imv_id, attr=attribute.full_name)
        identify = getattr(connection, "identify_device", None)
        if state.device_id is not None and identify is not None:
            # the group policy of every IMV of this connection follows the device
            identify(state.device_id, state.product)

    # -- requesting ----------------------------------------------------------------------------

    def _missing(self, state: OsState) -> list[tuple[int, int]]:
        wanted = []
        if not state.product_name or state.version is None:
            wanted += [(_IETF, _T.PRODUCT_INFORMATION), (_IETF, _T.STRING_VERSION)]
        if state.numeric_version is None:
            wanted.append((_IETF, _T.NUMERIC_VERSION))
        if not state.operational:
            wanted.append((_IETF, _T.OPERATIONAL_STATUS))
        if state.forwarding is None:
            wanted.append((_IETF, _T.FORWARDING_ENABLED))
        if state.default_password is None:
            wanted.append((_IETF, _T.FACTORY_DEFAULT_PASSWORD_ENABLED))
        if state.device_id is None:
            wanted.append((_ITA, ItaAttributeType.DEVICE_ID))
        if state.packages_requested and state.packages is None:
            wanted.append((_IETF, _T.INSTALLED_PACKAGES))
        return wanted

    def batch_ending(self, connection):
        state = self.state_of(connection)
        if state.decided:
            return None
        heard, state.heard = state.heard, False
        if not state.started:
            state.started = True
            if connection.store is None:
                self.no_store(connection)
            else:
                state.packages_requested = True
            missing = self._missing(state)
            if not missing:
                return self.decide(connection, state)
            # to any OS collector, without EXCL, as strongSwan's first request
            self.send(connection, [self.contract_request(connection), AttributeRequest(tuple(missing))],
                      collector_id=ANY_IMC_ID, exclusive=False)
            return None
        if heard and (self._missing(state) or state.reassembler.pending):
            return None  # the collector is answering; more may come in its next batch
        return self.decide(connection, state)

    # -- judging --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def judge(self, connection, state: OsState):
        if not state.received_any:
            return self.no_result(REASON_NO_RESULT, "no operating system information received")
        store = connection.store
        product = state.product
        checks: list[EvaluationResult | None] = []
        summary: list[str] = []
        report: PackageReport | None = None
        check_failed = False
        if store is not None and state.device_id is not None:
            # recorded whatever the verdict, before anything that may find the database away
            device_id = state.device_id
            self.record(connection, state, f"device '{device_id}'",
                        lambda session_id: store.device_seen(session_id, device_id, product))
        group = yield self.group_policy(connection, OS_POLICIES)
        due = group.checks(OS_POLICIES) if group is not None else None
        updates = self.updates
        if due is not None:
            updates = next((UpdatePolicy(c.parameter) for c in due
                            if c.type == PolicyType.INSTALLED_PACKAGES), updates)

        if store is not None:
            if state.packages is None or product is None:
                checks.append(None)
                summary.append("no installed packages received" if state.packages is None
                               else "installed packages of an unnamed product")
            else:
                log.debug("processing installed '{product}' packages", product=product)
                digest = PackageReports.combine(state.package_digests)
                self.keep_packages(connection, state, product, digest)
                try:
                    # the policy generation read when this session started
                    # spares a trip to the database for a list judged before
                    # (waited for boundedly: the start may wait for the database)
                    session_id = yield self.session_id(connection, state, bounded=True)
                    report = self.reports.cached(
                        product, updates, digest,
                        getattr(store, "policy_generation", None) if session_id is not None else None)
                    if report is None:
                        report = yield store.read(self.reports.check, product, state.packages, updates,
                                                  digest=digest)
                except Exception:
                    log_store_failure(log, Failure(), "IMV {imv_id}: checking the installed packages of "
                                      "Connection ID {cid} failed", imv_id=connection.imv_id,
                                      cid=connection.connection_id)
                    checks.append(E.ERROR)
                    summary.append("installed packages could not be checked")
                    check_failed = True
                else:
                    for name, release in report.blacklisted:
                        log.info("package '{name}' ({release}) is blacklisted", name=name, release=release)
                    for name, release, newer in report.outdated:
                        log.debug("package '{name}' ({release}) is vulnerable, {newer} is available",
                                  name=name, release=release, newer=newer)
                    checks.append(report.evaluation)
                    summary.append(report.summary())

        forwarding_enabled = state.forwarding is ForwardingStatus.ENABLED
        if state.forwarding is None:
            checks.append(None)
        else:
            checks.append(E.NONCOMPLIANT_MINOR if forwarding_enabled else E.COMPLIANT)
            summary.append("forwarding enabled" if forwarding_enabled else "forwarding not enabled")
        if state.default_password is None:
            checks.append(None)
        else:
            checks.append(E.NONCOMPLIANT_MAJOR if state.default_password else E.COMPLIANT)
            summary.append("factory default password " +
                           ("enabled" if state.default_password else "not enabled"))

        forbidden: list[str] = []
        if due is not None:
            # the group policy's checks instead of [imv:os]'s: only those due count
            checks, outcomes = [], []
            for check in due:
                evaluation, passed, found = self._group_check(check, state, report)
                forbidden += [name for name in found if name not in forbidden]
                checks.append(evaluation)
                outcomes.append((check, passed))
            self.record_checks(connection, state, group, outcomes)
            summary.append(f"group policy of {', '.join(group.groups)}: " + (", ".join(
                f"'{c.name}' {'no result' if ok is None else 'passed' if ok else 'failed'}" for c, ok in outcomes)
                or "no OS policy due"))
            if not check_failed and not outcomes:
                checks = [E.COMPLIANT]
            if report is not None and not any(c.type == PolicyType.INSTALLED_PACKAGES for c in due):
                report = None  # measured, not judged
            if not any(c.type == PolicyType.FORWARDING_ENABLED for c in due):
                forwarding_enabled = False
            if not any(c.type == PolicyType.DEFAULT_PASSWORD for c in due):
                state_password = False
            else:
                state_password = bool(state.default_password)
        else:
            state_password = bool(state.default_password)
        evaluation = combine_checks(checks)
        reasons: list[LangText] = []
        remediation = RemediationString(self.language(connection))
        if forbidden:
            reasons.append(REASON_PACKAGES)
            remediation.add_instruction(REMOVE_TITLE, REMOVE_DESCRIPTION, REMOVE_HEADER, forbidden)
        if report is not None and (report.blacklisted or report.outdated):
            if REASON_PACKAGES not in reasons:
                reasons.append(REASON_PACKAGES)
            if report.blacklisted:
                remediation.add_instruction(REMOVE_TITLE, REMOVE_DESCRIPTION, REMOVE_HEADER,
                                            [name for name, _ in report.blacklisted])
            if report.outdated:
                remediation.add_instruction(UPDATE_TITLE, UPDATE_DESCRIPTION, UPDATE_HEADER,
                                            [name for name, _, _ in report.outdated])
        if forwarding_enabled or state_password:
            reasons.append(REASON_SETTINGS)
            if forwarding_enabled:
                remediation.add_instruction(FORWARDING_TITLE, FORWARDING_DESCRIPTION)
            if state_password:
                remediation.add_instruction(PASSWORD_TITLE, PASSWORD_DESCRIPTION)

        self.measure(connection, state, "os", {
            "product": product,
            "device_id": state.device_id,
            "forwarding": None if state.forwarding is None else state.forwarding.name.lower(),
            "default_password": state.default_password,
            "packages": None if report is None else {
                "count": report.count, "ok": report.ok, "unknown": report.unknown,
                "vulnerable": [list(entry) for entry in report.outdated],
                "blacklisted": [list(entry) for entry in report.blacklisted],
            },
            "evaluation": evaluation.label,
        })
        if check_failed:
            # a blacklisted package may be among them: never allow (fail closed)
            return self.check_failed("; ".join(summary))
        if due is not None:
            rec = checks_recommendation(outcomes)
            if evaluation in (E.DONT_KNOW, E.ERROR) and rec in (A.ISOLATE, A.NO_ACCESS):
                reasons.append(REASON_INCOMPLETE)
            return Judgement(evaluation, rec, tuple(reasons), remediation if remediation else None,
                             "; ".join(summary))
        if evaluation in (E.DONT_KNOW, E.ERROR):
            return self.no_result(REASON_INCOMPLETE, "; ".join(summary), evaluation)
        return Judgement(evaluation, self.policy.recommendation(evaluation), tuple(reasons),
                         remediation if remediation else None, "; ".join(summary))

    def keep_packages(self, connection, state: OsState, product: str, digest: bytes | None) -> None:
        """Keep the device's whole package list (rewritten only when it
        changed) for judging it again after a policy change (:meth:`restore_state`)."""
        keep = getattr(connection.store, "keep_device_packages", None)
        if keep is None or state.device_id is None or state.package_digests is None or state.packages is None:
            return  # no device to keep it for, or a list cut short
        packages = list(state.packages)
        name = (digest or hashlib.blake2b("\n".join(f"{n} {r}" for n, r in packages).encode(),
                                          digest_size=16).digest()).hex()
        self.record(connection, state, "the installed packages",
                    lambda session_id: keep(session_id, product, name, packages))

    def restore_state(self, connection, last) -> OsState | None:
        """The state an assessment of the device had, rebuilt from what its
        last one kept (``last``: :class:`nac.db.reevaluation.LastAssessment`:
        its ``os`` measurement and the device's package list), for judging
        it again against a changed policy; None when what it was judged on
        is not kept (then its result stands)."""
        payload = last.measurements.get((self.name, "os"))
        if not isinstance(payload, dict) or not payload.get("device_id"):
            return None
        product = payload.get("product")
        state = self.new_state(connection)
        state.received_any = state.started = True
        state.device_id = payload["device_id"]
        if product:
            state.product_name, state.version = product, ""
        forwarding = payload.get("forwarding")
        if forwarding is not None:
            try:
                state.forwarding = ForwardingStatus[str(forwarding).upper()]
            except KeyError:
                return None
        state.default_password = payload.get("default_password")
        kept = last.packages
        if kept is not None and product and kept[0] == product:
            state.packages = list(map(tuple, kept[2]))  # [name, release] pairs, as this IMV kept them
            state.package_digests = [bytes.fromhex(kept[1])]
        elif payload.get("packages") is not None:
            return None  # judged on packages this server no longer has
        else:
            state.package_digests = None
        return state

    @staticmethod
    def _group_check(check, state: OsState, report: PackageReport | None):
        """(evaluation, passed, forbidden package names found) of one group
        policy check on what the endpoint reported; passed None without a result."""
        kind = check.type
        if kind == PolicyType.INSTALLED_PACKAGES:
            if report is None:
                return None, None, ()
            return report.evaluation, report.evaluation is E.COMPLIANT, ()
        if kind == PolicyType.FORWARDING_ENABLED:
            if state.forwarding is None:
                return None, None, ()
            enabled = state.forwarding is ForwardingStatus.ENABLED
            return (E.NONCOMPLIANT_MINOR if enabled else E.COMPLIANT), not enabled, ()
        if kind == PolicyType.DEFAULT_PASSWORD:
            if state.default_password is None:
                return None, None, ()
            return (E.NONCOMPLIANT_MAJOR if state.default_password else E.COMPLIANT), not state.default_password, ()
        # forbidden-packages: names or patterns ('telnet*')
        if state.packages is None:
            return None, None, ()
        patterns = check.parameter
        found = sorted({name for name, _release in state.packages
                        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)})
        return (E.NONCOMPLIANT_MAJOR if found else E.COMPLIANT), not found, found
