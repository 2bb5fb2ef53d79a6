"""IKEv2 message codec (RFC 7296 §3) and proposals: strongSwan's captured
messages rebuilt byte for byte, every payload, the errors with their notify
and offset, NAT-T framing, proposal strings and selection, generated round
trips and random bytes."""

from __future__ import annotations

import ipaddress
import json
import pickle
import re
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from transports.ikev2.message import (
    HEADER_SIZE,
    MAX_PAYLOADS,
    NON_ESP_MARKER,
    AuthMethod,
    Authentication,
    CertEncoding,
    Certificate,
    CertRequest,
    CfgType,
    Configuration,
    ConfigurationAttribute,
    ConfigurationAttributeType,
    Delete,
    Eap,
    Encrypted,
    EncryptedFragment,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    IkeHeader,
    IkeMessage,
    IkeProtocolError,
    InvalidMajorVersion,
    InvalidSyntax,
    KeyExchange,
    NatTKind,
    Nonce,
    Notify,
    NotifyType,
    PayloadType,
    Proposal,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    UnknownPayload,
    UnknownTrafficSelector,
    UnsupportedCriticalPayload,
    VendorId,
    build_payloads,
    find_payload,
    frame_nat_t,
    notifies,
    parse_payloads,
    unframe_nat_t,
)
from transports.ikev2.transforms import (
    Algorithms,
    DhGroup,
    EncryptionAlgorithm,
    Esn,
    IntegrityAlgorithm,
    PseudorandomFunction,
    TransformType,
    describe_proposal,
    parse_proposal,
    parse_proposals,
    select_proposal,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATA = Path(__file__).resolve().parent / "data" / "ikev2"
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")


def scenarios() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))}


def records(document: dict, direction: str | None = None) -> list[bytes]:
    return [bytes.fromhex(r["hex"]) for r in document["records"] if direction in (None, r["dir"])]


def logged_summaries(document: dict) -> list[str]:
    """strongSwan's "generating/parsed X request N [ ... ]" lines, without the thread prefix."""
    found = []
    for line in document["responder"]["strongswan_log"]:
        match = re.search(r"\[ENC\] (?:generating|parsed) (.+ \[ .* \])$", line)
        if match:
            found.append(match.group(1))
    return found


def header(first: int, length: int, *, version: int = 0x20, exchange: int = 34, flags: int = 0x08,
           message_id: int = 0) -> bytes:
    return struct.pack(">8s8sBBBBII", SPI_I, bytes(8), first, version, exchange, flags, message_id, length)


def message_with(*chain: tuple[int, int, bytes]) -> bytes:
    """A message from raw (type, flags, body) payloads."""
    body = b""
    for i, (_kind, flags, data) in enumerate(chain):
        next_kind = chain[i + 1][0] if i + 1 < len(chain) else 0
        body += struct.pack(">BBH", next_kind, flags, 4 + len(data)) + data
    return header(chain[0][0] if chain else 0, HEADER_SIZE + len(body)) + body


NONCE = bytes(range(32))


class CapturedStrongSwanMessageTests(unittest.TestCase):
    """Bytes strongSwan 5.9.8 sent and received (tests/data/ikev2)."""

    def test_fixtures_present(self) -> None:
        self.assertGreaterEqual(len(scenarios()), 6)

    def test_every_captured_message_rebuilds_byte_exact(self) -> None:
        count = 0
        for name, document in scenarios().items():
            for raw in records(document):
                message = IkeMessage.parse(raw)
                self.assertEqual(message.build(), raw, name)
                self.assertEqual(message.raw, raw)
                self.assertEqual(IkeMessage.parse(message.build()), message)
                count += 1
        self.assertGreater(count, 40)

    def test_strongswan_ike_sa_init_request(self) -> None:
        document = scenarios()["psk-x25519-aescbc"]
        raw = records(document)[0]
        message = IkeMessage.parse(raw)
        self.assertEqual(message.exchange, ExchangeType.IKE_SA_INIT)
        self.assertTrue(message.initiator)
        self.assertFalse(message.response)
        self.assertEqual(message.message_id, 0)
        self.assertEqual(message.spi_r, bytes(8))
        self.assertEqual(message.describe(), logged_summaries(document)[0])
        sa, ke, nonce = message.payloads[:3]
        self.assertEqual(sa.proposals, parse_proposals([document["initiator_config"]["proposals"]]))
        self.assertEqual(ke.group, DhGroup.CURVE25519)
        self.assertEqual(len(ke.data), 32)
        self.assertEqual(len(nonce.data), 32)
        hashes = next(notifies(message.payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS))
        # "sending supported signature hash algorithms: sha256 sha384 sha512 identity"
        self.assertEqual(hashes.data, bytes.fromhex("0002000300040005"))
        self.assertEqual([n.notify_type for n in notifies(message.payloads)],
                         [NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP,
                          NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, NotifyType.SIGNATURE_HASH_ALGORITHMS,
                          NotifyType.REDIRECT_SUPPORTED])

    def test_summaries_match_strongswan_log(self) -> None:
        for name, document in scenarios().items():
            logged = logged_summaries(document)
            request, response = (IkeMessage.parse(raw) for raw in records(document)[:2])
            self.assertEqual(request.describe(), logged[0], name)
            self.assertEqual(response.describe(), logged[1], name)

    def test_strongswan_sends_our_parse_of_its_proposal_strings(self) -> None:
        for name, document in scenarios().items():
            sa = IkeMessage.parse(records(document)[0]).payloads[0]
            expected = parse_proposals([document["initiator_config"]["proposals"]])
            self.assertEqual(sa.proposals, expected, name)

    def test_header_fast_path(self) -> None:
        raw = records(scenarios()["psk-x25519-aescbc"])[0]
        head = IkeHeader.parse(raw)
        self.assertEqual((head.exchange, head.message_id, head.length, head.next_payload),
                         (ExchangeType.IKE_SA_INIT, 0, len(raw), PayloadType.SA))
        self.assertTrue(head.initiator)
        self.assertFalse(head.response)
        nonce = next(p for p in IkeMessage.parse(raw).payloads if isinstance(p, Nonce))
        self.assertEqual(find_payload(raw, PayloadType.NONCE), nonce.data)
        self.assertIsNone(find_payload(raw, PayloadType.EAP))
        self.assertIsNone(find_payload(raw[:40], PayloadType.NONCE))


class HeaderErrorTests(unittest.TestCase):
    def test_short_datagram(self) -> None:
        error = self.assertRaises(InvalidSyntax, IkeMessage.parse, b"\x00" * 27)
        self.assertEqual(error.offset, 27)
        self.assertEqual(error.notify, NotifyType.INVALID_SYNTAX)

    def test_length_field_must_match(self) -> None:
        raw = message_with((PayloadType.NONCE, 0, NONCE))
        for data in (raw + b"\x00", raw[:-1]):
            error = self.assertRaises(InvalidSyntax, IkeMessage.parse, data)
            self.assertEqual(error.offset, 24)

    def test_other_major_version(self) -> None:
        raw = bytearray(message_with((PayloadType.NONCE, 0, NONCE)))
        raw[17] = 0x10  # IKEv1
        error = self.assertRaises(InvalidMajorVersion, IkeMessage.parse, bytes(raw))
        self.assertEqual((error.major, error.minor, error.offset), (1, 0, 17))
        self.assertEqual(error.to_notify(), Notify(NotifyType.INVALID_MAJOR_VERSION, b"\x20"))
        self.assertRaises(InvalidMajorVersion, IkeHeader.parse, bytes(raw))

    def test_minor_version_and_flags_round_trip(self) -> None:
        message = IkeMessage(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 7, (), initiator=False, response=True,
                             higher_version=True, minor_version=1)
        raw = message.build()
        self.assertEqual(raw[17], 0x21)
        self.assertEqual(raw[19], 0x30)
        self.assertEqual(IkeMessage.parse(raw), message)
        self.assertEqual(message.describe(), "INFORMATIONAL response 7 [ ]")

    def test_bad_spi_sizes_refused_when_building(self) -> None:
        self.assertRaises(ValueError, IkeMessage, b"\x01" * 7, SPI_R, 34, 0)
        self.assertRaises(ValueError, IkeMessage, SPI_I, SPI_R, 34, 2**32)


class PayloadChainTests(unittest.TestCase):
    def test_unknown_payload_kept_raw(self) -> None:
        raw = message_with((PayloadType.NONCE, 0, NONCE), (200, 0, b"opaque"))
        message = IkeMessage.parse(raw)
        self.assertEqual(message.payloads[1], UnknownPayload(200, b"opaque"))
        self.assertEqual(message.build(), raw)
        self.assertIn("UNKN(200)", message.describe())

    def test_unknown_critical_payload(self) -> None:
        raw = message_with((PayloadType.NONCE, 0, NONCE), (200, 0x80, b"opaque"))
        error = self.assertRaises(UnsupportedCriticalPayload, IkeMessage.parse, raw)
        self.assertEqual(error.payload_type, 200)
        self.assertEqual(error.offset, HEADER_SIZE + 4 + 32)
        self.assertEqual(error.to_notify(), Notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, b"\xc8"))
        self.assertEqual(pickle.loads(pickle.dumps(error)).payload_type, 200)

    def test_critical_bit_on_known_payload_ignored_but_kept(self) -> None:
        raw = message_with((PayloadType.NONCE, 0x80, NONCE))
        message = IkeMessage.parse(raw)
        self.assertEqual(message.payloads[0].data, NONCE)
        self.assertTrue(message.payloads[0].critical)
        self.assertEqual(message.build(), raw)

    def test_payload_length_errors(self) -> None:
        for length in (0, 3, 100):
            raw = bytearray(message_with((PayloadType.NONCE, 0, NONCE)))
            struct.pack_into(">H", raw, HEADER_SIZE + 2, length)
            error = self.assertRaises(InvalidSyntax, IkeMessage.parse, bytes(raw))
            self.assertEqual(error.offset, HEADER_SIZE + 2)

    def test_truncated_chain(self) -> None:
        raw = bytearray(message_with((PayloadType.NONCE, 0, NONCE)))
        raw[HEADER_SIZE] = PayloadType.VENDOR_ID  # announces a payload that is not there
        error = self.assertRaises(InvalidSyntax, IkeMessage.parse, bytes(raw))
        self.assertEqual(error.offset, len(raw))

    def test_trailing_bytes_after_chain(self) -> None:
        raw = message_with((PayloadType.NONCE, 0, NONCE))
        data = raw + b"\x00\x00"
        data = data[:24] + struct.pack(">I", len(data)) + data[28:]
        error = self.assertRaises(InvalidSyntax, IkeMessage.parse, data)
        self.assertEqual(error.offset, len(raw))

    def test_too_many_payloads(self) -> None:
        chain = [(PayloadType.VENDOR_ID, 0, b"v")] * (MAX_PAYLOADS + 1)
        error = self.assertRaises(InvalidSyntax, IkeMessage.parse, message_with(*chain))
        self.assertIn("more than", error.reason)
        self.assertEqual(len(IkeMessage.parse(message_with(*chain[:MAX_PAYLOADS])).payloads), MAX_PAYLOADS)

    def test_encrypted_payload_must_be_last(self) -> None:
        raw = message_with((PayloadType.SK, 0, b"\x00" * 40), (PayloadType.NONCE, 0, NONCE))
        self.assertRaises(InvalidSyntax, IkeMessage.parse, raw)

    def test_encrypted_payload_next_is_first_inner(self) -> None:
        body = b"\x01" * 48
        chain = struct.pack(">BBH", PayloadType.IDi, 0, 4 + len(body)) + body
        raw = header(PayloadType.SK, HEADER_SIZE + len(chain), exchange=35) + chain
        message = IkeMessage.parse(raw)
        self.assertEqual(message.encrypted, Encrypted(PayloadType.IDi, body))
        self.assertIsNone(message.fragment)
        self.assertEqual(message.build(), raw)
        self.assertEqual(message.describe(), "IKE_AUTH request 0 [ E ]")

    def test_encrypted_fragment(self) -> None:
        body = struct.pack(">HH", 2, 3) + b"\x02" * 40
        chain = struct.pack(">BBH", 0, 0, 4 + len(body)) + body
        raw = header(PayloadType.SKF, HEADER_SIZE + len(chain), exchange=35) + chain
        message = IkeMessage.parse(raw)
        self.assertEqual(message.fragment, EncryptedFragment(2, 3, 0, b"\x02" * 40))
        self.assertEqual(message.build(), raw)
        self.assertEqual(message.describe(), "IKE_AUTH request 0 [ EF(2/3) ]")
        short = header(PayloadType.SKF, HEADER_SIZE + 6, exchange=35) + struct.pack(">BBHH", 0, 0, 6, 1)
        self.assertRaises(InvalidSyntax, IkeMessage.parse, short)

    def test_nested_encrypted_payload_refused(self) -> None:
        inner = struct.pack(">BBH", 0, 0, 8) + b"\x00" * 4
        error = self.assertRaises(InvalidSyntax, parse_payloads, PayloadType.SK, inner)
        self.assertEqual(error.offset, 0)

    def test_inner_chain_offsets_are_relative(self) -> None:
        chain = struct.pack(">BBH", PayloadType.NONCE, 0, 8) + b"abcd" + struct.pack(">BBH", 0, 0, 8) + b"abcd"
        error = self.assertRaises(InvalidSyntax, parse_payloads, PayloadType.NONCE, chain)
        self.assertEqual(error.offset, 4)

    def test_build_refuses_encrypted_in_the_middle(self) -> None:
        self.assertRaises(ValueError, build_payloads, [Encrypted(0, b"x"), Nonce(NONCE)])
        self.assertEqual(build_payloads([]), (PayloadType.NONE, b""))


def one_payload(payload) -> bytes:
    return IkeMessage(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 1, (payload,)).build()


class PayloadTests(unittest.TestCase):
    def roundtrip(self, payload) -> None:
        raw = one_payload(payload)
        parsed = IkeMessage.parse(raw).payloads[0]
        self.assertEqual(parsed, payload)
        self.assertEqual(parsed.build_body(), raw[HEADER_SIZE + 4:])

    def body_error(self, payload_type: int, body: bytes, offset: int) -> InvalidSyntax:
        error = self.assertRaises(InvalidSyntax, IkeMessage.parse, message_with((payload_type, 0, body)))
        self.assertEqual(error.offset, HEADER_SIZE + 4 + offset)
        return error

    def test_security_association_with_key_length_and_spi(self) -> None:
        esp = Proposal(2, ProtocolId.ESP, (
            Transform.of(TransformType.ENCR, EncryptionAlgorithm.ENCR_AES_CBC, 256),
            Transform(TransformType.INTEG, IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128),
            Transform(TransformType.ESN, Esn.NO_ESN),
        ), b"\xc1\xc2\xc3\xc4")
        odd = Proposal(3, ProtocolId.IKE, (Transform(TransformType.ENCR, 12, (TransformAttribute(99, b"tlv"),)),))
        self.roundtrip(SecurityAssociation((parse_proposal("aes128-sha256-modp3072"), esp, odd)))
        self.assertEqual(esp.transforms[0].key_length, 256)
        self.assertIsNone(esp.transforms[1].key_length)
        self.assertIsNone(odd.transforms[0].key_length)
        self.assertEqual(esp.transforms_of(TransformType.ESN), (Transform(TransformType.ESN, 0),))

    def test_security_association_last_substructure_fields(self) -> None:
        proposals = parse_proposals(["aes128-sha256-x25519", "aes256gcm16-prfsha384-ecp384"])
        raw = one_payload(SecurityAssociation(proposals))
        body = raw[HEADER_SIZE + 4:]
        self.assertEqual(body[0], 2)  # more proposals follow
        self.assertEqual(body[8], 3)  # more transforms follow

    def test_security_association_errors(self) -> None:
        proposal = parse_proposal("aes128-sha256-x25519").build(True)
        self.body_error(PayloadType.SA, proposal[:7], 0)
        bad_count = bytearray(proposal)
        bad_count[7] = 5
        self.body_error(PayloadType.SA, bytes(bad_count), 7)
        bad_length = bytearray(proposal)
        struct.pack_into(">H", bad_length, 2, 200)
        self.body_error(PayloadType.SA, bytes(bad_length), 2)
        bad_transform = bytearray(proposal)
        struct.pack_into(">H", bad_transform, 8 + 2, 4)
        self.body_error(PayloadType.SA, bytes(bad_transform), 10)
        truncated_attribute = bytearray(proposal[:8] + struct.pack(">BxHBxH", 0, 10, 1, 12) + b"\x80\x0e")
        truncated_attribute[7] = 1
        struct.pack_into(">H", truncated_attribute, 2, len(truncated_attribute))
        self.body_error(PayloadType.SA, bytes(truncated_attribute), 16)
        overrunning_tlv = proposal[:8] + struct.pack(">BxHBxH", 0, 12, 1, 12) + struct.pack(">HH", 1, 9)
        overrunning_tlv = bytearray(overrunning_tlv)
        overrunning_tlv[7] = 1
        struct.pack_into(">H", overrunning_tlv, 2, len(overrunning_tlv))
        self.body_error(PayloadType.SA, bytes(overrunning_tlv), 18)

    def test_key_exchange(self) -> None:
        self.roundtrip(KeyExchange(DhGroup.MODP_2048, b"\x07" * 256))
        self.body_error(PayloadType.KE, b"\x00\x0e\x00", 0)

    def test_identification(self) -> None:
        for identity in ("carol@strongswan.org", "moon.strongswan.org", "10.1.0.1", "fec0::1"):
            self.roundtrip(IDi.of(identity))
            self.roundtrip(IDr.of(identity))
            self.assertEqual(str(IDi.of(identity)), identity)
        self.assertEqual(IDi.of("carol@strongswan.org").id_type, IdType.ID_RFC822_ADDR)
        self.assertEqual(IDr.of(ipaddress.ip_address("10.1.0.1")).id_type, IdType.ID_IPV4_ADDR)
        self.assertNotEqual(IDi.of("a.b"), IDr.of("a.b"))
        self.assertEqual(str(IDi(IdType.ID_KEY_ID, b"\x01\x02")), "ID_KEY_ID:0102")
        self.assertEqual(str(IDi(IdType.ID_NULL, b"")), "%any")
        self.body_error(PayloadType.IDi, b"\x02\x00", 0)

    def test_distinguished_names_print_as_strongswan_prints_them(self) -> None:
        # C=CH, O=strongSwan, CN=carol: PrintableString, UTF8String, UTF8String (DER by hand)
        der = bytes.fromhex("3032" "310b3009060355040613024348"
                            "3113301106035504" "0a0c0a" + b"strongSwan".hex() +
                            "310e300c06035504030c05" + b"carol".hex())
        self.assertEqual(str(IDi(IdType.ID_DER_ASN1_DN, der)), "C=CH, O=strongSwan, CN=carol")
        # a control character of the peer's choosing cannot break the log line
        evil = bytes.fromhex("3011310f300d06035504030c06") + b"a\nb\x1b[m"
        self.assertEqual(str(IDr(IdType.ID_DER_ASN1_DN, evil)), "CN=a\\x0ab\\x1b[m")
        # not a Name: the bytes in hex, as before
        self.assertEqual(str(IDi(IdType.ID_DER_ASN1_DN, b"\x30\x03\x01\x01\x00")), "ID_DER_ASN1_DN:3003010100")
        self.assertEqual(str(IDi(IdType.ID_FQDN, b"moon\n")), "moon\\x0a")

    def test_identification_reserved_octets_kept_for_auth(self) -> None:
        body = b"\x02\x01\x02\x03moon"
        parsed = IkeMessage.parse(message_with((PayloadType.IDr, 0, body))).payloads[0]
        self.assertEqual(parsed.build_body(), body)

    def test_certificates(self) -> None:
        self.roundtrip(Certificate(CertEncoding.X509_CERT_SIGNATURE, b"\x30\x82der"))
        request = CertRequest(CertEncoding.X509_CERT_SIGNATURE, b"\x01" * 20 + b"\x02" * 20)
        self.roundtrip(request)
        self.assertEqual(request.authorities, (b"\x01" * 20, b"\x02" * 20))
        self.roundtrip(CertRequest(CertEncoding.X509_CERT_SIGNATURE))
        self.body_error(PayloadType.CERT, b"", 0)
        self.body_error(PayloadType.CERTREQ, b"", 0)

    def test_authentication(self) -> None:
        self.roundtrip(Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE, b"\x05" * 32))
        self.body_error(PayloadType.AUTH, b"\x02\x00\x00", 0)

    def test_nonce_size_limits(self) -> None:
        self.roundtrip(Nonce(b"\x01" * 16))
        self.roundtrip(Nonce(b"\x01" * 256))
        self.body_error(PayloadType.NONCE, b"\x01" * 15, 0)
        self.body_error(PayloadType.NONCE, b"\x01" * 257, 0)

    def test_notify(self) -> None:
        self.roundtrip(Notify(NotifyType.COOKIE, b"\x00" * 17))
        rekey = Notify(NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=b"\xaa\xbb\xcc\xdd")
        self.roundtrip(rekey)
        self.roundtrip(Notify(60000, b"private"))
        self.assertTrue(Notify(NotifyType.TS_UNACCEPTABLE).is_error)
        self.assertFalse(Notify(NotifyType.EAP_ONLY_AUTHENTICATION).is_error)
        self.assertEqual(Notify(NotifyType.EAP_ONLY_AUTHENTICATION).short_name, "EAP_ONLY")
        self.assertEqual(Notify(NotifyType.INTERNAL_ADDRESS_FAILURE).short_name, "INT_ADDR_FAIL")
        self.assertEqual(Notify(NotifyType.AUTHORIZATION_FAILED).short_name, "AUTHORIZATION_FAILED")
        self.assertEqual(Notify(55555).short_name, "55555")
        self.body_error(PayloadType.NOTIFY, b"\x03\x04\x40", 0)
        self.body_error(PayloadType.NOTIFY, b"\x03\x08\x40\x09\x01", 1)

    def test_notify_registry_values(self) -> None:
        self.assertEqual(NotifyType.EAP_ONLY_AUTHENTICATION, 16417)
        self.assertEqual(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, 16430)
        self.assertEqual(NotifyType.SIGNATURE_HASH_ALGORITHMS, 16431)
        self.assertEqual((NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP,
                          NotifyType.COOKIE), (16388, 16389, 16390))
        self.assertEqual((NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, NotifyType.NO_PROPOSAL_CHOSEN,
                          NotifyType.INVALID_KE_PAYLOAD, NotifyType.AUTHENTICATION_FAILED,
                          NotifyType.INTERNAL_ADDRESS_FAILURE, NotifyType.TS_UNACCEPTABLE), (1, 14, 17, 24, 36, 38))

    def test_delete(self) -> None:
        self.roundtrip(Delete(ProtocolId.IKE))
        self.roundtrip(Delete(ProtocolId.ESP, (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")))
        self.assertEqual(Delete(ProtocolId.IKE).build_body(), b"\x01\x00\x00\x00")
        self.body_error(PayloadType.DELETE, b"\x03\x04\x00\x02\x01\x02\x03\x04", 2)
        self.body_error(PayloadType.DELETE, b"\x03\x00\x00\x02", 1)
        self.body_error(PayloadType.DELETE, b"\x03\x04", 0)

    def test_vendor_id(self) -> None:
        self.roundtrip(VendorId(b"strongSwan"))

    def test_traffic_selectors(self) -> None:
        v4 = TrafficSelector.from_network("10.1.0.0/16")
        v6 = TrafficSelector.from_network("fec1::/16", ip_protocol=6, start_port=443, end_port=443)
        fc = UnknownTrafficSelector(9, 0, b"\x00" * 12)
        self.roundtrip(TSi((v4, v6, fc)))
        self.roundtrip(TSr((TrafficSelector(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.9")),)))
        self.assertEqual(str(v4), "10.1.0.0/16")
        self.assertEqual(str(v6), "fec1::/16[6/443]")
        self.assertEqual(str(TrafficSelector(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2"),
                                             17, 1000, 2000)), "10.0.0.1..10.0.0.2[17/1000-2000]")
        self.assertEqual(v4.start_port, 0)
        self.assertEqual(v4.end_port, 65535)
        good = TSi((v4,)).build_body()
        self.body_error(PayloadType.TSi, good[:3], 0)
        self.body_error(PayloadType.TSi, b"\x02\x00\x00\x00" + good[4:], 20)
        wrong_length = bytearray(good)
        struct.pack_into(">H", wrong_length, 6, 20)
        self.body_error(PayloadType.TSi, bytes(wrong_length + b"\x00" * 4), 6)
        self.body_error(PayloadType.TSr, good + b"\x00", 20)

    def test_configuration(self) -> None:
        request = Configuration(CfgType.CFG_REQUEST, (
            ConfigurationAttribute(ConfigurationAttributeType.INTERNAL_IP4_ADDRESS),
            ConfigurationAttribute(ConfigurationAttributeType.INTERNAL_IP4_DNS),
            ConfigurationAttribute(ConfigurationAttributeType.INTERNAL_IP6_ADDRESS),
        ))
        reply = Configuration(CfgType.CFG_REPLY, (
            ConfigurationAttribute.ip4_address("10.10.0.7"), ConfigurationAttribute.ip4_netmask("10.10.0.0/24"),
            ConfigurationAttribute.ip4_dns("10.1.0.53"), ConfigurationAttribute.ip4_subnet("10.1.0.0/16"),
            ConfigurationAttribute.ip6_address("fec3::7", 64), ConfigurationAttribute.ip6_dns("fec1::53"),
        ))
        self.roundtrip(request)
        self.roundtrip(reply)
        self.assertEqual(reply.attributes_of(ConfigurationAttributeType.INTERNAL_IP4_ADDRESS)[0].address,
                         ipaddress.ip_address("10.10.0.7"))
        self.assertEqual(reply.attributes[4].address, ipaddress.ip_address("fec3::7"))
        self.assertIsNone(request.attributes[0].address)
        self.assertEqual(reply.attributes[3].value, bytes([10, 1, 0, 0, 255, 255, 0, 0]))
        message = IkeMessage(SPI_I, SPI_R, 35, 1, (request, reply))
        self.assertEqual(message.describe(), "IKE_AUTH request 1 [ CPRQ(ADDR DNS ADDR6) "
                                             "CPRP(ADDR MASK DNS SUBNET ADDR6 DNS6) ]")
        self.body_error(PayloadType.CP, b"\x01\x00", 0)
        self.body_error(PayloadType.CP, b"\x01\x00\x00\x00\x00\x01\x00\x04\x0a", 6)
        self.body_error(PayloadType.CP, b"\x01\x00\x00\x00\x00\x01", 4)

    def test_configuration_reserved_bit_ignored(self) -> None:
        body = b"\x01\x00\x00\x00\x80\x01\x00\x00"
        parsed = IkeMessage.parse(message_with((PayloadType.CP, 0, body))).payloads[0]
        self.assertEqual(parsed.attributes[0].attribute_type, ConfigurationAttributeType.INTERNAL_IP4_ADDRESS)

    def test_eap(self) -> None:
        identity = bytes([2, 0, 0, 10, 1]) + b"carol"
        self.roundtrip(Eap(identity))
        self.roundtrip(Eap(bytes([3, 1, 0, 4])))
        self.body_error(PayloadType.EAP, bytes([3, 1, 0]), 0)
        self.body_error(PayloadType.EAP, bytes([3, 1, 0, 5]), 2)
        eaps = (Eap(identity), Eap(bytes([1, 2, 0, 6, 4, 16])), Eap(bytes([4, 1, 0, 4])))
        message = IkeMessage(SPI_I, SPI_R, 35, 2, eaps)
        self.assertEqual(message.describe(), "IKE_AUTH request 2 [ EAP/RES/ID EAP/REQ/MD5 EAP/FAIL ]")

    def test_errors_never_contain_payload_bytes(self) -> None:
        secret = b"password-in-eap"
        raw = message_with((PayloadType.EAP, 0, bytes([2, 1, 0, 99]) + secret))
        error = self.assertRaises(IkeProtocolError, IkeMessage.parse, raw)
        self.assertNotIn("password", str(error) + repr(error))
        self.assertNotIn("password", repr(Authentication(2, secret)) + repr(KeyExchange(14, secret)))


class NatTraversalFramingTests(unittest.TestCase):
    def test_ike_with_marker(self) -> None:
        message = one_payload(Nonce(NONCE))
        framed = frame_nat_t(message)
        self.assertEqual(framed[:4], NON_ESP_MARKER)
        self.assertEqual(unframe_nat_t(framed), (NatTKind.IKE, message))

    def test_esp_and_keepalive(self) -> None:
        esp = b"\xc1\xc2\xc3\xc4" + b"\x00\x00\x00\x01" + b"payload"
        self.assertEqual(unframe_nat_t(esp), (NatTKind.ESP, esp))
        self.assertEqual(unframe_nat_t(b"\xff"), (NatTKind.KEEPALIVE, b""))
        self.assertRaises(InvalidSyntax, unframe_nat_t, b"\x01\x02\x03")


# -- proposals (transforms.py) ------------------------------------------------------


def ids(proposal: Proposal) -> list[tuple[int, int, int | None]]:
    return [(t.transform_type, t.transform_id, t.key_length) for t in proposal.transforms]


class ProposalStringTests(unittest.TestCase):
    def test_default_ike_proposals(self) -> None:
        self.assertEqual(ids(parse_proposal("aes256-sha256-x25519")), [
            (TransformType.ENCR, EncryptionAlgorithm.ENCR_AES_CBC, 256),
            (TransformType.INTEG, IntegrityAlgorithm.AUTH_HMAC_SHA2_256_128, None),
            (TransformType.PRF, PseudorandomFunction.PRF_HMAC_SHA2_256, None),
            (TransformType.DH, DhGroup.CURVE25519, None)])
        self.assertEqual(ids(parse_proposal("aes128-sha256-modp3072"))[-1], (TransformType.DH, 15, None))
        self.assertEqual(ids(parse_proposal("aes256gcm16-prfsha384-ecp384")), [
            (TransformType.ENCR, EncryptionAlgorithm.ENCR_AES_GCM_16, 256),
            (TransformType.PRF, PseudorandomFunction.PRF_HMAC_SHA2_384, None),
            (TransformType.DH, DhGroup.ECP_384, None)])

    def test_esp_proposals(self) -> None:
        self.assertEqual(ids(parse_proposal("aes256gcm16", ProtocolId.ESP)), [
            (TransformType.ENCR, EncryptionAlgorithm.ENCR_AES_GCM_16, 256), (TransformType.ESN, Esn.NO_ESN, None)])
        self.assertEqual(ids(parse_proposal("aes128-sha256", ProtocolId.ESP)), [
            (TransformType.ENCR, 12, 128), (TransformType.INTEG, 12, None), (TransformType.ESN, 0, None)])
        pfs = parse_proposal("aes128-sha256-modp3072-esn", ProtocolId.ESP)
        self.assertEqual(ids(pfs)[-2:], [(TransformType.DH, 15, None), (TransformType.ESN, 1, None)])

    def test_strongswan_completion_rules(self) -> None:
        several = parse_proposal("aes128-aes256-sha256-sha384-ecp256-x25519")
        self.assertEqual([t.transform_id for t in several.transforms_of(TransformType.PRF)], [5, 6])
        self.assertEqual(parse_proposal("aes256gcm16-sha256-prfsha256-x25519").transforms_of(TransformType.INTEG), ())
        self.assertEqual(parse_proposal("AES256-SHA256-X25519"), parse_proposal("aes256-sha256-x25519"))
        self.assertEqual(parse_proposal("aes128gcm128-prfsha256-ecp256"),
                         parse_proposal("aes128gcm16-prfsha256-ecp256"))
        self.assertEqual(describe_proposal(parse_proposal("aes256gcm16-prfsha384-ecp384")),
                         "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384")
        self.assertEqual(describe_proposal(parse_proposal("chacha20poly1305-prfsha256-x448")),
                         "IKE:CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_448")

    def test_invalid_strings(self) -> None:
        for text, reason in (("aes256-sha256-x25519-foo", "not recognized"), ("", "empty"),
                             ("aes256--x25519", "empty"), ("aes256gcm16-x25519", "PRF"),
                             ("aes256-sha256", "DH group"), ("aes256-prfsha256-x25519", "integrity"),
                             ("aes256-aes256gcm16-prfsha256-x25519", "AEAD"), ("sha256-x25519", "encryption")):
            error = self.assertRaises(ValueError, parse_proposal, text)
            self.assertIn(reason, str(error))
        self.assertRaises(ValueError, parse_proposal, "sha256", ProtocolId.ESP)
        self.assertEqual(ids(parse_proposal("sha256", ProtocolId.AH)), [(3, 12, None), (5, 0, None)])

    def test_numbering(self) -> None:
        self.assertEqual([p.number for p in parse_proposals(["aes128-sha256-x25519", "aes256gcm16-prfsha384-ecp384"])],
                         [1, 2])


CONFIGURED = parse_proposals(["aes256-sha256-x25519", "aes128-sha256-modp3072", "aes256gcm16-prfsha384-ecp384"])


class ProposalSelectionTests(unittest.TestCase):
    def test_responder_prefers_its_configured_order(self) -> None:
        received = parse_proposals(["aes256gcm16-prfsha384-ecp384", "aes128-sha256-modp3072", "aes256-sha256-x25519"])
        chosen = select_proposal(CONFIGURED, received)
        self.assertEqual(describe_proposal(chosen), "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519")
        self.assertEqual(chosen.number, 3)  # the initiator's number
        initiator_order = select_proposal(CONFIGURED, received, prefer_configured=False)
        self.assertEqual(describe_proposal(initiator_order), "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384")
        self.assertEqual(initiator_order.number, 1)

    def test_algorithm_order_within_proposal_is_configured(self) -> None:
        received = parse_proposals(["aes128-aes256-sha512-sha256-modp3072-x25519"])
        chosen = select_proposal(parse_proposals(["aes256-aes128-sha256-sha512-x25519-modp3072"]), received)
        self.assertEqual(ids(chosen), [(1, 12, 256), (3, 12, None), (2, 5, None), (4, 31, None)])
        mine = select_proposal(parse_proposals(["aes256-aes128-sha256-sha512-x25519-modp3072"]), received,
                               prefer_configured=False)
        self.assertEqual(ids(mine), [(1, 12, 128), (3, 14, None), (2, 7, None), (4, 15, None)])

    def test_one_transform_per_type_and_no_integrity_with_aead(self) -> None:
        received = parse_proposals(["aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-ecp256"])
        chosen = select_proposal(CONFIGURED, received)
        self.assertEqual(describe_proposal(chosen), "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384")
        self.assertEqual(Algorithms.from_proposal(chosen), Algorithms(ProtocolId.IKE, 20, 256, None, 7 - 1, 20))

    def test_no_match(self) -> None:
        self.assertIsNone(select_proposal(CONFIGURED, parse_proposals(["aes128-sha1-modp2048"])))
        # same algorithm, other key length
        self.assertIsNone(select_proposal(CONFIGURED, parse_proposals(["aes192-sha256-x25519"])))
        self.assertIsNone(select_proposal(CONFIGURED, parse_proposals(["aes256-sha256"], ProtocolId.ESP)))
        # a transform with an attribute we do not know is not chosen (RFC 7296 §3.3.6)
        odd = Proposal(1, ProtocolId.IKE, (
            Transform(1, 12, (TransformAttribute(14, 256), TransformAttribute(77, 1))),
            *parse_proposal("aes256-sha256-x25519").transforms[1:]))
        self.assertIsNone(select_proposal(CONFIGURED, [odd]))

    def test_dh_group_mismatch_selects_our_group(self) -> None:
        # the initiator offers x25519 and ecp256; the KE it sent is the state machine's business:
        # the selected group decides whether it answers INVALID_KE_PAYLOAD
        received = parse_proposals(["aes256-sha256-ecp256-x25519"])
        self.assertEqual(Algorithms.from_proposal(select_proposal(CONFIGURED, received)).dh_group, DhGroup.CURVE25519)

    def test_esp_without_pfs(self) -> None:
        esp = parse_proposals(["aes256gcm16", "aes128-sha256"], ProtocolId.ESP)
        with_pfs = parse_proposals(["aes128-sha256-modp3072"], ProtocolId.ESP)
        self.assertIsNone(select_proposal(esp, with_pfs))
        chosen = select_proposal(esp, with_pfs, skip_dh=True)
        self.assertEqual(describe_proposal(chosen), "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ")
        none_offered = parse_proposals(["aes128-sha256-modp3072-none"], ProtocolId.ESP)
        self.assertEqual(describe_proposal(select_proposal(esp, none_offered)),
                         "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ")
        self.assertEqual(describe_proposal(select_proposal(with_pfs, with_pfs)),
                         "ESP:AES_CBC_128/HMAC_SHA2_256_128/MODP_3072/NO_EXT_SEQ")

    def test_esp_spi_and_number_follow_the_initiator(self) -> None:
        transforms = parse_proposal("aes256gcm16", ProtocolId.ESP).transforms
        offered = Proposal(4, ProtocolId.ESP, transforms, b"\x0a\x0b\x0c\x0d")
        chosen = select_proposal(parse_proposals(["aes256gcm16"], ProtocolId.ESP), [offered])
        self.assertEqual((chosen.number, chosen.spi), (4, b"\x0a\x0b\x0c\x0d"))
        self.assertIsNone(select_proposal(CONFIGURED, [offered]))  # protocol mismatch

    def test_private_algorithms_never_chosen(self) -> None:
        private = Proposal(1, ProtocolId.IKE, (Transform.of(1, 1031, 256), *parse_proposal("aes256-sha256-x25519")
                                               .transforms[1:]))
        self.assertIsNone(select_proposal([private], [private]))


# -- generated messages and random bytes ---------------------------------------------------

small = st.binary(max_size=40)
addresses4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
addresses6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
selectors = st.one_of(
    st.builds(lambda a, b, p, s, e: TrafficSelector(a, b, p, s, e), addresses4, addresses4, st.integers(0, 255),
              st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(lambda a, b, p: TrafficSelector(a, b, p), addresses6, addresses6, st.integers(0, 255)),
    st.builds(UnknownTrafficSelector, st.sampled_from([9, 10, 11]), st.integers(0, 255), small),
)
attributes = st.one_of(st.builds(TransformAttribute, st.integers(0, 0x7FFF), st.integers(0, 0xFFFF)),
                       st.builds(TransformAttribute, st.integers(0, 0x7FFF), small))
transforms = st.builds(Transform, st.integers(0, 255), st.integers(0, 0xFFFF),
                       st.lists(attributes, max_size=2).map(tuple))
proposals = st.builds(Proposal, st.integers(0, 255), st.integers(0, 255),
                      st.lists(transforms, max_size=6).map(tuple), st.sampled_from([b"", b"\x01\x02\x03\x04", SPI_I]))
critical = st.booleans()
payloads = st.one_of(
    st.builds(SecurityAssociation, st.lists(proposals, max_size=3).map(tuple), critical=critical),
    st.builds(KeyExchange, st.integers(0, 0xFFFF), st.binary(max_size=97), critical=critical),
    st.builds(IDi, st.integers(0, 255), small, critical=critical, reserved=st.binary(min_size=3, max_size=3)),
    st.builds(IDr, st.integers(0, 255), small, critical=critical),
    st.builds(Certificate, st.integers(0, 255), small, critical=critical),
    st.builds(CertRequest, st.integers(0, 255), small, critical=critical),
    st.builds(Authentication, st.integers(0, 255), small, critical=critical),
    st.builds(Nonce, st.binary(min_size=16, max_size=64), critical=critical),
    st.builds(Notify, st.integers(0, 0xFFFF), small, protocol=st.integers(0, 255), spi=st.binary(max_size=8),
              critical=critical),
    st.builds(Delete, st.just(ProtocolId.IKE), critical=critical),
    st.builds(lambda spis: Delete(ProtocolId.ESP, tuple(spis)),
              st.lists(st.binary(min_size=4, max_size=4), max_size=4)),
    st.builds(VendorId, small, critical=critical),
    st.builds(TSi, st.lists(selectors, max_size=4).map(tuple), critical=critical),
    st.builds(TSr, st.lists(selectors, max_size=4).map(tuple), critical=critical),
    st.builds(Configuration, st.integers(0, 255),
              st.lists(st.builds(ConfigurationAttribute, st.integers(0, 0x7FFF), small), max_size=4).map(tuple),
              critical=critical),
    st.builds(lambda code, ident, data: Eap(bytes([code, ident]) + struct.pack(">H", 4 + len(data)) + data),
              st.integers(0, 255), st.integers(0, 255), small),
    st.builds(UnknownPayload, st.integers(54, 255), small),
)
sealed = st.one_of(st.none(), st.builds(Encrypted, st.integers(0, 255), small),
                   st.builds(EncryptedFragment, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 255),
                             small))
messages = st.builds(
    lambda chain, last, exchange, message_id, flags, minor: IkeMessage(
        SPI_I, SPI_R, exchange, message_id, tuple(chain) + ((last,) if last else ()), *flags, minor_version=minor),
    st.lists(payloads, max_size=6), sealed, st.integers(0, 255), st.integers(0, 2**32 - 1),
    st.tuples(st.booleans(), st.booleans(), st.booleans()), st.integers(0, 15))


class GeneratedMessageTests(unittest.TestCase):
    @FAST
    @given(messages)
    def test_roundtrip(self, message: IkeMessage) -> None:
        raw = message.build()
        parsed = IkeMessage.parse(raw)
        self.assertEqual(parsed, message)
        self.assertEqual(parsed.build(), raw)
        parsed.describe()

    @FAST
    @given(st.binary(max_size=600))
    def test_random_bytes_never_crash(self, data: bytes) -> None:
        for candidate in (data, header(data[0] if data else 0, HEADER_SIZE + len(data[1:])) + data[1:]):
            try:
                IkeMessage.parse(candidate).build()
            except IkeProtocolError:
                pass
            find_payload(candidate, PayloadType.NONCE)

    @FAST
    @given(st.data())
    def test_mutated_strongswan_messages_never_crash(self, data) -> None:
        raws = [raw for document in scenarios().values() for raw in records(document)]
        raw = bytearray(data.draw(st.sampled_from(raws)))
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        try:
            IkeMessage.parse(bytes(raw)).describe()
        except IkeProtocolError as error:
            self.assertIsNotNone(error.offset)

    @FAST
    @given(st.binary(max_size=300), st.integers(0, 255))
    def test_random_inner_chains_never_crash(self, data: bytes, first: int) -> None:
        try:
            parse_payloads(first, data)
        except IkeProtocolError:
            pass
