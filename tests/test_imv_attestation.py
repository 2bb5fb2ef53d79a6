"""The attestation IMV against a real policy store, driven through the real TNCS
core by nac's TNC client running its attestation collector on a software TPM
(tests/attested_host.py): a trusted AIK with known files, an AIK nobody
enrolled (denied, registered, trusted on first use), unknown and changed
files, a measurement list edited after the fact, a replayed quote, a quote
that leaves out a PCR of the evidence, a collector without TPM, a silent
collector; each with the verdict, reason, remediation and the recorded
attestation."""

from __future__ import annotations

import hashlib

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imvs.attestation import AttestationImv
from nac.client.collectors.attestation import AttestationImc
from nac.client.tpm import Tpm2Tools, TpmError
from nac.db import attestation as attest_db
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IImv, ITpm
from nac.pa.tcg_pts import (
    PTS_SUBTYPE,
    DhNonceFinish,
    GenerateAttestationEvidence,
    RequestPtsProtocolCapabilities,
    SimpleEvidenceFinal,
)
from nac.pa import PaTncErrorCode, PaVendor, UnknownAttribute
from nac.pa.ietf import PaTncErrorAttribute
from nac.tnccs.imv_manager import load_imv
from tests.attested_host import AttestedHost
from tests.posture import ImvHarness, PolicyStoreMixin
from tests.test_db import SqliteBackend
from tests.test_imv_os import remediation_items

PRODUCT = "Debian 12 x86_64"


class AttestationTestsMixin(PolicyStoreMixin, ImvHarness):
    def enroll(self, host: AttestedHost, *, trusted: bool = True, product: str = PRODUCT, files=None):
        self.db.run(attest_db.register_aik, host.aik_der, device="host-1", product=product, trusted=trusted)
        self.db.run(attest_db.import_file_hashes, product, host.references(files))

    @defer.inlineCallbacks
    def attest(self, host: AttestedHost, imc=None, **options):
        result = yield self.assess([imc or host.imc()], [AttestationImv(options)])
        return result, result.verdict("attestation")

    def attestations(self):
        return self.db.run(attest_db.list_attestations)

    # -- allowed ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_trusted_aik_and_known_files_are_allowed(self):
        host = AttestedHost(self)
        self.enroll(host)
        result, verdict = yield self.attest(host)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(result.outcome.recommendation_label, "Access Allowed")
        # two round trips of PTS, as the module says, then the result
        self.assertEqual(len(result.sent(PTS_SUBTYPE, RequestPtsProtocolCapabilities)), 1)
        self.assertEqual(len(result.sent(PTS_SUBTYPE, DhNonceFinish)), 1)
        self.assertEqual(len(result.sent(PTS_SUBTYPE, GenerateAttestationEvidence)), 1)
        [record] = self.attestations()
        self.assertEqual((record.evaluation, record.device), (E.COMPLIANT, "host-1"))
        self.assertEqual(record.details["quote"], "ok")
        self.assertEqual(record.details["quoted_pcrs"], [0, 1, 2, 3, 4, 5, 6, 7, 10])
        self.assertEqual(record.details["boot_aggregate"], "ok")
        self.assertEqual(record.details["files"]["ok"], 4)
        self.assertEqual((record.details["bios_events"], record.details["ima_entries"]), (14, 5))
        [aik] = self.db.run(attest_db.list_aiks)
        self.assertIsNotNone(aik.last_seen)

    @defer.inlineCallbacks
    def test_ecc_aik_and_sha256_bank(self):
        host = AttestedHost(self, aik="ecc")
        self.enroll(host)
        _, verdict = yield self.attest(host, hash_algorithms=["sha256"], dh_groups=["ecp256"])
        self.assertEqual(verdict.evaluation, E.COMPLIANT)
        # the boot aggregate is SHA-384, of another bank than the evidence's: not verifiable, not failing
        self.assertEqual(self.attestations()[0].details["boot_aggregate"], "unverifiable")

    # -- the AIK ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_unknown_aik_is_denied_and_not_registered(self):
        host = AttestedHost(self)
        self.db.run(attest_db.import_file_hashes, None, host.references())
        result, verdict = yield self.attest(host)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertIn("attestation identity key of the TPM is not trusted", verdict.reason)
        self.assertEqual(self.db.run(attest_db.list_aiks), [])
        self.assertFalse(self.attestations()[0].details["trusted"])

    @defer.inlineCallbacks
    def test_untrusted_registered_aik_is_denied(self):
        host = AttestedHost(self)
        self.enroll(host, trusted=False)
        _, verdict = yield self.attest(host)
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertIn("not trusted", verdict.reason)

    @defer.inlineCallbacks
    def test_first_use_register_records_it_untrusted(self):
        host = AttestedHost(self)
        _, verdict = yield self.attest(host, aik_first_use="register")
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        [aik] = self.db.run(attest_db.list_aiks)
        self.assertEqual((aik.keyid, aik.trusted), (attest_db.aik_keyid(host.aik_der), False))
        # the operator trusts it: the next attestation passes
        self.db.run(attest_db.set_aik_trusted, aik.keyid, True)
        self.db.run(attest_db.import_file_hashes, None, host.references())
        _, verdict = yield self.attest(host, aik_first_use="register")
        self.assertEqual(verdict.recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_trust_on_first_use(self):
        host = AttestedHost(self)
        self.db.run(attest_db.import_file_hashes, None, host.references())
        _, verdict = yield self.attest(host, aik_first_use="trust")
        self.assertEqual(verdict.recommendation, A.ALLOW)
        self.assertTrue(self.db.run(attest_db.list_aiks)[0].trusted)

    # -- files --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_unknown_file_gets_the_configured_recommendation_with_the_file_listed(self):
        host = AttestedHost(self)
        self.enroll(host)
        host.run_file("/usr/local/bin/tool", b"something new")
        result, verdict = yield self.attest(host)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.ISOLATE, E.NONCOMPLIANT_MINOR))
        self.assertIn("without reference values", verdict.reason)
        items = remediation_items(result.outcome.remediation[0].text)
        self.assertEqual(items, {"Unknown Files": ["/usr/local/bin/tool"]})
        _, verdict = yield self.attest(host, unknown_file="major")
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        _, verdict = yield self.attest(host, unknown_file="ignore")
        self.assertEqual(verdict.recommendation, A.ALLOW)

    @defer.inlineCallbacks
    def test_changed_file_is_denied_with_the_file_listed(self):
        host = AttestedHost(self)
        self.enroll(host, files={**host.files, "/usr/bin/ls": b"the real ls"})
        result, verdict = yield self.attest(host)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertIn("differ from their reference values", verdict.reason)
        self.assertEqual(remediation_items(result.outcome.remediation[0].text), {"Modified Files": ["/usr/bin/ls"]})
        self.assertEqual(self.attestations()[0].details["differing"], ["/usr/bin/ls"])

    @defer.inlineCallbacks
    def test_reference_digests_of_another_product_do_not_count(self):
        host = AttestedHost(self)
        self.db.run(attest_db.register_aik, host.aik_der, product=PRODUCT, trusted=True)
        self.db.run(attest_db.import_file_hashes, "Other OS 1", host.references())
        _, verdict = yield self.attest(host)
        self.assertEqual(verdict.recommendation, A.ISOLATE)  # every file unknown

    # -- the quote ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_edited_log_does_not_match_the_quote(self):
        host = AttestedHost(self)
        self.enroll(host, files={**host.files, "/usr/bin/ls": b"evil ls"})
        # the reference says "evil ls" and so does the edited list, but the TPM measured the real one
        host.edit_ima_log("/usr/bin/ls", b"evil ls")
        _, verdict = yield self.attest(host)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertIn("does not match the TPM quote", verdict.reason)
        self.assertIn("does not match the quoted PCRs", self.attestations()[0].details["quote"])

    @defer.inlineCallbacks
    def test_unlogged_extend_does_not_match_the_quote(self):
        host = AttestedHost(self)
        self.enroll(host)
        host.extend(10, {"sha384": hashlib.sha384(b"hidden").digest()})
        _, verdict = yield self.attest(host)
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertIn("does not match the TPM quote", verdict.reason)

    @defer.inlineCallbacks
    def test_replayed_quote_of_an_earlier_attestation_is_refused(self):
        host = AttestedHost(self)
        self.enroll(host)
        recorder = ReplayingImc(host)
        _, first = yield self.attest(host, imc=recorder)
        self.assertEqual(first.recommendation, A.ALLOW)
        recorder.replay = True
        _, second = yield self.attest(host, imc=recorder)
        self.assertEqual((second.recommendation, second.evaluation), (A.NO_ACCESS, E.NONCOMPLIANT_MAJOR))
        self.assertIn("Invalid TPM quote", second.reason)
        self.assertIn("does not verify", self.attestations()[0].details["quote"])

    @defer.inlineCallbacks
    def test_quote_leaving_out_a_pcr_of_the_evidence_is_refused(self):
        host = AttestedHost(self)
        self.enroll(host)
        _, verdict = yield self.attest(host, imc=NarrowQuoteImc(host))
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertIn("does not cover the PCRs of the evidence (PCR10)", self.attestations()[0].details["quote"])

    @defer.inlineCallbacks
    def test_a_quote_must_cover_the_pcrs_the_policy_requires(self):
        host = AttestedHost(self)
        self.enroll(host)
        # the collector quotes the PCRs of its evidence: 10 among them, 16 not
        _, verdict = yield self.attest(host, pcrs=(10,))
        self.assertEqual(verdict.recommendation, A.ALLOW)
        _, verdict = yield self.attest(host, pcrs=(10, 16, 17))
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertIn("Invalid TPM quote", verdict.reason)
        self.assertEqual(self.attestations()[0].details["quote"],
                         "the quote does not cover the PCRs the policy requires (PCR16, PCR17)")

    def test_the_pcrs_option(self):
        from imvs.attestation import _pcr_list

        self.assertEqual(_pcr_list("10, 0-3,2"), (0, 1, 2, 3, 10))
        self.assertEqual(_pcr_list(""), ())
        self.assertEqual(AttestationImv().required_pcrs, frozenset())
        for bad in ("24", "7-3", "x", "1-", "-1"):
            with self.assertRaises(ValueError, msg=bad):
                _pcr_list(bad)

    # -- no attestation -----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_collector_without_tpm_gets_no_result_which_denies(self):
        host = AttestedHost(self)
        self.enroll(host)
        imc = AttestationImc(tpm=Tpm2Tools("swtpm:host=127.0.0.1,port=1"), bios_log=host.bios_log,
                             ima_log=host.ima_log)
        result, verdict = yield self.attest(host, imc=imc)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.ERROR))
        self.assertIn("could not be completed", verdict.reason)
        self.assertLessEqual(result.rounds, 4)

    @defer.inlineCallbacks
    def test_malformed_quote_attribute_gets_a_pa_tnc_error_and_no_access(self):
        host = AttestedHost(self)
        self.enroll(host)
        imc = MalformedFinalImc(host)
        result, verdict = yield self.attest(host, imc=imc)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.ERROR))
        # the server answered the message with a PA-TNC Invalid Parameter error
        errors = [a for _, a in result.attributes(PTS_SUBTYPE) if isinstance(a, PaTncErrorAttribute)]
        self.assertEqual([e.error_code for e in errors], [PaTncErrorCode.INVALID_PARAMETER])

    @defer.inlineCallbacks
    def test_more_evidence_than_allowed_is_refused(self):
        host = AttestedHost(self)
        self.enroll(host)
        _, verdict = yield self.attest(host, max_evidence=10)
        self.assertEqual((verdict.recommendation, verdict.evaluation), (A.NO_ACCESS, E.ERROR))
        self.assertIn("more than 10 component evidence", self.attestations()[0].summary)

    @defer.inlineCallbacks
    def test_no_collector_ends_in_a_bounded_number_of_rounds(self):
        result = yield self.assess([], [AttestationImv()])
        verdict = result.verdict("attestation")
        self.assertEqual(verdict.recommendation, A.NO_ACCESS)
        self.assertLessEqual(result.rounds, 3)

    def test_interfaces(self):
        verifyObject(IImv, AttestationImv())
        verifyObject(ITpm, Tpm2Tools())
        imv = load_imv("imvs.attestation:AttestationImv", lambda name, declared: {})
        self.assertEqual(imv.name, "attestation")


class ReplayingImc(AttestationImc):
    """A collector that keeps its first quote and sends it again later (a replay attacker)."""

    def __init__(self, host: AttestedHost):
        super().__init__(tpm=Tpm2Tools(host.tpm.tcti), bios_log=host.bios_log, ima_log=host.ima_log)
        self.replay = False
        self.kept: SimpleEvidenceFinal | None = None

    def _evidence(self, state):
        evidence = super()._evidence(state)
        if self.replay:
            return [self.kept if isinstance(a, SimpleEvidenceFinal) else a for a in evidence]
        self.kept = next(a for a in evidence if isinstance(a, SimpleEvidenceFinal))
        return evidence


class MalformedFinalImc(AttestationImc):
    """A collector whose Simple Evidence Final is cut short (its PCR digest length overruns it)."""

    def __init__(self, host: AttestedHost):
        super().__init__(tpm=Tpm2Tools(host.tpm.tcti), bios_log=host.bios_log, ima_log=host.ima_log)

    def _evidence(self, state):
        evidence = super()._evidence(state)
        return [UnknownAttribute(PaVendor.TCG, 0x00400000, bytes.fromhex("10 00 4000 00000100 aa"))
                if isinstance(a, SimpleEvidenceFinal) else a for a in evidence]


class NarrowQuoteTpm:
    """A TPM whose quotes leave PCR 10 out, whatever is asked."""

    def __init__(self, tpm):
        self._tpm = tpm

    def __getattr__(self, name):
        return getattr(self._tpm, name)

    def quote(self, bank, pcrs, nonce):
        return self._tpm.quote(bank, [p for p in pcrs if p != 10], nonce)


class NarrowQuoteImc(AttestationImc):
    def __init__(self, host: AttestedHost):
        super().__init__(tpm=NarrowQuoteTpm(Tpm2Tools(host.tpm.tcti)), bios_log=host.bios_log, ima_log=host.ima_log)


class SqliteAttestationTests(AttestationTestsMixin, SqliteBackend, unittest.TestCase):
    pass


class TpmErrorTests(unittest.TestCase):
    def test_unreachable_tpm_is_a_tpm_error(self):
        self.assertRaises(TpmError, Tpm2Tools("swtpm:host=127.0.0.1,port=1").version_info)


class AikCertificateTests(unittest.TestCase):
    """AIK certificates issued by a CA of aik_ca_dir are trusted without enrollment."""

    def setUp(self):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        from tests.posture import tmpdir

        def name(text):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

        self.ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        ca = (x509.CertificateBuilder().subject_name(name("Privacy CA")).issuer_name(name("Privacy CA"))
              .public_key(self.ca_key.public_key()).serial_number(1).not_valid_before(now - day)
              .not_valid_after(now + day).add_extension(x509.BasicConstraints(True, None), critical=True)
              .sign(self.ca_key, hashes.SHA256()))
        self.directory = tmpdir(self)
        (self.directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (self.directory / "notes.txt").write_text("not a certificate")
        aik = ec.generate_private_key(ec.SECP256R1()).public_key()

        def certificate(issuer_key, start, end):
            return (x509.CertificateBuilder().subject_name(name("aik")).issuer_name(name("Privacy CA"))
                    .public_key(aik).serial_number(2).not_valid_before(start).not_valid_after(end)
                    .sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))

        self.good = certificate(self.ca_key, now - day, now + day)
        self.expired = certificate(self.ca_key, now - 3 * day, now - 2 * day)
        self.forged = certificate(other_key, now - day, now + day)

    def aik(self, certificate: bytes):
        from nac.pa.tcg_pts import AttestationIdentityKey

        imv = AttestationImv({"aik_ca_dir": str(self.directory)})
        found, problem = imv._aik(AttestationIdentityKey(certificate, naked=False))
        self.assertIsNone(problem)
        return found

    def test_issued_by_the_ca_and_valid(self):
        self.assertTrue(self.aik(self.good).certified)

    def test_expired_or_issued_by_another_key(self):
        self.assertFalse(self.aik(self.expired).certified)
        self.assertFalse(self.aik(self.forged).certified)

    def test_without_a_ca_directory_nothing_is_certified(self):
        from nac.pa.tcg_pts import AttestationIdentityKey

        found, _ = AttestationImv()._aik(AttestationIdentityKey(self.good, naked=False))
        self.assertFalse(found.certified)
        self.assertEqual(AttestationImv()._aik(AttestationIdentityKey(b"junk", naked=False))[0], None)
