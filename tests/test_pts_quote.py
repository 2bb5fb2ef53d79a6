"""TPM 2.0 quotes (nac.pts.tpm2, nac.pts.quote): the quotes strongSwan's IMC
made with a software TPM in the captured sessions, and quotes of a software
TPM this test starts (swtpm, driven with tpm2-tools), with RSA and ECC AIKs.

Expected values come from outside nac: the TPMS_ATTEST is laid out here
from the specification and its signature checked with the ``openssl``
command; PCR values are those the TPM reports (``tpm2_pcrread``) or hashes
computed here with hashlib.  Each protection (signature, nonce, PCR digest)
has a case that only it refuses.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from twisted.trial import unittest

from nac.pa.tcg_pts import PtsHashAlgorithm, QuoteMode, SimpleComponentEvidence, SimpleEvidenceFinal
from nac.pts.hashes import SHA1, SHA256, SHA384
from nac.pts.pcr import PcrBank
from nac.pts.quote import EvidenceMismatch, verify_pts_quote, verify_quote
from nac.pts.tpm2 import Attest, PcrSelection, QuoteError, Signature, TpmFormatError, load_public_key
from tests.swtpm import started_tpm
from tests.test_pa_tcg_pts import logged_bytes, pts_attributes
from tests.vectors import log_text, vector_path

H = bytes.fromhex
AIK_PEM = "strongswan-attestation/aik-pub.pem"


def captured(session: str):
    """(Simple Evidence Final, SHA-384 bank replayed from the evidence, secret) of a session."""
    c2s = pts_attributes(session, "c2s")
    bank = PcrBank(SHA384, 3)  # the TPM was started from locality 3 (TPM Version Information says so)
    for evidence in c2s:
        if isinstance(evidence, SimpleComponentEvidence):
            bank.extend(evidence.pcr, evidence.measurement)
    final = next(a for a in c2s if isinstance(a, SimpleEvidenceFinal))
    secret = logged_bytes(log_text(f"strongswan-attestation/{session}.client.log"), "secret assessment value")
    return final, bank, secret


def hand_built_attest(final: SimpleEvidenceFinal, nonce: bytes, pcr_digest: bytes) -> bytes:
    """TPMS_ATTEST from the specification: magic, TPM_ST_ATTEST_QUOTE, TPM2B qualifiedSigner,
    TPM2B extraData, clockInfo, firmwareVersion, TPML_PCR_SELECTION, TPM2B pcrDigest."""
    return (H("ff544347 8018") + struct.pack(">H", len(final.qualified_signer)) + final.qualified_signer
            + struct.pack(">H", len(nonce)) + nonce + final.clock_info + final.firmware_version
            + final.pcr_selection + struct.pack(">H", len(pcr_digest)) + pcr_digest)


def openssl_verifies(key_pem: bytes, message: bytes, signature: bytes, digest: str = "sha256") -> bool:
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("the openssl command is not installed")
    with tempfile.TemporaryDirectory(prefix="nac-quote-") as directory:
        d = Path(directory)
        (d / "key.pem").write_bytes(key_pem)
        (d / "msg").write_bytes(message)
        (d / "sig").write_bytes(signature)
        done = subprocess.run(["openssl", "dgst", f"-{digest}", "-verify", str(d / "key.pem"), "-signature",
                               str(d / "sig"), str(d / "msg")], capture_output=True)
        return done.returncode == 0


class CapturedQuoteTests(unittest.TestCase):
    def setUp(self):
        self.pem = vector_path(AIK_PEM).read_bytes()
        self.aik = load_public_key(self.pem)

    def test_allowed_sessions_verify(self):
        for session, pcrs in (("tpm2-bios-allowed", tuple(range(8))),
                              ("tpm2-bios-ima-allowed", (*range(8), 10)),
                              ("tpm2-bios-ima-file-differs-quarantined", (*range(8), 10))):
            final, bank, secret = captured(session)
            selection = verify_pts_quote(final, self.aik, secret, {SHA384.tpm_alg: bank})
            self.assertEqual(selection.banks, ((SHA384.tpm_alg, pcrs),), session)

    def test_the_signed_structure_is_the_specifications(self):
        # SHA-256 over the SHA-384 PCR values, concatenated in PCR order (the README's finding)
        final, bank, secret = captured("tpm2-bios-ima-allowed")
        digest = hashlib.sha256(b"".join(bank.value(p) for p in (*range(8), 10))).digest()
        self.assertEqual(digest, final.pcr_composite)
        message = hand_built_attest(final, secret, digest)
        self.assertTrue(openssl_verifies(self.pem, message, final.quote_signature))
        attest = Attest.from_bytes(message)
        self.assertEqual(attest.to_bytes(), message)
        self.assertEqual(attest.pcr_select.to_bytes(), final.pcr_selection)
        # verify_quote on the whole structure, as a TPM returns it
        verify_quote(self.aik, message, final.quote_signature, SHA256, nonce=secret, banks={SHA384.tpm_alg: bank})

    def test_edited_log_and_unlogged_extend_are_evidence_mismatches(self):
        # the signature is good (the quote is genuine and fresh), the evidence is not what was quoted
        for session in ("tpm2-bios-tampered-log-quarantined", "tpm2-bios-pcr-mismatch-quarantined"):
            final, bank, secret = captured(session)
            error = self.assertRaises(EvidenceMismatch, verify_pts_quote, final, self.aik, secret,
                                      {SHA384.tpm_alg: bank})
            self.assertIn("does not match the quoted PCRs", str(error))

    def test_another_nonce_fails_the_signature(self):
        # the quote of one session replayed into another: its secret is another
        final, bank, _ = captured("tpm2-bios-allowed")
        _, _, other_secret = captured("tpm2-bios-first-aik-untrusted-allowed")
        self.assertNotEqual(other_secret, captured("tpm2-bios-allowed")[2])
        error = self.assertRaises(QuoteError, verify_pts_quote, final, self.aik, other_secret, {SHA384.tpm_alg: bank})
        self.assertNotIsInstance(error, EvidenceMismatch)
        self.assertFalse(openssl_verifies(self.pem, hand_built_attest(final, other_secret, final.pcr_composite),
                                          final.quote_signature))

    def test_another_key_or_a_changed_signature_fails(self):
        from cryptography.hazmat.primitives.asymmetric import rsa

        final, bank, secret = captured("tpm2-bios-allowed")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        self.assertRaises(QuoteError, verify_pts_quote, final, other, secret, {SHA384.tpm_alg: bank})
        flipped = bytearray(final.quote_signature)
        flipped[100] ^= 1
        changed = SimpleEvidenceFinal(final.quote_mode, final.composite_algorithm, final.pcr_composite,
                                      final.qualified_signer, final.clock_info, final.firmware_version,
                                      final.pcr_selection, bytes(flipped))
        self.assertRaises(QuoteError, verify_pts_quote, changed, self.aik, secret, {SHA384.tpm_alg: bank})

    def test_a_quote_claiming_the_replayed_digest_is_still_bound_by_its_signature(self):
        # an endpoint that edits its log and sends the digest of the edited PCRs: the signature
        # (made over the TPM's digest) no longer verifies
        final, bank, secret = captured("tpm2-bios-tampered-log-quarantined")
        digest = hashlib.sha256(b"".join(bank.value(p) for p in range(8))).digest()
        forged = SimpleEvidenceFinal(final.quote_mode, final.composite_algorithm, digest, final.qualified_signer,
                                     final.clock_info, final.firmware_version, final.pcr_selection,
                                     final.quote_signature)
        error = self.assertRaises(QuoteError, verify_pts_quote, forged, self.aik, secret, {SHA384.tpm_alg: bank})
        self.assertNotIsInstance(error, EvidenceMismatch)

    def test_malformed_quotes(self):
        final, bank, secret = captured("tpm2-bios-allowed")
        banks = {SHA384.tpm_alg: bank}

        def variant(**changes):
            fields = dict(quote_mode=final.quote_mode, composite_algorithm=final.composite_algorithm,
                          pcr_composite=final.pcr_composite, qualified_signer=final.qualified_signer,
                          clock_info=final.clock_info, firmware_version=final.firmware_version,
                          pcr_selection=final.pcr_selection, quote_signature=final.quote_signature)
            fields.update(changes)
            return SimpleEvidenceFinal(**fields)

        for changed in (variant(quote_mode=QuoteMode.QUOTE_INFO2), variant(composite_algorithm=PtsHashAlgorithm(0)),
                        variant(clock_info=final.clock_info[:16]), variant(pcr_selection=final.pcr_selection[:5]),
                        variant(pcr_selection=H("00000001 000b 03 ff0000"))):
            self.assertRaises(QuoteError, verify_pts_quote, changed, self.aik, secret, banks)
        # a bank of which there is no evidence
        self.assertRaises(EvidenceMismatch, verify_pts_quote, final, self.aik, secret, {SHA256.tpm_alg: bank})


class StructureTests(unittest.TestCase):
    def test_pcr_selection_bitmaps(self):
        # count 2; SHA-256 (000b) 3 bytes PCR 0, 7, 10; SHA-1 (0004) 3 bytes PCR 23
        data = H("00000002 000b 03 810400 0004 03 000080")
        selection = PcrSelection.from_bytes(data)
        self.assertEqual(selection.banks, ((0x000B, (0, 7, 10)), (0x0004, (23,))))
        self.assertEqual(selection.to_bytes(), data)
        self.assertEqual(PcrSelection.of(0x000B, [10, 0, 7]).to_bytes(), H("00000001 000b 03 810400"))

    def test_refusals_name_the_offset(self):
        self.assertEqual(self.assertRaises(TpmFormatError, PcrSelection.from_bytes, H("00000001 000b 03 81")).offset,
                         7)
        self.assertEqual(self.assertRaises(TpmFormatError, PcrSelection.from_bytes, H("00010000")).offset, 0)
        self.assertEqual(self.assertRaises(TpmFormatError, PcrSelection.from_bytes, H("00000001 000b 09")).offset, 6)
        self.assertEqual(self.assertRaises(TpmFormatError, Attest.from_bytes, H("ff544347 8017")).offset, 6)
        self.assertRaises(TpmFormatError, Attest.from_bytes, H("ff544347 8017 0000 0000") + bytes(25)
                          + H("00000000 0000"))

    def test_only_what_the_tpm_generated_is_a_quote(self):
        # a key that signs anything (not a restricted TPM key) signs a look-alike without
        # TPM_GENERATED_VALUE: the signature is good, the structure is refused
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nonce = b"n" * 32
        for magic in (0, 0xFF544346):
            message = Attest(b"", nonce, bytes(17), bytes(8), PcrSelection.of(0x000B, [0]), bytes(32),
                             magic=magic).to_bytes()
            signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
            error = self.assertRaises(QuoteError, verify_quote, key.public_key(), message, signature, SHA256,
                                      nonce=nonce)
            self.assertIn("not a quote the TPM generated", str(error))

    def test_signature_structures(self):
        # TPMT_SIGNATURE: RSASSA (0014), SHA-256 (000b), TPM2B signature; ECDSA (0018): TPM2B r, TPM2B s
        self.assertEqual(Signature.from_bytes(H("0014 000b 0002 abcd")), Signature(0x14, 0x0B, H("abcd")))
        self.assertEqual(Signature.from_bytes(H("0018 000b 0001 aa 0001 bb")).value, H("aabb"))
        self.assertRaises(TpmFormatError, Signature.from_bytes, H("0001 000b"))
        self.assertRaises(TpmFormatError, Signature.from_bytes, H("0014 000b 0002 ab"))


class SoftwareTpmQuoteTests(unittest.TestCase):
    """Quotes of a real (software) TPM."""

    def setUp(self):
        self.tpm = started_tpm(self)

    def extend_some(self) -> dict[int, bytes]:
        """Extend PCR 0, 4 and 10 of the SHA-256 bank; their values computed here."""
        expected = {0: bytes(32), 4: bytes(32), 10: bytes(32)}
        for pcr, data in ((0, b"crtm"), (4, b"shim"), (4, b"grub"), (10, b"boot_aggregate")):
            digest = hashlib.sha256(data).digest()
            self.tpm.extend(pcr, sha256=digest)
            expected[pcr] = hashlib.sha256(expected[pcr] + digest).digest()
        return expected

    def bank(self, values: dict[int, bytes]) -> dict[int, PcrBank]:
        bank = PcrBank(SHA256)
        bank.values.update(values)
        return {SHA256.tpm_alg: bank}

    def check_key(self, kind: str) -> None:
        pem = self.tpm.create_aik(kind)
        aik = load_public_key(pem)
        expected = self.extend_some()
        self.assertEqual(self.tpm.read_pcrs("sha256", expected), expected)
        nonce = hashlib.sha384(b"this attestation").digest()
        message, raw_signature = self.tpm.quote("sha256", expected, nonce)
        signature = Signature.from_bytes(raw_signature)
        if kind == "rsa":
            self.assertTrue(openssl_verifies(pem, message, signature.value))
        attest = verify_quote(aik, message, signature.value, SHA256, nonce=nonce, banks=self.bank(expected))
        self.assertEqual(attest.extra_data, nonce)
        self.assertEqual(attest.pcr_digest, hashlib.sha256(b"".join(expected[p] for p in sorted(expected))).digest())

        # stale nonce: the quote of another attestation
        error = self.assertRaises(QuoteError, verify_quote, aik, message, signature.value, SHA256,
                                  nonce=hashlib.sha384(b"another").digest())
        self.assertIn("nonce", str(error))
        # PCR values other than the quoted ones
        other = {**expected, 4: hashlib.sha256(b"evil").digest()}
        self.assertRaises(EvidenceMismatch, verify_quote, aik, message, signature.value, SHA256, nonce=nonce,
                          banks=self.bank(other))
        # a byte of the quote changed
        changed = bytearray(message)
        changed[-1] ^= 1
        self.assertRaises(QuoteError, verify_quote, aik, bytes(changed), signature.value, SHA256, nonce=nonce)

        # the same quote the way strongSwan's IMC sends it (Simple Evidence Final) verifies too
        final = SimpleEvidenceFinal(QuoteMode.TPM2, PtsHashAlgorithm.SHA256, attest.pcr_digest,
                                    attest.qualified_signer, attest.clock_info, attest.firmware_version,
                                    attest.pcr_select.to_bytes(), signature.value)
        verify_pts_quote(final, aik, nonce, self.bank(expected))
        self.assertRaises(QuoteError, verify_pts_quote, final, aik, bytes(48), self.bank(expected))

    def test_rsa_aik(self):
        self.check_key("rsa")

    def test_ecc_aik(self):
        self.check_key("ecc")

    def test_sha1_bank_and_a_wrong_hash(self):
        aik = load_public_key(self.tpm.create_aik("rsa"))
        digest = hashlib.sha1(b"x").digest()
        self.tpm.extend(10, sha1=digest)
        expected = {10: hashlib.sha1(bytes(20) + digest).digest()}
        self.assertEqual(self.tpm.read_pcrs("sha1", [10]), expected)
        message, raw = self.tpm.quote("sha1", [10], b"n" * 20)
        bank = PcrBank(SHA1)
        bank.extend(10, digest)
        verify_quote(aik, message, Signature.from_bytes(raw).value, SHA256, nonce=b"n" * 20,
                     banks={SHA1.tpm_alg: bank})
        self.assertRaises(QuoteError, verify_quote, aik, message, Signature.from_bytes(raw).value, SHA384,
                          nonce=b"n" * 20)
