"""PT-TLS messages (RFC 6876 §3.5-3.9) and an incremental stream framer.

Every PT-TLS message is a 16-byte header and a value::

    Reserved (8) | Message Type Vendor ID (24)
    Message Type (32)
    Message Length (32, header included)
    Message Identifier (32)
    Message Value ...

``PtTlsMessage`` is the raw carrier: it keeps any vendor and type, known or
not, so everything round-trips byte for byte.  The typed values
(``VersionRequest`` … ``PtTlsError``) decode and build the value of the IETF
message types.  ``PtTlsFramer`` cuts a decrypted TLS byte stream into
messages and refuses an oversize message from its header alone.

Decoders raise only ``PtTlsProtocolError`` (or ``SaslPlainError`` for the
SASL PLAIN message, which PT-TLS itself treats as opaque).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADER_SIZE",
    "IETF_VENDOR",
    "MAX_ERROR_COPY",
    "PT_TLS_VERSION",
    "Experimental",
    "PbTncBatch",
    "PtTlsError",
    "PtTlsErrorCode",
    "PtTlsFramer",
    "PtTlsMessage",
    "PtTlsMessageType",
    "PtTlsProtocolError",
    "SaslAuthenticationData",
    "SaslMechanismSelection",
    "SaslMechanisms",
    "SaslPlainError",
    "SaslPlainResponse",
    "SaslResult",
    "SaslResultMessage",
    "VersionRequest",
    "VersionResponse",
    "message_type_name",
]

HEADER_SIZE = 16
IETF_VENDOR = 0
PT_TLS_VERSION = 1
# RFC 6876 §3.5: Message Type 0xffffffff is reserved and never sent.
RESERVED_MESSAGE_TYPE = 0xFFFFFFFF
# RFC 6876 §3.9: a PT-TLS Error copies at most this much of the offending message.
MAX_ERROR_COPY = 1024
# strongSwan reads PT-TLS messages of up to 128 TLS records (2 MiB, header
# included) and sizes its PB-TNC batches to fit; accept as much by default.
DEFAULT_MAX_MESSAGE_SIZE = 2 * 1024 * 1024
MAX_MESSAGE_ID = 0xFFFFFFFF

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_LENGTH_FIELD_OFFSET = 8  # where Message Length sits in the header, for error offsets
_MECH_LEN_MASK = 0x1F  # SASL mechanism entries: Reserved (3 bits) | Mech Len (5 bits)
_MAX_MECH_NAME = 20  # RFC 4422 §3.1: mechanism names are 1-20 characters


class PtTlsMessageType(IntEnum):
    """IETF PT-TLS Message Types (RFC 6876 §3.6), Message Type Vendor ID 0."""

    EXPERIMENTAL = 0
    VERSION_REQUEST = 1
    VERSION_RESPONSE = 2
    SASL_MECHANISMS = 3
    SASL_MECHANISM_SELECTION = 4
    SASL_AUTHENTICATION_DATA = 5
    SASL_RESULT = 6
    PB_TNC_BATCH = 7
    PT_TLS_ERROR = 8


_TYPE_NAMES = {
    PtTlsMessageType.EXPERIMENTAL: "Experimental",
    PtTlsMessageType.VERSION_REQUEST: "Version Request",
    PtTlsMessageType.VERSION_RESPONSE: "Version Response",
    PtTlsMessageType.SASL_MECHANISMS: "SASL Mechanisms",
    PtTlsMessageType.SASL_MECHANISM_SELECTION: "SASL Mechanism Selection",
    PtTlsMessageType.SASL_AUTHENTICATION_DATA: "SASL Authentication Data",
    PtTlsMessageType.SASL_RESULT: "SASL Result",
    PtTlsMessageType.PB_TNC_BATCH: "PB-TNC Batch",
    PtTlsMessageType.PT_TLS_ERROR: "PT-TLS Error",
}


def message_type_name(vendor: int, msg_type: int) -> str:
    """The name strongSwan logs for a message type ("'SASL Result'"), or its
    numbers for a type nobody registered."""
    if vendor == IETF_VENDOR and msg_type in _TYPE_NAMES:
        return f"'{_TYPE_NAMES[msg_type]}'"
    return f"unknown type 0x{vendor:06x}/0x{msg_type:08x}"


class PtTlsErrorCode(IntEnum):
    """IETF PT-TLS Error Codes (RFC 6876 §3.9.1)."""

    RESERVED = 0
    MALFORMED_MESSAGE = 1
    VERSION_NOT_SUPPORTED = 2
    TYPE_NOT_SUPPORTED = 3
    INVALID_MESSAGE = 4
    SASL_MECHANISM_ERROR = 5
    INVALID_PARAMETER = 6

    @property
    def fatal(self) -> bool:
        """Every IETF code ends the session except Reserved (to be ignored)
        and Type Not Supported (the message is skipped and the session goes on)."""
        return self not in (PtTlsErrorCode.RESERVED, PtTlsErrorCode.TYPE_NOT_SUPPORTED)


_ERROR_NAMES = {
    PtTlsErrorCode.RESERVED: "Reserved",
    PtTlsErrorCode.MALFORMED_MESSAGE: "Malformed Message",
    PtTlsErrorCode.VERSION_NOT_SUPPORTED: "Version Not Supported",
    PtTlsErrorCode.TYPE_NOT_SUPPORTED: "Type Not Supported",
    PtTlsErrorCode.INVALID_MESSAGE: "Invalid Message",
    PtTlsErrorCode.SASL_MECHANISM_ERROR: "SASL Mechanism Error",
    PtTlsErrorCode.INVALID_PARAMETER: "Invalid Parameter",
}


def error_code_name(vendor: int, code: int) -> str:
    if vendor == IETF_VENDOR and code in _ERROR_NAMES:
        return _ERROR_NAMES[code]
    return f"error 0x{vendor:06x}/{code}"


def error_is_fatal(vendor: int, code: int) -> bool:
    """Whether receiving (or sending) this error ends the session.  A vendor
    code we cannot interpret is treated as fatal, as strongSwan does."""
    if vendor == IETF_VENDOR and code in _ERROR_NAMES:
        return PtTlsErrorCode(code).fatal
    return True


class SaslResult(IntEnum):
    """SASL Result codes (RFC 6876 §3.8.10)."""

    SUCCESS = 0
    FAILURE = 1
    ABORT = 2
    MECHANISM_FAILURE = 3


def _enum_or_int(enum: type[IntEnum], value: int) -> int:
    return enum(value) if value in enum._value2member_map_ else value


class PtTlsProtocolError(Exception):
    """A PT-TLS protocol error, to be reported in a PT-TLS Error message (RFC 6876 §3.9).

    ``offset`` is the byte offset inside the offending message (0 = first
    header byte) that failed, when known.  ``original`` is the start of the
    offending message (at most 1024 bytes, what RFC 6876 §3.9 says to copy
    into the PT-TLS Error); ``header`` its first 16 bytes.  Neither appears in
    ``str()``: the message may carry a SASL password.
    """

    def __init__(
        self,
        code: PtTlsErrorCode | int,
        reason: str = "",
        *,
        offset: int | None = None,
        original: bytes = b"",
        vendor: int = IETF_VENDOR,
    ) -> None:
        self.code = _enum_or_int(PtTlsErrorCode, code) if vendor == IETF_VENDOR else code
        self.reason = reason
        self.offset = offset
        self.vendor = vendor
        self.original = bytes(original[:MAX_ERROR_COPY])
        # set by PtTlsFramer.feed: the messages decoded before the failure
        self.decoded: tuple[PtTlsMessage, ...] = ()
        super().__init__(code, reason, offset)

    def __reduce__(self):
        return (type(self), (self.code, self.reason), self.__dict__.copy())

    @property
    def header(self) -> bytes:
        return self.original[:HEADER_SIZE]

    @property
    def fatal(self) -> bool:
        return error_is_fatal(self.vendor, self.code)

    def __str__(self) -> str:
        text = f"PT-TLS {error_code_name(self.vendor, self.code)}"
        if self.reason:
            text += f": {self.reason}"
        if self.offset is not None:
            text += f" at byte offset {self.offset}"
        return text

    def __repr__(self) -> str:
        return f"PtTlsProtocolError({self})"

    def with_original(self, original: bytes) -> PtTlsProtocolError:
        """Attach the offending message when the decoder only saw its value."""
        if not self.original:
            self.original = bytes(original[:MAX_ERROR_COPY])
        return self

    def to_value(self) -> PtTlsError:
        """The PT-TLS Error value reporting this error to the peer."""
        return PtTlsError(self.code, self.vendor, self.original)


def _malformed(reason: str, offset: int) -> PtTlsProtocolError:
    return PtTlsProtocolError(PtTlsErrorCode.MALFORMED_MESSAGE, reason, offset=offset)


def _bad_fixed_length(name: str, got: int, want: int) -> PtTlsProtocolError:
    # RFC 6876 §3.5: a known fixed Message Length that differs is an Invalid Parameter
    return PtTlsProtocolError(
        PtTlsErrorCode.INVALID_PARAMETER,
        f"{name} Message Length {HEADER_SIZE + got} is not {HEADER_SIZE + want}",
        offset=_LENGTH_FIELD_OFFSET,
    )


# -- the message ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PtTlsMessage:
    """One PT-TLS message (RFC 6876 §3.5): header fields and the raw value.

    The value is left out of ``repr``: it can hold a SASL password.
    """

    vendor: int
    type: int
    message_id: int
    value: bytes = field(default=b"", repr=False)
    reserved: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.vendor <= 0xFFFFFF:
            raise ValueError(f"Message Type Vendor ID {self.vendor} does not fit 24 bits")
        if not 0 <= self.type <= 0xFFFFFFFF:
            raise ValueError(f"Message Type {self.type} does not fit 32 bits")
        if not 0 <= self.message_id <= MAX_MESSAGE_ID:
            raise ValueError(f"Message Identifier {self.message_id} does not fit 32 bits")
        if not 0 <= self.reserved <= 0xFF:
            raise ValueError(f"Reserved {self.reserved} does not fit 8 bits")
        if HEADER_SIZE + len(self.value) > 0xFFFFFFFF:
            raise ValueError("message value too long for a 32-bit Message Length")

    @property
    def length(self) -> int:
        """Message Length: the whole message, header included."""
        return HEADER_SIZE + len(self.value)

    @property
    def message_type(self) -> PtTlsMessageType | None:
        """The IETF message type, or None for a vendor or unregistered type."""
        if self.vendor == IETF_VENDOR and self.type in _TYPE_NAMES:
            return PtTlsMessageType(self.type)
        return None

    @property
    def name(self) -> str:
        return message_type_name(self.vendor, self.type)

    def describe(self) -> str:
        """strongSwan's wording: "PT-TLS message #2 of type 'SASL Result' (17 bytes)"."""
        kind = f"type {self.name}" if self.message_type is not None else self.name
        return f"PT-TLS message #{self.message_id} of {kind} ({self.length} bytes)"

    @staticmethod
    def parse_header(data: bytes) -> tuple[int, int, int, int, int]:
        """Decode a 16-byte header: (reserved, vendor, type, length, message id).

        Checks what the header alone can tell: Message Length below 16 and the
        reserved Message Type are Invalid Parameter (RFC 6876 §3.5).
        """
        if len(data) < HEADER_SIZE:
            raise _malformed(f"{len(data)} bytes are too few for a PT-TLS header", len(data))
        first, msg_type, length, message_id = _HEADER.unpack_from(data)
        if length < HEADER_SIZE:
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_PARAMETER,
                f"Message Length {length} is below the 16-byte header",
                offset=_LENGTH_FIELD_OFFSET,
                original=bytes(data[:HEADER_SIZE]),
            )
        if msg_type == RESERVED_MESSAGE_TYPE:
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_PARAMETER,
                "Message Type 0xffffffff is reserved",
                offset=4,
                original=bytes(data[:HEADER_SIZE]),
            )
        return first >> 24, first & 0xFFFFFF, msg_type, length, message_id

    @classmethod
    def parse(cls, data: bytes) -> PtTlsMessage:
        """Decode exactly one whole message."""
        data = bytes(data)
        reserved, vendor, msg_type, length, message_id = cls.parse_header(data)
        if length != len(data):
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_PARAMETER,
                f"Message Length {length} does not match the {len(data)} bytes given",
                offset=_LENGTH_FIELD_OFFSET,
                original=data,
            )
        return cls(vendor, msg_type, message_id, data[HEADER_SIZE:], reserved)

    def build(self) -> bytes:
        return self._header() + self.value

    def error_copy(self) -> bytes:
        """The start of this message, as a PT-TLS Error copies it (at most
        1024 bytes, RFC 6876 §3.9), without building a large message whole."""
        return self._header() + self.value[:MAX_ERROR_COPY - HEADER_SIZE]

    def _header(self) -> bytes:
        return _HEADER.pack((self.reserved << 24) | self.vendor, self.type, self.length, self.message_id)

    def decode(self) -> _PtTlsValue | None:
        """The typed value of an IETF message type; None for any other type.

        Raises ``PtTlsProtocolError`` carrying this message as ``original``.
        """
        cls = _VALUE_TYPES.get(self.type) if self.vendor == IETF_VENDOR else None
        if cls is None:
            return None
        try:
            return cls.parse(self.value)
        except PtTlsProtocolError as exc:
            raise exc.with_original(self.error_copy()) from None


# -- typed values -------------------------------------------------------------


class _PtTlsValue:
    """A typed message value: ``parse(value)`` / ``to_value()``.

    Offsets in errors count from the start of the message (the value starts
    at ``offset``, 16 unless told otherwise).
    """

    __slots__ = ()
    MESSAGE_TYPE: ClassVar[PtTlsMessageType]

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_value(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_message(self, message_id: int) -> PtTlsMessage:
        return PtTlsMessage(IETF_VENDOR, self.MESSAGE_TYPE, message_id, self.to_value())


@dataclass(frozen=True, slots=True)
class Experimental(_PtTlsValue):
    """Experimental (RFC 6876 §3.6): only for closed test networks; receivers
    answer it with Invalid Message."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.EXPERIMENTAL
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> Experimental:
        return cls(bytes(value))

    def to_value(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class VersionRequest(_PtTlsValue):
    """Version Request (RFC 6876 §3.7.1): Reserved | Min Vers | Max Vers | Pref Vers."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.VERSION_REQUEST
    min_version: int = PT_TLS_VERSION
    max_version: int = PT_TLS_VERSION
    preferred_version: int = PT_TLS_VERSION
    reserved: int = field(default=0, repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> VersionRequest:
        if len(value) != 4:
            raise _bad_fixed_length("Version Request", len(value), 4)
        reserved, vmin, vmax, vpref = value
        return cls(vmin, vmax, vpref, reserved)

    def to_value(self) -> bytes:
        return bytes((self.reserved, self.min_version, self.max_version, self.preferred_version))

    def accepts(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


@dataclass(frozen=True, slots=True)
class VersionResponse(_PtTlsValue):
    """Version Response (RFC 6876 §3.7.2): Reserved (24 bits) | Version (8 bits)."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.VERSION_RESPONSE
    version: int = PT_TLS_VERSION
    reserved: int = field(default=0, repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> VersionResponse:
        if len(value) != 4:
            raise _bad_fixed_length("Version Response", len(value), 4)
        word = _U32.unpack(value)[0]
        return cls(word & 0xFF, word >> 8)

    def to_value(self) -> bytes:
        return _U32.pack((self.reserved << 8) | self.version)


def _mechanism_name_bytes(name: str) -> bytes:
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"SASL mechanism name {name!r} is not ASCII") from None
    if not 1 <= len(raw) <= _MECH_LEN_MASK:
        raise ValueError(f"SASL mechanism name {name!r} must be 1 to 31 octets")
    return raw


def _parse_mechanism(value: bytes, pos: int, offset: int, what: str) -> tuple[str, int]:
    """Decode one Rsvd (3) | Mech Len (5) | Mechanism Name entry at ``pos``."""
    length = value[pos] & _MECH_LEN_MASK  # the Reserved bits are ignored on reception
    if length == 0:
        raise _malformed(f"{what} has an empty mechanism name", offset + pos)
    end = pos + 1 + length
    if end > len(value):
        raise _malformed(f"{what} mechanism name of {length} octets overruns the message", offset + pos)
    raw = value[pos + 1:end]
    if not raw.isascii():
        raise _malformed(f"{what} mechanism name is not ASCII", offset + pos + 1)
    return raw.decode("ascii"), end


@dataclass(frozen=True, slots=True)
class SaslMechanisms(_PtTlsValue):
    """SASL Mechanisms (RFC 6876 §3.8.7): length-prefixed mechanism names.

    The empty list ends client authentication: strongSwan sends it at once
    to a client that authenticated with a TLS certificate, and after a
    successful SASL exchange.
    """

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.SASL_MECHANISMS
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> SaslMechanisms:
        names = []
        pos = 0
        while pos < len(value):
            name, pos = _parse_mechanism(value, pos, offset, "SASL Mechanisms")
            names.append(name)
        return cls(tuple(names))

    def to_value(self) -> bytes:
        out = bytearray()
        for name in self.names:
            raw = _mechanism_name_bytes(name)
            out.append(len(raw))
            out += raw
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SaslMechanismSelection(_PtTlsValue):
    """SASL Mechanism Selection (RFC 6876 §3.8.8): one length-prefixed name and
    the optional initial SASL response (for PLAIN it holds the password)."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.SASL_MECHANISM_SELECTION
    name: str
    initial: bytes | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> SaslMechanismSelection:
        if not value:
            raise _malformed("SASL Mechanism Selection without a mechanism name", offset)
        name, end = _parse_mechanism(value, 0, offset, "SASL Mechanism Selection")
        # an empty initial response cannot be told from none on the wire
        return cls(name, bytes(value[end:]) or None)

    def to_value(self) -> bytes:
        raw = _mechanism_name_bytes(self.name)
        return bytes((len(raw),)) + raw + (self.initial or b"")


@dataclass(frozen=True, slots=True)
class SaslAuthenticationData(_PtTlsValue):
    """SASL Authentication Data (RFC 6876 §3.8.9): opaque mechanism octets."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.SASL_AUTHENTICATION_DATA
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> SaslAuthenticationData:
        return cls(bytes(value))

    def to_value(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class SaslResultMessage(_PtTlsValue):
    """SASL Result (RFC 6876 §3.8.10): Result Code, then optional Result Data.

    RFC 6876 draws the Result Code as 16 bits; strongSwan (libpttls) writes
    and reads a single octet.  Both parse: a one-octet value is strongSwan's
    form, anything longer the RFC's 16-bit code followed by data.
    ``code_width`` records which, so values rebuild byte for byte.  nac
    sends the one-octet form: strongSwan clients read only the first octet,
    and would take the RFC's ``00 02`` (abort) for ``00`` (success).
    """

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.SASL_RESULT
    result: SaslResult | int
    data: bytes = field(default=b"", repr=False)
    code_width: int = 1

    def __post_init__(self) -> None:
        if self.code_width not in (1, 2):
            raise ValueError("SASL Result code width is 1 (strongSwan) or 2 (RFC 6876) octets")
        if self.code_width == 1 and (self.data or not 0 <= self.result <= 0xFF):
            raise ValueError("the one-octet SASL Result carries one code below 256 and no data")
        if not 0 <= self.result <= 0xFFFF:
            raise ValueError(f"SASL Result code {self.result} does not fit 16 bits")

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> SaslResultMessage:
        if not value:
            raise _malformed("SASL Result without a Result Code", offset)
        if len(value) == 1:
            return cls(_enum_or_int(SaslResult, value[0]), b"", 1)
        code = (value[0] << 8) | value[1]
        return cls(_enum_or_int(SaslResult, code), bytes(value[2:]), 2)

    def to_value(self) -> bytes:
        return self.result.to_bytes(self.code_width, "big") + self.data


@dataclass(frozen=True, slots=True)
class PbTncBatch(_PtTlsValue):
    """PB-TNC Batch (RFC 6876 §3.6): one whole PB-TNC batch, opaque here."""

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.PB_TNC_BATCH
    batch: bytes = field(default=b"", repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> PbTncBatch:
        return cls(bytes(value))

    def to_value(self) -> bytes:
        return self.batch


@dataclass(frozen=True, slots=True)
class PtTlsError(_PtTlsValue):
    """PT-TLS Error (RFC 6876 §3.9): Reserved | Error Code Vendor ID (24) |
    Error Code (32) | a copy of (up to 1024 bytes of) the offending message.

    ``original_message`` stays out of ``repr``: it can hold a SASL password.
    """

    MESSAGE_TYPE: ClassVar[PtTlsMessageType] = PtTlsMessageType.PT_TLS_ERROR
    code: PtTlsErrorCode | int
    vendor: int = IETF_VENDOR
    original_message: bytes = field(default=b"", repr=False)
    reserved: int = field(default=0, repr=False)

    @classmethod
    def parse(cls, value: bytes, offset: int = HEADER_SIZE) -> PtTlsError:
        if len(value) < 8:
            raise _malformed(f"PT-TLS Error value of {len(value)} octets is shorter than 8", offset)
        first, code = struct.unpack_from(">II", value)
        vendor = first & 0xFFFFFF
        if vendor == IETF_VENDOR:
            code = _enum_or_int(PtTlsErrorCode, code)
        return cls(code, vendor, bytes(value[8:]), first >> 24)

    def to_value(self) -> bytes:
        return struct.pack(">II", (self.reserved << 24) | self.vendor, self.code) + self.original_message

    @property
    def original_header(self) -> bytes:
        return self.original_message[:HEADER_SIZE]

    @property
    def fatal(self) -> bool:
        return error_is_fatal(self.vendor, self.code)

    @property
    def code_name(self) -> str:
        return error_code_name(self.vendor, self.code)


_VALUE_TYPES: dict[int, type[_PtTlsValue]] = {
    cls.MESSAGE_TYPE: cls
    for cls in (
        Experimental,
        VersionRequest,
        VersionResponse,
        SaslMechanisms,
        SaslMechanismSelection,
        SaslAuthenticationData,
        SaslResultMessage,
        PbTncBatch,
        PtTlsError,
    )
}


# -- SASL PLAIN ---------------------------------------------------------------


class SaslPlainError(Exception):
    """An RFC 4616 message that does not decode.  The text never quotes the
    message: it holds a password."""


@dataclass(frozen=True, slots=True)
class SaslPlainResponse:
    """The SASL PLAIN client response (RFC 4616 §2):
    ``[authzid] NUL authcid NUL passwd``, UTF-8, each part at most 255 octets.

    strongSwan's client leaves authzid empty.  ``authzid`` is None when absent.
    """

    authcid: str
    password: str = field(repr=False)
    authzid: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> SaslPlainResponse:
        parts = bytes(data).split(b"\x00")
        if len(parts) != 3:
            raise SaslPlainError(f"SASL PLAIN response has {len(parts) - 1} NUL separators, not 2")
        authzid, authcid, password = parts
        if not authcid:
            raise SaslPlainError("SASL PLAIN response has an empty authentication identity")
        if not password:
            raise SaslPlainError("SASL PLAIN response has an empty password")
        for what, part in (("authorization identity", authzid), ("authentication identity", authcid),
                           ("password", password)):
            if len(part) > 255:
                raise SaslPlainError(f"SASL PLAIN {what} is longer than 255 octets")
        try:
            return cls(authcid.decode("utf-8"), password.decode("utf-8"), authzid.decode("utf-8") or None)
        except UnicodeDecodeError:
            raise SaslPlainError("SASL PLAIN response is not UTF-8") from None

    def build(self) -> bytes:
        return b"\x00".join(
            (
                (self.authzid or "").encode("utf-8"),
                self.authcid.encode("utf-8"),
                self.password.encode("utf-8"),
            )
        )

    @property
    def identity(self) -> str:
        """The identity the session acts as: the authcid, whose password was
        checked (the server refuses an authzid that names someone else)."""
        return self.authcid


# -- the stream ---------------------------------------------------------------


class PtTlsFramer:
    """Cuts the decrypted TLS byte stream into PT-TLS messages.

    A header announcing more than ``max_message_size`` (header included) is
    refused before any of its body is waited for, so a peer cannot make us
    buffer more than that.  Errors are sticky: a stream that failed cannot
    be resynchronised, so every later call raises the same error.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < HEADER_SIZE:
            raise ValueError(f"max_message_size {max_message_size} is below the {HEADER_SIZE}-byte header")
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._error: PtTlsProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a whole message."""
        return len(self._buffer)

    def receive(self, data: bytes) -> None:
        """Append stream bytes without decoding (see ``next_message``)."""
        if self._error is None:
            self._buffer += data

    def next_message(self) -> PtTlsMessage | None:
        """The next whole message, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        buf = self._buffer
        if len(buf) < HEADER_SIZE:
            return None
        try:
            reserved, vendor, msg_type, length, message_id = PtTlsMessage.parse_header(buf)
            if length > self.max_message_size:
                raise PtTlsProtocolError(
                    PtTlsErrorCode.INVALID_PARAMETER,
                    f"Message Length {length} exceeds the maximum of {self.max_message_size}",
                    offset=_LENGTH_FIELD_OFFSET,
                    original=bytes(buf[:HEADER_SIZE]),
                )
        except PtTlsProtocolError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise
        if len(buf) < length:
            return None
        value = bytes(buf[HEADER_SIZE:length])
        del buf[:length]
        return PtTlsMessage(vendor, msg_type, message_id, value, reserved)

    def feed(self, data: bytes) -> list[PtTlsMessage]:
        """Append ``data`` and return every message now complete.

        On a framing error the messages decoded before it in this call are
        on the raised error as ``decoded``.
        """
        self.receive(data)
        out: list[PtTlsMessage] = []
        try:
            while (message := self.next_message()) is not None:
                out.append(message)
        except PtTlsProtocolError as exc:
            exc.decoded = tuple(out)
            raise
        return out
