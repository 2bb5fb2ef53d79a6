"""Judging what a collector sent: component evidence replayed into PCRs,
the quote checked against them, IMA entries against reference digests.

The evidence is strongSwan's (its attestation IMC's, which nac's collector
follows): one Simple Component Evidence per measurement, each naming the
PCR it extended and the digest it extended it with, in the order of the
extends.  The BIOS events carry their digest of the selected bank; IMA
entries carry their template hash in that bank and, as Verification Policy
URI, ``<file digest algorithm>:<file name>``.  The file digest itself is
not sent: the verifier rebuilds the template hash from each reference
digest it has for the file (``ima-ng``; for SHA-1, the legacy ``ima``
template too) and compares: :class:`ImaReferences` makes those template
hashes once per file, so that a verifier keeping them (the attestation
IMV's reference cache) checks an entry by a dict lookup.

:func:`check_evidence` returns a :class:`EvidenceReport`; nothing here
reads the database (the references are passed in) or the clock.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nac.pa.message import PaVendor
from nac.pa.tcg_pts import (
    ComponentName,
    ComponentType,
    FileMeasurement,
    ItaComponent,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TcgComponent,
)
from nac.pts.hashes import HashAlgorithm, by_name
from nac.pts.ima import BOOT_AGGREGATE, IMA_PCR, boot_aggregates, template_data, template_hash
from nac.pts.pcr import PcrBank
from nac.pts.quote import EvidenceMismatch, QuoteError, verify_pts_quote

__all__ = [
    "BIOS_COMPONENT",
    "ComponentKind",
    "EvidenceReport",
    "FileStatus",
    "ImaReferences",
    "IMA_COMPONENT",
    "References",
    "check_evidence",
    "check_file_measurements",
    "component_kind",
    "evidence_files",
    "expected_measurements",
    "ima_file",
]

#: The components strongSwan's attestation IMV asks for (ITA-HSR name "IMA"
#: with qualifier K + Trusted Platform: the BIOS log; K + Operating System:
#: the IMA list).
BIOS_COMPONENT = ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x20 | ComponentType.TRUSTED_PLATFORM)
IMA_COMPONENT = ComponentName(PaVendor.ITA_HSR, ItaComponent.IMA, 0x20 | ComponentType.OPERATING_SYSTEM)

#: path → algorithm name → accepted digests.
References = Mapping[str, Mapping[str, "set[bytes] | frozenset[bytes]"]]


class ComponentKind(enum.Enum):
    BIOS = "bios"
    IMA = "ima"
    OTHER = "other"


def component_kind(name: ComponentName) -> ComponentKind:
    """Which log a component's evidence comes from: the ITA-HSR names
    strongSwan uses, and the TCG names of firmware (the BIOS log)."""
    kind = name.qualifier & 0x0F
    if name.vendor == PaVendor.ITA_HSR and name.name == ItaComponent.IMA and name.family == 0:
        if kind == ComponentType.TRUSTED_PLATFORM:
            return ComponentKind.BIOS
        if kind == ComponentType.OPERATING_SYSTEM:
            return ComponentKind.IMA
    if name.vendor == PaVendor.TCG and name.family == 0 and name.name in (
            TcgComponent.CRTM, TcgComponent.BIOS, TcgComponent.PLATFORM_EXTENSIONS,
            TcgComponent.MOTHERBOARD_FIRMWARE, TcgComponent.INITIAL_PROGRAM_LOADER, TcgComponent.OPTION_ROMS):
        return ComponentKind.BIOS
    return ComponentKind.OTHER


class FileStatus(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"
    """No reference digest of the file in that algorithm."""
    DIFFERS = "differs"
    """Reference digests, none of which gives the measurement."""
    VIOLATION = "violation"
    """IMA recorded a measurement violation (the file was open for writing)."""
    INVALID = "invalid"
    """Evidence nac cannot read (no ``<algorithm>:<name>`` URI, an unknown algorithm)."""


def ima_file(evidence: SimpleComponentEvidence) -> tuple[str, str] | None:
    """(file digest algorithm, file name) of an IMA entry's evidence, from its policy URI."""
    algorithm, colon, name = evidence.policy_uri.partition(":")
    if not colon or not name or by_name(algorithm) is None:
        return None
    return algorithm.lower(), name


def evidence_files(evidence: Sequence[SimpleComponentEvidence]) -> set[str]:
    """The file names of the IMA entries among ``evidence`` (those
    :func:`ima_file` reads), each algorithm name checked once."""
    names: set[str] = set()
    algorithms: dict[str, bool] = {}
    for item in evidence:
        algorithm, colon, name = item.policy_uri.partition(":")
        if colon and name:
            known = algorithms.get(algorithm)
            if known is None:
                known = algorithms[algorithm] = by_name(algorithm) is not None
            if known:
                names.add(name)
    return names


def _templates(algorithm: str) -> tuple[str, ...]:
    """The templates an entry with a file digest of ``algorithm`` may have been logged with."""
    return ("ima-ng", "ima") if algorithm == "sha1" else ("ima-ng",)


def expected_measurements(bank_hash: HashAlgorithm, name: str,
                          digests: Mapping[str, "set[bytes] | frozenset[bytes]"]) -> dict[str, frozenset[bytes]]:
    """File digest algorithm → the template hashes, in ``bank_hash``'s
    bank, of an IMA entry of file ``name`` whose digest is one of
    ``digests`` (its reference digests by algorithm).  An algorithm without
    digests is left out: an entry of it is of an unknown file."""
    new = bank_hash.constructor
    return {algorithm: frozenset(new(template_data(template, algorithm, digest, name)).digest()
                                 for digest in found for template in _templates(algorithm))
            for algorithm, found in digests.items() if found}


class ImaReferences:
    """The template hashes, in one PCR bank, that IMA entries of files may
    have: made once from each file's reference digests
    (:func:`expected_measurements`), kept in one table per file digest
    algorithm (template hash → the file it was made for), so that judging
    an entry is one dict lookup rather than a template rebuilt and hashed
    per reference digest, and thousands of entries touch two tables rather
    than a small one of each file.

    Only ever added to: a thread may judge with it while another adds."""

    __slots__ = ("bank_hash", "names", "_templates", "_known")

    def __init__(self, bank_hash: HashAlgorithm) -> None:
        self.bank_hash = bank_hash
        self.names: set[str] = set()
        """The files added (with or without reference digests)."""
        self._templates: dict[str, dict[bytes, str | frozenset[str]]] = {}
        self._known: dict[str, set[str]] = {}
        """Algorithm → the files with reference digests of it."""

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, digests: Mapping[str, "set[bytes] | frozenset[bytes]"]) -> None:
        """File ``name`` with its reference digests by algorithm (none: a
        file without references); a file added before stays as it was."""
        if name in self.names:
            return
        for algorithm, found in expected_measurements(self.bank_hash, name, digests).items():
            self._known.setdefault(algorithm, set()).add(name)
            table = self._templates.setdefault(algorithm, {})
            for measurement in found:
                owner = table.setdefault(measurement, name)
                if owner != name and not (isinstance(owner, frozenset) and name in owner):
                    # two files, one template hash: only the legacy template's truncated names
                    table[measurement] = (owner if isinstance(owner, frozenset) else frozenset((owner,))) | {name}
        self.names.add(name)

    def status(self, name: str, algorithm: str, measurement: bytes) -> FileStatus:
        """OK, DIFFERS or UNKNOWN: what an IMA entry of ``name`` whose file digest is of
        ``algorithm`` (IMA's name, lower case) is, by its template hash ``measurement``."""
        owner = self._templates.get(algorithm, {}).get(measurement)
        if owner is not None and (owner == name or (isinstance(owner, frozenset) and name in owner)):
            return FileStatus.OK
        return FileStatus.DIFFERS if name in self._known.get(algorithm, ()) else FileStatus.UNKNOWN


def _ima_status(evidence: SimpleComponentEvidence, bank_hash: HashAlgorithm,
                candidates) -> FileStatus:
    """Whether one of the ``candidates`` digests gives the evidence's template hash."""
    if evidence.measurement == b"\xff" * bank_hash.size:
        return FileStatus.VIOLATION
    algorithm, name = ima_file(evidence)
    if not candidates:
        return FileStatus.UNKNOWN
    templates = _templates(algorithm)
    for digest in candidates:
        for template in templates:
            if hmac.compare_digest(template_hash(bank_hash, template, algorithm, digest, name),
                                   evidence.measurement):
                return FileStatus.OK
    return FileStatus.DIFFERS


@dataclass
class EvidenceReport:
    """What :func:`check_evidence` found."""

    bios_events: int = 0
    ima_entries: int = 0
    quoted_pcrs: tuple[int, ...] = ()
    quote_error: str | None = None
    """Why the quote is not good (None: signed by the AIK over this nonce, of the evidence's PCRs)."""
    evidence_mismatch: bool = False
    """The quote is genuine but the evidence does not give its PCRs."""
    unquoted_pcrs: tuple[int, ...] = ()
    """PCRs the evidence extended that the quote does not cover."""
    boot_aggregate: str | None = None
    """ok, differs, unverifiable (of another algorithm than the evidence), or None without one."""
    files: dict[str, FileStatus] = field(default_factory=dict)
    """IMA entries and measured files by name (the worst status of a name seen twice)."""
    unlisted: set[str] = field(default_factory=set)
    """Files of IMA entries that ``expected`` did not hold (judged unknown for want of their references)."""
    problems: list[str] = field(default_factory=list)

    @property
    def quote_ok(self) -> bool:
        return self.quote_error is None

    def names(self, status: FileStatus) -> list[str]:
        return sorted(name for name, found in self.files.items() if found is status)

    def counts(self) -> dict[str, int]:
        found = list(self.files.values())
        return {status.value: found.count(status) for status in FileStatus}


#: The worse status of a name seen twice wins.
_RANK = {status: rank for rank, status in enumerate(
    (FileStatus.OK, FileStatus.UNKNOWN, FileStatus.VIOLATION, FileStatus.INVALID, FileStatus.DIFFERS))}


def _note(report: EvidenceReport, name: str, status: FileStatus) -> None:
    known = report.files.get(name)
    if known is None or _RANK[status] > _RANK[known]:
        report.files[name] = status


def check_evidence(evidence: Sequence[SimpleComponentEvidence], final: SimpleEvidenceFinal | None, *,
                   aik, secret: bytes | None, measurement_hash: HashAlgorithm, startup_locality: int = 0,
                   references: References = {}, expected: ImaReferences | None = None,
                   required_pcrs: frozenset[int] = frozenset()) -> EvidenceReport:
    """Replay ``evidence`` into a PCR bank of ``measurement_hash`` (PCR0
    starting at ``startup_locality``), check the quote of ``final`` with
    ``aik`` (a public key) and ``secret`` against it, and each IMA entry
    against ``references``, or ``expected`` (its template hashes in this
    bank, as a cache keeps them) when given: a file it does not hold is
    unknown and in :attr:`EvidenceReport.unlisted`.  The quote must cover
    the PCRs the evidence extends and ``required_pcrs``."""
    report = EvidenceReport()
    bank = PcrBank(measurement_hash, startup_locality)
    if expected is None:
        expected = ImaReferences(measurement_hash)
        for name in evidence_files(evidence):
            expected.add(name, references.get(name, {}))
    templates, known_files, listed, unlisted = expected._templates, expected._known, expected.names, report.unlisted
    pts, size = measurement_hash.pts, measurement_hash.size
    violation = b"\xff" * size
    new_hash = measurement_hash.constructor
    replayed: int | None = None  # the PCR being extended, its value and extends so far
    value, count = b"", 0
    aggregate_entries: list[tuple[SimpleComponentEvidence, str]] = []
    kinds: dict[tuple[int, int, int, int], ComponentKind] = {}
    last_component: ComponentName | None = None
    last_kind = ComponentKind.OTHER
    algorithms: dict[str, str | None] = {}
    setdefault = report.files.setdefault
    bios = entries = 0
    bios_kind, ima_kind = ComponentKind.BIOS, ComponentKind.IMA
    ok, differs, unknown = FileStatus.OK, FileStatus.DIFFERS, FileStatus.UNKNOWN
    ima_pcr, boot_aggregate = IMA_PCR, BOOT_AGGREGATE
    # one pass over (tens of thousands of) measurements: the replay's extends
    # and each IMA entry's file judged
    for item in evidence:
        pcr, measurement = item.pcr, item.measurement
        if item.hash_algorithm != pts or len(measurement) != size:
            report.problems.append(f"evidence for PCR {pcr} is not a {measurement_hash} measurement")
            report.quote_error = report.quote_error or "the evidence is not of the negotiated hash algorithm"
            continue
        if pcr != replayed:
            if replayed is not None:
                bank.replayed(replayed, value, count)
            replayed, value, count = pcr, bank.value(pcr), 0
        value = new_hash(value + measurement).digest()
        count += 1
        component = item.component
        if component is not last_component:  # parsed evidence shares its component names
            key = (component.vendor, component.name, component.qualifier, component.family)
            last_kind = kinds.get(key)
            if last_kind is None:
                last_kind = kinds[key] = component_kind(component)
            last_component = component
        kind = last_kind
        if kind is bios_kind:
            bios += 1
            continue
        if kind is not ima_kind:
            continue
        entries += 1
        algorithm, colon, name = item.policy_uri.partition(":")
        known = None
        if colon and name:
            known = algorithms.get(algorithm, "")
            if known == "":
                known = algorithms[algorithm] = algorithm.lower() if by_name(algorithm) is not None else None
        if known is None or pcr != ima_pcr:
            _note(report, item.policy_uri or f"(IMA entry of PCR {pcr})", FileStatus.INVALID)
            continue
        if name == boot_aggregate:
            aggregate_entries.append((item, known))  # judged from the BIOS PCRs once replayed
            continue
        if measurement == violation:
            status = FileStatus.VIOLATION
        else:
            # ImaReferences.status, inlined
            table = templates.get(known)
            owner = table.get(measurement) if table is not None else None
            if owner is not None and (owner == name or (isinstance(owner, frozenset) and name in owner)):
                status = ok
            elif name in known_files.get(known, ()):
                status = differs
            else:
                status = unknown
                if name not in listed:
                    unlisted.add(name)
        seen = setdefault(name, status)
        if seen is not status:
            _note(report, name, status)
    if replayed is not None:
        bank.replayed(replayed, value, count)
    report.bios_events, report.ima_entries = bios, entries

    if final is None:
        report.quote_error = "no quote (Simple Evidence Final) was received"
    elif aik is None or secret is None:
        report.quote_error = "no AIK or no nonce to check the quote with"
    elif report.quote_error is None:
        try:
            selection = verify_pts_quote(final, aik, secret, {measurement_hash.tpm_alg: bank})
        except EvidenceMismatch as err:
            report.quote_error, report.evidence_mismatch = str(err), True
        except QuoteError as err:
            report.quote_error = str(err)
        else:
            report.quoted_pcrs = tuple(sorted({p for _, pcrs in selection.banks for p in pcrs}))
            report.unquoted_pcrs = tuple(sorted(set(bank.extends) - set(report.quoted_pcrs)))
            missing = sorted(set(required_pcrs) - set(report.quoted_pcrs))
            if report.unquoted_pcrs:
                # evidence the quote does not vouch for is worth nothing
                report.quote_error = ("the quote does not cover the PCRs of the evidence ("
                                      + ", ".join(f"PCR{p}" for p in report.unquoted_pcrs) + ")")
            elif missing:
                report.quote_error = ("the quote does not cover the PCRs the policy requires ("
                                      + ", ".join(f"PCR{p}" for p in missing) + ")")

    aggregates = boot_aggregates(bank) if aggregate_entries else ()
    for item, algorithm in aggregate_entries:
        # the kernel's digest over PCR 0-7 (0-9) of the bank of the URI's algorithm: only
        # that of the evidence's bank can be recomputed (the quote binds PCR 10 either way)
        if by_name(algorithm) != measurement_hash:
            report.boot_aggregate = report.boot_aggregate or "unverifiable"
            continue
        good = _ima_status(item, measurement_hash, aggregates) is FileStatus.OK
        report.boot_aggregate = "ok" if good and report.boot_aggregate != "differs" else "differs"
    return report


def check_file_measurements(report: EvidenceReport, measurements: Sequence[FileMeasurement],
                            references: References) -> None:
    """File Measurement results against ``references`` (digest algorithm by
    the measurement's size)."""
    sizes = {20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}
    for attribute in measurements:
        algorithm = sizes.get(attribute.measurement_size)
        for entry in attribute.entries:
            if algorithm is None:
                _note(report, entry.filename, FileStatus.INVALID)
                continue
            accepted = references.get(entry.filename, {}).get(algorithm, ())
            status = FileStatus.UNKNOWN if not accepted else (
                FileStatus.OK if entry.measurement in accepted else FileStatus.DIFFERS)
            _note(report, entry.filename, status)
