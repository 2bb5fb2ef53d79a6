"""The verifier's side of a PTS attestation (PTS IF-M binding §3), sans-IO:
attributes from the collector in, attributes for it out, and what was
collected for :mod:`nac.pts.evidence` to judge.

Two round trips, then a decision::

    verifier → Request PTS Protocol Capabilities, PTS Measurement Algorithm
               Request, D-H Nonce Parameters Request
    collector → PTS Protocol Capabilities, PTS Measurement Algorithm,
               D-H Nonce Parameters Response
    verifier → D-H Nonce Finish, Get TPM Version Information, Get AIK,
               Request Functional Component Evidence, Generate Attestation
               Evidence [, Request File Measurement …]
    collector → TPM Version Information, Attestation Identity Key, Simple
               Component Evidence …, Simple Evidence Final [, File Measurement …]

strongSwan's IMV spends four round trips on the same (it waits for the
capabilities before the D-H request, and for the nonce before asking for
the AIK); a collector answers each attribute in order either way, so the
shorter exchange loses nothing.  A PTS error from the collector, or a
protocol step it gets wrong, ends the exchange (:attr:`failure`); so do
more evidence or file measurements than :class:`VerifierPolicy` allows.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.message import PaAttribute, enum_or_int
from nac.pa.tcg_pts import (
    AttestationIdentityKey,
    ComponentRequest,
    ComponentRequestFlag,
    DhNonceParametersResponse,
    FileMeasurement,
    GenerateAttestationEvidence,
    GetAttestationIdentityKey,
    GetTpmVersionInfo,
    PtsCapability,
    PtsDhGroup,
    PtsErrorCode,
    PtsHashAlgorithm,
    PtsMeasurementAlgorithmRequest,
    PtsMeasurementAlgorithmSelection,
    PtsProtocolCapabilities,
    RequestFileMeasurement,
    RequestFunctionalComponentEvidence,
    RequestPtsProtocolCapabilities,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TpmVersionInfo,
    hash_algorithm_not_supported_error,
    is_pts_error,
)
from nac.pts.evidence import BIOS_COMPONENT, IMA_COMPONENT
from nac.pts.hashes import HashAlgorithm, by_pts
from nac.pts.nonce import MIN_NONCE_LENGTH, SUPPORTED_GROUPS, NonceError, NonceInitiator, Random

__all__ = ["Phase", "PtsVerifier", "VerifierPolicy"]

#: What nac asks a collector for: verification, D-H nonce, TPM-based evidence.
VERIFIER_CAPABILITIES = PtsCapability.VERIFICATION | PtsCapability.DH_NONCE | PtsCapability.TRUSTED_PLATFORM


class Phase(enum.Enum):
    NEW = "new"
    NEGOTIATING = "negotiating"
    """Capabilities, algorithm and D-H nonce parameters asked for."""
    ATTESTING = "attesting"
    """The nonce agreed, the AIK, the evidence and the quote asked for."""
    COLLECTED = "collected"
    """The quote (and every file measurement asked for) arrived."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class VerifierPolicy:
    """What the verifier asks for and how much it accepts."""

    algorithms: PtsHashAlgorithm = PtsHashAlgorithm.SHA384 | PtsHashAlgorithm.SHA256
    """Measurement (PCR bank) algorithms accepted, and those of the nonce secret."""
    groups: PtsDhGroup = SUPPORTED_GROUPS
    min_nonce_length: int = MIN_NONCE_LENGTH
    components: tuple[ComponentRequest, ...] = (
        ComponentRequest(BIOS_COMPONENT, ComponentRequestFlag.PCR),
        ComponentRequest(IMA_COMPONENT, ComponentRequestFlag.PCR),
    )
    files: tuple[str, ...] = ()
    """Paths whose File Measurement is asked for."""
    max_evidence: int = 100_000
    """Simple Component Evidence attributes accepted (BIOS events and IMA entries)."""
    max_file_measurements: int = 10_000
    """Files accepted in File Measurement attributes, all together."""


@dataclass
class _Collected:
    capabilities: PtsCapability | None = None
    measurement_algorithm: HashAlgorithm | None = None
    tpm_version: TpmVersionInfo | None = None
    aik: AttestationIdentityKey | None = None
    evidence: list[SimpleComponentEvidence] = field(default_factory=list)
    final: SimpleEvidenceFinal | None = None
    file_measurements: list[FileMeasurement] = field(default_factory=list)
    file_count: int = 0
    pts_errors: list[PaTncErrorAttribute] = field(default_factory=list)


class PtsVerifier:
    """One attestation, verifier side.  :meth:`start` gives the first
    request; every attribute from the collector goes to :meth:`receive`; at
    the end of each of its batches :meth:`next_request` gives what to send
    (nothing while it waits).  Once :attr:`phase` is COLLECTED or FAILED the
    exchange is over: judge :attr:`collected` with ``secret``."""

    def __init__(self, policy: VerifierPolicy = VerifierPolicy(), random: Random = os.urandom) -> None:
        self.policy = policy
        self.phase = Phase.NEW
        self.failure: str | None = None
        self.collected = _Collected()
        self._nonce = NonceInitiator(policy.groups, policy.algorithms, policy.min_nonce_length, random)
        self._response: DhNonceParametersResponse | None = None
        self._requested_files: set[int] = set()
        self._answered_files: set[int] = set()

    @property
    def secret(self) -> bytes | None:
        """The secret assessment value the quote must be over."""
        return self._nonce.secret

    @property
    def done(self) -> bool:
        return self.phase in (Phase.COLLECTED, Phase.FAILED)

    def fail(self, reason: str) -> None:
        if not self.done:
            self.phase, self.failure = Phase.FAILED, reason

    def start(self) -> list[PaAttribute]:
        self.phase = Phase.NEGOTIATING
        return [RequestPtsProtocolCapabilities(VERIFIER_CAPABILITIES),
                PtsMeasurementAlgorithmRequest(self.policy.algorithms), self._nonce.request()]

    # -- receiving ---------------------------------------------------------------------

    def receive(self, attribute: PaAttribute) -> list[PaAttribute]:
        """Take in one attribute; a PTS error to send back at once, if any."""
        if self.done:
            return []
        c = self.collected
        if is_pts_error(attribute):
            c.pts_errors.append(attribute)
            code = enum_or_int(PtsErrorCode, attribute.error_code)
            self.fail(f"the collector reported PTS error {getattr(code, 'name', code)}")
        elif isinstance(attribute, PtsProtocolCapabilities):
            c.capabilities = attribute.capabilities
        elif isinstance(attribute, PtsMeasurementAlgorithmSelection):
            algorithm = by_pts(attribute.algorithms)
            if algorithm is None or not int(attribute.algorithms) & int(self.policy.algorithms):
                self.fail(f"the collector selected hash algorithm 0x{int(attribute.algorithms):04x}, "
                          "not one offered")
                return [hash_algorithm_not_supported_error(self.policy.algorithms)]
            c.measurement_algorithm = algorithm
        elif isinstance(attribute, DhNonceParametersResponse):
            if self.phase is not Phase.NEGOTIATING or self._response is not None:
                self.fail("D-H Nonce Parameters Response out of turn")
            else:
                self._response = attribute
        elif isinstance(attribute, TpmVersionInfo):
            c.tpm_version = attribute
        elif isinstance(attribute, AttestationIdentityKey):
            c.aik = attribute
        elif isinstance(attribute, SimpleComponentEvidence):
            if self.phase is not Phase.ATTESTING or c.final is not None:
                self.fail("Simple Component Evidence out of turn")
            elif len(c.evidence) >= self.policy.max_evidence:
                self.fail(f"more than {self.policy.max_evidence} component evidence measurements")
            else:
                c.evidence.append(attribute)
        elif isinstance(attribute, SimpleEvidenceFinal):
            if self.phase is not Phase.ATTESTING or c.final is not None:
                self.fail("Simple Evidence Final out of turn")
            else:
                c.final = attribute
        elif isinstance(attribute, FileMeasurement):
            c.file_count += len(attribute.entries)
            if attribute.request_id not in self._requested_files:
                self.fail(f"File Measurement of request {attribute.request_id}, which was not made")
            elif c.file_count > self.policy.max_file_measurements:
                self.fail(f"more than {self.policy.max_file_measurements} file measurements")
            else:
                c.file_measurements.append(attribute)
                self._answered_files.add(attribute.request_id)
        return []

    # -- sending -----------------------------------------------------------------------

    def next_request(self) -> list[PaAttribute]:
        """What to send at the end of the collector's batch (empty: nothing, wait or decide)."""
        if self.phase is Phase.NEGOTIATING:
            return self._attest()
        if self.phase is Phase.ATTESTING and self.collected.final is not None \
                and self._answered_files >= self._requested_files:
            self.phase = Phase.COLLECTED
        return []

    def _attest(self) -> list[PaAttribute]:
        c = self.collected
        if self._response is None or c.measurement_algorithm is None:
            return []  # not yet: the collector may answer in its next batch
        try:
            finish = self._nonce.finish(self._response)
        except NonceError as err:
            self.fail(f"D-H nonce exchange: {err.reason}")
            return [err.reply] if err.reply is not None else []
        self.phase = Phase.ATTESTING
        requests: list[PaAttribute] = [finish, GetTpmVersionInfo(), GetAttestationIdentityKey()]
        if self.policy.components:
            requests.append(RequestFunctionalComponentEvidence(self.policy.components))
        requests.append(GenerateAttestationEvidence())
        for number, path in enumerate(self.policy.files, 1):
            self._requested_files.add(number)
            requests.append(RequestFileMeasurement(number, path))
        return requests

    @property
    def requested_paths(self) -> Sequence[str]:
        return self.policy.files
