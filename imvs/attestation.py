"""The Attestation IMV (TCG PTS, PA subtype TCG/PTS): remote attestation of an
endpoint's TPM 2.0 against the policy database.

Per connection (:class:`nac.pts.exchange.PtsVerifier` does the protocol):

1. On the first batch: a TCG segmentation contract, the PTS capabilities,
   measurement algorithm and D-H nonce parameters are asked for.
2. The collector's answer fixes the PCR bank's hash and the nonce: the
   IMV finishes the D-H exchange and asks for the TPM's version, its AIK,
   the BIOS and IMA evidence and the quote (and File Measurements of the
   configured ``files``).
3. With the quote in (or the exchange broken, or the collector silent) the
   IMV judges, off the reactor: the AIK must be registered and trusted
   (``nac-admin attest aik add --trusted``), or certified by a CA of
   ``aik_ca_dir``; the quote must verify with it over this exchange's
   secret, and its PCRs must be those the evidence replays to; each IMA
   entry must rebuild from a reference digest of its file for the AIK's
   product (``nac-admin attest import``; kept in memory, as the template
   hashes they give, until the references change:
   :class:`nac.db.attestation.ReferenceCache`), the boot aggregate from the
   BIOS PCRs.  Each failure is a reason the endpoint sees, the files are
   listed in the remediation instructions, and the attestation is recorded
   (``nac-admin attest results``) with the session's measurements.

Unlike strongSwan's IMV, an AIK nobody enrolled never passes: with
``aik_first_use = register`` it is recorded for the operator to trust,
with ``trust`` (trust on first use) it is recorded as trusted.  A missing or
broken attestation is not harmless either: its ``no_result`` recommendation
defaults to no access.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer

from imvs.policy import ImvState, Judgement, LangText, PaTncImv, RemediationString, verdict_options
from nac.config import Option, choice, comma_list_of, int_range, non_negative_int, optional, path, positive_int
from nac.db import attestation as attest_db
from nac.ifimv import ANY_IMC_ID, EvaluationResult
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.tcg_pts import (
    PTS_SUBTYPE,
    ComponentRequest,
    ComponentRequestFlag,
    PtsDhGroup,
    PtsHashAlgorithm,
    is_pts_error,
)
from nac.pts.evidence import (
    BIOS_COMPONENT,
    IMA_COMPONENT,
    EvidenceReport,
    FileStatus,
    check_evidence,
    check_file_measurements,
    evidence_files,
)
from nac.pts.exchange import Phase, PtsVerifier, VerifierPolicy
from nac.pts.nonce import MAX_NONCE_LENGTH, MIN_NONCE_LENGTH
from nac.pts.tpm2 import load_public_key

__all__ = ["AttestationImv", "AttestationState"]

log = Logger(namespace="nac.imv.attestation")

E = EvaluationResult

_HASHES = {"sha512": PtsHashAlgorithm.SHA512, "sha384": PtsHashAlgorithm.SHA384,
           "sha256": PtsHashAlgorithm.SHA256, "sha1": PtsHashAlgorithm.SHA1}
_GROUPS = {"ecp384": PtsDhGroup.ECP_384, "ecp256": PtsDhGroup.ECP_256, "modp2048": PtsDhGroup.MODP_2048}
_COMPONENTS = {"bios": BIOS_COMPONENT, "ima": IMA_COMPONENT}
_SEVERITY = {"minor": E.NONCOMPLIANT_MINOR, "major": E.NONCOMPLIANT_MAJOR}
#: Rounds after the last request in which the collector may still be answering.
MAX_WAIT_ROUNDS = 4


def _absolute_path(raw: str) -> str:
    value = raw.strip()
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


REASON_NOT_TRUSTED: LangText = {
    "en": "The attestation identity key of the TPM is not trusted",
    "de": "Der Attestierungsschlüssel des TPM ist nicht vertrauenswürdig",
}
REASON_QUOTE: LangText = {
    "en": "Invalid TPM quote received",
    "de": "Ungültige TPM-Quote empfangen",
}
REASON_EVIDENCE: LangText = {
    "en": "The measurement evidence does not match the TPM quote",
    "de": "Die Messwerte stimmen nicht mit der TPM-Quote überein",
}
REASON_FILES: LangText = {
    "en": "Measured files differ from their reference values",
    "de": "Gemessene Dateien weichen von ihren Referenzwerten ab",
}
REASON_UNKNOWN: LangText = {
    "en": "Files without reference values were measured",
    "de": "Dateien ohne Referenzwerte wurden gemessen",
}
REASON_INCOMPLETE: LangText = {
    "en": "The remote attestation could not be completed",
    "de": "Die Attestierung konnte nicht abgeschlossen werden",
}
DIFFERS_TITLE: LangText = {"en": "Modified Files", "de": "Veränderte Dateien"}
DIFFERS_DESCRIPTION: LangText = {
    "en": "Files whose measurement differs from the reference values were found",
    "de": "Dateien, deren Messwert von den Referenzwerten abweicht, wurden gefunden",
}
UNKNOWN_TITLE: LangText = {"en": "Unknown Files", "de": "Unbekannte Dateien"}
UNKNOWN_DESCRIPTION: LangText = {
    "en": "Files without reference values were measured",
    "de": "Dateien ohne Referenzwerte wurden gemessen",
}
FILES_HEADER: LangText = {
    "en": "Please restore or register the following files:",
    "de": "Bitte stellen Sie folgende Dateien wieder her oder registrieren Sie sie:",
}


@dataclass(slots=True)
class AttestationState(ImvState):
    verifier: PtsVerifier | None = None
    waited: int = 0
    """Collector batches since the last request without the exchange moving on."""
    errors: list[PaTncErrorAttribute] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Aik:
    keyid: str
    key: Any
    der: bytes
    certified: bool
    """Issued by a CA of aik_ca_dir."""


@dataclass
class _Findings:
    """What the judgement (run in the database thread) found."""

    report: EvidenceReport
    keyid: str | None = None
    trusted: bool = False
    registered: bool = False
    product: str | None = None
    aik_problem: str | None = None


def _pcr_list(raw: str) -> tuple[int, ...]:
    """PCR numbers and ranges, e.g. ``0-7, 10`` (0-23), in order, each once."""
    pcrs: set[int] = set()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        low, dash, high = item.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ValueError(f"{item!r} is not a PCR number or range (e.g. 0-7, 10)") from None
        if not 0 <= first <= last <= 23:
            raise ValueError(f"{item!r} is out of range (PCRs 0-23, the lower first)")
        pcrs.update(range(first, last + 1))
    return tuple(sorted(pcrs))


class AttestationImv(PaTncImv):
    """TCG PTS verifier (strongSwan's imv-attestation, with nac's policy)."""

    name = "attestation"
    label = "Attestation"
    vendor = PaVendor.TCG
    subtype = PTS_SUBTYPE
    subtype_name = "PTS"
    state_class = AttestationState
    LANGUAGES = ("en", "de")

    CONFIG_HELP = (
        "Remote attestation with a TPM 2.0 (TCG PTS, PA subtype TCG/PTS, strongSwan's imv-attestation): "
        "the endpoint's TPM quotes its PCRs over a fresh D-H nonce with its AIK; the BIOS/UEFI event log "
        "and the Linux IMA list sent as evidence must replay to the quoted PCRs, and every measured file "
        "must match a reference digest of the AIK's product. Enroll AIKs with `nac-admin attest aik add`, "
        "import reference digests with `nac-admin attest import`, read the history with "
        "`nac-admin attest results`. Load with `imvs = attestation, ...`.")

    OPTIONS = [
        Option("hash_algorithms", comma_list_of(choice(*_HASHES), allow_empty=False, unique=True),
               ["sha384", "sha256"],
               "PCR banks (measurement hash algorithms) accepted, the collector picks one; also the "
               "hashes of the nonce secret: sha512, sha384, sha256, sha1."),
        Option("dh_groups", comma_list_of(choice(*_GROUPS), allow_empty=False, unique=True),
               ["ecp384", "ecp256", "modp2048"],
               "D-H groups offered for the nonce exchange (ecp256 is the one every PTS collector has)."),
        Option("min_nonce_length", int_range(MIN_NONCE_LENGTH, MAX_NONCE_LENGTH), MIN_NONCE_LENGTH,
               "Shortest collector nonce accepted, in bytes (17-255)."),
        Option("components", comma_list_of(choice(*_COMPONENTS), unique=True), ["bios", "ima"],
               "Evidence asked for: bios (the BIOS/UEFI event log), ima (the Linux IMA measurement list)."),
        Option("pcrs", _pcr_list, (),
               "PCRs the quote must cover besides those the evidence extends, e.g. 0-7, 10 (TPM 2.0: "
               "0-23); a quote without one of them is invalid. Empty: the PCRs of the evidence."),
        Option("files", comma_list_of(_absolute_path, unique=True), [],
               "Files whose measurement is asked for besides the evidence (File Measurement), checked "
               "against the reference digests like IMA's."),
        Option("unknown_file", choice("ignore", "minor", "major"), "minor",
               "What a measured file without reference digest is: ignored, or a minor or major violation."),
        Option("differing_file", choice("minor", "major"), "major",
               "What a measured file whose digest is none of its references is."),
        Option("aik_first_use", choice("deny", "register", "trust"), "deny",
               "An AIK nobody enrolled: deny (the default), register it untrusted for the operator to "
               "trust (`nac-admin attest aik trust`), or trust it on first use (and record it trusted)."),
        Option("aik_ca_dir", optional(path), None,
               "A directory of CA certificates (PEM): an AIK certificate one of them issued, valid now, is "
               "trusted without enrollment."),
        Option("max_evidence", positive_int, 100_000,
               "Component evidence measurements (BIOS events and IMA entries) accepted from one endpoint."),
        Option("reference_cache", non_negative_int, 100_000,
               "Files whose reference digests (and the IMA template hashes they give) are kept in memory "
               "between attestations, of all products together (some 750 bytes each, per server process), "
               "until the references in "
               "the database change (any change to files, reference digests or products, by nac-admin or "
               "plain SQL, moves a generation counter on); files beyond it are looked up each time; 0: "
               "look every attestation's files up in the database."),
        *verdict_options(minor="isolate", major="no-access", no_result="no-access", server_checks=True),
        PaTncImv.attribute_size_option(),
    ]

    def __init__(self, options: Mapping | None = None):
        super().__init__(options)
        o = self.options
        algorithms = PtsHashAlgorithm(0)
        for name in o["hash_algorithms"]:
            algorithms |= _HASHES[name]
        groups = PtsDhGroup(0)
        for name in o["dh_groups"]:
            groups |= _GROUPS[name]
        self.verifier_policy = VerifierPolicy(
            algorithms=algorithms, groups=groups, min_nonce_length=o["min_nonce_length"],
            components=tuple(ComponentRequest(_COMPONENTS[c], ComponentRequestFlag.PCR) for c in o["components"]),
            files=tuple(o["files"]), max_evidence=o["max_evidence"])
        self.unknown_file = _SEVERITY.get(o["unknown_file"])
        self.differing_file = _SEVERITY[o["differing_file"]]
        self.aik_first_use = o["aik_first_use"]
        self.ca_certificates = _load_cas(o["aik_ca_dir"]) if o["aik_ca_dir"] else []
        self.references = attest_db.ReferenceCache(o["reference_cache"])
        self.required_pcrs = frozenset(o["pcrs"])

    def new_state(self, connection=None) -> AttestationState:
        return AttestationState(max_attribute_size=self.max_attribute_size,
                                reassembly=getattr(connection, "reassembly", None))

    @property
    def message_type_name(self) -> str:
        return "TCG/PTS"

    # -- receiving -----------------------------------------------------------------------

    def _unwrap(self, connection, state, imc_id, attribute, reply):
        if is_pts_error(attribute):
            return [attribute]  # the verifier's business, not a PA-TNC error to log and drop
        return super()._unwrap(connection, state, imc_id, attribute, reply)

    def handle_attribute(self, connection, state: AttestationState, attribute: PaAttribute) -> None:
        verifier = state.verifier
        if verifier is None:
            return
        phase = verifier.phase
        answer = verifier.receive(attribute)
        if answer:
            self.send(connection, answer, collector_id=state.imc_id, exclusive=True)
        if verifier.phase is Phase.FAILED and phase is not Phase.FAILED:
            log.warn("IMV {imv_id}: attestation on Connection ID {cid} failed: {why}",
                     imv_id=connection.imv_id, cid=connection.connection_id, why=verifier.failure)

    # -- the exchange --------------------------------------------------------------------

    def batch_ending(self, connection):
        state = self.state_of(connection)
        if state.decided:
            return None
        heard, state.heard = state.heard, False
        if not state.started:
            state.started = True
            state.verifier = PtsVerifier(self.verifier_policy)
            self.send(connection, [self.contract_request(connection), *state.verifier.start()],
                      collector_id=ANY_IMC_ID, exclusive=False)
            return None
        verifier = state.verifier
        request = verifier.next_request()
        if request:
            state.waited = 0
            self.send(connection, request, collector_id=state.imc_id, exclusive=True)
            return None
        if verifier.done:
            return self.decide(connection, state)
        state.waited += 1
        if heard and state.waited < MAX_WAIT_ROUNDS:
            return None  # the collector is answering; the rest may come in its next batch
        return self.decide(connection, state)

    # -- judging -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def judge(self, connection, state: AttestationState):
        verifier = state.verifier
        if verifier is None or not state.received_any:
            return self.no_result(REASON_INCOMPLETE, "no attestation received")
        if verifier.phase is not Phase.COLLECTED:
            why = verifier.failure or "the collector did not complete the attestation"
            self._record(connection, state, None, E.ERROR, why, {"phase": verifier.phase.value, "error": why})
            return self.no_result(REASON_INCOMPLETE, why, E.ERROR)
        collected = verifier.collected
        aik, aik_problem = self._aik(collected.aik)
        store = connection.store
        try:
            if store is not None:
                findings = yield store.run(self._check, verifier, aik, aik_problem)
            else:
                self.no_store(connection)
                findings = self._check(None, verifier, aik, aik_problem)
        except Exception:
            log.failure("IMV {imv_id}: checking the attestation of Connection ID {cid} failed",
                        imv_id=connection.imv_id, cid=connection.connection_id)
            return self.check_failed("the attestation could not be checked")
        return self._verdict(connection, state, findings)

    def _aik(self, attribute) -> tuple[_Aik | None, str | None]:
        if attribute is None:
            return None, "no attestation identity key was received"
        try:
            if attribute.naked:
                key = load_public_key(attribute.key)
                certified = False
            else:
                certificate = _load_certificate(attribute.key)
                key = load_public_key(certificate.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
                certified = self._certified(certificate)
        except (ValueError, UnsupportedAlgorithm) as err:
            return None, f"the attestation identity key is unusable: {err}"
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return _Aik(attest_db.aik_keyid(der), key, der, certified), None

    def _certified(self, certificate: x509.Certificate) -> bool:
        now = datetime.datetime.now(datetime.timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return False
        for ca in self.ca_certificates:
            try:
                certificate.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return True
        return False

    def _check(self, session, verifier: PtsVerifier, aik: _Aik | None, aik_problem: str | None) -> _Findings:
        """Look the AIK and the references up (``session``: an ORM session, or
        None without a store) and judge the evidence; in the database thread."""
        collected = verifier.collected
        record = None
        registered = False
        if aik is not None and session is not None:
            record = attest_db.aik_for(session, aik.keyid)
            if record is None and not aik.certified and self.aik_first_use != "deny":
                attest_db.register_aik(session, aik.der, trusted=self.aik_first_use == "trust",
                                       description="registered at first use")
                record = attest_db.aik_for(session, aik.keyid)
                registered = True
        trusted = aik is not None and (aik.certified or (record is not None and record.trusted))
        product = record.product if record is not None else None
        locality = collected.tpm_version.startup_locality if collected.tpm_version is not None else None
        bank = collected.measurement_algorithm

        def judge(references: attest_db.ReferenceLookup | None) -> EvidenceReport:
            return check_evidence(collected.evidence, collected.final, aik=aik.key if aik else None,
                                  secret=verifier.secret, measurement_hash=bank, startup_locality=locality or 0,
                                  expected=references.ima if references is not None else None,
                                  required_pcrs=self.required_pcrs)

        measured = {entry.filename for m in collected.file_measurements for entry in m.entries}
        references = report = None
        if session is not None:
            # the product's files as kept from earlier attestations: enough unless one is new to them
            references = self.references.kept(session, product, bank)
            if references is not None and references.digests.keys() >= measured:
                report = judge(references)
            if report is None or report.unlisted:
                references = self.references.lookup(session, product, evidence_files(collected.evidence) | measured,
                                                    bank)
                report = judge(references)
        else:
            report = judge(None)
        check_file_measurements(report, collected.file_measurements,
                                references.digests if references is not None else {})
        return _Findings(report, aik.keyid if aik else None, trusted, registered, product, aik_problem)

    def _verdict(self, connection, state: AttestationState, findings: _Findings) -> Judgement:
        report = findings.report
        checks: list[EvaluationResult] = []
        reasons: list[LangText] = []
        summary: list[str] = []
        remediation = RemediationString(self.language(connection))
        if findings.aik_problem is not None or not findings.trusted:
            checks.append(E.NONCOMPLIANT_MAJOR)
            reasons.append(REASON_NOT_TRUSTED)
            summary.append(findings.aik_problem or f"AIK {findings.keyid} is not trusted"
                           + (" (registered for the operator to trust)" if findings.registered else ""))
        else:
            summary.append(f"AIK {findings.keyid} is trusted")
        if report.quote_error is not None:
            checks.append(E.NONCOMPLIANT_MAJOR)
            reasons.append(REASON_EVIDENCE if report.evidence_mismatch or report.unquoted_pcrs else REASON_QUOTE)
            summary.append(report.quote_error)
        else:
            summary.append("quote of " + ", ".join(f"PCR{p}" for p in report.quoted_pcrs) + " verified")
        if report.boot_aggregate == "differs":
            checks.append(E.NONCOMPLIANT_MAJOR)
            reasons.append(REASON_EVIDENCE)
            summary.append("the IMA boot aggregate does not match the BIOS PCRs")
        differing = report.names(FileStatus.DIFFERS) + report.names(FileStatus.INVALID)
        unknown = report.names(FileStatus.UNKNOWN) + report.names(FileStatus.VIOLATION)
        if differing:
            checks.append(self.differing_file)
            reasons.append(REASON_FILES)
            remediation.add_instruction(DIFFERS_TITLE, DIFFERS_DESCRIPTION, FILES_HEADER, differing)
        if unknown and self.unknown_file is not None:
            checks.append(self.unknown_file)
            reasons.append(REASON_UNKNOWN)
            remediation.add_instruction(UNKNOWN_TITLE, UNKNOWN_DESCRIPTION, FILES_HEADER, unknown)
        counts = report.counts()
        summary.append(f"{report.bios_events} BIOS events, {report.ima_entries} IMA entries; files: "
                       f"{counts['ok']} ok, {counts['unknown']} unknown, {counts['differs']} differ")
        evaluation = max(checks, default=E.COMPLIANT)
        details = {
            "aik": findings.keyid, "trusted": findings.trusted, "product": findings.product,
            "quote": report.quote_error or "ok", "quoted_pcrs": list(report.quoted_pcrs),
            "boot_aggregate": report.boot_aggregate, "bios_events": report.bios_events,
            "ima_entries": report.ima_entries, "files": counts,
            "differing": differing[:1000], "unknown": unknown[:1000], "evaluation": evaluation.label,
        }
        self._record(connection, state, findings.keyid, evaluation, "; ".join(summary), details)
        unique: list[LangText] = []
        for reason in reasons:
            if all(reason is not seen for seen in unique):
                unique.append(reason)
        return Judgement(evaluation, self.policy.recommendation(evaluation), tuple(unique),
                         remediation if remediation else None, "; ".join(summary))

    def _record(self, connection, state: AttestationState, keyid: str | None, evaluation: EvaluationResult,
                summary: str, details: dict) -> None:
        self.measure(connection, state, "attestation", details)
        store = connection.store
        if store is not None:
            self.record(connection, state, "the attestation",
                        lambda session_id: store.writes.submit(attest_db.record_attestation, keyid, session_id,
                                                               evaluation, summary, details))


def _load_certificate(data: bytes) -> x509.Certificate:
    try:
        return (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(data))
    except ValueError as err:
        raise ValueError(f"not an X.509 certificate: {err}") from None


def _load_cas(directory: str) -> list[x509.Certificate]:
    """The CA certificates (PEM, one or more per file) of ``aik_ca_dir``."""
    found = []
    for file in sorted(Path(directory).iterdir()):
        if file.is_file():
            try:
                found += x509.load_pem_x509_certificates(file.read_bytes())
            except ValueError:
                log.warn("aik_ca_dir: {file} holds no PEM certificate; ignored", file=str(file))
    return found
