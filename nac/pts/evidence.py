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
template too) and compares.

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
from nac.pts.ima import BOOT_AGGREGATE, IMA_PCR, boot_aggregates, template_hash
from nac.pts.pcr import PcrBank
from nac.pts.quote import EvidenceMismatch, QuoteError, verify_pts_quote

__all__ = [
    "BIOS_COMPONENT",
    "ComponentKind",
    "EvidenceReport",
    "FileStatus",
    "IMA_COMPONENT",
    "References",
    "check_evidence",
    "check_file_measurements",
    "component_kind",
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


def _ima_status(evidence: SimpleComponentEvidence, bank_hash: HashAlgorithm,
                candidates) -> FileStatus:
    """Whether one of the ``candidates`` digests gives the evidence's template hash."""
    if evidence.measurement == b"\xff" * bank_hash.size:
        return FileStatus.VIOLATION
    algorithm, name = ima_file(evidence)
    if not candidates:
        return FileStatus.UNKNOWN
    templates = ("ima-ng", "ima") if algorithm == "sha1" else ("ima-ng",)
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
    problems: list[str] = field(default_factory=list)

    @property
    def quote_ok(self) -> bool:
        return self.quote_error is None

    def names(self, status: FileStatus) -> list[str]:
        return sorted(name for name, found in self.files.items() if found is status)

    def counts(self) -> dict[str, int]:
        return {status.value: sum(1 for s in self.files.values() if s is status) for status in FileStatus}


_ORDER = [FileStatus.OK, FileStatus.UNKNOWN, FileStatus.VIOLATION, FileStatus.INVALID, FileStatus.DIFFERS]


def _note(report: EvidenceReport, name: str, status: FileStatus) -> None:
    known = report.files.get(name)
    if known is None or _ORDER.index(status) > _ORDER.index(known):
        report.files[name] = status


def check_evidence(evidence: Sequence[SimpleComponentEvidence], final: SimpleEvidenceFinal | None, *,
                   aik, secret: bytes | None, measurement_hash: HashAlgorithm, startup_locality: int = 0,
                   references: References = {}) -> EvidenceReport:
    """Replay ``evidence`` into a PCR bank of ``measurement_hash`` (PCR0
    starting at ``startup_locality``), check the quote of ``final`` with
    ``aik`` (a public key) and ``secret`` against it, and each IMA entry
    against ``references``."""
    report = EvidenceReport()
    bank = PcrBank(measurement_hash, startup_locality)
    extended: set[int] = set()
    ima: list[SimpleComponentEvidence] = []
    for item in evidence:
        if item.hash_algorithm != measurement_hash.pts or len(item.measurement) != measurement_hash.size:
            report.problems.append(f"evidence for PCR {item.pcr} is not a {measurement_hash} measurement")
            report.quote_error = report.quote_error or "the evidence is not of the negotiated hash algorithm"
            continue
        bank.extend(item.pcr, item.measurement)
        extended.add(item.pcr)
        kind = component_kind(item.component)
        if kind is ComponentKind.BIOS:
            report.bios_events += 1
        elif kind is ComponentKind.IMA:
            report.ima_entries += 1
            ima.append(item)

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
            report.unquoted_pcrs = tuple(sorted(extended - set(report.quoted_pcrs)))
            if report.unquoted_pcrs:
                # evidence the quote does not vouch for is worth nothing
                report.quote_error = ("the quote does not cover the PCRs of the evidence ("
                                      + ", ".join(f"PCR{p}" for p in report.unquoted_pcrs) + ")")

    aggregates = boot_aggregates(bank)
    for item in ima:
        found = ima_file(item)
        if found is None or item.pcr != IMA_PCR:
            _note(report, item.policy_uri or f"(IMA entry of PCR {item.pcr})", FileStatus.INVALID)
            continue
        algorithm, name = found
        if name == BOOT_AGGREGATE:
            # the kernel's digest over PCR 0-7 (0-9) of the bank of the URI's algorithm: only
            # that of the evidence's bank can be recomputed (the quote binds PCR 10 either way)
            if by_name(algorithm) != measurement_hash:
                report.boot_aggregate = report.boot_aggregate or "unverifiable"
                continue
            ok = _ima_status(item, measurement_hash, aggregates) is FileStatus.OK
            report.boot_aggregate = "ok" if ok and report.boot_aggregate != "differs" else "differs"
            continue
        _note(report, name, _ima_status(item, measurement_hash, references.get(name, {}).get(algorithm, ())))
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
