"""The attestation IMC (TCG PTS, PA subtype TCG/PTS): what strongSwan's
imc-attestation sends, from this host's TPM 2.0 and measurement logs.

It answers the verifier's requests in order (PTS IF-M binding §3):
capabilities (D-H nonce, trusted platform), the measurement algorithm (the
strongest PCR bank offered that the TPM has), the D-H nonce exchange
(:class:`nac.pts.nonce.NonceResponder`), TPM version information (with the
startup locality), the AIK (a naked public key), and, on Generate
Attestation Evidence, one Simple Component Evidence per measurement of the
requested components (the BIOS/UEFI event log: each event's digest; the
IMA list: each entry's template hash, with ``<algorithm>:<file name>`` as
policy URI) and a Simple Evidence Final with a TPM2_Quote of the PCRs the
evidence extended, over the nonce secret.  File measurements and metadata
are answered from the file system.  What it cannot do is a PTS error.

The TPM is an :class:`nac.interfaces.ITpm` (:class:`nac.client.tpm.Tpm2Tools`
by default); the logs are read from the kernel's paths unless others are
given (tests pass their own).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.client.tpm import DEFAULT_AIK_HANDLE, Tpm2Tools, TpmError
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa.tcg_pts import (
    PTS_SUBTYPE,
    SLASH,
    AttestationIdentityKey,
    ComponentName,
    ComponentRequestFlag,
    ComponentValidation,
    DhNonceFinish,
    DhNonceParametersRequest,
    FileMeasurement,
    FileMeasurementEntry,
    GenerateAttestationEvidence,
    GetAttestationIdentityKey,
    GetTpmVersionInfo,
    PcrTransform,
    PtsCapability,
    PtsErrorCode,
    PtsFileType,
    PtsHashAlgorithm,
    PtsMeasurementAlgorithmRequest,
    PtsMeasurementAlgorithmSelection,
    PtsProtocolCapabilities,
    QuoteMode,
    RequestFileMeasurement,
    RequestFileMetadata,
    RequestFunctionalComponentEvidence,
    RequestPtsProtocolCapabilities,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TpmVersionInfo,
    UnixFileMetadata,
    UnixFileMetadataEntry,
    hash_algorithm_not_supported_error,
    pts_error,
)
from nac.pts.eventlog import EventLogError, parse_event_log
from nac.pts.evidence import ComponentKind, component_kind
from nac.pts.hashes import HashAlgorithm, by_name, strongest
from nac.pts.ima import ImaLogError, parse_ima_log
from nac.pts.nonce import NonceError, NonceResponder
from nac.pts.pcr import PcrBank
from nac.pts.tpm2 import Attest, Signature, TpmFormatError

__all__ = ["AttestationImc", "DEFAULT_BIOS_LOG", "DEFAULT_IMA_LOG"]

log = Logger(namespace="nac.client.attestation")

DEFAULT_BIOS_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
DEFAULT_IMA_LOG = "/sys/kernel/security/ima/binary_runtime_measurements"
#: Files one File Measurement or File Metadata request measures (a directory's).
MAX_FILES = 10_000
#: The largest measurement log read.
MAX_LOG_SIZE = 64 * 1024 * 1024


@dataclass
class _PtsState:
    algorithm: HashAlgorithm | None = None
    nonce: NonceResponder | None = None
    secret: bytes | None = None
    components: list = field(default_factory=list)


class AttestationImc(PaTncImc):
    """strongSwan's attestation IMC, backed by a TPM 2.0."""

    name = "Attestation"
    vendor = PaVendor.TCG
    subtype = PTS_SUBTYPE

    def __init__(self, *, tpm=None, tcti: str | None = None, aik_handle: int = DEFAULT_AIK_HANDLE,
                 bios_log: str | Path | None = DEFAULT_BIOS_LOG, ima_log: str | Path | None = DEFAULT_IMA_LOG,
                 startup_locality: int | None = None, nonce_length: int = 20, pcr_info: bool = True):
        self.tpm = tpm if tpm is not None else Tpm2Tools(tcti, aik_handle)
        self.bios_log = bios_log
        self.ima_log = ima_log
        self.startup_locality = startup_locality
        self.nonce_length = nonce_length
        self.pcr_info = pcr_info

    def pts(self, connection) -> _PtsState:
        extra = self.state_of(connection).extra
        if "pts" not in extra:
            extra["pts"] = _PtsState()
        return extra["pts"]

    # -- answering -------------------------------------------------------------------------

    def reply_attributes(self, connection, message: ReceivedPaMessage, attributes) -> list[PaAttribute]:
        state = self.pts(connection)
        reply: list[PaAttribute] = []
        for attribute in attributes:
            try:
                reply.extend(self._answer(state, attribute))
            except TpmError as err:
                log.error("IMC \"{imc}\": the TPM failed: {err}", imc=self.name, err=str(err))
                reply.append(pts_error(PtsErrorCode.UNABLE_CURRENT_EVIDENCE))
            except (EventLogError, ImaLogError, OSError) as err:
                log.error("IMC \"{imc}\": cannot read a measurement log: {err}", imc=self.name, err=str(err))
                reply.append(pts_error(PtsErrorCode.UNABLE_CURRENT_EVIDENCE))
        return reply

    def _answer(self, state: _PtsState, attribute: PaAttribute) -> list[PaAttribute]:
        if isinstance(attribute, RequestPtsProtocolCapabilities):
            return [PtsProtocolCapabilities(PtsCapability.DH_NONCE | PtsCapability.TRUSTED_PLATFORM)]
        if isinstance(attribute, PtsMeasurementAlgorithmRequest):
            return [self._select_algorithm(state, attribute.algorithms)]
        if isinstance(attribute, DhNonceParametersRequest):
            state.nonce = NonceResponder(nonce_length=self.nonce_length)
            offered = state.algorithm.pts if state.algorithm else PtsHashAlgorithm.SHA256
            try:
                return [state.nonce.respond(attribute, offered)]
            except NonceError as err:
                return [err.reply] if err.reply is not None else []
        if isinstance(attribute, DhNonceFinish):
            if state.nonce is None:
                return [pts_error(PtsErrorCode.OPERATION_NOT_SUPPORTED)]
            try:
                state.secret = state.nonce.finish(attribute)
            except NonceError as err:
                log.warn("IMC \"{imc}\": D-H nonce exchange failed: {err}", imc=self.name, err=err.reason)
                return [err.reply or pts_error(PtsErrorCode.BAD_NONCE_LENGTH)]
            return []
        if isinstance(attribute, GetTpmVersionInfo):
            vendor, revision, year = self.tpm.version_info()
            return [TpmVersionInfo.tpm2(self._locality(), revision, year, vendor.encode()[:4].ljust(4, b"\0"))]
        if isinstance(attribute, GetAttestationIdentityKey):
            return [AttestationIdentityKey(self.tpm.aik_public_key())]
        if isinstance(attribute, RequestFunctionalComponentEvidence):
            state.components = list(attribute.components)
            return []
        if isinstance(attribute, GenerateAttestationEvidence):
            return self._evidence(state)
        if isinstance(attribute, RequestFileMeasurement):
            return [self._measure(state, attribute)]
        if isinstance(attribute, RequestFileMetadata):
            return [self._metadata(attribute)]
        return []

    def _select_algorithm(self, state: _PtsState, offered) -> PaAttribute:
        banks = {name for name in self.tpm.pcr_banks()}
        ours = PtsHashAlgorithm(0)
        for name in banks:
            algorithm = by_name(name)
            if algorithm is not None:
                ours |= algorithm.pts
        chosen = strongest(int(offered) & int(ours))
        if chosen is None:
            return hash_algorithm_not_supported_error(ours)
        state.algorithm = chosen
        return PtsMeasurementAlgorithmSelection(chosen.pts)

    def _locality(self) -> int:
        if self.startup_locality is not None:
            return self.startup_locality
        data = self._read(self.bios_log)
        return parse_event_log(data).startup_locality if data else 0

    def _read(self, path) -> bytes | None:
        if path is None or not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_LOG_SIZE + 1)
        if len(data) > MAX_LOG_SIZE:
            raise EventLogError(f"{path} is larger than {MAX_LOG_SIZE} bytes", MAX_LOG_SIZE)
        return data

    # -- evidence --------------------------------------------------------------------------

    def _evidence(self, state: _PtsState) -> list[PaAttribute]:
        if state.secret is None or state.algorithm is None:
            log.warn("IMC \"{imc}\": asked for evidence before the nonce and algorithm were agreed",
                     imc=self.name)
            return [pts_error(PtsErrorCode.UNABLE_CURRENT_EVIDENCE)]
        algorithm = state.algorithm
        bank = PcrBank(algorithm, self._locality())
        time = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        evidence: list[PaAttribute] = []
        for request in state.components:
            kind = component_kind(request.name)
            pcr_info = self.pcr_info and bool(request.flags & ComponentRequestFlag.PCR)
            if kind is ComponentKind.BIOS:
                measurements = self._bios_measurements(algorithm)
            elif kind is ComponentKind.IMA:
                measurements = self._ima_measurements(algorithm)
            else:
                log.info("IMC \"{imc}\": no evidence of component {name}", imc=self.name,
                         name=request.name.describe())
                continue
            evidence.extend(self._component(request.name, measurements, bank, algorithm, time, pcr_info))
        pcrs = sorted(bank.extends)
        if not pcrs:
            return evidence + [pts_error(PtsErrorCode.UNABLE_CURRENT_EVIDENCE)]
        actual = self.tpm.read_pcrs(algorithm.name, pcrs)
        for pcr in pcrs:
            if actual.get(pcr) != bank.value(pcr):
                log.warn("IMC \"{imc}\": PCR {pcr} of the TPM differs from the measurement logs' replay",
                         imc=self.name, pcr=pcr)
        message, raw_signature = self.tpm.quote(algorithm.name, pcrs, state.secret)
        try:
            attest, signature = Attest.from_bytes(message), Signature.from_bytes(raw_signature)
        except TpmFormatError as err:
            raise TpmError(f"the TPM's quote does not parse: {err}") from None
        signature_hash = by_name(self.tpm.aik_signature_hash())
        if signature_hash is None:
            raise TpmError("the AIK signs with a hash nac does not know")
        evidence.append(SimpleEvidenceFinal(
            QuoteMode.TPM2, signature_hash.pts, attest.pcr_digest, attest.qualified_signer, attest.clock_info,
            attest.firmware_version, attest.pcr_select.to_bytes(), signature.value))
        return evidence

    def _bios_measurements(self, algorithm: HashAlgorithm):
        data = self._read(self.bios_log)
        if data is None:
            raise OSError(f"no BIOS event log at {self.bios_log}")
        for event in parse_event_log(data).measured():
            digest = event.digest(algorithm.tpm_alg)
            if digest is None:
                raise EventLogError(f"an event has no {algorithm} digest", event.offset)
            yield event.pcr, digest, ""

    def _ima_measurements(self, algorithm: HashAlgorithm):
        data = self._read(self.ima_log)
        if data is None:
            raise OSError(f"no IMA measurement list at {self.ima_log}")
        for entry in parse_ima_log(data):
            uri = f"{entry.digest_algorithm}:{entry.filename}" if entry.digest_algorithm else ""
            yield entry.pcr, entry.extend_digest(algorithm), uri

    def _component(self, name: ComponentName, measurements, bank: PcrBank, algorithm: HashAlgorithm, time: str,
                   pcr_info: bool) -> list[SimpleComponentEvidence]:
        out = []
        for pcr, digest, uri in measurements:
            before = bank.value(pcr)
            after = bank.extend(pcr, digest)
            out.append(SimpleComponentEvidence(
                name, pcr, digest, algorithm.pts, PcrTransform.MATCH, time,
                validation=ComponentValidation.PASSED if uri else ComponentValidation.NONE, policy_uri=uri,
                pcr_before=before if pcr_info else None, pcr_after=after if pcr_info else None))
        return out

    # -- files -----------------------------------------------------------------------------

    def _paths(self, path: str, directory: bool) -> list[str] | PaAttribute:
        if not path.startswith("/"):
            return pts_error(PtsErrorCode.INVALID_PATH)
        if not os.path.lexists(path):
            return pts_error(PtsErrorCode.FILE_NOT_FOUND)
        if not directory:
            return [path]
        try:
            names = sorted(os.listdir(path))[:MAX_FILES]
        except OSError:
            return pts_error(PtsErrorCode.INVALID_PATH)
        return [os.path.join(path, name) for name in names]

    def _measure(self, state: _PtsState, request: RequestFileMeasurement) -> PaAttribute:
        if request.delimiter != SLASH:
            return pts_error(PtsErrorCode.INVALID_DELIMITER)
        paths = self._paths(request.path, request.directory)
        if not isinstance(paths, list):
            return paths
        algorithm = state.algorithm.name if state.algorithm else "sha256"
        entries = []
        for path in paths:
            if not os.path.isfile(path):
                continue
            digest = hashlib.new(algorithm)
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 16), b""):
                        digest.update(chunk)
            except OSError:
                continue
            entries.append(FileMeasurementEntry(digest.digest(), path))
        return FileMeasurement(request.request_id, hashlib.new(algorithm).digest_size, tuple(entries))

    def _metadata(self, request: RequestFileMetadata) -> PaAttribute:
        if request.delimiter != SLASH:
            return pts_error(PtsErrorCode.INVALID_DELIMITER)
        paths = self._paths(request.path, request.directory)
        if not isinstance(paths, list):
            return paths
        entries = []
        for path in paths:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            entries.append(UnixFileMetadataEntry(
                path, _FILE_TYPES.get(stat.S_IFMT(st.st_mode), PtsFileType.OTHER), st.st_size,
                int(st.st_ctime), int(st.st_mtime), int(st.st_atime), st.st_uid, st.st_gid))
        return UnixFileMetadata(tuple(entries))


_FILE_TYPES = {stat.S_IFIFO: PtsFileType.FIFO, stat.S_IFCHR: PtsFileType.CHARACTER_SPECIAL,
               stat.S_IFDIR: PtsFileType.DIRECTORY, stat.S_IFBLK: PtsFileType.BLOCK_SPECIAL,
               stat.S_IFREG: PtsFileType.REGULAR, stat.S_IFLNK: PtsFileType.SYMBOLIC_LINK,
               stat.S_IFSOCK: PtsFileType.SOCKET}
