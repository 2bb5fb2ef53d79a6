"""Judging evidence (nac.pts.evidence) and the verifier's exchange
(nac.pts.exchange) without a TPM: the six captured strongSwan attestation
sessions get strongSwan's verdicts (the recorded server-side nonce stands in
for nac's, which a replayed session cannot match), with reference digests
read from the known-good IMA list; IMA entries rebuilt per template; the
exchange's order and its refusals."""

from __future__ import annotations

import hashlib

from twisted.trial import unittest

from nac.pa import PaVendor
from nac.pa.tcg_pts import (
    ComponentName,
    ComponentValidation,
    DhNonceParametersResponse,
    FileMeasurement,
    FileMeasurementEntry,
    GenerateAttestationEvidence,
    PcrTransform,
    PtsDhGroup,
    PtsHashAlgorithm,
    PtsMeasurementAlgorithmSelection,
    RequestFileMeasurement,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
    TcgComponent,
    bad_nonce_length_error,
)
from nac.pts.evidence import (
    BIOS_COMPONENT,
    IMA_COMPONENT,
    ComponentKind,
    FileStatus,
    check_evidence,
    check_file_measurements,
    component_kind,
    ima_file,
)
from nac.pts.exchange import Phase, PtsVerifier, VerifierPolicy
from nac.pts.hashes import SHA1, SHA256, SHA384
from nac.pts.ima import parse_ima_log, template_data
from nac.pts.nonce import NonceResponder
from nac.pts.tpm2 import load_public_key
from tests.test_pa_tcg_pts import logged_bytes, pts_attributes
from tests.vectors import log_text, vector_path

TIME = "2026-12-07T12:04:47Z"


def known_good() -> dict:
    """References: the file digests of the known-good IMA list of the captures."""
    found: dict = {}
    for entry in parse_ima_log(vector_path("strongswan-attestation/event-logs/ima-good.bin").read_bytes()):
        found.setdefault(entry.filename, {}).setdefault(entry.digest_algorithm, set()).add(entry.file_digest)
    return found


class CapturedVerdictTests(unittest.TestCase):
    """What strongSwan's IMV decided (README of the captures), reached by nac's judgement."""

    EXPECTED = {
        "tpm2-bios-first-aik-untrusted-allowed": (None, []),
        "tpm2-bios-allowed": (None, []),
        "tpm2-bios-tampered-log-quarantined": ("mismatch", []),
        "tpm2-bios-pcr-mismatch-quarantined": ("mismatch", []),
        "tpm2-bios-ima-allowed": (None, []),
        "tpm2-bios-ima-file-differs-quarantined": (None, ["/usr/bin/ls"]),
    }

    def test_every_session(self):
        aik = load_public_key(vector_path("strongswan-attestation/aik-pub.pem").read_bytes())
        references = known_good()
        for session, (quote, differing) in self.EXPECTED.items():
            c2s = pts_attributes(session, "c2s")
            secret = logged_bytes(log_text(f"strongswan-attestation/{session}.client.log"),
                                  "secret assessment value")
            evidence = [a for a in c2s if isinstance(a, SimpleComponentEvidence)]
            [final] = [a for a in c2s if isinstance(a, SimpleEvidenceFinal)]
            report = check_evidence(evidence, final, aik=aik, secret=secret, measurement_hash=SHA384,
                                    startup_locality=3, references=references)
            self.assertEqual(report.evidence_mismatch, quote == "mismatch", session)
            self.assertEqual(report.quote_ok, quote is None, (session, report.quote_error))
            self.assertEqual(report.names(FileStatus.DIFFERS), differing, session)
            self.assertEqual(report.bios_events, 17)
            if "ima" in session:
                self.assertEqual((report.ima_entries, report.boot_aggregate), (5, "ok"))
                self.assertEqual(report.counts()["ok"], 4 - len(differing))
            # the nonce of another session is another secret: the quote fails
            stale = check_evidence(evidence, final, aik=aik, secret=bytes(48), measurement_hash=SHA384,
                                   startup_locality=3, references=references)
            self.assertFalse(stale.quote_ok)
            self.assertFalse(stale.evidence_mismatch)

    def test_wrong_startup_locality_or_bank_fails(self):
        aik = load_public_key(vector_path("strongswan-attestation/aik-pub.pem").read_bytes())
        session = "tpm2-bios-allowed"
        c2s = pts_attributes(session, "c2s")
        secret = logged_bytes(log_text(f"strongswan-attestation/{session}.client.log"), "secret assessment value")
        evidence = [a for a in c2s if isinstance(a, SimpleComponentEvidence)]
        [final] = [a for a in c2s if isinstance(a, SimpleEvidenceFinal)]
        report = check_evidence(evidence, final, aik=aik, secret=secret, measurement_hash=SHA384, startup_locality=0)
        self.assertTrue(report.evidence_mismatch)  # PCR0 starts at 00…03 on this TPM
        report = check_evidence(evidence, final, aik=aik, secret=secret, measurement_hash=SHA256, startup_locality=3)
        self.assertFalse(report.quote_ok)
        self.assertIn("negotiated hash algorithm", report.quote_error)
        self.assertIn("no quote", check_evidence(evidence, None, aik=aik, secret=secret, measurement_hash=SHA384)
                      .quote_error)


def ima_evidence(name: str, digest: bytes, *, algorithm="sha256", bank=SHA256, template="ima-ng",
                 uri: str | None = None) -> SimpleComponentEvidence:
    measurement = bank.hash(template_data(template, algorithm, digest, name))
    return SimpleComponentEvidence(IMA_COMPONENT, 10, measurement, bank.pts, PcrTransform.MATCH, TIME,
                                   validation=ComponentValidation.PASSED,
                                   policy_uri=f"{algorithm}:{name}" if uri is None else uri)


class FileCheckTests(unittest.TestCase):
    def test_file_statuses(self):
        a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
        legacy = hashlib.sha1(b"legacy").digest()
        evidence = [
            ima_evidence("/ok", a), ima_evidence("/differs", b), ima_evidence("/unknown", a),
            ima_evidence("/legacy", legacy, algorithm="sha1", template="ima"),
            SimpleComponentEvidence(IMA_COMPONENT, 10, b"\xff" * 32, PtsHashAlgorithm.SHA256, PcrTransform.MATCH,
                                    TIME, validation=ComponentValidation.PASSED, policy_uri="sha256:/violated"),
            ima_evidence("/no-uri", a, uri=""), ima_evidence("/md5", a, uri="md5:/md5"),
        ]
        references = {"/ok": {"sha256": {a}}, "/differs": {"sha256": {a}}, "/legacy": {"sha1": {legacy}},
                      "/violated": {"sha256": {a}}}
        report = check_evidence(evidence, None, aik=None, secret=None, measurement_hash=SHA256,
                                references=references)
        self.assertEqual(report.files, {
            "/ok": FileStatus.OK, "/differs": FileStatus.DIFFERS, "/unknown": FileStatus.UNKNOWN,
            "/legacy": FileStatus.OK, "/violated": FileStatus.VIOLATION, "(IMA entry of PCR 10)": FileStatus.INVALID,
            "md5:/md5": FileStatus.INVALID})
        self.assertEqual(report.ima_entries, 7)

    def test_the_worst_status_of_a_name_seen_twice_counts(self):
        a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
        report = check_evidence([ima_evidence("/x", a), ima_evidence("/x", b), ima_evidence("/x", a)], None,
                                aik=None, secret=None, measurement_hash=SHA256, references={"/x": {"sha256": {a}}})
        self.assertEqual(report.files, {"/x": FileStatus.DIFFERS})

    def test_file_measurements(self):
        a = hashlib.sha256(b"a").digest()
        report = check_evidence([], None, aik=None, secret=None, measurement_hash=SHA256)
        check_file_measurements(report, [FileMeasurement(1, 32, (FileMeasurementEntry(a, "/etc/a"),
                                                                 FileMeasurementEntry(bytes(32), "/etc/b"),
                                                                 FileMeasurementEntry(a, "/etc/c"))),
                                         FileMeasurement(2, 3, (FileMeasurementEntry(b"abc", "/etc/d"),))],
                                {"/etc/a": {"sha256": {a}}, "/etc/b": {"sha256": {a}}})
        self.assertEqual(report.files, {"/etc/a": FileStatus.OK, "/etc/b": FileStatus.DIFFERS,
                                        "/etc/c": FileStatus.UNKNOWN, "/etc/d": FileStatus.INVALID})

    def test_component_kinds(self):
        self.assertEqual(component_kind(BIOS_COMPONENT), ComponentKind.BIOS)
        self.assertEqual(component_kind(IMA_COMPONENT), ComponentKind.IMA)
        self.assertEqual(component_kind(ComponentName(PaVendor.TCG, TcgComponent.BIOS, 0x01)), ComponentKind.BIOS)
        self.assertEqual(component_kind(ComponentName(PaVendor.ITA_HSR, 3, 0x24)), ComponentKind.OTHER)
        self.assertEqual(component_kind(ComponentName(PaVendor.ITA_HSR, 3, 0x21, family=1)), ComponentKind.OTHER)
        self.assertEqual(ima_file(ima_evidence("/a:b", bytes(32))), ("sha256", "/a:b"))


class ExchangeTests(unittest.TestCase):
    def collector_answers(self, verifier: PtsVerifier, responder: NonceResponder, request) -> None:
        response = responder.respond(request, PtsHashAlgorithm.SHA256)
        for attribute in (PtsMeasurementAlgorithmSelection(PtsHashAlgorithm.SHA256), response):
            self.assertEqual(verifier.receive(attribute), [])

    def test_two_round_trips(self):
        verifier = PtsVerifier(VerifierPolicy(files=("/etc/passwd",)))
        first = verifier.start()
        self.assertEqual(verifier.next_request(), [])  # nothing answered yet: wait
        responder = NonceResponder()
        self.collector_answers(verifier, responder, first[2])
        second = verifier.next_request()
        self.assertEqual(verifier.phase, Phase.ATTESTING)
        self.assertIsInstance(second[-2], GenerateAttestationEvidence)
        self.assertEqual(second[-1], RequestFileMeasurement(1, "/etc/passwd"))
        self.assertEqual(responder.finish(second[0]), verifier.secret)
        # the quote alone is not enough while a file measurement is outstanding
        verifier.receive(SimpleEvidenceFinal())
        self.assertEqual((verifier.next_request(), verifier.phase), ([], Phase.ATTESTING))
        verifier.receive(FileMeasurement(1, 32, ()))
        verifier.next_request()
        self.assertEqual(verifier.phase, Phase.COLLECTED)

    def test_refusals(self):
        # a PTS error from the collector ends it
        verifier = PtsVerifier()
        verifier.start()
        verifier.receive(bad_nonce_length_error(17, 255))
        self.assertEqual(verifier.phase, Phase.FAILED)
        self.assertIn("BAD_NONCE_LENGTH", verifier.failure)
        # evidence before the nonce is agreed, an unasked file measurement, a hash not offered
        for attribute in (SimpleEvidenceFinal(), FileMeasurement(9, 32, ()),
                          PtsMeasurementAlgorithmSelection(PtsHashAlgorithm.SHA1)):
            verifier = PtsVerifier()
            verifier.start()
            verifier.receive(attribute)
            self.assertEqual(verifier.phase, Phase.FAILED, attribute)
        # a second response, a group not offered (answered with the PTS error)
        verifier = PtsVerifier(VerifierPolicy(groups=PtsDhGroup.ECP_384))
        request = verifier.start()[2]
        response = NonceResponder().respond(request, PtsHashAlgorithm.SHA256)
        verifier.receive(PtsMeasurementAlgorithmSelection(PtsHashAlgorithm.SHA256))
        verifier.receive(DhNonceParametersResponse(PtsDhGroup.ECP_256, response.algorithms, response.nonce,
                                                   response.public_value))
        [error] = verifier.next_request()
        self.assertEqual((verifier.phase, error.error_vendor), (Phase.FAILED, 0x005597))

    def test_sha1_only_collectors_are_not_asked_by_default(self):
        self.assertEqual(PtsVerifier().start()[1].algorithms, PtsHashAlgorithm.SHA384 | PtsHashAlgorithm.SHA256)
        self.assertEqual(SHA1.pts, PtsHashAlgorithm.SHA1)
