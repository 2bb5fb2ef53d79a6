"""EAP-MSCHAPv2, server side (draft-kamath-pppext-eap-mschapv2-02) with the
MS-CHAP-V2 computations of RFC 2759 and the MPPE master keys of RFC 3079.

Exchange: Challenge Request → Response (NT-Response) → Success Request
("S=<authenticator response>") → Success Response → EAP-Success; on a wrong
password Failure Request ("E=691 R=0 ...") → Failure Response → EAP-Failure,
as hostapd does.  The functions below are also used by EAP-TTLS for its
non-EAP MS-CHAP-V2 phase 2 (RFC 5281 §11.2.4).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from twisted.internet import defer

from nac.eap.md4 import md4
from nac.eap.method import Credentials, EapMethod, MethodStep
from nac.eap.packet import EapError, EapPacket, EapType
from nac.log import Logger

__all__ = [
    "MsChapV2Method",
    "MsChapV2OpCode",
    "MsChapV2Packet",
    "MsChapV2Response",
    "authenticator_response",
    "challenge_hash",
    "challenge_response",
    "generate_nt_response",
    "hash_nt_password_hash",
    "master_key",
    "mppe_start_key",
    "msk",
    "nt_password_hash",
]

log = Logger(namespace="nac.eap")

CHALLENGE_SIZE = 16
RESPONSE_VALUE_SIZE = 49
SERVER_NAME = b"nac"

# -- RFC 2759 §8 --------------------------------------------------------------------

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash: MD4 of the UTF-16LE password (RFC 2759 §8.3)."""
    return md4(password.encode("utf-16-le"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """HashNtPasswordHash (RFC 2759 §8.4)."""
    return md4(password_hash)


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """ChallengeHash (RFC 2759 §8.2); ``user_name`` without any domain prefix."""
    return hashlib.sha1(peer_challenge + authenticator_challenge + user_name).digest()[:8]


def _des_key(seven: bytes) -> bytes:
    """The 7-byte key spread over 8 bytes, low bit of each left for parity (RFC 2759 §8.6)."""
    k = int.from_bytes(seven, "big")
    return bytes(((k >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des_encrypt(clear: bytes, seven: bytes) -> bytes:
    key = _des_key(seven)
    # three equal keys make TripleDES single DES
    return Cipher(TripleDES(key * 3), modes.ECB()).encryptor().update(clear)


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse (RFC 2759 §8.5): three DES encryptions, 24 bytes."""
    z = password_hash + b"\x00" * 5
    return _des_encrypt(challenge, z[0:7]) + _des_encrypt(challenge, z[7:14]) + _des_encrypt(challenge, z[14:21])


def generate_nt_response(authenticator_challenge: bytes, peer_challenge: bytes, user_name: bytes,
                         password_hash: bytes) -> bytes:
    """GenerateNTResponse (RFC 2759 §8.1), from the NT password hash."""
    return challenge_response(challenge_hash(peer_challenge, authenticator_challenge, user_name),
                              password_hash)


def authenticator_response(password_hash: bytes, nt_response: bytes, peer_challenge: bytes,
                           authenticator_challenge: bytes, user_name: bytes) -> bytes:
    """GenerateAuthenticatorResponse (RFC 2759 §8.7): the 42-byte "S=<40 hex>"."""
    digest = hashlib.sha1(hash_nt_password_hash(password_hash) + nt_response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()
    return b"S=" + digest.hex().upper().encode("ascii")


# -- RFC 3079 §3.4 (MPPE keys from MS-CHAP-V2) ---------------------------------------

_MASTER_MAGIC = b"This is the MPPE Master Key"
_CLIENT_SEND = b"On the client side, this is the send key; on the server side, it is the receive key."
_CLIENT_RECEIVE = b"On the client side, this is the receive key; on the server side, it is the send key."
_SHS_PAD1 = b"\x00" * 40
_SHS_PAD2 = b"\xf2" * 40


def master_key(password_hash: bytes, nt_response: bytes) -> bytes:
    """GetMasterKey (RFC 3079 §3.4)."""
    return hashlib.sha1(hash_nt_password_hash(password_hash) + nt_response + _MASTER_MAGIC).digest()[:16]


def mppe_start_key(master: bytes, *, is_send: bool, is_server: bool) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 §3.4), 16 bytes."""
    magic = _CLIENT_RECEIVE if is_send == is_server else _CLIENT_SEND
    return hashlib.sha1(master + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:16]


def msk(password_hash: bytes, nt_response: bytes) -> bytes:
    """The EAP-MSCHAPv2 MSK: the server's MasterReceiveKey and MasterSendKey
    followed by 32 zero bytes, as strongSwan (and, without the padding,
    hostapd) derive it; its first 32 bytes equal the peer's send|receive keys."""
    master = master_key(password_hash, nt_response)
    return (mppe_start_key(master, is_send=False, is_server=True)
            + mppe_start_key(master, is_send=True, is_server=True) + b"\x00" * 32)


def strip_domain(user_name: bytes) -> bytes:
    """MS-CHAP-V2 hashes the user name without a 'DOMAIN\\' prefix (RFC 2759 §4)."""
    return user_name.rsplit(b"\\", 1)[-1]


# -- EAP-MSCHAPv2 packets (draft-kamath §2) -----------------------------------------------

class MsChapV2OpCode(IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


_OPCODES = {int(o): o for o in MsChapV2OpCode}
_HEADER = struct.Struct(">BBH")


@dataclass(frozen=True, slots=True)
class MsChapV2Packet:
    """EAP-MSCHAPv2 type-data: OpCode, MS-CHAPv2-ID, MS-Length and the rest.

    A Success or Failure *Response* is the OpCode alone; ``short`` marks that form.
    """

    opcode: MsChapV2OpCode | int
    mschapv2_id: int = 0
    data: bytes = b""
    short: bool = False

    @classmethod
    def parse(cls, type_data: bytes) -> MsChapV2Packet:
        if not type_data:
            raise EapError("EAP-MSCHAPv2 packet without OpCode", 5)
        opcode = _OPCODES.get(type_data[0], type_data[0])
        if len(type_data) == 1:
            if opcode not in (MsChapV2OpCode.SUCCESS, MsChapV2OpCode.FAILURE):
                raise EapError(f"EAP-MSCHAPv2 OpCode {opcode} without MS-CHAPv2 header", 6)
            return cls(opcode, short=True)
        if len(type_data) < _HEADER.size:
            raise EapError(f"EAP-MSCHAPv2 packet of {len(type_data)} bytes is too short", 5)
        _, mschapv2_id, ms_length = _HEADER.unpack_from(type_data)
        if ms_length != len(type_data):
            raise EapError(f"MS-Length {ms_length} does not match the {len(type_data)} bytes present", 7)
        return cls(opcode, mschapv2_id, bytes(type_data[_HEADER.size:]))

    def build(self) -> bytes:
        if self.short:
            return bytes((self.opcode,))
        return _HEADER.pack(self.opcode, self.mschapv2_id, _HEADER.size + len(self.data)) + self.data


@dataclass(frozen=True, slots=True)
class MsChapV2Response:
    """The Response packet's value (draft-kamath §2.2, RFC 2759 §4)."""

    peer_challenge: bytes
    nt_response: bytes
    flags: int
    name: bytes

    @classmethod
    def parse(cls, data: bytes) -> MsChapV2Response:
        if not data or data[0] != RESPONSE_VALUE_SIZE:
            raise EapError("EAP-MSCHAPv2 Response Value-Size is not 49", 9)
        if len(data) < 1 + RESPONSE_VALUE_SIZE:
            raise EapError("EAP-MSCHAPv2 Response shorter than its 49-byte value", 9)
        value = data[1:1 + RESPONSE_VALUE_SIZE]
        return cls(bytes(value[:16]), bytes(value[24:48]), value[48], bytes(data[1 + RESPONSE_VALUE_SIZE:]))

    def build(self) -> bytes:
        return (bytes((RESPONSE_VALUE_SIZE,)) + self.peer_challenge + b"\x00" * 8 + self.nt_response
                + bytes((self.flags,)) + self.name)


class MsChapV2Method(EapMethod):
    """EAP-MSCHAPv2 for the peer named ``identity`` (its EAP identity)."""

    TYPE = EapType.MSCHAPV2
    KEY_GENERATING = True
    CHECKS_CREDENTIALS = True

    def __init__(self, identity: str, credentials: Credentials, *,
                 random: Callable[[int], bytes] = os.urandom, server_name: bytes = SERVER_NAME):
        super().__init__()
        self.peer_identity = identity
        self._credentials = credentials
        self._random = random
        self._challenge = random(CHALLENGE_SIZE)
        self._id = random(1)[0]
        self._server_name = server_name
        self._state = "challenge"
        self._pending_msk: bytes | None = None

    def initiate(self) -> bytes:
        data = bytes((CHALLENGE_SIZE,)) + self._challenge + self._server_name
        return MsChapV2Packet(MsChapV2OpCode.CHALLENGE, self._id, data).build()

    def process(self, response: EapPacket) -> defer.Deferred:
        try:
            packet = MsChapV2Packet.parse(response.type_data)
        except EapError as err:
            return defer.succeed(self._fail(f"invalid EAP-MSCHAPv2 message: {err}"))
        state, self._state = self._state, "done"
        if state == "challenge" and packet.opcode == MsChapV2OpCode.RESPONSE and not packet.short:
            try:
                value = MsChapV2Response.parse(packet.data)
            except EapError as err:
                return defer.succeed(self._fail(f"invalid EAP-MSCHAPv2 Response: {err}"))
            d = defer.maybeDeferred(self._credentials, self.peer_identity)
            d.addCallback(self._verify, value)
            d.addErrback(self._lookup_failed)
            return d
        if state == "success-sent" and packet.opcode == MsChapV2OpCode.SUCCESS:
            self.identity = self.peer_identity
            self.msk, self._pending_msk = self._pending_msk, None
            return defer.succeed(MethodStep.success())
        if state == "failure-sent" and packet.opcode == MsChapV2OpCode.FAILURE:
            return defer.succeed(MethodStep.failure("EAP-MSCHAPv2 verification failed"))
        if state == "success-sent" and packet.opcode == MsChapV2OpCode.FAILURE:
            return defer.succeed(MethodStep.failure("the peer rejected the EAP-MSCHAPv2 authenticator response"))
        return defer.succeed(self._fail(
            f"unexpected EAP-MSCHAPv2 OpCode {packet.opcode} in state '{state}'"))

    def _verify(self, secret: str | None, value: MsChapV2Response) -> MethodStep:
        user = strip_domain(value.name)
        if user != strip_domain(self.peer_identity.encode("utf-8")):
            log.info("EAP-MS-CHAPv2 username: '{name}'", name=value.name.decode("utf-8", "replace"))
        if secret is None:
            self.verdict = False
            log.info("no EAP key found for '{peer}'", peer=self.peer_identity)
            return self._failure_request()
        password_hash = nt_password_hash(secret)
        expected = generate_nt_response(self._challenge, value.peer_challenge, user, password_hash)
        if not hmac.compare_digest(expected, value.nt_response):
            self.verdict = False
            log.info("EAP-MS-CHAPv2 verification failed for '{peer}'", peer=self.peer_identity)
            return self._failure_request()
        self.verdict = True
        self._pending_msk = msk(password_hash, value.nt_response)
        message = authenticator_response(password_hash, value.nt_response, value.peer_challenge,
                                         self._challenge, user) + b" M=OK"
        self._state = "success-sent"
        return MethodStep.send(MsChapV2Packet(MsChapV2OpCode.SUCCESS, self._id, message).build())

    def _failure_request(self) -> MethodStep:
        # E=691 authentication failure, R=0 no retry (hostapd's answer)
        message = b"E=691 R=0 C=" + self._random(CHALLENGE_SIZE).hex().upper().encode() + b" V=3 M=FAILED"
        self._state = "failure-sent"
        return MethodStep.send(MsChapV2Packet(MsChapV2OpCode.FAILURE, self._id, message).build())

    def _fail(self, reason: str) -> MethodStep:
        self._state = "done"
        return MethodStep.failure(reason)

    def _lookup_failed(self, failure) -> MethodStep:
        log.failure("looking up the EAP secret of '{peer}' failed", failure, peer=self.peer_identity)
        return self._fail("EAP secret lookup failed")

    def abort(self, reason: str) -> None:
        self._pending_msk = None
