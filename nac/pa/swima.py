"""SWIMA attributes (RFC 8412 §5): software inventories and events for PA-TNC.

Section numbers are RFC 8412's.  The request and the four inventory/event
attributes are decoded field by field.  The subscription status and source
metadata attributes (types 18-21) are known types whose values stay raw
bytes: strongSwan implements none of them either, and nac has not needed
their fields yet; they round-trip and are never refused as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar, NamedTuple

from nac.pa.ietf import IetfAttributeType as T
from nac.pa.message import (
    ATTRIBUTE_HEADER_SIZE,
    AttributeReader,
    PaAttribute,
    PaVendor,
    RawValueAttribute,
    data16,
    data32,
    register_attribute,
)

__all__ = [
    "SoftwareEvents",
    "SoftwareIdentifierEvents",
    "SoftwareIdentifierInventory",
    "SoftwareInventory",
    "SourceMetadataRequest",
    "SourceMetadataResponse",
    "SubscriptionStatusRequest",
    "SubscriptionStatusResponse",
    "SwimaDataModel",
    "SwimaEvent",
    "SwimaEventAction",
    "SwimaRecord",
    "SwimaRequest",
    "SwimaRequestFlag",
]


class SwimaRequestFlag(IntFlag):
    """Flags of the SWIMA Request (§5.7); the low five bits are reserved."""

    CLEAR_SUBSCRIPTIONS = 0x80  # C
    SUBSCRIBE = 0x40  # S
    RESULT_TYPE = 0x20  # R: 1 = software identifiers only, 0 = full inventory


_REQUEST_FLAGS = 0xE0


class SwimaDataModel(IntEnum):
    """Software Data Model Types in the IETF namespace (§10.2)."""

    ISO_2015_SWID_TAGS_XML = 0
    ISO_2009_SWID_TAGS_XML = 1


class SwimaEventAction(IntEnum):
    """Action of a software event (§5.9)."""

    CREATION = 1
    DELETION = 2
    ALTERATION = 3


class SwimaRecord(NamedTuple):
    """One inventory record (§5.8, §5.10).

    ``data_model_pen``/``data_model_type``: the Software Data Model Type
    (PEN 24 bits + type 8 bits, IETF 0/0 = ISO 2015 SWID tags).  ``record``
    (e.g. the SWID tag XML) is only carried by the full Software Inventory
    and Software Events attributes.
    """

    record_id: int
    software_identifier: str
    software_locator: str = ""
    data_model_pen: int = PaVendor.IETF
    data_model_type: int = SwimaDataModel.ISO_2015_SWID_TAGS_XML
    source_id: int = 0
    record: bytes = b""


class SwimaEvent(NamedTuple):
    """One software event (§5.9, §5.11): EID, RFC 3339 timestamp, action, record."""

    eid: int
    timestamp: str
    action: SwimaEventAction | int
    record: SwimaRecord


def _encode_record(record: SwimaRecord, action: int, with_record: bool) -> bytes:
    # Record Identifier, Data Model Type PEN (24) + Type (8), Source ID Num,
    # Reserved (inventories) or Action (events), Software Identifier, Locator
    out = (
        record.record_id.to_bytes(4, "big")
        + record.data_model_pen.to_bytes(3, "big")
        + bytes((record.data_model_type, record.source_id, action))
        + data16(record.software_identifier.encode(), "Software Identifier")
        + data16(record.software_locator.encode(), "Software Locator")
    )
    return out + data32(record.record) if with_record else out


def _parse_record(r: AttributeReader, with_record: bool) -> tuple[SwimaRecord, int]:
    """A record and its Reserved/Action byte."""
    record_id = r.u32("Record Identifier")
    pen = r.u24("Data Model Type PEN")
    model = r.u8("Data Model Type")
    source_id = r.u8("Source ID Num")
    action = r.u8("Action")
    identifier = r.text16("Software Identifier")
    locator = r.text16("Software Locator")
    data = r.data32("Record") if with_record else b""
    return SwimaRecord(record_id, identifier, locator, pen, model, source_id, data), action


@dataclass(frozen=True, slots=True)
class _Swima(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.IETF


@register_attribute
@dataclass(frozen=True, slots=True)
class SwimaRequest(_Swima):
    """SWIMA Request (§5.7): Flags (C, S, R) + Software Identifier Count (24),
    Request ID, Earliest EID, then the targeted Software Identifiers (16-bit
    length each).  Earliest EID 0 asks for an inventory, otherwise events."""

    TYPE: ClassVar[int] = T.SWIMA_REQUEST
    NAME: ClassVar[str] = "SWIMA Request"

    request_id: int = 0
    earliest_eid: int = 0
    identifiers: tuple[str, ...] = ()
    flags: SwimaRequestFlag = SwimaRequestFlag(0)

    @property
    def identifiers_only(self) -> bool:
        """R flag: answer with Software Identifier Inventory/Events (no records)."""
        return bool(self.flags & SwimaRequestFlag.RESULT_TYPE)

    @property
    def subscribe(self) -> bool:
        return bool(self.flags & SwimaRequestFlag.SUBSCRIBE)

    @property
    def clear_subscriptions(self) -> bool:
        return bool(self.flags & SwimaRequestFlag.CLEAR_SUBSCRIPTIONS)

    def encode_value(self) -> bytes:
        return (
            bytes((self.flags & _REQUEST_FLAGS,))
            + len(self.identifiers).to_bytes(3, "big")
            + self.request_id.to_bytes(4, "big")
            + self.earliest_eid.to_bytes(4, "big")
            + b"".join(data16(i.encode(), "Software Identifier") for i in self.identifiers)
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, "SWIMA Request")
        flags = SwimaRequestFlag(r.u8("Flags") & _REQUEST_FLAGS)
        count = r.u24("Software Identifier Count")
        request_id, earliest_eid = r.u32("Request ID"), r.u32("Earliest EID")
        identifiers = tuple(r.text16(f"Software Identifier {i + 1} of {count}") for i in range(count))
        r.end()
        return cls._new(request_id, earliest_eid, identifiers, flags, noskip)


@dataclass(frozen=True, slots=True)
class _Inventory(_Swima):
    """Flags + Record Count (24), Request ID Copy / Subscription ID, EID Epoch,
    Last EID, then the records."""

    WITH_RECORDS: ClassVar[bool]

    request_id: int = 0
    eid_epoch: int = 0
    last_eid: int = 0
    records: tuple[SwimaRecord, ...] = ()
    flags: int = 0

    def encode_value(self) -> bytes:
        return (
            bytes((self.flags,))
            + len(self.records).to_bytes(3, "big")
            + self.request_id.to_bytes(4, "big")
            + self.eid_epoch.to_bytes(4, "big")
            + self.last_eid.to_bytes(4, "big")
            + b"".join(_encode_record(rec, 0, self.WITH_RECORDS) for rec in self.records)
        )

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        flags, count = r.u8("Flags"), r.u24("Record Count")
        request_id, epoch, last_eid = r.u32("Request ID Copy"), r.u32("EID Epoch"), r.u32("Last EID")
        records = tuple(_parse_record(r, cls.WITH_RECORDS)[0] for _ in range(count))
        r.end()
        return cls._new(request_id, epoch, last_eid, records, flags, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class SoftwareIdentifierInventory(_Inventory):
    """Software Identifier Inventory (§5.8): records without record data."""

    TYPE: ClassVar[int] = T.SOFTWARE_IDENTIFIER_INVENTORY
    NAME: ClassVar[str] = "SW Identifier Inventory"
    WITH_RECORDS: ClassVar[bool] = False


@register_attribute
@dataclass(frozen=True, slots=True)
class SoftwareInventory(_Inventory):
    """Software Inventory (§5.10): records with their data (32-bit length each)."""

    TYPE: ClassVar[int] = T.SOFTWARE_INVENTORY
    NAME: ClassVar[str] = "SW Inventory"
    WITH_RECORDS: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class _Events(_Swima):
    """Flags + Event Count (24), Request ID Copy / Subscription ID, EID Epoch,
    Last EID, Last Consulted EID, then per event its EID, a 20-byte RFC 3339
    timestamp and a record whose Reserved byte is the Action."""

    WITH_RECORDS: ClassVar[bool]

    request_id: int = 0
    eid_epoch: int = 0
    last_eid: int = 0
    last_consulted_eid: int = 0
    events: tuple[SwimaEvent, ...] = ()
    flags: int = 0

    def encode_value(self) -> bytes:
        out = [
            bytes((self.flags,)),
            len(self.events).to_bytes(3, "big"),
            self.request_id.to_bytes(4, "big"),
            self.eid_epoch.to_bytes(4, "big"),
            self.last_eid.to_bytes(4, "big"),
            self.last_consulted_eid.to_bytes(4, "big"),
        ]
        for event in self.events:
            stamp = event.timestamp.encode("ascii")
            if len(stamp) != 20:
                raise ValueError(f"event timestamp must be 20 characters (YYYY-MM-DDTHH:MM:SSZ): {event.timestamp!r}")
            out.append(event.eid.to_bytes(4, "big") + stamp)
            out.append(_encode_record(event.record, event.action, self.WITH_RECORDS))
        return b"".join(out)

    @classmethod
    def parse_value(cls, value, *, noskip, offset=ATTRIBUTE_HEADER_SIZE):
        r = AttributeReader(value, offset, cls.NAME)
        flags, count = r.u8("Flags"), r.u24("Event Count")
        request_id, epoch = r.u32("Request ID Copy"), r.u32("EID Epoch")
        last_eid, last_consulted = r.u32("Last EID"), r.u32("Last Consulted EID")
        events = []
        for _ in range(count):
            eid = r.u32("EID")
            at = r.offset
            raw_stamp = r.raw(20, "Timestamp")
            if not raw_stamp.isascii():
                raise r.fail("Timestamp is not an RFC 3339 date-time", at)
            action_at = r.offset + 9
            record, action = _parse_record(r, cls.WITH_RECORDS)
            if not 1 <= action <= 3:
                raise r.fail(f"unknown event Action {action}", action_at)
            events.append(SwimaEvent(eid, raw_stamp.decode("ascii"), SwimaEventAction(action), record))
        r.end()
        return cls._new(request_id, epoch, last_eid, last_consulted, tuple(events), flags, noskip)


@register_attribute
@dataclass(frozen=True, slots=True)
class SoftwareIdentifierEvents(_Events):
    """Software Identifier Events (§5.9): events whose records carry no data."""

    TYPE: ClassVar[int] = T.SOFTWARE_IDENTIFIER_EVENTS
    NAME: ClassVar[str] = "SW Identifier Events"
    WITH_RECORDS: ClassVar[bool] = False


@register_attribute
@dataclass(frozen=True, slots=True)
class SoftwareEvents(_Events):
    """Software Events (§5.11): events with record data."""

    TYPE: ClassVar[int] = T.SOFTWARE_EVENTS
    NAME: ClassVar[str] = "SW Events"
    WITH_RECORDS: ClassVar[bool] = True


@register_attribute
@dataclass(frozen=True, slots=True)
class SubscriptionStatusRequest(RawValueAttribute):
    """Subscription Status Request (§5.12); value kept raw."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = T.SUBSCRIPTION_STATUS_REQUEST
    NAME: ClassVar[str] = "SW Subscription Status Request"


@register_attribute
@dataclass(frozen=True, slots=True)
class SubscriptionStatusResponse(RawValueAttribute):
    """Subscription Status Response (§5.13); value kept raw."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = T.SUBSCRIPTION_STATUS_RESPONSE
    NAME: ClassVar[str] = "SW Subscription Status Response"


@register_attribute
@dataclass(frozen=True, slots=True)
class SourceMetadataRequest(RawValueAttribute):
    """Source Metadata Request (§5.14); value kept raw."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = T.SOURCE_METADATA_REQUEST
    NAME: ClassVar[str] = "SW Source Metadata Request"


@register_attribute
@dataclass(frozen=True, slots=True)
class SourceMetadataResponse(RawValueAttribute):
    """Source Metadata Response (§5.15); value kept raw."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = T.SOURCE_METADATA_RESPONSE
    NAME: ClassVar[str] = "SW Source Metadata Response"
