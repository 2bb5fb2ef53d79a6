"""IKEv2 messages (RFC 7296 §3): the header, every payload, and NAT-T framing.

An ``IkeMessage`` is the 28-byte IKE header and a chain of payloads.  Each
payload is a small frozen value with a ``parse_body`` / ``build_body`` pair
(the part after the 4-byte generic payload header); ``IkeMessage.parse`` and
``IkeMessage.build`` walk the chain.  Payloads nac does not know are kept as
``UnknownPayload`` with their raw bytes, so everything round-trips byte for
byte, except an unknown payload with the critical bit set, which is an
``UnsupportedCriticalPayload`` error (RFC 7296 §2.5): the responder answers it
with an UNSUPPORTED_CRITICAL_PAYLOAD notify.

The Encrypted and Authenticated payload (SK, §3.14) and the Encrypted
Fragment payload (SKF, RFC 7383 §2.5) are parsed as opaque ciphertext;
``IkeMessage.seal`` and ``IkeMessage.unseal`` encrypt and decrypt the inner
payload chain with any object that has the ``SkProtection`` methods
(``transports.ikev2.crypto.SkCipher``).

Decoders raise only ``IkeProtocolError`` subclasses, each with the notify
type the peer should be told about and the byte offset that failed.
Nothing here touches sockets, clocks or keys.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import ClassVar, Protocol, Union

from pyasn1.type import char

from nac.escape import printable

__all__ = [
    "HEADER_SIZE",
    "IKE_MAJOR_VERSION",
    "MAX_PAYLOADS",
    "NON_ESP_MARKER",
    "SPI_SIZE",
    "AuthMethod",
    "Authentication",
    "CertEncoding",
    "CertRequest",
    "Certificate",
    "CfgType",
    "Configuration",
    "ConfigurationAttribute",
    "ConfigurationAttributeType",
    "Delete",
    "Eap",
    "Encrypted",
    "EncryptedFragment",
    "ExchangeType",
    "IDi",
    "IDr",
    "IdType",
    "IkeHeader",
    "IkeMessage",
    "IkeProtocolError",
    "IntegrityCheckFailed",
    "InvalidMajorVersion",
    "InvalidSyntax",
    "KeyExchange",
    "NatTKind",
    "Nonce",
    "Notify",
    "NotifyType",
    "Payload",
    "PayloadType",
    "Proposal",
    "ProtocolId",
    "SecurityAssociation",
    "SkProtection",
    "TSi",
    "TSr",
    "TrafficSelector",
    "Transform",
    "TransformAttribute",
    "TsType",
    "UnknownPayload",
    "UnknownTrafficSelector",
    "UnsupportedCriticalPayload",
    "VendorId",
    "find_payload",
    "frame_nat_t",
    "notifies",
    "parse_payloads",
    "build_payloads",
    "unframe_nat_t",
]

HEADER_SIZE = 28
SPI_SIZE = 8
IKE_MAJOR_VERSION = 2
# Most payloads in one chain.  Real messages carry a few dozen at most; the
# limit bounds the work a crafted datagram can cause.
MAX_PAYLOADS = 256
# RFC 3948 §2.2: IKE on the NAT-T port is prefixed with four zero octets
# where an ESP packet has its (never zero) SPI.
NON_ESP_MARKER = b"\x00\x00\x00\x00"
# RFC 3948 §2.3: a NAT-keepalive is one octet 0xFF.
_NAT_KEEPALIVE = b"\xff"

_HEADER = struct.Struct(">8s8sBBBBII")
_GENERIC = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
_U16X2 = struct.Struct(">HH")
_BBH = struct.Struct(">BBH")
_PROPOSAL_HEAD = struct.Struct(">BxHBBBB")
_TRANSFORM_HEAD = struct.Struct(">BxHBxH")

# header flags (§3.1)
_FLAG_INITIATOR = 0x08
_FLAG_VERSION = 0x10
_FLAG_RESPONSE = 0x20
_CRITICAL = 0x80


# -- registries ----------------------------------------------------------------


class ExchangeType(IntEnum):
    """IKEv2 Exchange Types (RFC 7296 §3.1, IANA)."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    GSA_AUTH = 39
    GSA_REGISTRATION = 40
    GSA_REKEY = 41
    IKE_INTERMEDIATE = 43
    IKE_FOLLOWUP_KE = 44


class PayloadType(IntEnum):
    """IKEv2 Payload Types (RFC 7296 §3.2, RFC 7383, IANA)."""

    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR_ID = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49
    IDg = 50
    GSA = 51
    KD = 52
    SKF = 53


# the abbreviations strongSwan logs ("[ SA KE No N(NATD_S_IP) ]")
_PAYLOAD_SHORT = {
    33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ", 39: "AUTH", 40: "No",
    41: "N", 42: "D", 43: "V", 44: "TSi", 45: "TSr", 46: "E", 47: "CP", 48: "EAP", 49: "GSPM",
    50: "IDg", 51: "GSA", 52: "KD", 53: "EF",
}


class ProtocolId(IntEnum):
    """Security Protocol Identifiers (RFC 7296 §3.3.1)."""

    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class NotifyType(IntEnum):
    """IKEv2 Notify Message Types (RFC 7296 §3.10.1 and later RFCs, IANA).

    Values below 16384 are errors, 16384 and above status notifications.
    """

    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40
    UNEXPECTED_NAT_DETECTED = 41
    USE_ASSIGNED_HoA = 42
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45
    AUTHORIZATION_FAILED = 46
    STATE_NOT_FOUND = 47
    TS_MAX_QUEUE = 48
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    AUTH_LIFETIME = 16403
    MULTIPLE_AUTH_SUPPORTED = 16404
    ANOTHER_AUTH_FOLLOWS = 16405
    REDIRECT_SUPPORTED = 16406
    REDIRECT = 16407
    REDIRECTED_FROM = 16408
    TICKET_LT_OPAQUE = 16409
    TICKET_REQUEST = 16410
    TICKET_ACK = 16411
    TICKET_NACK = 16412
    TICKET_OPAQUE = 16413
    LINK_ID = 16414
    USE_WESP_MODE = 16415
    ROHC_SUPPORTED = 16416
    EAP_ONLY_AUTHENTICATION = 16417
    CHILDLESS_IKEV2_SUPPORTED = 16418
    QUICK_CRASH_DETECTION = 16419
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421
    IKEV2_MESSAGE_ID_SYNC = 16422
    IPSEC_REPLAY_COUNTER_SYNC = 16423
    SECURE_PASSWORD_METHODS = 16424
    PSK_PERSIST = 16425
    PSK_CONFIRM = 16426
    ERX_SUPPORTED = 16427
    IFOM_CAPABILITY = 16428
    SENDER_REQUEST_ID = 16429
    IKEV2_FRAGMENTATION_SUPPORTED = 16430
    SIGNATURE_HASH_ALGORITHMS = 16431
    CLONE_IKE_SA_SUPPORTED = 16432
    CLONE_IKE_SA = 16433
    PUZZLE = 16434
    USE_PPK = 16435
    PPK_IDENTITY = 16436
    NO_PPK_AUTH = 16437
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438
    IP4_ALLOWED = 16439
    IP6_ALLOWED = 16440
    ADDITIONAL_KEY_EXCHANGE = 16441
    USE_AGGFRAG = 16442
    SUPPORTED_AUTH_METHODS = 16443
    SA_RESOURCE_INFO = 16444

    @property
    def is_error(self) -> bool:
        return self < 16384


# strongSwan's abbreviations in "N(...)" of its message log lines
_NOTIFY_SHORT = {
    1: "CRIT", 4: "INVAL_IKE_SPI", 5: "INVAL_MAJOR", 7: "INVAL_SYN", 9: "INVAL_MID", 11: "INVAL_SPI",
    14: "NO_PROP", 17: "INVAL_KE", 24: "AUTH_FAILED", 34: "SINGLE_PAIR", 35: "NO_ADD_SAS",
    36: "INT_ADDR_FAIL", 37: "FAIL_CP_REQ", 38: "TS_UNACCEPT", 39: "INVAL_SEL", 40: "UNACCEPT_ADDR",
    41: "UNEXPECT_NAT", 42: "ASSIGNED_HoA", 43: "TEMP_FAIL", 44: "NO_CHILD_SA",
    16384: "INIT_CONTACT", 16385: "SET_WINSIZE", 16386: "ADD_TS_POSS", 16387: "IPCOMP_SUP",
    16388: "NATD_S_IP", 16389: "NATD_D_IP", 16390: "COOKIE", 16391: "USE_TRANSP",
    16392: "HTTP_CERT_LOOK", 16393: "REKEY_SA", 16394: "ESP_TFC_PAD_N", 16395: "NON_FIRST_FRAG",
    16396: "MOBIKE_SUP", 16397: "ADD_4_ADDR", 16398: "ADD_6_ADDR", 16399: "NO_ADD_ADDR",
    16400: "UPD_SA_ADDR", 16401: "COOKIE2", 16402: "NO_NATS", 16403: "AUTH_LFT",
    16404: "MULT_AUTH", 16405: "AUTH_FOLLOWS", 16406: "REDIR_SUP", 16407: "REDIR",
    16408: "REDIR_FROM", 16417: "EAP_ONLY", 16418: "CHDLESS_SUP", 16419: "CRASH_DET",
    16420: "MSG_ID_SYN_SUP", 16421: "RPL_CTR_SYN_SUP", 16422: "MSG_ID_SYN", 16423: "RPL_CTR_SYN",
    16430: "FRAG_SUP", 16431: "HASH_ALG", 16435: "USE_PPK", 16436: "PPK_ID", 16437: "NO_PPK",
}


class IdType(IntEnum):
    """IKEv2 Identification Payload ID Types (RFC 7296 §3.5, RFC 7619)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_FC_NAME = 12
    ID_NULL = 13


class CertEncoding(IntEnum):
    """IKEv2 Certificate Encodings (RFC 7296 §3.6, RFC 4806, RFC 7670)."""

    PKCS7_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_CERT_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_AND_URL_X509_CERT = 12
    HASH_AND_URL_X509_BUNDLE = 13
    OCSP_CONTENT = 14
    RAW_PUBLIC_KEY = 15


class AuthMethod(IntEnum):
    """IKEv2 Authentication Methods (RFC 7296 §3.8, RFC 4754, RFC 7619, RFC 7427)."""

    RSA_DIGITAL_SIGNATURE = 1
    SHARED_KEY_MESSAGE_INTEGRITY_CODE = 2
    DSS_DIGITAL_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GENERIC_SECURE_PASSWORD = 12
    NULL_AUTHENTICATION = 13
    DIGITAL_SIGNATURE = 14


class TsType(IntEnum):
    """IKEv2 Traffic Selector Types (RFC 7296 §3.13.1, RFC 4595, RFC 9478)."""

    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8
    TS_FC_ADDR_RANGE = 9
    TS_SECLABEL = 10


class CfgType(IntEnum):
    """IKEv2 Configuration Payload CFG Types (RFC 7296 §3.15)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class ConfigurationAttributeType(IntEnum):
    """IKEv2 Configuration Payload Attribute Types (RFC 7296 §3.15.1, IANA)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16
    INTERNAL_IP6_LINK = 17
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19
    P_CSCF_IP4_ADDRESS = 20
    P_CSCF_IP6_ADDRESS = 21
    FTT_KAT = 22
    EXTERNAL_SOURCE_IP4_NAT_INFO = 23
    TIMEOUT_PERIOD_FOR_LIVENESS_CHECK = 24
    INTERNAL_DNS_DOMAIN = 25
    INTERNAL_DNSSEC_TA = 26


# strongSwan's abbreviations in "CPRQ(ADDR DNS)"
_CP_SHORT = {
    1: "ADDR", 2: "MASK", 3: "DNS", 4: "NBNS", 5: "EXP", 6: "DHCP", 7: "VER", 8: "ADDR6", 9: "MASK6",
    10: "DNS6", 11: "NBNS6", 12: "DHCP6", 13: "SUBNET", 14: "SUP", 15: "SUBNET6", 16: "MIP6HPFX",
    17: "LINK6", 18: "PFX6", 19: "HOA", 20: "PCSCF4", 21: "PCSCF6", 22: "FTTKAT", 23: "EXTSRC4",
    24: "DPD", 25: "DOMAIN", 26: "TA",
}
_CFG_SHORT = {1: "RQ", 2: "RP", 3: "S", 4: "A"}


def _name(enum: type[IntEnum], value: int) -> str:
    member = enum._value2member_map_.get(value)
    return member.name if member is not None else str(value)


# -- errors --------------------------------------------------------------------


class IkeProtocolError(Exception):
    """A message nac cannot accept, with the notify that tells the peer why.

    ``notify`` is the error Notify Message Type (RFC 7296 §3.10.1),
    ``notify_data`` its Notification Data, ``offset`` the byte offset in the
    parsed buffer that failed (for an inner payload chain: the offset in the
    decrypted chain), when known.  Messages never contain payload contents.
    """

    notify: NotifyType = NotifyType.INVALID_SYNTAX

    def __init__(self, reason: str, *, offset: int | None = None, notify_data: bytes = b"") -> None:
        self.reason = reason
        self.offset = offset
        self.notify_data = notify_data
        super().__init__(reason, offset)

    def __reduce__(self):
        return (type(self), (self.reason,), self.__dict__.copy())

    def __str__(self) -> str:
        text = f"{self.notify.name}: {self.reason}"
        if self.offset is not None:
            text += f" at byte offset {self.offset}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self})"

    def to_notify(self) -> Notify:
        """The Notify payload reporting this error."""
        return Notify(self.notify, self.notify_data)


class InvalidSyntax(IkeProtocolError):
    """A malformed message or payload (INVALID_SYNTAX, RFC 7296 §3.10.1)."""

    notify = NotifyType.INVALID_SYNTAX


class UnsupportedCriticalPayload(IkeProtocolError):
    """An unknown payload with the critical bit set (RFC 7296 §2.5).

    The notification data is the one-octet payload type, as §3.10.1 says.
    """

    notify = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int, *, offset: int | None = None) -> None:
        self.payload_type = payload_type
        super().__init__(f"unknown critical payload type {payload_type}", offset=offset,
                         notify_data=bytes([payload_type]))

    def __reduce__(self):
        return (type(self), (self.payload_type,), self.__dict__.copy())


class InvalidMajorVersion(IkeProtocolError):
    """A message of another IKE major version (RFC 7296 §2.5).

    The notification data is the highest version nac speaks (0x20).
    """

    notify = NotifyType.INVALID_MAJOR_VERSION

    def __init__(self, major: int, minor: int = 0) -> None:
        self.major = major
        self.minor = minor
        super().__init__(f"IKE version {major}.{minor} not supported", offset=17,
                         notify_data=bytes([IKE_MAJOR_VERSION << 4]))

    def __reduce__(self):
        return (type(self), (self.major, self.minor), self.__dict__.copy())


class IntegrityCheckFailed(IkeProtocolError):
    """The ICV of an SK or SKF payload did not verify, or its padding was wrong.

    RFC 7296 §2.21.2: such a message is dropped without any answer; the
    notify is only a label here.
    """

    notify = NotifyType.INVALID_SYNTAX


def _syntax(reason: str, offset: int) -> InvalidSyntax:
    return InvalidSyntax(reason, offset=offset)


def _fast_constructor(cls: type, names: Sequence[str]):
    """A positional constructor for a frozen slotted dataclass, for the
    parsers: the generated frozen ``__init__`` (``object.__setattr__`` per
    field, keyword handling) dominates parsing an IKE_SA_INIT under a flood.
    Every field is given, in ``names`` order; no validation runs."""
    namespace = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    obj = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        lines.append(f"    _set_{name}(obj, {name})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # the technique dataclasses uses for __init__
    return namespace["make"]


# -- SA payload: proposals, transforms, attributes (§3.3) ----------------------

_ATTR_TV = 0x8000
KEY_LENGTH_ATTRIBUTE = 14  # §3.3.5: the only attribute IKEv2 defines


@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """A transform attribute (RFC 7296 §3.3.5): an int in TV format (AF=1,
    16-bit value) or bytes in TLV format (AF=0)."""

    attribute_type: int
    value: int | bytes

    def build(self) -> bytes:
        if isinstance(self.value, int):
            return _U16X2.pack(_ATTR_TV | self.attribute_type, self.value)
        return _U16X2.pack(self.attribute_type, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform substructure (RFC 7296 §3.3.2): type, ID and attributes."""

    transform_type: int
    transform_id: int
    attributes: tuple[TransformAttribute, ...] = ()

    @classmethod
    def of(cls, transform_type: int, transform_id: int, key_length: int | None = None) -> Transform:
        """A transform with a Key Length attribute (in bits) when one is given."""
        if key_length:
            return cls(transform_type, transform_id, (TransformAttribute(KEY_LENGTH_ATTRIBUTE, key_length),))
        return cls(transform_type, transform_id)

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits, None without one."""
        for attribute in self.attributes:
            if attribute.attribute_type == KEY_LENGTH_ATTRIBUTE and isinstance(attribute.value, int):
                return attribute.value
        return None

    def build(self, last: bool) -> bytes:
        attributes = b"".join(a.build() for a in self.attributes)
        return _TRANSFORM_HEAD.pack(0 if last else 3, 8 + len(attributes), self.transform_type,
                           self.transform_id) + attributes


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal substructure (RFC 7296 §3.3.1)."""

    number: int
    protocol: int
    transforms: tuple[Transform, ...]
    spi: bytes = b""

    def transforms_of(self, transform_type: int) -> tuple[Transform, ...]:
        return tuple(t for t in self.transforms if t.transform_type == transform_type)

    def build(self, last: bool) -> bytes:
        n = len(self.transforms)
        body = b"".join(t.build(i == n - 1) for i, t in enumerate(self.transforms))
        return _PROPOSAL_HEAD.pack(0 if last else 2, 8 + len(self.spi) + len(body), self.number,
                           self.protocol, len(self.spi), n) + self.spi + body


_make_attribute = _fast_constructor(TransformAttribute, ("attribute_type", "value"))
_make_transform = _fast_constructor(Transform, ("transform_type", "transform_id", "attributes"))
_make_proposal = _fast_constructor(Proposal, ("number", "protocol", "transforms", "spi"))


def _parse_attributes(data: bytes, pos: int, end: int, base: int) -> tuple[TransformAttribute, ...]:
    attributes = []
    while pos < end:
        if end - pos < 4:
            raise _syntax("truncated transform attribute", base + pos)
        kind, value = _U16X2.unpack_from(data, pos)
        if kind & _ATTR_TV:
            attributes.append(_make_attribute(kind & 0x7FFF, value))
            pos += 4
        else:
            if pos + 4 + value > end:
                raise _syntax("transform attribute overruns its transform", base + pos + 2)
            attributes.append(_make_attribute(kind, data[pos + 4:pos + 4 + value]))
            pos += 4 + value
    return tuple(attributes)


def _parse_proposals(body: bytes, base: int) -> tuple[Proposal, ...]:
    proposals = []
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < 8:
            raise _syntax("truncated proposal substructure", base + pos)
        _last, length, number, protocol, spi_size, count = _PROPOSAL_HEAD.unpack_from(body, pos)
        if length < 8 + spi_size or pos + length > end:
            raise _syntax(f"proposal length {length} is invalid", base + pos + 2)
        proposal_end = pos + length
        spi = body[pos + 8:pos + 8 + spi_size]
        tpos = pos + 8 + spi_size
        transforms = []
        while tpos < proposal_end:
            if proposal_end - tpos < 8:
                raise _syntax("truncated transform substructure", base + tpos)
            _tlast, tlength, ttype, tid = _TRANSFORM_HEAD.unpack_from(body, tpos)
            if tlength < 8 or tpos + tlength > proposal_end:
                raise _syntax(f"transform length {tlength} is invalid", base + tpos + 2)
            attributes = _parse_attributes(body, tpos + 8, tpos + tlength, base) if tlength > 8 else ()
            transforms.append(_make_transform(ttype, tid, attributes))
            tpos += tlength
        if len(transforms) != count:
            raise _syntax(f"proposal announces {count} transforms but holds {len(transforms)}",
                          base + pos + 7)
        proposals.append(_make_proposal(number, protocol, tuple(transforms), spi))
        pos = proposal_end
    return tuple(proposals)


# -- payloads --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """Security Association payload, SA (RFC 7296 §3.3)."""

    payload_type: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> SecurityAssociation:
        return cls(_parse_proposals(body, offset))

    def build_body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.build(i == n - 1) for i, p in enumerate(self.proposals))


@dataclass(frozen=True, slots=True)
class KeyExchange:
    """Key Exchange payload, KE (RFC 7296 §3.4): DH group and public value."""

    payload_type: ClassVar[int] = PayloadType.KE
    group: int
    data: bytes = field(repr=False)
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> KeyExchange:
        if len(body) < 4:
            raise _syntax("KE payload shorter than 4 bytes", offset)
        return _make_key_exchange(_U16.unpack_from(body)[0], body[4:], False)

    def build_body(self) -> bytes:
        return _U16.pack(self.group) + b"\x00\x00" + self.data


@dataclass(frozen=True, slots=True)
class _Identification:
    id_type: int
    data: bytes
    critical: bool = field(default=False, kw_only=True)
    # RFC 7296 §3.5: sent as zero, but AUTH covers them as received
    reserved: bytes = field(default=b"\x00\x00\x00", kw_only=True, repr=False)

    @classmethod
    def parse_body(cls, body: bytes, offset: int):
        if len(body) < 4:
            raise _syntax("ID payload shorter than 4 bytes", offset)
        return cls(body[0], body[4:], reserved=body[1:4])

    def build_body(self) -> bytes:
        """The payload after the generic header: what RFC 7296 §2.15 calls
        RestOfInitIDPayload / RestOfRespIDPayload, the input of MACedIDFor*."""
        return bytes([self.id_type]) + self.reserved + self.data

    @classmethod
    def of(cls, identity: str | ipaddress.IPv4Address | ipaddress.IPv6Address):
        """An ID from an address, "user@domain" (ID_RFC822_ADDR) or a name (ID_FQDN)."""
        if isinstance(identity, ipaddress.IPv4Address):
            return cls(IdType.ID_IPV4_ADDR, identity.packed)
        if isinstance(identity, ipaddress.IPv6Address):
            return cls(IdType.ID_IPV6_ADDR, identity.packed)
        try:
            address = ipaddress.ip_address(identity)
        except ValueError:
            kind = IdType.ID_RFC822_ADDR if "@" in identity else IdType.ID_FQDN
            return cls(kind, identity.encode())
        return cls.of(address)

    def __str__(self) -> str:
        """The identity as strongSwan prints it, for logs."""
        if self.id_type == IdType.ID_IPV4_ADDR and len(self.data) == 4:
            return str(ipaddress.IPv4Address(self.data))
        if self.id_type == IdType.ID_IPV6_ADDR and len(self.data) == 16:
            return str(ipaddress.IPv6Address(self.data))
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return printable(self.data.decode("utf-8", "backslashreplace"))
        if self.id_type == IdType.ID_NULL:
            return "%any"
        if self.id_type == IdType.ID_DER_ASN1_DN:
            text = distinguished_name(self.data)
            if text is not None:
                return text
        return f"{_name(IdType, self.id_type)}:{self.data.hex()}"


#: attribute types of distinguished names by the short names strongSwan prints
DN_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
    "2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "T",
    "2.5.4.13": "D", "2.5.4.17": "postalCode", "2.5.4.41": "N", "2.5.4.42": "G", "2.5.4.43": "I",
    "2.5.4.44": "genQualifier", "2.5.4.45": "ID", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "1.2.840.113549.1.9.1": "E", "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC",
}


def distinguished_name(der: bytes) -> str | None:
    """A DER distinguished name (an ID_DER_ASN1_DN identity) as text, the way
    strongSwan prints it (``C=CH, O=strongSwan, CN=carol``), its values
    escaped for a log line; None when ``der`` is not a Name."""
    from pyasn1.codec.der import decoder
    from pyasn1.error import PyAsn1Error
    from pyasn1_modules import rfc5280

    try:
        name, rest = decoder.decode(der, asn1Spec=rfc5280.Name())
        if rest:
            return None
        parts = []
        for rdn in name[0]:
            for attribute in rdn:
                oid = str(attribute["type"])
                value, _ = decoder.decode(attribute["value"])
                # a string type as its text, anything else as RFC 4514's #hex of its DER
                text = str(value) if isinstance(value, char.AbstractCharacterString) else \
                    "#" + bytes(attribute["value"]).hex()
                parts.append(f"{DN_ATTRIBUTE_NAMES.get(oid, oid)}={printable(text)}")
    except (PyAsn1Error, ValueError, TypeError, UnicodeError):
        return None
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class IDi(_Identification):
    """Identification payload of the initiator, IDi (RFC 7296 §3.5)."""

    payload_type: ClassVar[int] = PayloadType.IDi


@dataclass(frozen=True, slots=True)
class IDr(_Identification):
    """Identification payload of the responder, IDr (RFC 7296 §3.5)."""

    payload_type: ClassVar[int] = PayloadType.IDr


@dataclass(frozen=True, slots=True)
class Certificate:
    """Certificate payload, CERT (RFC 7296 §3.6)."""

    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes = field(repr=False)
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Certificate:
        if len(body) < 1:
            raise _syntax("empty CERT payload", offset)
        return cls(body[0], body[1:])

    def build_body(self) -> bytes:
        return bytes([self.encoding]) + self.data


@dataclass(frozen=True, slots=True)
class CertRequest:
    """Certificate Request payload, CERTREQ (RFC 7296 §3.7).

    For X.509 the data is a run of SHA-1 hashes of trusted CA public keys.
    """

    payload_type: ClassVar[int] = PayloadType.CERTREQ
    encoding: int
    data: bytes = b""
    critical: bool = field(default=False, kw_only=True)

    @property
    def authorities(self) -> tuple[bytes, ...]:
        """The 20-byte SHA-1 key hashes of an X.509 request."""
        return tuple(self.data[i:i + 20] for i in range(0, len(self.data) - 19, 20))

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> CertRequest:
        if len(body) < 1:
            raise _syntax("empty CERTREQ payload", offset)
        return cls(body[0], body[1:])

    def build_body(self) -> bytes:
        return bytes([self.encoding]) + self.data


@dataclass(frozen=True, slots=True)
class Authentication:
    """Authentication payload, AUTH (RFC 7296 §3.8)."""

    payload_type: ClassVar[int] = PayloadType.AUTH
    method: int
    data: bytes = field(repr=False)
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Authentication:
        if len(body) < 4:
            raise _syntax("AUTH payload shorter than 4 bytes", offset)
        return cls(body[0], body[4:])

    def build_body(self) -> bytes:
        return bytes([self.method]) + b"\x00\x00\x00" + self.data


# RFC 7296 §3.9: a nonce is 16 to 256 octets
MIN_NONCE = 16
MAX_NONCE = 256


@dataclass(frozen=True, slots=True)
class Nonce:
    """Nonce payload, Ni/Nr (RFC 7296 §3.9)."""

    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Nonce:
        if not MIN_NONCE <= len(body) <= MAX_NONCE:
            raise _syntax(f"nonce of {len(body)} bytes (16 to 256 allowed)", offset)
        return _make_nonce(body, False)

    def build_body(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class Notify:
    """Notify payload, N (RFC 7296 §3.10)."""

    payload_type: ClassVar[int] = PayloadType.NOTIFY
    notify_type: int
    data: bytes = b""
    protocol: int = field(default=0, kw_only=True)
    spi: bytes = field(default=b"", kw_only=True)
    critical: bool = field(default=False, kw_only=True)

    @property
    def is_error(self) -> bool:
        return self.notify_type < 16384

    @property
    def short_name(self) -> str:
        return _NOTIFY_SHORT.get(self.notify_type) or _name(NotifyType, self.notify_type)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Notify:
        if len(body) < 4:
            raise _syntax("Notify payload shorter than 4 bytes", offset)
        protocol, spi_size, notify_type = _BBH.unpack_from(body)
        if 4 + spi_size > len(body):
            raise _syntax(f"Notify SPI size {spi_size} overruns the payload", offset + 1)
        return _make_notify(notify_type, body[4 + spi_size:], protocol, body[4:4 + spi_size], False)

    def build_body(self) -> bytes:
        return _BBH.pack(self.protocol, len(self.spi), self.notify_type) + self.spi + self.data


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete payload, D (RFC 7296 §3.11): the IKE SA (no SPI) or Child SAs."""

    payload_type: ClassVar[int] = PayloadType.DELETE
    protocol: int
    spis: tuple[bytes, ...] = ()
    critical: bool = field(default=False, kw_only=True)

    @property
    def spi_size(self) -> int:
        if self.spis:
            return len(self.spis[0])
        return 0 if self.protocol == ProtocolId.IKE else 4

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Delete:
        if len(body) < 4:
            raise _syntax("Delete payload shorter than 4 bytes", offset)
        protocol, spi_size, count = struct.unpack_from(">BBH", body)
        if spi_size * count != len(body) - 4:
            raise _syntax(f"Delete of {count} SPIs of {spi_size} bytes does not match its length", offset + 2)
        if count and not spi_size:
            raise _syntax("Delete of SPIs of size 0", offset + 1)
        return cls(protocol, tuple(body[4 + i * spi_size:4 + (i + 1) * spi_size] for i in range(count)))

    def build_body(self) -> bytes:
        return struct.pack(">BBH", self.protocol, self.spi_size, len(self.spis)) + b"".join(self.spis)


@dataclass(frozen=True, slots=True)
class VendorId:
    """Vendor ID payload, V (RFC 7296 §3.12)."""

    payload_type: ClassVar[int] = PayloadType.VENDOR_ID
    data: bytes
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> VendorId:
        return cls(body)

    def build_body(self) -> bytes:
        return self.data


Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """An address-range traffic selector (RFC 7296 §3.13.1), IPv4 or IPv6."""

    start: Address
    end: Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> int:
        return TsType.TS_IPV4_ADDR_RANGE if self.start.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    @classmethod
    def from_network(cls, network: str | ipaddress.IPv4Network | ipaddress.IPv6Network,
                     ip_protocol: int = 0, start_port: int = 0, end_port: int = 65535) -> TrafficSelector:
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, ip_protocol, start_port, end_port)

    def build(self) -> bytes:
        return (struct.pack(">BBHHH", self.ts_type, self.ip_protocol, 8 + 2 * len(self.start.packed),
                            self.start_port, self.end_port) + self.start.packed + self.end.packed)

    def __str__(self) -> str:
        """strongSwan's notation: 10.1.0.0/16, or a range, with [proto/port]."""
        text = f"{self.start}..{self.end}"
        try:
            networks = list(ipaddress.summarize_address_range(self.start, self.end))
        except (TypeError, ValueError):
            networks = []
        if len(networks) == 1:
            text = str(networks[0])
        if self.ip_protocol or (self.start_port, self.end_port) != (0, 65535):
            ports = "0" if (self.start_port, self.end_port) == (0, 65535) else (
                str(self.start_port) if self.start_port == self.end_port
                else f"{self.start_port}-{self.end_port}")
            text += f"[{self.ip_protocol}/{ports}]"
        return text


@dataclass(frozen=True, slots=True)
class UnknownTrafficSelector:
    """A traffic selector of a type nac does not interpret (Fibre Channel,
    security label), kept raw: ``data`` is everything after Selector Length."""

    ts_type: int
    ip_protocol: int
    data: bytes

    def build(self) -> bytes:
        return struct.pack(">BBH", self.ts_type, self.ip_protocol, 4 + len(self.data)) + self.data


def _parse_selectors(body: bytes, offset: int) -> tuple[TrafficSelector | UnknownTrafficSelector, ...]:
    if len(body) < 4:
        raise _syntax("TS payload shorter than 4 bytes", offset)
    count = body[0]
    selectors: list[TrafficSelector | UnknownTrafficSelector] = []
    pos = 4
    for _ in range(count):
        if len(body) - pos < 4:
            raise _syntax("truncated traffic selector", offset + pos)
        ts_type, protocol, length = struct.unpack_from(">BBH", body, pos)
        if length < 4 or pos + length > len(body):
            raise _syntax(f"traffic selector length {length} is invalid", offset + pos + 2)
        if ts_type in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE):
            size = 4 if ts_type == TsType.TS_IPV4_ADDR_RANGE else 16
            if length != 8 + 2 * size:
                raise _syntax(f"traffic selector length {length} is not {8 + 2 * size}", offset + pos + 2)
            start_port, end_port = _U16X2.unpack_from(body, pos + 4)
            make = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
            selectors.append(TrafficSelector(make(body[pos + 8:pos + 8 + size]),
                                             make(body[pos + 8 + size:pos + length]),
                                             protocol, start_port, end_port))
        else:
            selectors.append(UnknownTrafficSelector(ts_type, protocol, body[pos + 4:pos + length]))
        pos += length
    if pos != len(body):
        raise _syntax(f"{len(body) - pos} bytes after the last traffic selector", offset + pos)
    return tuple(selectors)


@dataclass(frozen=True, slots=True)
class _TrafficSelectors:
    selectors: tuple[TrafficSelector | UnknownTrafficSelector, ...]
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int):
        return cls(_parse_selectors(body, offset))

    def build_body(self) -> bytes:
        return bytes([len(self.selectors), 0, 0, 0]) + b"".join(ts.build() for ts in self.selectors)


@dataclass(frozen=True, slots=True)
class TSi(_TrafficSelectors):
    """Traffic Selector payload of the initiator, TSi (RFC 7296 §3.13)."""

    payload_type: ClassVar[int] = PayloadType.TSi


@dataclass(frozen=True, slots=True)
class TSr(_TrafficSelectors):
    """Traffic Selector payload of the responder, TSr (RFC 7296 §3.13)."""

    payload_type: ClassVar[int] = PayloadType.TSr


@dataclass(frozen=True, slots=True)
class Encrypted:
    """Encrypted and Authenticated payload, SK (RFC 7296 §3.14), still sealed.

    ``first_payload`` is the SK header's Next Payload: the type of the first
    inner payload.  ``data`` is IV | ciphertext | ICV.
    """

    payload_type: ClassVar[int] = PayloadType.SK
    first_payload: int
    data: bytes = field(repr=False)
    critical: bool = field(default=False, kw_only=True)

    def build_body(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class EncryptedFragment:
    """Encrypted Fragment payload, SKF (RFC 7383 §2.5), still sealed."""

    payload_type: ClassVar[int] = PayloadType.SKF
    number: int
    total: int
    first_payload: int
    data: bytes = field(repr=False)
    critical: bool = field(default=False, kw_only=True)

    def build_body(self) -> bytes:
        return _U16X2.pack(self.number, self.total) + self.data


@dataclass(frozen=True, slots=True)
class ConfigurationAttribute:
    """A configuration attribute (RFC 7296 §3.15.1)."""

    attribute_type: int
    value: bytes = b""

    @classmethod
    def ip4_address(cls, address: str | ipaddress.IPv4Address) -> ConfigurationAttribute:
        return cls(ConfigurationAttributeType.INTERNAL_IP4_ADDRESS, ipaddress.IPv4Address(address).packed)

    @classmethod
    def ip4_netmask(cls, network: str | ipaddress.IPv4Network) -> ConfigurationAttribute:
        return cls(ConfigurationAttributeType.INTERNAL_IP4_NETMASK,
                   ipaddress.IPv4Network(network, strict=False).netmask.packed)

    @classmethod
    def ip4_dns(cls, address: str | ipaddress.IPv4Address) -> ConfigurationAttribute:
        return cls(ConfigurationAttributeType.INTERNAL_IP4_DNS, ipaddress.IPv4Address(address).packed)

    @classmethod
    def ip4_subnet(cls, network: str | ipaddress.IPv4Network) -> ConfigurationAttribute:
        net = ipaddress.IPv4Network(network, strict=False)
        return cls(ConfigurationAttributeType.INTERNAL_IP4_SUBNET, net.network_address.packed + net.netmask.packed)

    @classmethod
    def ip6_address(cls, address: str | ipaddress.IPv6Address, prefix_length: int = 128) -> ConfigurationAttribute:
        return cls(ConfigurationAttributeType.INTERNAL_IP6_ADDRESS,
                   ipaddress.IPv6Address(address).packed + bytes([prefix_length]))

    @classmethod
    def ip6_dns(cls, address: str | ipaddress.IPv6Address) -> ConfigurationAttribute:
        return cls(ConfigurationAttributeType.INTERNAL_IP6_DNS, ipaddress.IPv6Address(address).packed)

    @property
    def address(self) -> Address | None:
        """The address of an INTERNAL_IP4_*/IP6_* attribute, None when empty (a request)."""
        if len(self.value) == 4:
            return ipaddress.IPv4Address(self.value[:4])
        if len(self.value) in (16, 17):
            return ipaddress.IPv6Address(self.value[:16])
        return None

    def build(self) -> bytes:
        return _U16X2.pack(self.attribute_type & 0x7FFF, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class Configuration:
    """Configuration payload, CP (RFC 7296 §3.15)."""

    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: int
    attributes: tuple[ConfigurationAttribute, ...] = ()
    critical: bool = field(default=False, kw_only=True)

    def attributes_of(self, attribute_type: int) -> tuple[ConfigurationAttribute, ...]:
        return tuple(a for a in self.attributes if a.attribute_type == attribute_type)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Configuration:
        if len(body) < 4:
            raise _syntax("CP payload shorter than 4 bytes", offset)
        attributes = []
        pos = 4
        while pos < len(body):
            if len(body) - pos < 4:
                raise _syntax("truncated configuration attribute", offset + pos)
            kind, length = _U16X2.unpack_from(body, pos)
            if pos + 4 + length > len(body):
                raise _syntax("configuration attribute overruns the payload", offset + pos + 2)
            # the top bit is reserved: ignored on receipt (§3.15.1)
            attributes.append(ConfigurationAttribute(kind & 0x7FFF, body[pos + 4:pos + 4 + length]))
            pos += 4 + length
        return cls(body[0], tuple(attributes))

    def build_body(self) -> bytes:
        return bytes([self.cfg_type, 0, 0, 0]) + b"".join(a.build() for a in self.attributes)


@dataclass(frozen=True, slots=True)
class Eap:
    """Extensible Authentication payload, EAP (RFC 7296 §3.16): one EAP message."""

    payload_type: ClassVar[int] = PayloadType.EAP
    data: bytes
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse_body(cls, body: bytes, offset: int) -> Eap:
        if len(body) < 4:
            raise _syntax("EAP message shorter than 4 bytes", offset)
        if _U16.unpack_from(body, 2)[0] != len(body):
            raise _syntax("EAP Length does not match the EAP payload", offset + 2)
        return cls(body)

    def build_body(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload of a type nac does not interpret, kept raw."""

    payload_type: int
    data: bytes
    critical: bool = field(default=False, kw_only=True)

    def build_body(self) -> bytes:
        return self.data


_make_notify = _fast_constructor(Notify, ("notify_type", "data", "protocol", "spi", "critical"))
_make_key_exchange = _fast_constructor(KeyExchange, ("group", "data", "critical"))
_make_nonce = _fast_constructor(Nonce, ("data", "critical"))
_make_unknown = _fast_constructor(UnknownPayload, ("payload_type", "data", "critical"))

Payload = Union[
    SecurityAssociation, KeyExchange, IDi, IDr, Certificate, CertRequest, Authentication, Nonce, Notify,
    Delete, VendorId, TSi, TSr, Encrypted, EncryptedFragment, Configuration, Eap, UnknownPayload,
]

_PAYLOAD_CLASSES: dict[int, type] = {
    int(cls.payload_type): cls
    for cls in (SecurityAssociation, KeyExchange, IDi, IDr, Certificate, CertRequest, Authentication, Nonce,
                Notify, Delete, VendorId, TSi, TSr, Configuration, Eap)
}
_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
_SEALED = frozenset({_SK, _SKF})


# -- payload chains ----------------------------------------------------------------


def _parse_chain(data: bytes, pos: int, first: int, *, outer: bool, base: int = 0) -> tuple[Payload, ...]:
    """Parse the chain starting with payload type ``first`` at ``pos`` up to
    the end of ``data``.  ``base`` is added to offsets in errors."""
    payloads: list[Payload] = []
    append = payloads.append
    unpack = _GENERIC.unpack_from
    classes = _PAYLOAD_CLASSES
    end = len(data)
    kind = int(first)
    while kind:  # 0: no next payload
        if len(payloads) == MAX_PAYLOADS:
            raise _syntax(f"more than {MAX_PAYLOADS} payloads", base + pos)
        if end - pos < 4:
            raise _syntax(f"truncated payload header ({end - pos} bytes left)", base + pos)
        next_kind, flags, length = unpack(data, pos)
        if length < 4 or pos + length > end:
            raise _syntax(f"payload length {length} is invalid", base + pos + 2)
        critical = flags >= _CRITICAL
        body_start = pos + 4
        cls = classes.get(kind)
        if cls is None:
            if kind == _SK or kind == _SKF:
                append(_parse_sealed(data, pos, kind, next_kind, length, critical, outer, base))
                return tuple(payloads)
            if critical:
                raise UnsupportedCriticalPayload(kind, offset=base + pos)
            append(_make_unknown(kind, data[body_start:pos + length], critical))
        else:
            payload = cls.parse_body(data[body_start:pos + length], base + body_start)
            if critical:
                payload = _with_critical(payload)
            append(payload)
        pos += length
        kind = next_kind
    if pos != end:
        raise _syntax(f"{end - pos} bytes after the last payload", base + pos)
    return tuple(payloads)


def _parse_sealed(data: bytes, pos: int, kind: int, next_kind: int, length: int, critical: bool, outer: bool,
                  base: int) -> Encrypted | EncryptedFragment:
    end = len(data)
    if not outer:
        raise _syntax("encrypted payload inside an encrypted payload", base + pos)
    if pos + length != end:
        raise _syntax("encrypted payload is not the last payload", base + pos + 2)
    if kind == _SK:
        return Encrypted(next_kind, data[pos + 4:end], critical=critical)
    if length < 8:
        raise _syntax("Encrypted Fragment payload shorter than 8 bytes", base + pos + 2)
    number, total = _U16X2.unpack_from(data, pos + 4)
    return EncryptedFragment(number, total, next_kind, data[pos + 8:end], critical=critical)


def _with_critical(payload):
    # a sender may set C on a payload we understand; §2.5 says to ignore it,
    # but keep it so the message rebuilds to the same bytes
    object.__setattr__(payload, "critical", True)
    return payload


def parse_payloads(first_payload: int, data: bytes, *, base: int = 0) -> tuple[Payload, ...]:
    """Parse a payload chain that fills ``data`` (a decrypted SK payload's
    content, a reassembled fragmented message)."""
    return _parse_chain(bytes(data), 0, first_payload, outer=False, base=base)


def build_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Encode a chain: (type of the first payload, bytes)."""
    if not payloads:
        return PayloadType.NONE, b""
    parts = []
    n = len(payloads)
    for i, payload in enumerate(payloads):
        if isinstance(payload, (Encrypted, EncryptedFragment)):
            if i != n - 1:
                raise ValueError("an encrypted payload must be the last payload")
            next_kind = payload.first_payload
        else:
            next_kind = payloads[i + 1].payload_type if i + 1 < n else PayloadType.NONE
        body = payload.build_body()
        if len(body) + 4 > 0xFFFF:
            raise ValueError(f"payload of type {payload.payload_type} too long")
        parts.append(_GENERIC.pack(next_kind, _CRITICAL if payload.critical else 0, len(body) + 4))
        parts.append(body)
    return payloads[0].payload_type, b"".join(parts)


# -- the message -----------------------------------------------------------------


class SkProtection(Protocol):
    """What ``IkeMessage.seal``/``unseal`` need from a cipher (see
    ``transports.ikev2.crypto.SkCipher``)."""

    def sealed_size(self, plaintext_length: int) -> int: ...

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, sealed: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """The IKE header alone (RFC 7296 §3.1), for the cheap first look at a
    datagram: which SA, which exchange, request or response."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def initiator(self) -> bool:
        return bool(self.flags & _FLAG_INITIATOR)

    @property
    def response(self) -> bool:
        return bool(self.flags & _FLAG_RESPONSE)

    @classmethod
    def parse(cls, data: bytes) -> IkeHeader:
        """Decode the header; checks the size, the major version and Length."""
        if len(data) < HEADER_SIZE:
            raise _syntax(f"{len(data)} bytes are too few for an IKE header", len(data))
        spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(data)
        if version >> 4 != IKE_MAJOR_VERSION:
            raise InvalidMajorVersion(version >> 4, version & 0x0F)
        if length != len(data):
            raise _syntax(f"Length {length} does not match the {len(data)} bytes received", 24)
        return cls(spi_i, spi_r, next_payload, version >> 4, version & 0x0F, exchange, flags, message_id, length)


@dataclass(frozen=True, slots=True)
class IkeMessage:
    """An IKEv2 message (RFC 7296 §3.1): header fields and the payload chain.

    ``initiator`` is the I flag (sent by the original initiator of the IKE
    SA), ``response`` the R flag, ``higher_version`` the V flag.  ``raw`` is
    the datagram a parsed message came from (what AUTH signs and what a
    retransmission is compared with); it takes no part in equality.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    payloads: tuple[Payload, ...] = ()
    initiator: bool = False
    response: bool = False
    higher_version: bool = False
    minor_version: int = 0
    raw: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.spi_i) != SPI_SIZE or len(self.spi_r) != SPI_SIZE:
            raise ValueError("IKE SPIs are 8 bytes")
        if not 0 <= self.message_id <= 0xFFFFFFFF:
            raise ValueError(f"Message ID {self.message_id} does not fit 32 bits")

    @property
    def flags(self) -> int:
        return ((_FLAG_INITIATOR if self.initiator else 0) | (_FLAG_RESPONSE if self.response else 0)
                | (_FLAG_VERSION if self.higher_version else 0))

    @property
    def is_request(self) -> bool:
        return not self.response

    # -- decoding

    @classmethod
    def parse(cls, data: bytes) -> IkeMessage:
        """Decode one whole message.  SK/SKF payloads stay sealed."""
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise _syntax(f"{len(data)} bytes are too few for an IKE header", len(data))
        spi_i, spi_r, first, version, exchange, flags, message_id, length = _HEADER.unpack_from(data)
        if version >> 4 != IKE_MAJOR_VERSION:
            raise InvalidMajorVersion(version >> 4, version & 0x0F)
        if length != len(data):
            raise _syntax(f"Length {length} does not match the {len(data)} bytes received", 24)
        payloads = _parse_chain(data, HEADER_SIZE, first, outer=True)
        return _make_message(spi_i, spi_r, exchange, message_id, payloads, bool(flags & _FLAG_INITIATOR),
                             bool(flags & _FLAG_RESPONSE), bool(flags & _FLAG_VERSION), version & 0x0F, data)

    # -- encoding

    def encode_header(self, first_payload: int, length: int) -> bytes:
        """This message's 28-byte header with the given Next Payload and
        Length (for building fragments and sealed messages)."""
        return _HEADER.pack(self.spi_i, self.spi_r, first_payload, (IKE_MAJOR_VERSION << 4) | self.minor_version,
                            self.exchange, self.flags, self.message_id, length)

    def build(self) -> bytes:
        first, body = build_payloads(self.payloads)
        return self.encode_header(first, HEADER_SIZE + len(body)) + body

    # -- SK payload (§3.14)

    @property
    def encrypted(self) -> Encrypted | None:
        """The sealed SK payload, None when the message has none."""
        if self.payloads and isinstance(self.payloads[-1], Encrypted):
            return self.payloads[-1]
        return None

    @property
    def fragment(self) -> EncryptedFragment | None:
        """The sealed SKF payload (RFC 7383), None when the message has none."""
        if self.payloads and isinstance(self.payloads[-1], EncryptedFragment):
            return self.payloads[-1]
        return None

    def seal(self, inner: Sequence[Payload], protection: SkProtection) -> bytes:
        """Encode the message with ``inner`` in an SK payload after this
        message's own (unencrypted) payloads, encrypted and integrity
        protected with ``protection``."""
        first_inner, plaintext = build_payloads(inner)
        first, prefix = build_payloads(self.payloads)
        sealed_size = protection.sealed_size(len(plaintext))
        sk_header = _GENERIC.pack(first_inner, 0, 4 + sealed_size)
        head_first = first if self.payloads else PayloadType.SK
        if self.payloads:
            # the last unencrypted payload must point at SK
            prefix = _repoint_last(self.payloads, prefix)
        total = HEADER_SIZE + len(prefix) + 4 + sealed_size
        aad = self.encode_header(head_first, total) + prefix + sk_header
        return aad + protection.seal(aad, plaintext)

    def unseal(self, protection: SkProtection) -> tuple[Payload, ...]:
        """Verify and decrypt the SK payload of a parsed message and decode
        its inner payloads.  ``IntegrityCheckFailed`` when the ICV or padding
        is wrong, ``InvalidSyntax``/``UnsupportedCriticalPayload`` for a bad
        inner chain (offsets relative to the decrypted chain)."""
        sk = self.encrypted
        if sk is None:
            raise _syntax("message has no Encrypted payload", HEADER_SIZE)
        raw = self.raw or self.build()
        aad = raw[:len(raw) - len(sk.data)]
        plaintext = protection.open(aad, sk.data)
        return parse_payloads(sk.first_payload, plaintext)

    # -- logging

    def describe(self, payloads: Sequence[Payload] | None = None) -> str:
        """strongSwan's summary: "IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) ]".

        Pass the decrypted inner payloads to list them instead of "E"."""
        kind = _name(ExchangeType, self.exchange)
        direction = "response" if self.response else "request"
        shown = list(self.payloads if payloads is None else payloads)
        return f"{kind} {direction} {self.message_id} [{''.join(' ' + _describe_payload(p) for p in shown)} ]"


_make_message = _fast_constructor(IkeMessage, ("spi_i", "spi_r", "exchange", "message_id", "payloads", "initiator",
                                               "response", "higher_version", "minor_version", "raw"))


def _repoint_last(payloads: Sequence[Payload], encoded: bytes) -> bytes:
    # rewrite the Next Payload octet of the last generic header to SK
    offset = 0
    for payload in payloads[:-1]:
        offset += _U16.unpack_from(encoded, offset + 2)[0]
    return encoded[:offset] + bytes([PayloadType.SK]) + encoded[offset + 1:]


_EAP_CODE_SHORT = {1: "REQ", 2: "RES", 3: "SUCC", 4: "FAIL"}
_EAP_TYPE_SHORT = {1: "ID", 2: "NTF", 3: "NAK", 4: "MD5", 13: "TLS", 21: "TTLS", 26: "MSCHAPV2", 38: "TNC",
                   54: "PT"}


def _describe_payload(payload: Payload) -> str:
    short = _PAYLOAD_SHORT.get(payload.payload_type)
    if isinstance(payload, Notify):
        return f"N({payload.short_name})"
    if isinstance(payload, Configuration):
        prefix = _CFG_SHORT.get(payload.cfg_type, "")
        names = " ".join(_CP_SHORT.get(a.attribute_type, str(a.attribute_type)) for a in payload.attributes)
        return f"CP{prefix}({names})" if names else "CP"
    if isinstance(payload, Eap) and len(payload.data) >= 4:
        code = _EAP_CODE_SHORT.get(payload.data[0], str(payload.data[0]))
        method = ""
        if len(payload.data) > 4 and payload.data[0] in (1, 2):
            method = "/" + _EAP_TYPE_SHORT.get(payload.data[4], str(payload.data[4]))
        return f"EAP/{code}{method}"
    if isinstance(payload, EncryptedFragment):
        return f"EF({payload.number}/{payload.total})"
    if isinstance(payload, UnknownPayload):
        return f"UNKN({payload.payload_type})"
    return short or str(payload.payload_type)


def find_payload(data: bytes, payload_type: int) -> bytes | None:
    """The body of the first payload of ``payload_type`` in the unencrypted
    chain of a whole message, found by walking only the generic headers.

    For the cheap look at an IKE_SA_INIT request under load (its COOKIE
    notify and nonce) before anything is parsed in full; None when absent or
    when the chain is malformed (the full parse then reports why)."""
    if len(data) < HEADER_SIZE:
        return None
    kind = data[16]
    pos = HEADER_SIZE
    end = len(data)
    for _ in range(MAX_PAYLOADS):
        if kind == PayloadType.NONE or kind in _SEALED or end - pos < 4:
            return None
        next_kind, _flags, length = _GENERIC.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            return None
        if kind == payload_type:
            return data[pos + 4:pos + length]
        pos += length
        kind = next_kind
    return None


def notifies(payloads: Sequence[Payload], notify_type: int | None = None) -> Iterator[Notify]:
    """The Notify payloads of a chain, or those of one type."""
    return (p for p in payloads
            if isinstance(p, Notify) and (notify_type is None or p.notify_type == notify_type))


# -- NAT traversal framing (RFC 3948 §2) ----------------------------------------------


class NatTKind(Enum):
    """What a datagram on the NAT-T port (4500) is."""

    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


def frame_nat_t(message: bytes) -> bytes:
    """An IKE message as sent on the NAT-T port: non-ESP marker first."""
    return NON_ESP_MARKER + message


def unframe_nat_t(datagram: bytes) -> tuple[NatTKind, bytes]:
    """Split a datagram received on the NAT-T port: an IKE message (marker
    removed), an ESP packet (as is) or a NAT-keepalive.  A datagram too
    short to be any of them is ``InvalidSyntax``."""
    if datagram == _NAT_KEEPALIVE:
        return NatTKind.KEEPALIVE, b""
    if datagram[:4] == NON_ESP_MARKER:
        return NatTKind.IKE, datagram[4:]
    # RFC 3948 §2.2: an ESP header is at least SPI and sequence number
    if len(datagram) < 8:
        raise _syntax(f"{len(datagram)}-byte datagram on the NAT-T port", 0)
    return NatTKind.ESP, datagram
