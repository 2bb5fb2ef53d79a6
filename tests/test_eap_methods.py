"""EAP codecs and the simple methods: EAP packets (RFC 3748 §4) with the
hostapd phase-2 captures parsed and rebuilt byte for byte, MD4 (RFC 1320
test suite), MS-CHAP-V2 and MPPE keys (RFC 2759 §9.2, RFC 3079 §3.5.3),
EAP-MD5 and EAP-MSCHAPv2 exchanges, Diameter AVPs (RFC 5281 §10) and the
L/M/S framing; hypothesis for round trips and for never crashing on
random bytes in each method."""

from __future__ import annotations

import hashlib
import json
import struct

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial import unittest

from nac.eap.avp import VENDOR_MICROSOFT, Avp, AvpCode, AvpError, MicrosoftAvpCode, build_avps, parse_avps
from nac.eap.fragments import EAP_TNC, EAP_TTLS, PT_EAP, FragmentChannel, FragmentError
from nac.eap.md4 import md4
from nac.eap.md5 import Md5Challenge, Md5ChallengeData
from nac.eap.method import MethodResult
from nac.eap.mschapv2 import (
    MsChapV2Method,
    MsChapV2OpCode,
    MsChapV2Packet,
    MsChapV2Response,
    authenticator_response,
    challenge_hash,
    generate_nt_response,
    hash_nt_password_hash,
    master_key,
    mppe_start_key,
    msk,
    nt_password_hash,
)
from nac.eap.packet import EapCode, EapError, EapPacket, EapType, nak_types
from nac.eap.tnc import EapTnc, PtEap
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from tests.test_eap_ttls import Passwords
from tests.vectors import VECTORS, vector_path

PHASE2 = sorted((VECTORS / "hostapd-tnccs11").glob("*phase2-eap.jsonl"))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fired(testcase, d):
    return testcase.successResultOf(d)


class PacketTests(unittest.TestCase):
    def test_hostapd_phase2_packets_rebuild_byte_for_byte(self):
        self.assertEqual(len(PHASE2), 3)
        seen = set()
        for path in PHASE2:
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if not record.get("hex"):
                    continue
                raw = bytes.fromhex(record["hex"])
                packet = EapPacket.parse(raw)
                self.assertEqual(packet.build(), raw, path.name)
                self.assertEqual(packet.code, EapCode.RESPONSE if record["dir"] == "c2s" else EapCode.REQUEST)
                seen.add(packet.type)
        self.assertEqual(seen, {EapType.IDENTITY, EapType.MD5_CHALLENGE, EapType.TNC})

    def test_captured_md5_response_verifies(self):
        path = vector_path("hostapd-tnccs11/hostapd-ttls-md5-tnc.phase2-eap.jsonl")
        packets = [EapPacket.parse(bytes.fromhex(json.loads(line)["hex"]))
                   for line in path.read_text().splitlines()]
        identity, challenge, response = packets[:3]
        self.assertEqual(identity.type_data, b"carol")
        value = Md5ChallengeData.parse(challenge.type_data).value
        method = Md5Challenge("carol", Passwords().credentials, random=lambda n: value)
        self.assertEqual(method.initiate(), challenge.type_data)  # hostapd's layout: no Name
        step = fired(self, method.process(response))
        self.assertEqual(step.result, MethodResult.SUCCESS)
        self.assertEqual(method.identity, "carol")

    def test_padding_beyond_length_is_ignored(self):
        packet = EapPacket.parse(bytes.fromhex("0207000a016361726f6c") + b"\x00" * 10)
        self.assertEqual((packet.identifier, packet.type, packet.type_data), (7, EapType.IDENTITY, b"carol"))

    def test_errors_name_the_offset(self):
        cases = {
            b"\x02\x01\x00": 0,  # short header
            b"\x02\x01\x00\x03": 2,  # Length below 4
            b"\x02\x01\x00\x09\x01ab": 2,  # Length beyond data
            b"\x03\x01\x00\x05\x00": 4,  # Success with data
            b"\x02\x01\x00\x04": 4,  # Response without Type
            b"\x07\x01\x00\x05\x01": 0,  # unknown code
        }
        for raw, offset in cases.items():
            with self.assertRaises(EapError) as caught:
                EapPacket.parse(raw)
            self.assertEqual(caught.exception.offset, offset, raw.hex())

    def test_nak_types(self):
        self.assertEqual(nak_types(EapPacket.response(1, EapType.NAK, bytes((26, 4, 0)))), (26, 4))
        expanded = (struct.pack(">B3sI", 254, b"\x00\x00\x00", 3)
                    + struct.pack(">B3sI", 254, b"\x00\x00\x00", 21) + struct.pack(">B3sI", 254, b"\x00\x00\x01", 7))
        packet = EapPacket.response(1, EapType.EXPANDED, expanded[1:])
        self.assertTrue(packet.is_nak)
        self.assertEqual(nak_types(packet), (21,))

    def test_describe(self):
        self.assertEqual(EapPacket.request(1, EapType.MD5_CHALLENGE).describe(), "EAP/REQ/MD5")
        self.assertEqual(EapPacket.success(1).describe(), "EAP/SUCC")

    @FAST
    @given(st.sampled_from([1, 2]), st.integers(0, 255), st.integers(1, 255), st.binary(max_size=300))
    def test_roundtrip(self, code, identifier, eap_type, data):
        packet = EapPacket(code, identifier, eap_type, data)
        self.assertEqual(EapPacket.parse(packet.build()), packet)

    @FAST
    @given(st.binary(max_size=64))
    def test_random_bytes_parse_or_raise_eap_error(self, data):
        try:
            packet = EapPacket.parse(data)
        except EapError:
            return
        self.assertEqual(packet.build(), data[:len(packet.build())])


class Md4Tests(unittest.TestCase):
    def test_rfc1320_suite(self):
        suite = {
            b"": "31d6cfe0d16ae931b73c59d7e0c089c0",
            b"a": "bde52cb31de33e46245e05fbdbd6fb24",
            b"abc": "a448017aaf21d8525fc10ae87aa6729d",
            b"message digest": "d9130a8164549fe818874806e1c7014b",
            b"abcdefghijklmnopqrstuvwxyz": "d79e1c308aa5bbcdeea8ed63df412da9",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789": "043f8582f241db351ce627e153e7f0e4",
            b"1234567890" * 8: "e33b4ddc9c38f2199c3e7b164fcc0536",
        }
        for data, digest in suite.items():
            self.assertEqual(md4(data).hex(), digest, data)


class MsChapV2VectorTests(unittest.TestCase):
    """RFC 2759 §9.2 and RFC 3079 §3.5.3."""

    USER = b"User"
    AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
    PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
    NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")

    def test_rfc2759_computations(self):
        password_hash = nt_password_hash("clientPass")
        self.assertEqual(password_hash.hex().upper(), "44EBBA8D5312B8D611474411F56989AE")
        self.assertEqual(challenge_hash(self.PEER_CHALLENGE, self.AUTH_CHALLENGE, self.USER).hex().upper(),
                         "D02E4386BCE91226")
        self.assertEqual(generate_nt_response(self.AUTH_CHALLENGE, self.PEER_CHALLENGE, self.USER,
                                              password_hash), self.NT_RESPONSE)
        self.assertEqual(hash_nt_password_hash(password_hash).hex().upper(), "41C00C584BD2D91C4017A2A12FA59F3F")
        self.assertEqual(authenticator_response(password_hash, self.NT_RESPONSE, self.PEER_CHALLENGE,
                                                self.AUTH_CHALLENGE, self.USER),
                         b"S=407A5589115FD0D6209F510FE9C04566932CDA56")

    def test_rfc3079_keys(self):
        master = master_key(nt_password_hash("clientPass"), self.NT_RESPONSE)
        self.assertEqual(master.hex().upper(), "FDECE3717A8C838CB388E527AE3CDD31")
        # SendStartKey128 is the server's send key, which is the client's receive key
        server_send = mppe_start_key(master, is_send=True, is_server=True)
        self.assertEqual(server_send.hex().upper(), "8B7CDC149B993A1BA118CB153F56DCCB")
        self.assertEqual(mppe_start_key(master, is_send=False, is_server=False), server_send)
        key = msk(nt_password_hash("clientPass"), self.NT_RESPONSE)
        self.assertEqual(len(key), 64)
        self.assertEqual(key[:16], mppe_start_key(master, is_send=True, is_server=False))
        self.assertEqual(key[16:32], server_send)
        self.assertEqual(key[32:], bytes(32))


def mschapv2_response(challenge_td: bytes, user: bytes, password: str, peer_challenge=b"\x33" * 16):
    packet = MsChapV2Packet.parse(challenge_td)
    challenge = packet.data[1:17]
    nt = generate_nt_response(challenge, peer_challenge, user, nt_password_hash(password))
    value = MsChapV2Response(peer_challenge, nt, 0, user)
    return MsChapV2Packet(MsChapV2OpCode.RESPONSE, packet.mschapv2_id, value.build()).build(), challenge, nt


class MethodTests(unittest.TestCase):
    def setUp(self):
        self.passwords = Passwords()

    def test_md5_wrong_password_and_unknown_user(self):
        for identity, password in (("carol", "nope"), ("mallory", "x")):
            method = Md5Challenge(identity, self.passwords.credentials)
            challenge = Md5ChallengeData.parse(method.initiate()).value
            value = hashlib.md5(b"\x05" + password.encode() + challenge).digest()
            step = fired(self, method.process(EapPacket.response(5, EapType.MD5_CHALLENGE,
                                                                 Md5ChallengeData(value).build())))
            self.assertEqual(step.result, MethodResult.FAILURE)
            self.assertIsNone(method.identity)

    def test_md5_malformed_and_replayed(self):
        method = Md5Challenge("carol", self.passwords.credentials)
        step = fired(self, method.process(EapPacket.response(5, EapType.MD5_CHALLENGE, b"\x20abc")))
        self.assertEqual(step.result, MethodResult.FAILURE)
        self.assertIn("Value-Size", step.reason)
        step = fired(self, method.process(EapPacket.response(5, EapType.MD5_CHALLENGE, b"\x10" + bytes(16))))
        self.assertEqual(step.result, MethodResult.FAILURE)

    def test_mschapv2_success_exchange(self):
        method = MsChapV2Method("dave", self.passwords.credentials)
        challenge_td = method.initiate()
        packet = MsChapV2Packet.parse(challenge_td)
        self.assertEqual((packet.opcode, packet.data[0], packet.data[17:]),
                         (MsChapV2OpCode.CHALLENGE, 16, b"nac"))
        response, challenge, nt = mschapv2_response(challenge_td, b"dave", "Secret\u00e9!")
        step = fired(self, method.process(EapPacket.response(9, EapType.MSCHAPV2, response)))
        self.assertEqual(step.result, MethodResult.CONTINUE)
        success = MsChapV2Packet.parse(step.type_data)
        self.assertEqual(success.opcode, MsChapV2OpCode.SUCCESS)
        expected = authenticator_response(nt_password_hash("Secret\u00e9!"), nt, b"\x33" * 16, challenge, b"dave")
        self.assertEqual(success.data, expected + b" M=OK")
        self.assertIsNone(method.msk)
        step = fired(self, method.process(EapPacket.response(10, EapType.MSCHAPV2, b"\x03")))
        self.assertEqual(step.result, MethodResult.SUCCESS)
        self.assertEqual(method.msk, msk(nt_password_hash("Secret\u00e9!"), nt))
        self.assertEqual(method.identity, "dave")

    def test_mschapv2_domain_prefix_is_not_hashed(self):
        method = MsChapV2Method("dave", self.passwords.credentials)
        challenge_td = method.initiate()
        packet = MsChapV2Packet.parse(challenge_td)
        challenge = packet.data[1:17]
        nt = generate_nt_response(challenge, b"\x33" * 16, b"dave", nt_password_hash("Secret\u00e9!"))
        value = MsChapV2Response(b"\x33" * 16, nt, 0, b"CORP\\dave").build()
        response = MsChapV2Packet(MsChapV2OpCode.RESPONSE, packet.mschapv2_id, value).build()
        step = fired(self, method.process(EapPacket.response(9, EapType.MSCHAPV2, response)))
        self.assertEqual(MsChapV2Packet.parse(step.type_data).opcode, MsChapV2OpCode.SUCCESS)

    def test_mschapv2_wrong_password_gets_failure_request_then_failure(self):
        method = MsChapV2Method("dave", self.passwords.credentials)
        response, _, _ = mschapv2_response(method.initiate(), b"dave", "wrong")
        step = fired(self, method.process(EapPacket.response(9, EapType.MSCHAPV2, response)))
        failure = MsChapV2Packet.parse(step.type_data)
        self.assertEqual(failure.opcode, MsChapV2OpCode.FAILURE)
        self.assertTrue(failure.data.startswith(b"E=691 R=0 C="))
        step = fired(self, method.process(EapPacket.response(10, EapType.MSCHAPV2, b"\x04")))
        self.assertEqual(step.result, MethodResult.FAILURE)
        self.assertIsNone(method.msk)

    def test_mschapv2_packet_roundtrip_and_errors(self):
        for packet in (MsChapV2Packet(MsChapV2OpCode.CHALLENGE, 7, b"\x10" + bytes(16) + b"nac"),
                       MsChapV2Packet(MsChapV2OpCode.SUCCESS, short=True)):
            self.assertEqual(MsChapV2Packet.parse(packet.build()), packet)
        for bad in (b"", b"\x02", b"\x02\x01\x00", b"\x02\x01\x00\x09abc"):
            with self.assertRaises(EapError):
                MsChapV2Packet.parse(bad)


class AvpTests(unittest.TestCase):
    def test_roundtrip_with_vendor_and_padding(self):
        avps = (Avp(AvpCode.EAP_MESSAGE, b"\x02\x00\x00\x0a\x01carol"),
                Avp(MicrosoftAvpCode.MS_CHAP2_SUCCESS, b"\x01S=" + b"A" * 40, VENDOR_MICROSOFT),
                Avp(AvpCode.USER_NAME, b"x", mandatory=False))
        data = build_avps(avps)
        self.assertEqual(len(data) % 4, 0)
        parsed = parse_avps(data)
        self.assertEqual(parsed, avps)
        self.assertEqual(build_avps(parsed), data)
        self.assertIs(parsed[1].known, MicrosoftAvpCode.MS_CHAP2_SUCCESS)
        self.assertEqual(data[:8], bytes.fromhex("0000004f40000012"))  # as hostapd and strongSwan write it

    def test_missing_final_padding_is_accepted(self):
        data = Avp(AvpCode.USER_NAME, b"carol").build()[:-3]
        self.assertEqual(parse_avps(data)[0].data, b"carol")

    def test_errors(self):
        for bad, offset in ((b"\x00" * 5, 0), (b"\x00\x00\x00\x01\x40\x00\x00\x04", 5),
                            (b"\x00\x00\x00\x01\x40\x00\x01\x00abcd", 5), (b"\x00\x00\x00\x01\xc0\x00\x00\x0c", 8)):
            with self.assertRaises(AvpError) as caught:
                parse_avps(bad)
            self.assertEqual(caught.exception.offset, offset, bad.hex())
        with self.assertRaises(AvpError):
            parse_avps(Avp(1, b"").build() * 5, max_count=4)

    @FAST
    @given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=40),
                              st.one_of(st.none(), st.integers(0, 2**32 - 1)), st.booleans()), max_size=6))
    def test_roundtrip_random(self, items):
        avps = tuple(Avp(code, data, vendor, mandatory) for code, data, vendor, mandatory in items)
        self.assertEqual(parse_avps(build_avps(avps)), avps)

    @FAST
    @given(st.binary(max_size=80))
    def test_random_bytes(self, data):
        try:
            parse_avps(data)
        except AvpError:
            pass


class FramingTests(unittest.TestCase):
    def test_fragment_and_reassemble_both_framings(self):
        message = bytes(range(256)) * 3
        for framing in (EAP_TTLS, EAP_TNC, PT_EAP):
            sender = FragmentChannel(framing, fragment_size=100, max_message_size=4096)
            receiver = FragmentChannel(framing, fragment_size=100, max_message_size=4096)
            packet, got = sender.send(message), None
            while got is None:
                self.assertLessEqual(len(packet), 100)
                received = receiver.receive(packet)
                if received.message is not None:
                    got = received.message
                    break
                self.assertEqual(received.send, framing.ack())
                packet = sender.receive(received.send).send
            self.assertEqual(got, message, framing.name)
            self.assertFalse(sender.sending)

    def test_first_fragment_layout(self):
        channel = FragmentChannel(EAP_TTLS, fragment_size=20, max_message_size=100)
        first = channel.send(bytes(50))
        self.assertEqual(first[:5], b"\xc0" + struct.pack(">I", 50))
        self.assertEqual(len(first), 20)
        channel = FragmentChannel(PT_EAP, fragment_size=20, max_message_size=100)
        self.assertEqual(channel.send(bytes(50))[:1], b"\x41")

    def test_start_packets(self):
        self.assertEqual((EAP_TTLS.start_packet(), EAP_TNC.start_packet(), PT_EAP.start_packet()),
                         (b"\x20", b"\x21", b"\x81"))

    def test_violations(self):
        channel = FragmentChannel(EAP_TNC, fragment_size=100, max_message_size=1000)
        for bad in (b"\x02hello", b"\x21", b"\x41", b"\x81\x00\x00\x00\x03hello",
                    b"\xc1\x00\x00\x10\x00abc"):
            with self.assertRaises(FragmentError, msg=bad.hex()):
                FragmentChannel(EAP_TNC, fragment_size=100, max_message_size=1000).receive(bad)
        channel.send(bytes(300))
        with self.assertRaises(FragmentError):
            channel.receive(b"\x01data")
        # strongSwan acknowledges PT-EAP fragments with version 0
        channel = FragmentChannel(PT_EAP, fragment_size=100, max_message_size=1000)
        channel.send(bytes(300))
        self.assertTrue(channel.receive(b"\x00").send)

    @FAST
    @given(st.lists(st.binary(max_size=30), max_size=8))
    def test_random_packets_never_crash(self, packets):
        channel = FragmentChannel(EAP_TTLS, fragment_size=64, max_message_size=200)
        for packet in packets:
            try:
                channel.receive(packet)
            except FragmentError:
                channel = FragmentChannel(EAP_TTLS, fragment_size=64, max_message_size=200)


class NeverCrashTests(unittest.TestCase):
    """Random type-data to every method, in its first state: a MethodStep, no exception."""

    def methods(self):
        passwords = Passwords()
        core = TnccsCore()
        peer = PeerInfo("radius", "127.0.0.1", identity="carol")
        yield Md5Challenge("carol", passwords.credentials)
        yield MsChapV2Method("carol", passwords.credentials)
        for cls in (PtEap, EapTnc):
            method = cls(core, peer)
            method.initiate()
            yield method

    @FAST
    @given(st.lists(st.binary(max_size=120), min_size=1, max_size=4))
    def test_random_type_data(self, blobs):
        for method in self.methods():
            for blob in blobs:
                step = fired(self, method.process(EapPacket.response(1, method.TYPE, blob)))
                self.assertIn(step.result, tuple(MethodResult))
            method.abort("done")
