"""RADIUS packets (RFC 2865 §3-5) with the attributes a RADIUS/EAP server uses.

Every packet is a 20-byte header and attributes::

    Code (8) | Identifier (8) | Length (16)
    Authenticator (128)
    Attributes: Type (8) | Length (8, header included) | Value ...

:class:`RadiusPacket` keeps every attribute as its type and raw value bytes,
known or not, so a packet round-trips byte for byte and nothing is decoded
that nobody reads.  The dictionary (:data:`DICTIONARY`) gives the attributes
nac reads or sends a name and a value kind; :func:`decode_value` and
:func:`encode_value` turn raw values into Python values and back.

Security functions, all over the packet bytes:

* Message-Authenticator (RFC 3579 §3.2): HMAC-MD5 keyed with the shared
  secret over the packet with the attribute value zeroed; in replies the
  header carries the Request Authenticator of the request.
* Response Authenticator (RFC 2865 §3): MD5(Code | Identifier | Length |
  Request Authenticator | Attributes | Secret), computed after the
  Message-Authenticator.
* MS-MPPE-Send-Key / MS-MPPE-Recv-Key (RFC 2548 §2.4.2-3): Microsoft
  vendor-specific attributes whose keys are hidden with the shared secret,
  the Request Authenticator and a salt.

EAP packets longer than one attribute travel in consecutive EAP-Message
attributes of at most 253 bytes (RFC 3579 §3.1).

Decoders raise only :class:`RadiusPacketError`, which carries the byte offset
that failed and never the secret.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Iterable, NamedTuple

__all__ = [
    "AUTHENTICATOR_SIZE",
    "DICTIONARY",
    "HEADER_SIZE",
    "MAX_ATTRIBUTE_VALUE",
    "MAX_PACKET_SIZE",
    "Attribute",
    "AttributeSpec",
    "AttributeType",
    "Code",
    "MicrosoftAttribute",
    "RadiusPacket",
    "RadiusPacketError",
    "Tagged",
    "TunnelMediumType",
    "TunnelType",
    "ValueKind",
    "VendorId",
    "VendorSpecific",
    "attribute_name",
    "code_name",
    "decode_value",
    "decrypt_mppe_key",
    "eap_message_attributes",
    "encode_attributes",
    "encode_eap_message",
    "encode_value",
    "encrypt_mppe_key",
    "message_authenticator",
    "mppe_key_attributes",
    "request_authenticator",
    "request_authenticator_valid",
    "response_authenticator",
    "sign_accounting_request",
    "sign_request",
    "sign_response",
    "signed_reply",
    "verify_response",
]

HEADER_SIZE = 20
AUTHENTICATOR_SIZE = 16
# RFC 2865 §3: "The minimum length is 20 and maximum length is 4096."
MAX_PACKET_SIZE = 4096
MAX_ATTRIBUTE_VALUE = 253
# RFC 2868 §3: tags 0x01-0x1F group tunnel attributes; 0 means "no tag".
MAX_TAG = 0x1F

_HEADER = struct.Struct(">BBH16s")
_U32 = struct.Struct(">I")
_ZERO_AUTHENTICATOR = bytes(AUTHENTICATOR_SIZE)


class Code(IntEnum):
    """RADIUS packet codes (RFC 2865 §3, RFC 2866 §4, RFC 5997 §2, RFC 5176 §2)."""

    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    STATUS_CLIENT = 13
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45


_CODE_NAMES = {
    Code.ACCESS_REQUEST: "Access-Request",
    Code.ACCESS_ACCEPT: "Access-Accept",
    Code.ACCESS_REJECT: "Access-Reject",
    Code.ACCOUNTING_REQUEST: "Accounting-Request",
    Code.ACCOUNTING_RESPONSE: "Accounting-Response",
    Code.ACCESS_CHALLENGE: "Access-Challenge",
    Code.STATUS_SERVER: "Status-Server",
    Code.STATUS_CLIENT: "Status-Client",
    Code.DISCONNECT_REQUEST: "Disconnect-Request",
    Code.DISCONNECT_ACK: "Disconnect-ACK",
    Code.DISCONNECT_NAK: "Disconnect-NAK",
    Code.COA_REQUEST: "CoA-Request",
    Code.COA_ACK: "CoA-ACK",
    Code.COA_NAK: "CoA-NAK",
}


def code_name(code: int) -> str:
    """The name RFC 2865 gives a code ("Access-Request"), or its number."""
    return _CODE_NAMES.get(code, f"code {code}")


class AttributeType(IntEnum):
    """RADIUS attribute types nac reads or sends (RFC 2865, 2866, 2868, 2869, 3162, 3579, 4072, 5176)."""

    USER_NAME = 1
    USER_PASSWORD = 2
    CHAP_PASSWORD = 3
    NAS_IP_ADDRESS = 4
    NAS_PORT = 5
    SERVICE_TYPE = 6
    FRAMED_PROTOCOL = 7
    FRAMED_IP_ADDRESS = 8
    FILTER_ID = 11
    FRAMED_MTU = 12
    REPLY_MESSAGE = 18
    STATE = 24
    CLASS = 25
    VENDOR_SPECIFIC = 26
    SESSION_TIMEOUT = 27
    IDLE_TIMEOUT = 28
    TERMINATION_ACTION = 29
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    PROXY_STATE = 33
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_AUTHENTIC = 45
    ACCT_SESSION_TIME = 46
    ACCT_INPUT_PACKETS = 47
    ACCT_OUTPUT_PACKETS = 48
    ACCT_TERMINATE_CAUSE = 49
    ACCT_MULTI_SESSION_ID = 50
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    EVENT_TIMESTAMP = 55
    NAS_PORT_TYPE = 61
    TUNNEL_TYPE = 64
    TUNNEL_MEDIUM_TYPE = 65
    ARAP_PASSWORD = 70
    CONNECT_INFO = 77
    EAP_MESSAGE = 79
    MESSAGE_AUTHENTICATOR = 80
    TUNNEL_PRIVATE_GROUP_ID = 81
    NAS_PORT_ID = 87
    CHARGEABLE_USER_IDENTITY = 89
    NAS_IPV6_ADDRESS = 95
    ERROR_CAUSE = 101
    EAP_KEY_NAME = 102


class ValueKind(Enum):
    """RADIUS data types (RFC 8044 names)."""

    TEXT = "text"                      # UTF-8, RFC 2865 §5
    STRING = "string"                  # opaque octets
    INTEGER = "integer"                # 32-bit unsigned
    IPV4ADDR = "ipv4addr"
    IPV6ADDR = "ipv6addr"
    TAGGED_INTEGER = "tagged integer"  # RFC 2868 §3.1: Tag (8) | Value (24)
    TAGGED_TEXT = "tagged text"        # RFC 2868 §3.6: optional Tag (8) | text
    VSA = "vsa"                        # RFC 2865 §5.26


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One dictionary entry: what an attribute type is called and holds."""

    type: int
    name: str
    kind: ValueKind


def _spec(t: AttributeType, name: str, kind: ValueKind) -> tuple[int, AttributeSpec]:
    return int(t), AttributeSpec(int(t), name, kind)


_A, _K = AttributeType, ValueKind

#: The attributes nac knows, by type.  Others are kept raw and named by number.
DICTIONARY: dict[int, AttributeSpec] = dict([
    _spec(_A.USER_NAME, "User-Name", _K.TEXT),
    _spec(_A.USER_PASSWORD, "User-Password", _K.STRING),
    _spec(_A.CHAP_PASSWORD, "CHAP-Password", _K.STRING),
    _spec(_A.NAS_IP_ADDRESS, "NAS-IP-Address", _K.IPV4ADDR),
    _spec(_A.NAS_PORT, "NAS-Port", _K.INTEGER),
    _spec(_A.SERVICE_TYPE, "Service-Type", _K.INTEGER),
    _spec(_A.FRAMED_PROTOCOL, "Framed-Protocol", _K.INTEGER),
    _spec(_A.FRAMED_IP_ADDRESS, "Framed-IP-Address", _K.IPV4ADDR),
    _spec(_A.FILTER_ID, "Filter-Id", _K.TEXT),
    _spec(_A.FRAMED_MTU, "Framed-MTU", _K.INTEGER),
    _spec(_A.REPLY_MESSAGE, "Reply-Message", _K.TEXT),
    _spec(_A.STATE, "State", _K.STRING),
    _spec(_A.CLASS, "Class", _K.STRING),
    _spec(_A.VENDOR_SPECIFIC, "Vendor-Specific", _K.VSA),
    _spec(_A.SESSION_TIMEOUT, "Session-Timeout", _K.INTEGER),
    _spec(_A.IDLE_TIMEOUT, "Idle-Timeout", _K.INTEGER),
    _spec(_A.TERMINATION_ACTION, "Termination-Action", _K.INTEGER),
    _spec(_A.CALLED_STATION_ID, "Called-Station-Id", _K.TEXT),
    _spec(_A.CALLING_STATION_ID, "Calling-Station-Id", _K.TEXT),
    _spec(_A.NAS_IDENTIFIER, "NAS-Identifier", _K.TEXT),
    _spec(_A.PROXY_STATE, "Proxy-State", _K.STRING),
    _spec(_A.ACCT_STATUS_TYPE, "Acct-Status-Type", _K.INTEGER),
    _spec(_A.ACCT_DELAY_TIME, "Acct-Delay-Time", _K.INTEGER),
    _spec(_A.ACCT_INPUT_OCTETS, "Acct-Input-Octets", _K.INTEGER),
    _spec(_A.ACCT_OUTPUT_OCTETS, "Acct-Output-Octets", _K.INTEGER),
    _spec(_A.ACCT_SESSION_ID, "Acct-Session-Id", _K.TEXT),
    _spec(_A.ACCT_AUTHENTIC, "Acct-Authentic", _K.INTEGER),
    _spec(_A.ACCT_SESSION_TIME, "Acct-Session-Time", _K.INTEGER),
    _spec(_A.ACCT_INPUT_PACKETS, "Acct-Input-Packets", _K.INTEGER),
    _spec(_A.ACCT_OUTPUT_PACKETS, "Acct-Output-Packets", _K.INTEGER),
    _spec(_A.ACCT_TERMINATE_CAUSE, "Acct-Terminate-Cause", _K.INTEGER),
    _spec(_A.ACCT_MULTI_SESSION_ID, "Acct-Multi-Session-Id", _K.TEXT),
    _spec(_A.ACCT_INPUT_GIGAWORDS, "Acct-Input-Gigawords", _K.INTEGER),
    _spec(_A.ACCT_OUTPUT_GIGAWORDS, "Acct-Output-Gigawords", _K.INTEGER),
    _spec(_A.EVENT_TIMESTAMP, "Event-Timestamp", _K.INTEGER),
    _spec(_A.NAS_PORT_TYPE, "NAS-Port-Type", _K.INTEGER),
    _spec(_A.TUNNEL_TYPE, "Tunnel-Type", _K.TAGGED_INTEGER),
    _spec(_A.TUNNEL_MEDIUM_TYPE, "Tunnel-Medium-Type", _K.TAGGED_INTEGER),
    _spec(_A.ARAP_PASSWORD, "ARAP-Password", _K.STRING),
    _spec(_A.CONNECT_INFO, "Connect-Info", _K.TEXT),
    _spec(_A.EAP_MESSAGE, "EAP-Message", _K.STRING),
    _spec(_A.MESSAGE_AUTHENTICATOR, "Message-Authenticator", _K.STRING),
    _spec(_A.TUNNEL_PRIVATE_GROUP_ID, "Tunnel-Private-Group-Id", _K.TAGGED_TEXT),
    _spec(_A.NAS_PORT_ID, "NAS-Port-Id", _K.TEXT),
    _spec(_A.CHARGEABLE_USER_IDENTITY, "Chargeable-User-Identity", _K.STRING),
    _spec(_A.NAS_IPV6_ADDRESS, "NAS-IPv6-Address", _K.IPV6ADDR),
    _spec(_A.ERROR_CAUSE, "Error-Cause", _K.INTEGER),
    _spec(_A.EAP_KEY_NAME, "EAP-Key-Name", _K.STRING),
])
del _A, _K


def attribute_name(attr_type: int) -> str:
    """The dictionary name of an attribute type, or "Attribute-N"."""
    spec = DICTIONARY.get(attr_type)
    return spec.name if spec is not None else f"Attribute-{attr_type}"


class TunnelType(IntEnum):
    """Tunnel-Type values used for enforcement (RFC 2868 §3.1, RFC 3580 §3.31)."""

    ESP = 9
    VLAN = 13


class TunnelMediumType(IntEnum):
    """Tunnel-Medium-Type values (RFC 2868 §3.2)."""

    IPV4 = 1
    IPV6 = 2
    IEEE_802 = 6


class VendorId(IntEnum):
    """SMI Network Management Private Enterprise Codes of the vendors used."""

    MICROSOFT = 311


class MicrosoftAttribute(IntEnum):
    """Microsoft vendor-specific attribute types (RFC 2548 §2)."""

    MS_MPPE_SEND_KEY = 16
    MS_MPPE_RECV_KEY = 17


class RadiusPacketError(ValueError):
    """A malformed packet or attribute: RADIUS silently discards it (RFC 2865 §3).

    ``offset`` is the byte offset (in the packet, or in the value being
    decoded) that failed.
    """

    def __init__(self, reason: str, offset: int | None = None):
        super().__init__(reason if offset is None else f"{reason} (at offset {offset})")
        self.reason = reason
        self.offset = offset


class Attribute(NamedTuple):
    """One attribute as on the wire: its type and raw value (0-253 bytes)."""

    type: int
    value: bytes

    @property
    def name(self) -> str:
        return attribute_name(self.type)

    def decoded(self):
        """The value as its dictionary kind says (raw bytes for unknown types)."""
        return decode_value(self.type, self.value)


@dataclass(frozen=True, slots=True)
class Tagged:
    """A tunnel attribute value with its tag (RFC 2868 §3): tag 0 means none."""

    tag: int
    value: int | str


@dataclass(frozen=True, slots=True)
class VendorSpecific:
    """A Vendor-Specific value (RFC 2865 §5.26): Vendor-Id (32) | String.

    Most vendors, Microsoft included, fill String with sub-attributes laid
    out like RADIUS attributes (Vendor-Type (8) | Vendor-Length (8) | value);
    :meth:`subattributes` reads them.  ``data`` is kept as sent.
    """

    vendor_id: int
    data: bytes

    @classmethod
    def parse(cls, value: bytes) -> "VendorSpecific":
        if len(value) < 5:
            raise RadiusPacketError("Vendor-Specific shorter than 5 bytes", len(value))
        return cls(_U32.unpack_from(value)[0], bytes(value[4:]))

    def build(self) -> bytes:
        return _U32.pack(self.vendor_id) + self.data

    @classmethod
    def of(cls, vendor_id: int, subattributes: Iterable[tuple[int, bytes]]) -> "VendorSpecific":
        parts = []
        for vtype, value in subattributes:
            if len(value) > MAX_ATTRIBUTE_VALUE - 6:
                raise RadiusPacketError(f"vendor attribute {vtype} value longer than 247 bytes")
            parts.append(bytes((vtype, len(value) + 2)) + value)
        return cls(vendor_id, b"".join(parts))

    def subattributes(self) -> tuple[Attribute, ...]:
        """The sub-attributes, if ``data`` follows the suggested format."""
        out, data, pos = [], self.data, 0
        while pos < len(data):
            if pos + 2 > len(data):
                raise RadiusPacketError("truncated vendor attribute header", 4 + pos)
            length = data[pos + 1]
            if length < 2 or pos + length > len(data):
                raise RadiusPacketError(f"bad vendor attribute length {length}", 4 + pos + 1)
            out.append(Attribute(data[pos], data[pos + 2:pos + length]))
            pos += length
        return tuple(out)


# -- values -------------------------------------------------------------------------


def decode_value(attr_type: int, raw: bytes):
    """``raw`` as the dictionary says: str, bytes, int, an IP address,
    :class:`Tagged` or :class:`VendorSpecific`.  Unknown types stay bytes."""
    spec = DICTIONARY.get(attr_type)
    kind = spec.kind if spec is not None else ValueKind.STRING
    name = spec.name if spec is not None else f"Attribute-{attr_type}"
    if kind is ValueKind.STRING:
        return bytes(raw)
    if kind is ValueKind.TEXT:
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RadiusPacketError(f"{name} is not UTF-8 text", exc.start) from None
    if kind is ValueKind.INTEGER:
        if len(raw) != 4:
            raise RadiusPacketError(f"{name} is {len(raw)} bytes, not a 4-byte integer", 0)
        return _U32.unpack(raw)[0]
    if kind is ValueKind.IPV4ADDR:
        if len(raw) != 4:
            raise RadiusPacketError(f"{name} is {len(raw)} bytes, not an IPv4 address", 0)
        return ipaddress.IPv4Address(bytes(raw))
    if kind is ValueKind.IPV6ADDR:
        if len(raw) != 16:
            raise RadiusPacketError(f"{name} is {len(raw)} bytes, not an IPv6 address", 0)
        return ipaddress.IPv6Address(bytes(raw))
    if kind is ValueKind.TAGGED_INTEGER:
        if len(raw) != 4:
            raise RadiusPacketError(f"{name} is {len(raw)} bytes, not a tag and 3-byte integer", 0)
        if raw[0] > MAX_TAG:
            raise RadiusPacketError(f"{name} tag {raw[0]} is above 31", 0)
        return Tagged(raw[0], int.from_bytes(raw[1:4], "big"))
    if kind is ValueKind.TAGGED_TEXT:
        # RFC 2868 §3.6: a first byte of 0x01-0x1F is a tag, anything else is text;
        # hostapd and FreeRADIUS also strip a 0x00 "no tag" byte
        tag, start = (raw[0], 1) if raw and raw[0] <= MAX_TAG else (0, 0)
        try:
            return Tagged(tag, bytes(raw[start:]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RadiusPacketError(f"{name} is not UTF-8 text", start + exc.start) from None
    return VendorSpecific.parse(raw)


def encode_value(attr_type: int, value) -> bytes:
    """The raw value bytes for ``value`` (the inverse of :func:`decode_value`)."""
    spec = DICTIONARY.get(attr_type)
    kind = spec.kind if spec is not None else ValueKind.STRING
    if kind is ValueKind.STRING:
        out = bytes(value)
    elif kind is ValueKind.TEXT:
        out = value.encode("utf-8")
    elif kind is ValueKind.INTEGER:
        out = _U32.pack(value)
    elif kind is ValueKind.IPV4ADDR:
        out = ipaddress.IPv4Address(value).packed
    elif kind is ValueKind.IPV6ADDR:
        out = ipaddress.IPv6Address(value).packed
    elif kind is ValueKind.TAGGED_INTEGER:
        tag, number = (value.tag, value.value) if isinstance(value, Tagged) else (0, value)
        if not 0 <= tag <= MAX_TAG or not 0 <= number < 1 << 24:
            raise RadiusPacketError(f"{attribute_name(attr_type)}: tag or value out of range")
        out = bytes((tag,)) + number.to_bytes(3, "big")
    elif kind is ValueKind.TAGGED_TEXT:
        tag, text = (value.tag, value.value) if isinstance(value, Tagged) else (0, value)
        if not 0 <= tag <= MAX_TAG:
            raise RadiusPacketError(f"{attribute_name(attr_type)}: tag out of range")
        out = text.encode("utf-8")
        # without a tag byte, text starting below 0x20 would read as tagged
        if tag or (out and out[0] <= MAX_TAG):
            out = bytes((tag,)) + out
    else:
        out = value.build()
    if len(out) > MAX_ATTRIBUTE_VALUE:
        raise RadiusPacketError(f"{attribute_name(attr_type)} value is {len(out)} bytes; at most 253 fit")
    return out


# -- packets ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RadiusPacket:
    """A RADIUS packet (RFC 2865 §3).

    ``attributes`` keep wire order and raw values.  ``raw`` is the packet as
    received (up to its Length field; trailing padding dropped) and is what
    :meth:`message_authenticator_valid` checks; it is empty for packets built
    in memory.
    """

    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[Attribute, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)
    # offset of the Message-Authenticator value in ``raw``, if there is one
    _ma_offset: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes) -> "RadiusPacket":
        """Decode one datagram; octets past the Length field are padding (RFC 2865 §3)."""
        size = len(data)
        if size < HEADER_SIZE:
            raise RadiusPacketError(f"packet of {size} bytes is shorter than the 20-byte header", size)
        code, identifier, length, authenticator = _HEADER.unpack_from(data)
        if length < HEADER_SIZE or length > MAX_PACKET_SIZE:
            raise RadiusPacketError(f"Length {length} is outside 20-4096", 2)
        if length > size:
            raise RadiusPacketError(f"Length {length} is longer than the {size}-byte datagram", 2)
        if length < size:
            data = data[:length]
        attributes = []
        append = attributes.append
        new = tuple.__new__
        ma_offset = None
        pos = HEADER_SIZE
        while pos < length:
            if pos + 2 > length:
                raise RadiusPacketError("truncated attribute header", pos)
            attr_type = data[pos]
            attr_len = data[pos + 1]
            if attr_len < 2 or pos + attr_len > length:
                raise RadiusPacketError(f"attribute {attr_type} has bad length {attr_len}", pos + 1)
            if attr_type == 80:
                if attr_len != 18:
                    raise RadiusPacketError(f"Message-Authenticator of length {attr_len}, not 18", pos + 1)
                if ma_offset is not None:
                    raise RadiusPacketError("more than one Message-Authenticator", pos)
                ma_offset = pos + 2
            append(new(Attribute, (attr_type, data[pos + 2:pos + attr_len])))
            pos += attr_len
        return cls(code, identifier, authenticator, tuple(attributes), bytes(data), ma_offset)

    def build(self) -> bytes:
        """The packet as is (authenticators unchanged); see :func:`sign_request`
        and :func:`sign_response` to compute them."""
        return bytes(_assemble(self.code, self.identifier, self.authenticator, self.attributes)[0])

    # -- reading attributes ----------------------------------------------------------

    def get(self, attr_type: int) -> bytes | None:
        """The raw value of the first attribute of ``attr_type``, or None."""
        for attr in self.attributes:
            if attr.type == attr_type:
                return attr.value
        return None

    def get_all(self, attr_type: int) -> list[bytes]:
        return [attr.value for attr in self.attributes if attr.type == attr_type]

    def has(self, attr_type: int) -> bool:
        return any(attr.type == attr_type for attr in self.attributes)

    def value(self, attr_type: int, default=None):
        """The decoded value of the first attribute of ``attr_type``."""
        raw = self.get(attr_type)
        return default if raw is None else decode_value(attr_type, raw)

    def eap_message(self) -> bytes | None:
        """The EAP packet of the EAP-Message attributes, concatenated (RFC 3579 §3.1),
        or None without any.  They must be consecutive."""
        parts: list[bytes] = []
        ended = False
        for attr in self.attributes:
            if attr.type == 79:
                if ended:
                    raise RadiusPacketError("EAP-Message attributes are not consecutive")
                parts.append(attr.value)
            elif parts:
                ended = True
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @property
    def has_message_authenticator(self) -> bool:
        return self._ma_offset is not None

    def message_authenticator_valid(self, secret: bytes,
                                    request_authenticator: bytes | None = None) -> bool:
        """Whether the received Message-Authenticator is right (RFC 3579 §3.2).

        For replies pass the Request Authenticator of the request answered.
        False when the packet has none.
        """
        off = self._ma_offset
        if off is None:
            return False
        raw = memoryview(self.raw)
        if request_authenticator is None:
            mac = _hmac_md5(secret, raw[:off], _ZERO_AUTHENTICATOR, raw[off + 16:])
        else:
            mac = _hmac_md5(secret, raw[:4], request_authenticator, raw[20:off], _ZERO_AUTHENTICATOR,
                            raw[off + 16:])
        return hmac.compare_digest(mac, raw[off:off + 16])


def _assemble(code: int, identifier: int, authenticator: bytes,
              attributes: Iterable[Attribute]) -> tuple[bytearray, int | None]:
    """The packet bytes and the offset of the (first) Message-Authenticator value."""
    out = bytearray(HEADER_SIZE)
    ma_offset = None
    for attr_type, value in attributes:
        size = len(value)
        if size > MAX_ATTRIBUTE_VALUE:
            raise RadiusPacketError(f"{attribute_name(attr_type)} value is {size} bytes; at most 253 fit")
        if attr_type == 80 and ma_offset is None and size == 16:
            ma_offset = len(out) + 2
        out.append(attr_type)
        out.append(size + 2)
        out += value
    length = len(out)
    if length > MAX_PACKET_SIZE:
        raise RadiusPacketError(f"packet of {length} bytes is longer than 4096")
    if len(authenticator) != AUTHENTICATOR_SIZE:
        raise RadiusPacketError("the authenticator is not 16 bytes")
    _HEADER.pack_into(out, 0, code, identifier, length, authenticator)
    return out, ma_offset


_EAP_MESSAGE_FULL = bytes((79, MAX_ATTRIBUTE_VALUE + 2))


def eap_message_attributes(eap: bytes) -> list[Attribute]:
    """``eap`` cut into EAP-Message attributes of at most 253 bytes (RFC 3579 §3.1)."""
    if len(eap) <= MAX_ATTRIBUTE_VALUE:
        return [Attribute(79, eap)]
    return [Attribute(79, eap[i:i + MAX_ATTRIBUTE_VALUE]) for i in range(0, len(eap), MAX_ATTRIBUTE_VALUE)]


def encode_attributes(attributes: Iterable[Attribute]) -> bytes:
    """``attributes`` as on the wire, each Type | Length | Value."""
    parts = []
    append = parts.append
    for attr_type, value in attributes:
        size = len(value)
        if size > MAX_ATTRIBUTE_VALUE:
            raise RadiusPacketError(f"{attribute_name(attr_type)} value is {size} bytes; at most 253 fit")
        append(bytes((attr_type, size + 2)))
        append(value)
    return b"".join(parts)


def encode_eap_message(eap: bytes) -> bytes:
    """``eap`` as consecutive EAP-Message attributes on the wire, 253 bytes
    each but the last (RFC 3579 §3.1): what :func:`eap_message_attributes`
    gives, encoded, without an Attribute per chunk."""
    size = len(eap)
    if size <= MAX_ATTRIBUTE_VALUE:
        return bytes((79, size + 2)) + eap
    whole = size - size % MAX_ATTRIBUTE_VALUE
    parts = []
    append = parts.append
    for i in range(0, whole, MAX_ATTRIBUTE_VALUE):
        append(_EAP_MESSAGE_FULL)
        append(eap[i:i + MAX_ATTRIBUTE_VALUE])
    if whole < size:
        append(bytes((79, size - whole + 2)))
        append(eap[whole:])
    return b"".join(parts)


# -- authenticators -----------------------------------------------------------------


_MD5_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=256)
def _hmac_md5_pads(secret: bytes):
    """The MD5 states after the inner and the outer padded key (RFC 2104 §2),
    made once per secret: a MAC then costs two MD5 runs over its data and
    the inner digest, not the key schedule and wrapper objects each time."""
    key = hashlib.md5(secret).digest() if len(secret) > _MD5_BLOCK else secret
    key = key.ljust(_MD5_BLOCK, b"\0")
    return hashlib.md5(key.translate(_IPAD)), hashlib.md5(key.translate(_OPAD))


def _hmac_md5(secret: bytes, *parts) -> bytes:
    """HMAC-MD5 with ``secret`` over the concatenation of ``parts``."""
    inner, outer = _hmac_md5_pads(secret)
    inner = inner.copy()
    for part in parts:
        inner.update(part)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def message_authenticator(packet: bytes | bytearray, secret: bytes) -> bytes:
    """HMAC-MD5 of ``packet`` (whose Message-Authenticator value is zero and
    whose header holds the authenticator to sign over) with ``secret``."""
    return _hmac_md5(secret, packet)


def response_authenticator(packet: bytes, secret: bytes) -> bytes:
    """MD5(Code+ID+Length+RequestAuth+Attributes+Secret) for a reply whose
    header carries the Request Authenticator (RFC 2865 §3)."""
    return hashlib.md5(packet + secret).digest()


def _fill_message_authenticator(data: bytearray, ma_offset: int | None, secret: bytes) -> None:
    if ma_offset is not None:
        data[ma_offset:ma_offset + 16] = _ZERO_AUTHENTICATOR
        data[ma_offset:ma_offset + 16] = message_authenticator(data, secret)


def sign_request(packet: RadiusPacket, secret: bytes) -> bytes:
    """An Access-Request or Status-Server on the wire: the Request Authenticator
    is ``packet.authenticator`` (random, chosen by the client); a
    Message-Authenticator attribute present in ``packet`` gets its value."""
    data, ma_offset = _assemble(packet.code, packet.identifier, packet.authenticator, packet.attributes)
    _fill_message_authenticator(data, ma_offset, secret)
    return bytes(data)


def request_authenticator(packet: bytes | bytearray, secret: bytes) -> bytes:
    """The Request Authenticator of an Accounting-Request (RFC 2866 §3),
    CoA-Request or Disconnect-Request (RFC 5176 §2.3): MD5(Code | Identifier
    | Length | 16 zero octets | Attributes | Secret) over ``packet`` (its
    authenticator field is ignored)."""
    digest = hashlib.md5(packet[:4])
    digest.update(_ZERO_AUTHENTICATOR)
    digest.update(packet[20:])
    digest.update(secret)
    return digest.digest()


def request_authenticator_valid(packet: RadiusPacket, secret: bytes) -> bool:
    """Whether a received Accounting-, CoA- or Disconnect-Request carries the
    Request Authenticator of :func:`request_authenticator`, and, if it has
    one, a Message-Authenticator computed over the packet with a zero
    authenticator (as FreeRADIUS and hostapd sign these requests)."""
    if not hmac.compare_digest(request_authenticator(packet.raw, secret), packet.authenticator):
        return False
    return not packet.has_message_authenticator or packet.message_authenticator_valid(secret, _ZERO_AUTHENTICATOR)


def sign_accounting_request(packet: RadiusPacket, secret: bytes) -> bytes:
    """An Accounting-Request, CoA-Request or Disconnect-Request on the wire:
    a Message-Authenticator present in ``packet`` is computed with a zero
    authenticator in the header, then the Request Authenticator
    (:func:`request_authenticator`) fills it.  ``packet.authenticator`` is
    ignored."""
    data, ma_offset = _assemble(packet.code, packet.identifier, _ZERO_AUTHENTICATOR, packet.attributes)
    _fill_message_authenticator(data, ma_offset, secret)
    data[4:20] = request_authenticator(data, secret)
    return bytes(data)


def sign_response(packet: RadiusPacket, request_authenticator: bytes, secret: bytes) -> bytes:
    """A reply on the wire: a Message-Authenticator attribute present in
    ``packet`` is computed over the packet with the Request Authenticator in
    the header (RFC 3579 §3.2), then the Response Authenticator replaces it
    (RFC 2865 §3).  ``packet.authenticator`` is ignored."""
    data, ma_offset = _assemble(packet.code, packet.identifier, request_authenticator, packet.attributes)
    return _sign_reply(data, ma_offset, secret)


_MESSAGE_AUTHENTICATOR_ZERO = bytes((80, 18)) + _ZERO_AUTHENTICATOR


def signed_reply(code: int, identifier: int, request_authenticator: bytes, secret: bytes,
                 attributes: bytes) -> bytes:
    """A reply on the wire whose first attribute is a Message-Authenticator,
    followed by ``attributes`` already encoded (:func:`encode_attributes`,
    :func:`encode_eap_message`): the same bytes :func:`sign_response` gives
    for a packet whose attributes start with a zero Message-Authenticator,
    without building the packet object first."""
    length = HEADER_SIZE + 18 + len(attributes)
    if length > MAX_PACKET_SIZE:
        raise RadiusPacketError(f"packet of {length} bytes is longer than 4096")
    if len(request_authenticator) != AUTHENTICATOR_SIZE:
        raise RadiusPacketError("the authenticator is not 16 bytes")
    data = bytearray(_HEADER.pack(code, identifier, length, request_authenticator))
    data += _MESSAGE_AUTHENTICATOR_ZERO
    data += attributes
    return _sign_reply(data, HEADER_SIZE + 2, secret)


def _sign_reply(data: bytearray, ma_offset: int | None, secret: bytes) -> bytes:
    if ma_offset is not None:
        data[ma_offset:ma_offset + 16] = _ZERO_AUTHENTICATOR
        data[ma_offset:ma_offset + 16] = _hmac_md5(secret, data)
    digest = hashlib.md5(data)
    digest.update(secret)
    data[4:20] = digest.digest()
    return bytes(data)


def verify_response(data: bytes, request_authenticator: bytes, secret: bytes) -> RadiusPacket:
    """Parse a reply and check its Response Authenticator and, if present, its
    Message-Authenticator; raise :class:`RadiusPacketError` when either is wrong."""
    reply = RadiusPacket.parse(data)
    raw = reply.raw
    expected = response_authenticator(raw[:4] + request_authenticator + raw[20:], secret)
    if not hmac.compare_digest(expected, reply.authenticator):
        raise RadiusPacketError("bad Response Authenticator", 4)
    if reply.has_message_authenticator and not reply.message_authenticator_valid(secret, request_authenticator):
        raise RadiusPacketError("bad Message-Authenticator", reply._ma_offset)
    return reply


# -- MS-MPPE keys (RFC 2548) ------------------------------------------------------------


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def encrypt_mppe_key(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """Salt (2 bytes) | String of an MS-MPPE-Send/Recv-Key (RFC 2548 §2.4.2).

    P = Key-Length | Key, zero-padded to a multiple of 16;
    b(1) = MD5(S + R + A), c(i) = p(i) xor b(i), b(i) = MD5(S + c(i-1)).
    The salt's high bit must be set and each salt unique in a packet.
    """
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("an MS-MPPE salt is 2 bytes with the high bit set")
    if len(key) > 239:
        raise ValueError("an MS-MPPE key is at most 239 bytes")
    plain = bytes((len(key),)) + key
    plain += bytes(-len(plain) % 16)
    out = bytearray()
    seed = request_authenticator + salt
    for i in range(0, len(plain), 16):
        block = _xor16(plain[i:i + 16], hashlib.md5(secret + seed).digest())
        out += block
        seed = block
    return salt + bytes(out)


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """The key hidden in ``value`` (Salt | String) by :func:`encrypt_mppe_key`."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise RadiusPacketError(f"MS-MPPE key value of {len(value)} bytes is not a salt and 16-byte blocks")
    salt, cipher = value[:2], value[2:]
    plain = bytearray()
    seed = request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i:i + 16]
        plain += _xor16(block, hashlib.md5(secret + seed).digest())
        seed = block
    if plain[0] > len(plain) - 1:
        raise RadiusPacketError("MS-MPPE key length is longer than the data (wrong secret?)", 2)
    return bytes(plain[1:1 + plain[0]])


_MICROSOFT = _U32.pack(VendorId.MICROSOFT)


def mppe_key_attributes(msk: bytes, secret: bytes, request_authenticator: bytes,
                        salt: bytes) -> tuple[Attribute, Attribute]:
    """MS-MPPE-Recv-Key = MSK[0:32] and MS-MPPE-Send-Key = MSK[32:64]
    (RFC 5216 §2.3 as hostapd and strongSwan send them), as two
    Vendor-Specific attributes.  ``salt`` (2 random bytes) seeds both salts,
    which get the high bit set and differ in the low bit."""
    base = bytes((salt[0] | 0x80, salt[1] & 0xFE))
    other = bytes((base[0], base[1] | 0x01))
    if len(msk) < 64:
        raise ValueError("an MSK is at least 64 bytes (RFC 3748 §7.10)")
    recv = encrypt_mppe_key(msk[:32], secret, request_authenticator, base)
    send = encrypt_mppe_key(msk[32:64], secret, request_authenticator, other)
    return (Attribute(26, _MICROSOFT + bytes((MicrosoftAttribute.MS_MPPE_RECV_KEY, len(recv) + 2)) + recv),
            Attribute(26, _MICROSOFT + bytes((MicrosoftAttribute.MS_MPPE_SEND_KEY, len(send) + 2)) + send))
