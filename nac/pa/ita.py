"""ITA-HSR (Hochschule für Technik Rapperswil, PEN 0x00902a) attributes that
strongSwan's IMCs send."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from nac.pa.message import PaAttribute, PaVendor, Reader, register_attribute


class ItaAttributeType(enum.IntEnum):
    COMMAND = 1
    DUMMY = 2
    GET_SETTINGS = 3
    SETTINGS = 4
    START_ANGEL = 5
    STOP_ANGEL = 6
    ECHO = 7
    DEVICE_ID = 8


@register_attribute
@dataclass(frozen=True, slots=True)
class DeviceId(PaAttribute):
    """ITA-HSR Device ID: a string identifying the endpoint (strongSwan's OS
    IMC sends the machine-id or a hash of it)."""

    VENDOR: ClassVar[int] = PaVendor.ITA_HSR
    TYPE: ClassVar[int] = ItaAttributeType.DEVICE_ID
    NAME: ClassVar[str] = "Device ID"
    device_id: str = ""

    def encode_value(self) -> bytes:
        return self.device_id.encode()

    @classmethod
    def parse_value(cls, value, *, noskip):
        r = Reader(value)
        return cls(device_id=r.text(r.remaining(), "Device ID"), noskip=noskip)
