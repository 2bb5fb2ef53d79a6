"""SWIMA attributes (RFC 8412 §5): software inventory and events.

The SWIMA Request is decoded field by field; the inventory/event and
subscription attributes are known types whose values are kept whole (the
SWIMA IMV decodes their records itself), so they round-trip and are never
refused as unsupported."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

from nac.pa.message import PaAttribute, PaVendor, Reader, register_attribute


class SwimaAttributeType(enum.IntEnum):
    SWIMA_REQUEST = 13
    SOFTWARE_IDENTIFIER_INVENTORY = 14
    SOFTWARE_IDENTIFIER_EVENTS = 15
    SOFTWARE_INVENTORY = 16
    SOFTWARE_EVENTS = 17
    SUBSCRIPTION_STATUS_REQUEST = 18
    SUBSCRIPTION_STATUS_RESPONSE = 19
    SOURCE_METADATA_REQUEST = 20
    SOURCE_METADATA_RESPONSE = 21


REQUEST_CLEAR_SUBSCRIPTIONS = 0x80
REQUEST_SUBSCRIBE = 0x40
REQUEST_IDENTIFIERS_ONLY = 0x20


@register_attribute
@dataclass(frozen=True, slots=True)
class SwimaRequest(PaAttribute):
    """SWIMA Request (RFC 8412 §5.7)."""

    VENDOR: ClassVar[int] = PaVendor.IETF
    TYPE: ClassVar[int] = SwimaAttributeType.SWIMA_REQUEST
    NAME: ClassVar[str] = "SWIMA Request"
    DEFAULT_NOSKIP: ClassVar[bool] = True
    request_id: int = 0
    earliest_eid: int = 0
    identifiers: tuple[str, ...] = ()
    flags: int = REQUEST_IDENTIFIERS_ONLY

    @property
    def identifiers_only(self) -> bool:
        return bool(self.flags & REQUEST_IDENTIFIERS_ONLY)

    def encode_value(self) -> bytes:
        out = [bytes([self.flags]) + len(self.identifiers).to_bytes(3, "big"),
               struct.pack(">II", self.request_id, self.earliest_eid)]
        for ident in self.identifiers:
            raw = ident.encode()
            out.append(struct.pack(">H", len(raw)) + raw)
        return b"".join(out)

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        flags, count = r.u8("Flags"), r.u24("Software Identifier Count")
        request_id, eid = r.u32("Request ID"), r.u32("Earliest EID")
        idents = tuple(r.text(r.u16("Software Identifier Length"), "Software Identifier")
                       for _ in range(count))
        r.end()
        return cls(request_id=request_id, earliest_eid=eid, identifiers=idents, flags=flags, noskip=noskip)


@dataclass(frozen=True, slots=True)
class _SwimaRaw(PaAttribute):
    VENDOR: ClassVar[int] = PaVendor.IETF
    DEFAULT_NOSKIP: ClassVar[bool] = True
    value: bytes = b""

    def encode_value(self) -> bytes:
        return self.value

    @classmethod
    def parse_value(cls, value, *, noskip):
        return cls(value=bytes(value), noskip=noskip)


def _raw(type_: SwimaAttributeType, name: str):
    cls = dataclass(frozen=True, slots=True)(type(
        "".join(w.capitalize() for w in type_.name.split("_")), (_SwimaRaw,),
        {"TYPE": type_, "NAME": name, "__doc__": f"{name} (RFC 8412 §5), value kept whole.",
         "__annotations__": {"TYPE": ClassVar[int], "NAME": ClassVar[str]}}))
    return register_attribute(cls)


SoftwareIdentifierInventory = _raw(SwimaAttributeType.SOFTWARE_IDENTIFIER_INVENTORY,
                                   "Software Identifier Inventory")
SoftwareIdentifierEvents = _raw(SwimaAttributeType.SOFTWARE_IDENTIFIER_EVENTS, "Software Identifier Events")
SoftwareInventory = _raw(SwimaAttributeType.SOFTWARE_INVENTORY, "Software Inventory")
SoftwareEvents = _raw(SwimaAttributeType.SOFTWARE_EVENTS, "Software Events")
SubscriptionStatusRequest = _raw(SwimaAttributeType.SUBSCRIPTION_STATUS_REQUEST, "Subscription Status Request")
SubscriptionStatusResponse = _raw(SwimaAttributeType.SUBSCRIPTION_STATUS_RESPONSE,
                                  "Subscription Status Response")
SourceMetadataRequest = _raw(SwimaAttributeType.SOURCE_METADATA_REQUEST, "Source Metadata Request")
SourceMetadataResponse = _raw(SwimaAttributeType.SOURCE_METADATA_RESPONSE, "Source Metadata Response")
