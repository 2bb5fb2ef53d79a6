"""The HCD IMC (PWG PA subtypes): a hardcopy device's health attributes, as
strongSwan's imc-hcd sends them, read from a file describing the device, so
that nac's client can play a printer.

The file is JSON, laid out like imc-hcd's settings::

    {
      "push_info": false,
      "subtypes": {
        "system": {
          "attributes_natural_language": "en",
          "machine_type_model": "strongPrint Laser X.509a",
          "vendor_name": "ITA-HSR",
          "vendor_smi_code": 36906,
          "default_password_enabled": false,
          "forwarding_enabled": "disabled",
          "pstn_fax_enabled": false,
          "time_source": "0.ch.pool.ntp.org",
          "user_application_enabled": false,
          "user_application_persistence_enabled": false,
          "certification_state": "0001...",
          "configuration_state": "f0f1...",
          "firewall_setting": [{"protocol": "tcp", "port": 631, "blocked": false}],
          "firmware": [{"name": "Firmware ABC", "patches": "", "string_version": "1.0.7",
                        "version": "1.0.7"}],
          "resident_application": [...],
          "user_application": [...]
        },
        "interface": {"attributes_natural_language": "en", "firmware": [...]}
      }
    }

Subtype sections: system, console, marker, finisher, interface, scanner;
the system-only keys belong in ``system``.  ``forwarding_enabled`` is
``disabled``, ``enabled``, ``unknown`` or a boolean; the states are hex;
a ``version`` is dotted numbers (``1.0.7``) or strongSwan's 32 hex digits.

Per subtype section, the first message carries the natural language and,
in System, the attributes imc-hcd always sends (default password,
forwarding, machine type and model, PSTN fax, time source, vendor name and
SMI code, user application enabled and persistence); with ``push_info`` the
software quadruples too.  An Attribute Request is answered with what it
asks for that the device has: the certification and configuration state
and the firewall setting only when the file gives them, the quadruples of
each firmware, resident and user application listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nac.client.imc import ANY_IMV_ID, PaTncImc, ReceivedPaMessage
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa import pwg
from nac.pa.ietf import AttributeRequest, ForwardingStatus, PortEntry
from nac.pa.pwg import PwgAttributeType, PwgSubtype, SoftwareVersion

__all__ = ["HcdDevice", "HcdFileError", "HcdImc", "HcdSoftware", "HcdSubunit", "SUBTYPES",
           "load_hcd_device"]

log = Logger(namespace="nac.client.hcd")

T = PwgAttributeType
S = PwgSubtype

#: The subtypes strongSwan's HCD IMC serves, by their section names.
SUBTYPES: dict[str, PwgSubtype] = {s.section: s for s in (
    S.HCD_SYSTEM, S.HCD_CONSOLE, S.HCD_MARKER, S.HCD_FINISHER, S.HCD_INTERFACE, S.HCD_SCANNER)}

_SOFTWARE = {
    # section key: (name, patches, string version, version) attribute classes
    "firmware": (pwg.FirmwareName, pwg.FirmwarePatches, pwg.FirmwareStringVersion, pwg.FirmwareVersion),
    "resident_application": (pwg.ResidentApplicationName, pwg.ResidentApplicationPatches,
                             pwg.ResidentApplicationStringVersion, pwg.ResidentApplicationVersion),
    "user_application": (pwg.UserApplicationName, pwg.UserApplicationPatches,
                         pwg.UserApplicationStringVersion, pwg.UserApplicationVersion),
}
_SOFTWARE_BY_NAME = {classes[0].TYPE: key for key, classes in _SOFTWARE.items()}
_SYSTEM_ONLY = ("machine_type_model", "vendor_name", "vendor_smi_code", "default_password_enabled",
                "forwarding_enabled", "pstn_fax_enabled", "time_source", "user_application_enabled",
                "user_application_persistence_enabled", "certification_state", "configuration_state",
                "firewall_setting")
_PROTOCOLS = {"tcp": 6, "udp": 17}
_HEX_VERSION = re.compile(r"[0-9A-Fa-f]{32}")


class HcdFileError(ValueError):
    """The device file cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class HcdSoftware:
    """One firmware or application: the values of its quadruple."""

    name: str
    patches: str = ""
    string_version: str = ""
    version: SoftwareVersion = SoftwareVersion()


@dataclass(frozen=True, slots=True)
class HcdSubunit:
    """One subtype section of the device file."""

    subtype: PwgSubtype
    natural_language: str = "en"
    software: Mapping[str, tuple[HcdSoftware, ...]] = field(default_factory=dict)
    # System only
    machine_type_model: str = ""
    vendor_name: str = ""
    vendor_smi_code: int = 0
    default_password_enabled: bool = False
    forwarding_enabled: ForwardingStatus = ForwardingStatus.DISABLED
    pstn_fax_enabled: bool = False
    time_source: str = ""
    user_application_enabled: bool = False
    user_application_persistence_enabled: bool = False
    certification_state: bytes | None = None
    configuration_state: bytes | None = None
    firewall_setting: tuple[PortEntry, ...] | None = None


@dataclass(frozen=True, slots=True)
class HcdDevice:
    """A hardcopy device as its file describes it."""

    subunits: tuple[HcdSubunit, ...]
    push_info: bool = False

    def subunit(self, subtype: int) -> HcdSubunit | None:
        for subunit in self.subunits:
            if subunit.subtype == subtype:
                return subunit
        return None


# -- reading the file -----------------------------------------------------------------------------


class _Reader:
    """Typed values of the device file, failing with the file and key named."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, why: str) -> HcdFileError:
        return HcdFileError(f"{self.path}: {where}: {why}")

    def text(self, where: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(where, "must be a string")
        if "\0" in value:
            raise self.fail(where, "must not contain NUL")
        return value

    def boolean(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def hex_bytes(self, where: str, value: Any) -> bytes:
        try:
            return bytes.fromhex(self.text(where, value))
        except ValueError:
            raise self.fail(where, "must be hexadecimal digits") from None

    def smi_code(self, where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFF:
            raise self.fail(where, "must be a 24-bit SMI code (0-16777215)")
        return value

    def forwarding(self, where: str, value: Any) -> ForwardingStatus:
        if isinstance(value, bool):
            return ForwardingStatus.ENABLED if value else ForwardingStatus.DISABLED
        try:
            return ForwardingStatus[self.text(where, value).upper()]
        except KeyError:
            raise self.fail(where, "must be disabled, enabled, unknown, true or false") from None

    def software_version(self, where: str, value: Any) -> SoftwareVersion:
        text = self.text(where, value).strip()
        if _HEX_VERSION.fullmatch(text):
            raw = bytes.fromhex(text)
            return SoftwareVersion(int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big"),
                                   int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:14], "big"),
                                   int.from_bytes(raw[14:16], "big"))
        parts = text.split(".")
        limits = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF)
        if not 1 <= len(parts) <= 5 or not all(p.isascii() and p.isdigit() for p in parts) \
                or any(int(p) > limit for p, limit in zip(parts, limits)):
            raise self.fail(where, "must be 1 to 5 dotted numbers (1.0.7) or 32 hex digits")
        return SoftwareVersion(*(int(p) for p in parts))

    def firewall(self, where: str, value: Any) -> tuple[PortEntry, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list of {\"protocol\", \"port\", \"blocked\"} entries")
        entries = []
        for i, entry in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(entry, dict) or set(entry) - {"protocol", "port", "blocked"}:
                raise self.fail(at, "must be an object with protocol, port and blocked")
            protocol = entry.get("protocol", "tcp")
            if isinstance(protocol, str) and protocol.lower() in _PROTOCOLS:
                protocol = _PROTOCOLS[protocol.lower()]
            if isinstance(protocol, bool) or not isinstance(protocol, int) or not 0 <= protocol <= 255:
                raise self.fail(f"{at}.protocol", "must be tcp, udp or an IP protocol number")
            port = entry.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise self.fail(f"{at}.port", "must be a port number (0-65535)")
            entries.append(PortEntry(protocol, port, self.boolean(f"{at}.blocked", entry.get("blocked", False))))
        return tuple(entries)

    def software(self, where: str, value: Any) -> tuple[HcdSoftware, ...]:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list of {\"name\", \"patches\", \"string_version\", "
                                   "\"version\"} objects")
        items = []
        for i, entry in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(at, "must be an object")
            unknown = set(entry) - {"name", "patches", "string_version", "version"}
            if unknown:
                raise self.fail(f"{at}.{sorted(unknown)[0]}", "unknown key")
            if "name" not in entry:
                raise self.fail(f"{at}.name", "is missing")
            items.append(HcdSoftware(
                self.text(f"{at}.name", entry["name"]),
                self.text(f"{at}.patches", entry.get("patches", "")),
                self.text(f"{at}.string_version", entry.get("string_version", "")),
                self.software_version(f"{at}.version", entry["version"]) if "version" in entry
                else SoftwareVersion()))
        return tuple(items)

    def subunit(self, section: str, value: Any) -> HcdSubunit:
        where = f"subtypes.{section}"
        if section not in SUBTYPES:
            raise self.fail(where, f"unknown subtype; choose from {', '.join(SUBTYPES)}")
        if not isinstance(value, dict):
            raise self.fail(where, "must be an object")
        subtype = SUBTYPES[section]
        values: dict[str, Any] = {}
        software = {}
        for key, raw in value.items():
            at = f"{where}.{key}"
            if key in _SOFTWARE:
                software[key] = self.software(at, raw)
            elif key == "attributes_natural_language":
                values["natural_language"] = self.text(at, raw)
            elif key in _SYSTEM_ONLY:
                if subtype is not S.HCD_SYSTEM:
                    raise self.fail(at, "belongs in the system section")
                if key in ("machine_type_model", "vendor_name", "time_source"):
                    values[key] = self.text(at, raw)
                elif key == "vendor_smi_code":
                    values[key] = self.smi_code(at, raw)
                elif key == "forwarding_enabled":
                    values[key] = self.forwarding(at, raw)
                elif key in ("certification_state", "configuration_state"):
                    values[key] = self.hex_bytes(at, raw)
                elif key == "firewall_setting":
                    values[key] = self.firewall(at, raw)
                else:
                    values[key] = self.boolean(at, raw)
            else:
                raise self.fail(at, "unknown key")
        return HcdSubunit(subtype, software=software, **values)


def load_hcd_device(path: str | Path) -> HcdDevice:
    """The device described by the JSON file at ``path``; HcdFileError (one
    line naming the file and the key) when it cannot be read or is wrong."""
    path = str(path)
    reader = _Reader(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HcdFileError(f"cannot read the HCD attributes file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise HcdFileError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HcdFileError(f"{path}: line {exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(document, dict):
        raise reader.fail("top level", "must be an object with \"subtypes\"")
    unknown = set(document) - {"push_info", "subtypes"}
    if unknown:
        raise reader.fail(sorted(unknown)[0], "unknown key (push_info, subtypes)")
    subtypes = document.get("subtypes")
    if not isinstance(subtypes, dict) or not subtypes:
        raise reader.fail("subtypes", "must be an object with at least one subtype section")
    push_info = reader.boolean("push_info", document.get("push_info", False))
    return HcdDevice(tuple(reader.subunit(section, value) for section, value in subtypes.items()), push_info)


# -- the IMC ----------------------------------------------------------------------------------------


class HcdImc(PaTncImc):
    """strongSwan's HCD IMC, serving the subtypes of a device file."""

    name = "HCD"
    vendor = PaVendor.PWG
    subtype = S.HCD_SYSTEM

    def __init__(self, device: HcdDevice | None = None):
        # without a device file: a collector with no subunit, which reports nothing
        self.device = HcdDevice(()) if device is None else device

    @classmethod
    def from_file(cls, path: str | Path) -> HcdImc:
        return cls(load_hcd_device(path))

    @property
    def subscriptions(self) -> tuple[tuple[int, int], ...]:
        return tuple((PaVendor.PWG, subtype) for subtype in SUBTYPES.values())

    def begin_handshake(self, connection) -> None:
        for subunit in self.device.subunits:
            attributes = self._always(subunit)
            if self.device.push_info:
                for key in _SOFTWARE:
                    attributes.extend(self._quadruples(subunit, key))
            # to any IMV, without the EXCL flag, one message per subtype
            self.send(connection, attributes, validator_id=ANY_IMV_ID, exclusive=False,
                      subtype=subunit.subtype)

    def reply_attributes(self, connection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        subunit = self.device.subunit(message.subtype)
        if subunit is None:
            return []  # the device has no such subunit
        reply: list[PaAttribute] = []
        for attribute in attributes:
            if not isinstance(attribute, AttributeRequest):
                continue
            for vendor, attr_type in attribute.requested:
                if vendor == PaVendor.PWG:
                    reply.extend(self._requested(subunit, attr_type))
        return reply

    # -- attributes -----------------------------------------------------------------------------

    @staticmethod
    def _always(subunit: HcdSubunit) -> list[PaAttribute]:
        """What imc-hcd sends unasked: the language, and in System the settings."""
        attributes: list[PaAttribute] = [pwg.AttributesNaturalLanguage(subunit.natural_language)]
        if subunit.subtype is S.HCD_SYSTEM:
            attributes += [
                pwg.DefaultPasswordEnabled(subunit.default_password_enabled),
                pwg.HcdForwardingEnabled(subunit.forwarding_enabled),
                pwg.MachineTypeModel(subunit.machine_type_model),
                pwg.PstnFaxEnabled(subunit.pstn_fax_enabled),
                pwg.TimeSource(subunit.time_source),
                pwg.VendorName(subunit.vendor_name),
                pwg.VendorSmiCode(subunit.vendor_smi_code),
                pwg.UserApplicationEnabled(subunit.user_application_enabled),
                pwg.UserApplicationPersistenceEnabled(subunit.user_application_persistence_enabled),
            ]
        return attributes

    @staticmethod
    def _quadruples(subunit: HcdSubunit, key: str) -> list[PaAttribute]:
        name, patches, string_version, version = _SOFTWARE[key]
        out: list[PaAttribute] = []
        for item in subunit.software.get(key, ()):
            out += [name(item.name), patches(item.patches), string_version(item.string_version),
                    version(item.version)]
        return out

    def _requested(self, subunit: HcdSubunit, attr_type: int) -> list[PaAttribute]:
        if attr_type in _SOFTWARE_BY_NAME:
            return self._quadruples(subunit, _SOFTWARE_BY_NAME[attr_type])
        if attr_type == T.ATTRIBUTES_NATURAL_LANGUAGE:
            return [pwg.AttributesNaturalLanguage(subunit.natural_language)]
        if subunit.subtype is not S.HCD_SYSTEM:
            return []
        if attr_type == T.CERTIFICATION_STATE and subunit.certification_state is not None:
            return [pwg.CertificationState(subunit.certification_state)]
        if attr_type == T.CONFIGURATION_STATE and subunit.configuration_state is not None:
            return [pwg.ConfigurationState(subunit.configuration_state)]
        if attr_type == T.FIREWALL_SETTING and subunit.firewall_setting is not None:
            return [pwg.FirewallSetting(subunit.firewall_setting)]
        for attribute in self._always(subunit)[1:]:
            if attribute.TYPE == attr_type:
                return [attribute]
        return []
