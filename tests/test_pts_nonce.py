"""The PTS D-H nonce exchange (nac.pts.nonce): the secret assessment value
strongSwan's IMC computed in the captured sessions (its logs show the
nonces, the shared D-H secret and the result), the exchange between nac's two
sides with the group arithmetic redone in this file (affine P-256 point
multiplication, modular exponentiation), and the refusals with the PTS error
each sends."""

from __future__ import annotations

import hashlib

from twisted.trial import unittest

from nac import keyexchange
from nac.pa.tcg_pts import (
    DhNonceFinish,
    DhNonceParametersRequest,
    DhNonceParametersResponse,
    PtsDhGroup,
    PtsErrorCode,
    PtsHashAlgorithm,
)
from nac.pts.hashes import SHA256, SHA384
from nac.pts.nonce import NonceError, NonceInitiator, NonceResponder, assessment_secret, select_group
from tests.test_pa_tcg_pts import logged_bytes, pts_attributes
from tests.vectors import log_text

SESSIONS = ("tpm2-bios-allowed", "tpm2-bios-first-aik-untrusted-allowed", "tpm2-bios-ima-allowed",
            "tpm2-bios-ima-file-differs-quarantined", "tpm2-bios-pcr-mismatch-quarantined",
            "tpm2-bios-tampered-log-quarantined")

# -- NIST P-256 and RFC 3526 group 14, written out here ---------------------------------------

P = 2 ** 256 - 2 ** 224 + 2 ** 192 + 2 ** 96 - 1
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def on_curve(point) -> bool:
    x, y = point
    return (y * y - (x ** 3 - 3 * x + B)) % P == 0


def add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def multiply(k: int, point):
    result = None
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    return result


def point_bytes(point) -> bytes:
    return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


def known_keys(*scalars: int):
    """A key factory handing out key pairs of the given private values, in order."""
    queue = list(scalars)

    def generate(group: int):
        return keyexchange.DiffieHellman.from_private(group, queue.pop(0).to_bytes(32, "big"))
    return generate


def counting_random(start: int):
    """Deterministic 'random' bytes: start, start+1, … (nonces anyone can redo)."""
    def random(size: int) -> bytes:
        return bytes((start + i) % 256 for i in range(size))
    return random


class CapturedSecretTests(unittest.TestCase):
    def test_every_session_secret_is_what_strongswan_computed(self):
        for session in SESSIONS:
            log = log_text(f"strongswan-attestation/{session}.client.log")
            initiator, responder = logged_bytes(log, "initiator nonce"), logged_bytes(log, "responder nonce")
            shared, secret = logged_bytes(log, "shared DH secret"), logged_bytes(log, "secret assessment value")
            self.assertEqual(assessment_secret(SHA384, initiator, responder, shared), secret, session)
            # the nonces are those on the wire
            c2s, s2c = pts_attributes(session, "c2s"), pts_attributes(session, "s2c")
            self.assertIn(responder, [a.nonce for a in c2s if isinstance(a, DhNonceParametersResponse)])
            self.assertIn(initiator, [a.nonce for a in s2c if isinstance(a, DhNonceFinish)])

    def test_the_formula_written_out(self):
        # H("1" | initiator nonce | responder nonce | shared secret), "1" being the octet 0x31
        self.assertEqual(assessment_secret(SHA256, b"I" * 20, b"R" * 20, b"S" * 32),
                         hashlib.sha256(b"1" + b"I" * 20 + b"R" * 20 + b"S" * 32).digest())


class ExchangeTests(unittest.TestCase):
    def test_p256_constants(self):
        self.assertTrue(on_curve(G))

    def test_ecp256_exchange_against_the_curve_arithmetic(self):
        a, b = 0x1234567890ABCDEF << 100 | 7, 0xFEDCBA0987654321 << 90 | 11
        responder = NonceResponder(PtsDhGroup.ECP_256, nonce_length=20, random=counting_random(1),
                                   generate=known_keys(b))
        initiator = NonceInitiator(PtsDhGroup.ECP_256, PtsHashAlgorithm.SHA384, random=counting_random(100),
                                   generate=known_keys(a))
        response = responder.respond(initiator.request(), PtsHashAlgorithm.SHA384)
        self.assertEqual(response.group, PtsDhGroup.ECP_256)
        self.assertEqual(response.public_value, point_bytes(multiply(b, G)))
        finish = initiator.finish(response)
        self.assertEqual(finish.public_value, point_bytes(multiply(a, G)))
        secret = responder.finish(finish)
        shared_x = multiply(a * b, G)[0].to_bytes(32, "big")
        expected = hashlib.sha384(b"1" + counting_random(100)(20) + counting_random(1)(20) + shared_x).digest()
        self.assertEqual(secret, expected)
        self.assertEqual(initiator.secret, expected)

    def test_modp2048_exchange_against_modular_exponentiation(self):
        a, b = 3 ** 150, 5 ** 100
        responder = NonceResponder(PtsDhGroup.MODP_2048, random=counting_random(9), generate=known_keys(b))
        initiator = NonceInitiator(PtsDhGroup.MODP_2048, PtsHashAlgorithm.SHA256, random=counting_random(50),
                                   generate=known_keys(a))
        response = responder.respond(initiator.request(), PtsHashAlgorithm.SHA256 | PtsHashAlgorithm.SHA1)
        self.assertEqual(response.public_value, pow(2, b, MODP_2048).to_bytes(256, "big"))
        secret = responder.finish(initiator.finish(response))
        shared = pow(2, a * b, MODP_2048).to_bytes(256, "big")  # padded to the prime's length
        self.assertEqual(secret, hashlib.sha256(b"1" + counting_random(50)(20) + counting_random(9)(20) + shared)
                         .digest())
        self.assertEqual(initiator.hash_algorithm, SHA256)

    def test_random_keys_agree_in_every_group(self):
        for group in (PtsDhGroup.ECP_384, PtsDhGroup.ECP_256, PtsDhGroup.MODP_2048):
            initiator, responder = NonceInitiator(group), NonceResponder()
            response = responder.respond(initiator.request(), PtsHashAlgorithm.SHA384 | PtsHashAlgorithm.SHA256)
            self.assertEqual(response.group, group)
            self.assertEqual(responder.finish(initiator.finish(response)), initiator.secret)
            self.assertEqual(len(initiator.secret), 48)

    def test_strongest_common_group_and_hash(self):
        self.assertEqual(select_group(0xF800, 0xF000), PtsDhGroup.ECP_256)  # strongSwan's offer (no ECP-384)
        self.assertEqual(select_group(0xF800, 0xF800), PtsDhGroup.ECP_384)
        self.assertIsNone(select_group(PtsDhGroup.ECP_256, PtsDhGroup.MODP_1024 | PtsDhGroup.MODP_1536))


class RefusalTests(unittest.TestCase):
    def response(self, **changes) -> DhNonceParametersResponse:
        responder = NonceResponder(PtsDhGroup.ECP_256)
        response = responder.respond(DhNonceParametersRequest(0, PtsDhGroup.ECP_256), PtsHashAlgorithm.SHA384)
        values = dict(group=response.group, algorithms=response.algorithms, nonce=response.nonce,
                      public_value=response.public_value)
        values.update(changes)
        return DhNonceParametersResponse(**values)

    def refused(self, initiator, response) -> NonceError:
        error = self.assertRaises(NonceError, initiator.finish, response)
        self.assertIsNone(initiator.secret)
        return error

    def test_short_responder_nonce(self):
        # 16 bytes, below the minimum of 17: DH-PN Nonce Not Acceptable with 17..255
        error = self.refused(NonceInitiator(), self.response(nonce=bytes(16)))
        self.assertEqual((error.reply.error_code, error.reply.information),
                         (PtsErrorCode.BAD_NONCE_LENGTH, bytes.fromhex("0011 00ff")))
        # the verifier's own minimum counts too
        error = self.refused(NonceInitiator(min_nonce_length=32), self.response(nonce=bytes(20)))
        self.assertEqual(error.reply.information, bytes.fromhex("0020 00ff"))

    def test_group_not_offered_or_several(self):
        initiator = NonceInitiator(PtsDhGroup.ECP_384)
        error = self.refused(initiator, self.response())
        self.assertEqual((error.reply.error_code, error.reply.information),
                         (PtsErrorCode.DH_GROUP_NOT_SUPPORTED, bytes.fromhex("0000 0800")))
        self.refused(NonceInitiator(), self.response(group=PtsDhGroup.ECP_256 | PtsDhGroup.ECP_384))

    def test_no_hash_in_common(self):
        error = self.refused(NonceInitiator(algorithms=PtsHashAlgorithm.SHA256),
                             self.response(algorithms=PtsHashAlgorithm.SHA1))
        self.assertEqual((error.reply.error_code, error.reply.information),
                         (PtsErrorCode.HASH_ALGORITHM_NOT_SUPPORTED, bytes.fromhex("0000 4000")))

    def test_public_value_off_the_curve_or_of_wrong_size(self):
        x, y = G
        off_curve = point_bytes((x, (y + 1) % P))
        self.assertFalse(on_curve((x, (y + 1) % P)))
        error = self.refused(NonceInitiator(), self.response(public_value=off_curve))
        self.assertIsNone(error.reply)  # a broken peer: nothing to explain to it
        self.refused(NonceInitiator(), self.response(public_value=off_curve[:63]))

    def test_responder_refusals(self):
        responder = NonceResponder(PtsDhGroup.ECP_256)
        error = self.assertRaises(NonceError, responder.respond, DhNonceParametersRequest(0, PtsDhGroup.MODP_1024),
                                  PtsHashAlgorithm.SHA256)
        self.assertEqual(error.reply.error_code, PtsErrorCode.DH_GROUP_NOT_SUPPORTED)
        # a finish before the request, a hash it did not offer, a short initiator nonce
        self.assertRaises(NonceError, responder.finish, DhNonceFinish(PtsHashAlgorithm.SHA256, b"", bytes(20)))
        initiator = NonceInitiator(PtsDhGroup.ECP_256)
        response = responder.respond(initiator.request(), PtsHashAlgorithm.SHA256)
        finish = initiator.finish(response)
        error = self.assertRaises(NonceError, responder.finish,
                                  DhNonceFinish(PtsHashAlgorithm.SHA384, finish.public_value, finish.nonce))
        self.assertEqual(error.reply.error_code, PtsErrorCode.HASH_ALGORITHM_NOT_SUPPORTED)
        error = self.assertRaises(NonceError, responder.finish,
                                  DhNonceFinish(finish.algorithm, finish.public_value, bytes(8)))
        self.assertEqual(error.reply.error_code, PtsErrorCode.BAD_NONCE_LENGTH)
        self.assertEqual(responder.finish(finish), initiator.secret)

    def test_responder_meets_a_longer_minimum(self):
        responder = NonceResponder(nonce_length=20)
        response = responder.respond(DhNonceParametersRequest(40, PtsDhGroup.ECP_256), PtsHashAlgorithm.SHA256)
        self.assertEqual(len(response.nonce), 40)
