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
   product, with one query per 500 packages (no per-package round trip):
   a blacklisted release is a major violation; a release older than the
   newest security release (``package_updates = security``, or than the
   newest release at all with ``all``) a minor one; a package the store
   does not know is only counted.  Forwarding enabled is a minor
   violation, a factory default password a major one.
4. The verdict goes to the collector (Assessment Result and strongSwan's
   XML remediation instructions), to the TNCS (recommendation by the
   ``[imv:os]`` policy, reason string, remediation) and into the session's
   measurements.

Without a policy database the settings are judged and packages are not
asked for.  A collector that never answers leaves the IMV with its
no-result recommendation when the TNCS solicits it.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa
from twisted.internet import defer

from imvs.policy import (
    ImvState,
    Judgement,
    LangText,
    PaTncImv,
    RemediationString,
    combine_checks,
    verdict_options,
)
from nac.config import Option, choice
from nac.db.models import NAME_LENGTH, Package, Product, Version
from nac.ifimv import ANY_IMC_ID, EvaluationResult
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
    "PackageStatus",
    "UpdatePolicy",
    "check_installed_packages",
    "check_packages",
    "compare_debian_versions",
    "debian_version_key",
    "known_releases",
]

log = Logger(namespace="nac.imv.os")

E = EvaluationResult

#: Installed packages one assessment accepts (Installed Packages attributes
#: may come several times; each holds at most 65535).
MAX_PACKAGES = 200_000
#: Package names looked up per SQL statement (bound parameters).
SQL_CHUNK = 500


# -- Debian package versions (deb-version(7)) -------------------------------------------------


def _order(c: str) -> int:
    # dpkg's ordering of the characters of a non-digit run: '~' before the
    # end of the run (0), letters before everything else
    if ("a" <= c <= "z") or ("A" <= c <= "Z"):
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


_RUN = re.compile(r"([^0-9]*)([0-9]*)")
#: what every part goes on with after its end, for dpkg: an empty non-digit
#: run (its end ordered 0) and the number 0
_PAD = ((0,), 0)


def _runs(part: str) -> tuple[tuple[tuple[int, ...], int], ...]:
    """A version part as dpkg's verrevcmp walks it: alternating non-digit
    runs (each character's order, then 0 for the run's end) and numbers."""
    return tuple((tuple(map(_order, text)) + (0,), int(digits or 0))
                 for text, digits in _RUN.findall(part) if text or digits)


def _compare_runs(a, b) -> int:
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else _PAD
        y = b[i] if i < len(b) else _PAD
        if x != y:
            return -1 if x < y else 1
    return 0


@functools.lru_cache(maxsize=65536)
def _parse_version(version: str):
    epoch, colon, rest = version.partition(":")
    if colon and epoch.isascii() and epoch.isdigit():
        number = int(epoch)
    else:
        number, rest = 0, version
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    return number, _runs(upstream), _runs(revision)


def compare_debian_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` (``[epoch:]upstream[-revision]``)
    sorts before, with or after ``b``, as dpkg orders them."""
    if a == b:
        return 0
    ea, ua, ra = _parse_version(a)
    eb, ub, rb = _parse_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_runs(ua, ub) or _compare_runs(ra, rb)


debian_version_key = functools.cmp_to_key(compare_debian_versions)
"""Sort key for Debian versions: ``sorted(versions, key=debian_version_key)``."""


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


def known_releases(session, product: str, names: Iterable[str]) -> dict[str, list[KnownRelease]]:
    """The store's releases of the packages ``names`` on ``product``, by
    package name (run by PolicyStore.run; one query per SQL_CHUNK names)."""
    product_id = session.scalar(sa.select(Product.id).where(Product.name == product))
    out: dict[str, list[KnownRelease]] = {}
    if product_id is None:
        return out
    unique = sorted(set(names))
    # "+ 0" keeps the planner off the product index: one product has nearly
    # every release, while the package names pick a few rows each through
    # the (package, product, release) index (SQLite has no statistics to
    # know that unless ANALYZE ran)
    query = (sa.select(Package.name, Version.release, Version.security, Version.blacklisted)
             .join(Version, Version.package_id == Package.id)
             .where(Version.product_id + 0 == product_id))
    connection = session.connection()  # plain rows: no ORM bookkeeping for thousands of them
    for start in range(0, len(unique), SQL_CHUNK):
        chunk = unique[start:start + SQL_CHUNK]
        for name, release, security, blacklisted in connection.execute(query.where(Package.name.in_(chunk))):
            out.setdefault(name, []).append(KnownRelease(release, bool(security), bool(blacklisted)))
    return out


@dataclass(slots=True)
class PackageReport:
    """The outcome of checking one endpoint's packages."""

    count: int = 0
    ok: int = 0
    unknown: int = 0
    outdated: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, installed release, release to update to)"""
    blacklisted: list[tuple[str, str]] = field(default_factory=list)

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


def check_packages(installed: Iterable[tuple[str, str]], known: Mapping[str, Sequence[KnownRelease]],
                   updates: UpdatePolicy = UpdatePolicy.SECURITY) -> PackageReport:
    """Judge each installed (name, release) against the store's releases."""
    report = PackageReport()
    for name, release in installed:
        report.count += 1
        rows = known.get(name)
        if not rows:
            report.unknown += 1
            continue
        status, newer = _package_status(release, rows, updates)
        if status is PackageStatus.BLACKLISTED:
            report.blacklisted.append((name, release))
        elif status is PackageStatus.OUTDATED:
            report.outdated.append((name, release, newer))
        elif status is PackageStatus.OK:
            report.ok += 1
        else:
            report.unknown += 1
    return report


def check_installed_packages(session, product: str, installed: Sequence[tuple[str, str]],
                             updates: UpdatePolicy = UpdatePolicy.SECURITY) -> PackageReport:
    """:func:`check_packages` against the store (run by PolicyStore.run, so
    that the query and the comparisons both stay off the reactor)."""
    return check_packages(installed, known_releases(session, product, [n for n, _ in installed]), updates)


def _package_status(release: str, rows: Sequence[KnownRelease],
                    updates: UpdatePolicy) -> tuple[PackageStatus, str]:
    exact = False
    for row in rows:
        if row.release == release or row.release == "*":
            if row.blacklisted:
                return PackageStatus.BLACKLISTED, ""
            exact = exact or row.release == release
    if updates is not UpdatePolicy.NONE:
        candidates = [row.release for row in rows if row.release != "*" and not row.blacklisted
                      and (row.security or updates is UpdatePolicy.ALL)]
        if candidates:
            newest = max(candidates, key=debian_version_key)
            if compare_debian_versions(release, newest) < 0:
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

    OPTIONS = [
        Option("package_updates", choice(*(p.value for p in UpdatePolicy)), UpdatePolicy.SECURITY.value,
               "When an installed package is outdated (a minor violation): security (older than "
               "its newest security release), all (older than its newest known release) or none."),
        *verdict_options(),
        PaTncImv.attribute_size_option(),
    ]

    def __init__(self, options: Mapping | None = None):
        super().__init__(options)
        self.updates = UpdatePolicy(self.options["package_updates"])

    # -- receiving ---------------------------------------------------------------------------

    def handle_attribute(self, connection, state: OsState, attribute: PaAttribute) -> None:
        imv_id = connection.imv_id
        if isinstance(attribute, ProductInformation):
            state.product_name, state.product_vendor = attribute.name, attribute.vendor_id
            if attribute.vendor_id:
                log.info("operating system name is '{name}' from vendor {pen}",
                         name=attribute.name, pen=vendor_name(attribute.vendor_id))
            else:
                log.info("operating system name is '{name}'", name=attribute.name)
        elif isinstance(attribute, StringVersion):
            state.version = attribute.version
            if attribute.version:
                log.info("operating system version is '{version}'", version=attribute.version)
        elif isinstance(attribute, NumericVersion):
            state.numeric_version = (attribute.major, attribute.minor)
            log.info("operating system numeric version is {major}.{minor}",
                     major=attribute.major, minor=attribute.minor)
        elif isinstance(attribute, OperationalStatus):
            state.operational = True
            log.info("operational status: {status}, result: {result}",
                     status=attribute.status.name.lower().replace("_", " "),
                     result=attribute.result.name.lower())
            log.info("last boot: {last_use}", last_use=attribute.last_use)
        elif isinstance(attribute, ForwardingEnabled):
            state.forwarding = attribute.status
            log.info("IPv4 forwarding is {status}", status=attribute.status.name.lower())
        elif isinstance(attribute, FactoryDefaultPasswordEnabled):
            state.default_password = attribute.enabled
            log.info("factory default password is {state}", state="enabled" if attribute.enabled else "disabled")
        elif isinstance(attribute, DeviceId):
            value = attribute.device_id
            if not value or len(value) > NAME_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                log.warn("IMV {imv_id} ignores an unusable Device ID of {n} characters",
                         imv_id=imv_id, n=len(value))
            else:
                state.device_id = value
                log.info("device ID is {device}", device=value)
        elif isinstance(attribute, InstalledPackages):
            packages = state.packages if state.packages is not None else []
            room = MAX_PACKAGES - len(packages)
            if len(attribute.packages) > room:
                log.warn("IMV {imv_id}: more than {n} installed packages; the rest is ignored",
                         imv_id=imv_id, n=MAX_PACKAGES)
            packages.extend(attribute.packages[:max(room, 0)])
            state.packages = packages
            log.debug("IMV {imv_id} received {n} installed packages", imv_id=imv_id,
                      n=len(attribute.packages))
        else:
            log.debug("IMV {imv_id} ignores attribute {attr}", imv_id=imv_id, attr=attribute.full_name)

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

        if store is not None:
            session_id = yield self.session_id(connection, state)
            if session_id is not None and state.device_id is not None:
                try:
                    yield store.device_seen(session_id, state.device_id, product)
                except Exception:
                    log.failure("IMV {imv_id}: recording device '{device}' failed",
                                imv_id=connection.imv_id, device=state.device_id)
            if state.packages is None or product is None:
                checks.append(None)
                summary.append("no installed packages received" if state.packages is None
                               else "installed packages of an unnamed product")
            else:
                log.info("processing installed '{product}' packages", product=product)
                try:
                    report = yield store.run(check_installed_packages, product, state.packages, self.updates)
                except Exception:
                    log.failure("IMV {imv_id}: checking the installed packages of Connection ID {cid} "
                                "failed", imv_id=connection.imv_id, cid=connection.connection_id)
                    checks.append(E.ERROR)
                    summary.append("installed packages could not be checked")
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

        evaluation = combine_checks(checks)
        reasons: list[LangText] = []
        remediation = RemediationString(self.language(connection))
        if report is not None and (report.blacklisted or report.outdated):
            reasons.append(REASON_PACKAGES)
            if report.blacklisted:
                remediation.add_instruction(REMOVE_TITLE, REMOVE_DESCRIPTION, REMOVE_HEADER,
                                            [name for name, _ in report.blacklisted])
            if report.outdated:
                remediation.add_instruction(UPDATE_TITLE, UPDATE_DESCRIPTION, UPDATE_HEADER,
                                            [name for name, _, _ in report.outdated])
        if forwarding_enabled or state.default_password:
            reasons.append(REASON_SETTINGS)
            if forwarding_enabled:
                remediation.add_instruction(FORWARDING_TITLE, FORWARDING_DESCRIPTION)
            if state.default_password:
                remediation.add_instruction(PASSWORD_TITLE, PASSWORD_DESCRIPTION)

        yield self.measure(connection, state, "os", {
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
        if evaluation in (E.DONT_KNOW, E.ERROR):
            return self.no_result(REASON_INCOMPLETE, "; ".join(summary), evaluation)
        return Judgement(evaluation, self.policy.recommendation(evaluation), tuple(reasons),
                         remediation if remediation else None, "; ".join(summary))
