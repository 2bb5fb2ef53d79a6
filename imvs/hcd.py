"""The HCD IMV (PWG PA subtypes, PWG 5110.4 HCD-TNC): health assessment of
hardcopy devices (printers, scanners, multifunction devices).

What strongSwan's imv-hcd does (read for facts, written anew), per
connection:

1. A printer's HCD collector sends, per PA subtype (a Printer MIB subunit:
   System, Console, Marker, Finisher, Interface, Scanner), the attributes it
   always sends.  At the end of that batch the IMV proposes a segmentation
   contract and, in each subtype it requires (``subtypes``), asks with an
   Attribute Request for the mandatory attributes still missing: in System
   the natural language, default password, firewall setting, forwarding,
   machine type and model, PSTN fax, time source, user application enabled
   and persistence, vendor name and SMI code, certification and
   configuration state, and the firmware, resident and user application
   quadruples (Name, Patches, String Version, Version); in the others the
   natural language and the three quadruples.  User applications are not
   asked for when the device says they are disabled.
2. A mandatory attribute still missing when the IMV decides makes the device
   non-compliant major with the reason "Mandatory HCD attributes are
   missing" (``optional_attributes`` are asked for, not required).
3. Beyond strongSwan, which judges nothing else, policy in ``[imv:hcd]``:
   each of default password enabled, forwarding enabled, PSTN fax enabled,
   user applications enabled and their persistence counts as a major or
   minor violation or is ignored; firmware older than a minimum version
   (``firmware_min_versions``: name patterns and dotted versions, compared
   with the 16-octet version) is an outdated-firmware violation.
4. The verdict goes to the collector (Assessment Result and remediation
   instructions), to the TNCS (recommendation by the ``[imv:hcd]`` policy,
   reason strings, remediation) and into the session's measurements.

An endpoint that sends no PWG message at all (no printer, or no HCD
collector) gets the ``no_result`` recommendation: by default "no
recommendation", so that the other IMVs decide about ordinary hosts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from imvs.policy import (
    ImvState,
    Judgement,
    LangText,
    PaTncImv,
    RemediationString,
    propose_contract,
    send_attributes,
    verdict_options,
)
from nac.config import Option, choice, comma_list_of
from nac.ifimv import ANY_IMC_ID, EvaluationResult
from nac.log import Logger
from nac.pa import PaAttribute, PaVendor
from nac.pa.ietf import AttributeRequest, ForwardingStatus
from nac.pa import pwg
from nac.pa.pwg import PwgAttributeType, PwgSubtype, SoftwareVersion, attribute_key

__all__ = [
    "FirmwareRule",
    "HcdImv",
    "HcdState",
    "MANDATORY",
    "SUBTYPES",
    "Software",
    "Subunit",
    "firmware_rules",
    "parse_version",
    "short_version",
]

log = Logger(namespace="nac.imv.hcd")

E = EvaluationResult
T = PwgAttributeType
S = PwgSubtype

#: The subtypes strongSwan's HCD IMV and IMC speak, in their order.
SUBTYPES: tuple[PwgSubtype, ...] = (S.HCD_SYSTEM, S.HCD_CONSOLE, S.HCD_MARKER, S.HCD_FINISHER,
                                    S.HCD_INTERFACE, S.HCD_SCANNER)
_BY_SECTION = {subtype.section: subtype for subtype in SUBTYPES}

#: Mandatory attributes per subtype, in the order strongSwan requests them.
MANDATORY: dict[PwgSubtype, tuple[PwgAttributeType, ...]] = {
    S.HCD_SYSTEM: (T.ATTRIBUTES_NATURAL_LANGUAGE, T.DEFAULT_PASSWORD_ENABLED, T.FIREWALL_SETTING,
                   T.FIRMWARE_NAME, T.FORWARDING_ENABLED, T.MACHINE_TYPE_MODEL, T.PSTN_FAX_ENABLED,
                   T.RESIDENT_APPLICATION_NAME, T.TIME_SOURCE, T.USER_APPLICATION_ENABLED,
                   T.USER_APPLICATION_PERSISTENCE_ENABLED, T.USER_APPLICATION_NAME, T.VENDOR_NAME,
                   T.VENDOR_SMI_CODE, T.CERTIFICATION_STATE, T.CONFIGURATION_STATE),
}
for _subtype in SUBTYPES[1:]:
    MANDATORY[_subtype] = (T.ATTRIBUTES_NATURAL_LANGUAGE, T.FIRMWARE_NAME, T.RESIDENT_APPLICATION_NAME,
                           T.USER_APPLICATION_NAME)
_ATTRIBUTE_KEYS = {attribute_key(t): t for t in MANDATORY[S.HCD_SYSTEM]}

#: Software items kept per kind and subunit; more are counted, not kept.
MAX_SOFTWARE = 256
#: Characters of a reported string kept in the measurement.
MAX_SHOWN = 1024

# Each quadruple attribute class: (software kind, field it sets).
_QUADRUPLES: dict[type, tuple[str, str]] = {
    pwg.FirmwareName: ("firmware", "name"),
    pwg.FirmwarePatches: ("firmware", "patches"),
    pwg.FirmwareStringVersion: ("firmware", "string_version"),
    pwg.FirmwareVersion: ("firmware", "version"),
    pwg.ResidentApplicationName: ("resident_application", "name"),
    pwg.ResidentApplicationPatches: ("resident_application", "patches"),
    pwg.ResidentApplicationStringVersion: ("resident_application", "string_version"),
    pwg.ResidentApplicationVersion: ("resident_application", "version"),
    pwg.UserApplicationName: ("user_application", "name"),
    pwg.UserApplicationPatches: ("user_application", "patches"),
    pwg.UserApplicationStringVersion: ("user_application", "string_version"),
    pwg.UserApplicationVersion: ("user_application", "version"),
}
_SOFTWARE_KINDS = ("firmware", "resident_application", "user_application")

# Each attribute class that fills a plain field of the subunit: (field, value getter).
_FIELDS: dict[type, tuple[str, Any]] = {
    pwg.AttributesNaturalLanguage: ("natural_language", lambda a: a.text),
    pwg.MachineTypeModel: ("machine_type_model", lambda a: a.text),
    pwg.VendorName: ("vendor_name", lambda a: a.text),
    pwg.VendorSmiCode: ("vendor_smi_code", lambda a: a.code),
    pwg.DefaultPasswordEnabled: ("default_password_enabled", lambda a: a.enabled),
    pwg.FirewallSetting: ("firewall_setting", lambda a: a.entries),
    pwg.HcdForwardingEnabled: ("forwarding_enabled", lambda a: a.status),
    pwg.PstnFaxEnabled: ("pstn_fax_enabled", lambda a: a.enabled),
    pwg.TimeSource: ("time_source", lambda a: a.text),
    pwg.UserApplicationEnabled: ("user_application_enabled", lambda a: a.enabled),
    pwg.UserApplicationPersistenceEnabled: ("user_application_persistence_enabled", lambda a: a.enabled),
    pwg.CertificationState: ("certification_state", lambda a: a.value),
    pwg.ConfigurationState: ("configuration_state", lambda a: a.value),
}


# -- firmware policy ---------------------------------------------------------------------------


_VERSION_PART_LIMITS = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF)


def parse_version(text: str) -> SoftwareVersion:
    """A dotted version, 1 to 5 numbers (major, minor, build, service pack
    major and minor; the missing ones 0): '1.0.8' -> 1.0.8.0.0."""
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 5 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"{text.strip()!r} is not a version of 1 to 5 dotted numbers like 1.0.8")
    numbers = [int(p) for p in parts]
    for number, limit in zip(numbers, _VERSION_PART_LIMITS):
        if number > limit:
            raise ValueError(f"{text.strip()!r} has a number beyond {limit}")
    return SoftwareVersion(*numbers)


def short_version(version: SoftwareVersion) -> str:
    """``version`` without a service pack of 0.0: '1.0.8' rather than '1.0.8.0.0'."""
    parts = tuple(version)
    return ".".join(str(p) for p in (parts[:3] if parts[3:] == (0, 0) else parts))


class FirmwareRule(NamedTuple):
    """Firmware whose name matches ``pattern`` (shell-style, case-sensitive)
    must be at least ``minimum``."""

    pattern: str
    minimum: SoftwareVersion

    def __str__(self) -> str:
        return f"{self.pattern}: {short_version(self.minimum)}"


def firmware_rules(raw: str) -> tuple[FirmwareRule, ...]:
    """``[imv:hcd] firmware_min_versions``: ``NAME PATTERN: VERSION`` entries,
    one per line or separated by semicolons; may be empty."""
    rules = []
    for entry in re.split(r"[;\n]", raw):
        entry = entry.strip()
        if not entry:
            continue
        pattern, colon, version = entry.rpartition(":")
        if not colon or not pattern.strip():
            raise ValueError(f"has {entry!r}, which is not 'NAME PATTERN: VERSION' "
                             "like 'Firmware ABC*: 1.0.8'")
        try:
            rules.append(FirmwareRule(pattern.strip(), parse_version(version)))
        except ValueError as exc:
            raise ValueError(f"has {entry!r}: {exc}") from None
    return tuple(rules)


firmware_rules.__name__ = "firmware_rules"

SEVERITIES = {"major": E.NONCOMPLIANT_MAJOR, "minor": E.NONCOMPLIANT_MINOR, "ignore": None}


def _severity_option(name: str, default: str, what: str) -> Option:
    return Option(name, choice(*SEVERITIES), default,
                  f"{what}: major or minor violation, or ignore.")


def _subtype_name(raw: str) -> PwgSubtype:
    try:
        return _BY_SECTION[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"is not one of: {', '.join(_BY_SECTION)}") from None


def _attribute_name(raw: str) -> PwgAttributeType:
    try:
        return _ATTRIBUTE_KEYS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"is not a mandatory HCD attribute ({', '.join(_ATTRIBUTE_KEYS)})") from None


_subtype_name.__name__ = "hcd_subtype"
_attribute_name.__name__ = "hcd_attribute"


# -- texts -----------------------------------------------------------------------------------------

REASON_MISSING: LangText = {
    "en": "Mandatory HCD attributes are missing",
    "de": "Verbindliche HCD-Attribute fehlen",
}
REASON_SETTINGS: LangText = {
    "en": "Improper hardcopy device settings were detected",
    "de": "Unzulässige Einstellungen des Druckgeräts wurden festgestellt",
}
REASON_FIRMWARE: LangText = {
    "en": "Outdated hardcopy device firmware was found",
    "de": "Veraltete Firmware des Druckgeräts wurde gefunden",
}
REASON_NO_RESULT: LangText = {
    "en": "No hardcopy device attributes were received",
    "de": "Es wurden keine Attribute eines Druckgeräts empfangen",
}
MISSING_TITLE: LangText = {"en": "Missing HCD Attributes", "de": "Fehlende HCD-Attribute"}
MISSING_DESCRIPTION: LangText = {
    "en": "The device did not report all mandatory attributes",
    "de": "Das Gerät hat nicht alle verbindlichen Attribute gemeldet",
}
MISSING_HEADER: LangText = {"en": "Missing attributes:", "de": "Fehlende Attribute:"}
FIRMWARE_TITLE: LangText = {"en": "Firmware Updates", "de": "Firmware-Updates"}
FIRMWARE_DESCRIPTION: LangText = {
    "en": "Firmware older than the required version was found",
    "de": "Firmware älter als die verlangte Version wurde gefunden",
}
FIRMWARE_HEADER: LangText = {
    "en": "Please update the following firmware:",
    "de": "Bitte aktualisieren Sie die folgende Firmware:",
}
SETTING_TEXTS: dict[str, tuple[LangText, LangText]] = {
    "default_password_enabled": (
        {"en": "Default Password", "de": "Default Passwort"},
        {"en": "Please change the default password", "de": "Bitte ändern Sie das Default Passwort"}),
    "forwarding_enabled": (
        {"en": "IP Packet Forwarding", "de": "Weiterleitung von IP Paketen"},
        {"en": "Please disable the forwarding of IP packets",
         "de": "Bitte deaktivieren Sie das Forwarding von IP Paketen"}),
    "pstn_fax_enabled": (
        {"en": "PSTN Fax", "de": "PSTN-Fax"},
        {"en": "Please disable the PSTN fax interface",
         "de": "Bitte deaktivieren Sie die PSTN-Faxschnittstelle"}),
    "user_application_enabled": (
        {"en": "User Applications", "de": "Benutzeranwendungen"},
        {"en": "Please disable user applications", "de": "Bitte deaktivieren Sie Benutzeranwendungen"}),
    "user_application_persistence_enabled": (
        {"en": "Persistent User Applications", "de": "Dauerhafte Benutzeranwendungen"},
        {"en": "Please disable the persistence of user applications",
         "de": "Bitte deaktivieren Sie die Persistenz von Benutzeranwendungen"}),
}


# -- state -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Software:
    """One firmware, resident or user application quadruple."""

    name: str | None = None
    patches: str | None = None
    string_version: str | None = None
    version: SoftwareVersion | None = None


@dataclass(slots=True)
class Subunit:
    """What one PWG subtype (subunit) of the device reported."""

    received: set[int] = field(default_factory=set)
    natural_language: str | None = None
    machine_type_model: str | None = None
    vendor_name: str | None = None
    vendor_smi_code: int | None = None
    default_password_enabled: bool | None = None
    firewall_setting: tuple | None = None
    forwarding_enabled: ForwardingStatus | None = None
    pstn_fax_enabled: bool | None = None
    time_source: str | None = None
    user_application_enabled: bool | None = None
    user_application_persistence_enabled: bool | None = None
    certification_state: bytes | None = None
    configuration_state: bytes | None = None
    software: dict[str, list[Software]] = field(default_factory=lambda: {k: [] for k in _SOFTWARE_KINDS})
    dropped: int = 0
    """Software items beyond MAX_SOFTWARE, not kept."""

    def report(self) -> dict[str, Any]:
        """The measurement: every value reported, long ones cut short, the
        opaque states by length and SHA-256."""
        out: dict[str, Any] = {}
        for name in ("natural_language", "machine_type_model", "vendor_name", "time_source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value[:MAX_SHOWN]
        for name in ("vendor_smi_code", "default_password_enabled", "pstn_fax_enabled",
                     "user_application_enabled", "user_application_persistence_enabled"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.forwarding_enabled is not None:
            out["forwarding_enabled"] = self.forwarding_enabled.name.lower()
        if self.firewall_setting is not None:
            out["firewall_setting"] = [{"protocol": e.protocol, "port": e.port, "blocked": e.blocked}
                                       for e in self.firewall_setting[:MAX_SOFTWARE]]
        for name in ("certification_state", "configuration_state"):
            value = getattr(self, name)
            if value is not None:
                out[name] = {"length": len(value), "sha256": hashlib.sha256(value).hexdigest()}
        for kind, items in self.software.items():
            if items:
                out[kind] = [{"name": None if s.name is None else s.name[:MAX_SHOWN],
                              "patches": None if s.patches is None else s.patches[:MAX_SHOWN],
                              "string_version": None if s.string_version is None else s.string_version[:MAX_SHOWN],
                              "version": None if s.version is None else str(s.version)} for s in items]
        if self.dropped:
            out["software_not_kept"] = self.dropped
        return out


@dataclass(slots=True)
class HcdState(ImvState):
    """What the HCD IMV knows about one connection."""

    subunits: dict[int, Subunit] = field(default_factory=dict)
    requested: tuple[PwgSubtype, ...] = ()

    def subunit(self, subtype: int) -> Subunit:
        if subtype not in self.subunits:
            self.subunits[subtype] = Subunit()
        return self.subunits[subtype]

    @property
    def system(self) -> Subunit:
        """What the System subtype reported (nothing yet: an empty report, not kept)."""
        return self.subunits.get(S.HCD_SYSTEM) or Subunit()


def _subtype_label(subtype: int) -> str:
    try:
        return PwgSubtype(subtype).section
    except ValueError:
        return f"0x{subtype:02x}"


# -- the IMV ---------------------------------------------------------------------------------------


class HcdImv(PaTncImv):
    """PWG HCD verifier (PA subtypes System, Console, Marker, Finisher,
    Interface, Scanner), strongSwan's imv-hcd with a policy."""

    name = "hcd"
    label = "HCD"
    vendor = PaVendor.PWG
    subtype = S.HCD_SYSTEM
    subtype_name = "HCD System"
    state_class = HcdState
    LANGUAGES = ("en", "de")

    CONFIG_HELP = (
        "Hardcopy devices (PWG HCD-TNC, strongSwan's imv-hcd): printers report per PWG subtype "
        "(System, Console, Marker, Finisher, Interface, Scanner) their settings and their firmware, "
        "resident and user applications. A missing mandatory attribute is non-compliant major "
        "(\"Mandatory HCD attributes are missing\"); the settings and firmware below are judged by "
        "this policy. An endpoint that reports no HCD attributes gets no_result. Load with "
        "`imvs = ..., hcd`.")

    OPTIONS = [
        Option("subtypes", comma_list_of(_subtype_name, allow_empty=False, unique=True), [S.HCD_SYSTEM],
               "PWG subtypes (subunits) whose mandatory attributes the device must report: system, "
               "console, marker, finisher, interface, scanner (strongSwan's imv-hcd requires all six)."),
        Option("optional_attributes", comma_list_of(_attribute_name, unique=True), [],
               "Mandatory attributes asked for but not required, by name (e.g. firewall_setting, "
               "certification_state, configuration_state: strongSwan's imc-hcd never sends a firewall "
               "setting). Empty: all are required."),
        _severity_option("default_password_enabled", "major", "The factory default password is enabled"),
        _severity_option("forwarding_enabled", "minor", "The device forwards IP packets"),
        _severity_option("pstn_fax_enabled", "ignore", "A PSTN fax interface is enabled"),
        _severity_option("user_application_enabled", "ignore", "Users may install applications"),
        _severity_option("user_application_persistence_enabled", "ignore",
                         "User applications persist beyond their job"),
        Option("firmware_min_versions", firmware_rules, (),
               "Minimum firmware versions: 'NAME PATTERN: VERSION' entries, one per (indented) line or "
               "separated by semicolons; shell-style patterns matched against the firmware names of "
               "every subtype, versions of 1 to 5 dotted numbers (major.minor.build.sp-major.sp-minor) "
               "compared with the reported 16-octet version, e.g.\n"
               "  firmware_min_versions = Firmware ABC*: 1.0.8; Interface Firmware: 7.9"),
        _severity_option("outdated_firmware", "minor", "Firmware older than its minimum version"),
        *verdict_options(),
        PaTncImv.attribute_size_option(),
    ]

    def __init__(self, options: Mapping | None = None):
        super().__init__(options)
        self.subtypes: tuple[PwgSubtype, ...] = tuple(self.options["subtypes"])
        self.optional: frozenset[PwgAttributeType] = frozenset(self.options["optional_attributes"])
        self.firmware_rules: tuple[FirmwareRule, ...] = tuple(self.options["firmware_min_versions"])
        self.severities = {key: SEVERITIES[self.options[key]] for key in
                           (*SETTING_TEXTS, "outdated_firmware")}

    @property
    def subscriptions(self) -> tuple[tuple[int, int], ...]:
        return tuple((PaVendor.PWG, subtype) for subtype in SUBTYPES)

    @property
    def message_type_name(self) -> str:
        return "PWG/HCD System"

    # -- receiving -------------------------------------------------------------------------

    def receive_message(self, connection, message):
        if message.vendor_id != PaVendor.PWG or message.subtype not in SUBTYPES:
            return None
        state = self.state_of(connection)
        imc = message.collector_id
        log.debug("IMV {imv_id} \"HCD\" received attributes for PA subtype PWG/{subtype} from IMC {imc}",
                  imv_id=connection.imv_id, subtype=_subtype_label(message.subtype), imc=imc)
        if state.imc_id is None:
            state.imc_id = imc
        state.heard = state.received_any = True
        subunit = state.subunit(message.subtype)
        reply: list[PaAttribute] = []
        for attribute in message.pa.attributes:
            for whole in self._unwrap(connection, state, imc, attribute, reply):
                self._take(connection, subunit, whole)
        if reply:
            self.send(connection, reply, collector_id=imc, exclusive=True, subtype=message.subtype)
        return None

    def _take(self, connection, subunit: Subunit, attribute: PaAttribute) -> None:
        cls = type(attribute)
        if attribute.attr_vendor != PaVendor.PWG or (cls not in _FIELDS and cls not in _QUADRUPLES):
            log.debug("IMV {imv_id} ignores attribute {attr}", imv_id=connection.imv_id,
                      attr=attribute.full_name)
            return
        subunit.received.add(attribute.attr_type)
        if cls in _FIELDS:
            name, value = _FIELDS[cls]
            setattr(subunit, name, value(attribute))
            return
        kind, name = _QUADRUPLES[cls]
        items = subunit.software[kind]
        value = attribute.version if name == "version" else attribute.text
        if name == "name" or not items:
            if len(items) >= MAX_SOFTWARE:
                subunit.dropped += 1
                return
            items.append(Software())
        setattr(items[-1], name, value)

    # -- requesting ------------------------------------------------------------------------

    def _user_apps_disabled(self, state: HcdState) -> bool:
        return state.system.user_application_enabled is False

    def _missing(self, state: HcdState, subtype: PwgSubtype, *, required_only: bool) -> list[PwgAttributeType]:
        received = state.subunits[subtype].received if subtype in state.subunits else set()
        missing = []
        for attr_type in MANDATORY[subtype]:
            if attr_type in received:
                continue
            if attr_type == T.USER_APPLICATION_NAME and self._user_apps_disabled(state):
                continue
            if required_only and attr_type in self.optional:
                continue
            missing.append(attr_type)
        return missing

    def batch_ending(self, connection):
        state = self.state_of(connection)
        if state.decided:
            return None
        heard, state.heard = state.heard, False
        if not state.started:
            state.started = True
            requested = []
            for subtype in self.subtypes:
                missing = self._missing(state, subtype, required_only=False)
                attributes: list[PaAttribute] = [propose_contract(connection, self.max_attribute_size,
                                                                  f"PWG/{_subtype_label(subtype)}")]
                if missing:
                    requested.append(subtype)
                    attributes.append(AttributeRequest(tuple((PaVendor.PWG, t) for t in missing)))
                # to any HCD collector, without EXCL, as strongSwan's first request
                self.send(connection, attributes, collector_id=ANY_IMC_ID, exclusive=False, subtype=subtype)
            state.requested = tuple(requested)
            if not requested and state.received_any:
                return self.decide(connection, state)
            return None
        if heard and (state.reassembler.pending or any(
                self._missing(state, s, required_only=True) for s in state.requested)):
            return None  # the collector is answering; more may come in its next batch
        return self.decide(connection, state)

    def send(self, connection, attributes: Sequence[PaAttribute], *, collector_id: int | None,
             exclusive: bool, subtype: int = S.HCD_SYSTEM) -> None:
        """``attributes`` in one PA-TNC message of PWG subtype ``subtype``
        (the verdict goes in System)."""
        if collector_id is None:
            collector_id = ANY_IMC_ID
        send_attributes(connection, PaVendor.PWG, subtype, attributes, collector_id=collector_id,
                        exclusive=exclusive and collector_id != ANY_IMC_ID)

    # -- judging ---------------------------------------------------------------------------

    def _outdated_firmware(self, state: HcdState) -> list[str]:
        """'subtype: name string-version (minimum)' of each firmware below its minimum."""
        out = []
        if not self.firmware_rules:
            return out
        for subtype, subunit in state.subunits.items():
            for item in subunit.software["firmware"]:
                name = item.name or ""
                for rule in self.firmware_rules:
                    if not fnmatch.fnmatchcase(name, rule.pattern):
                        continue
                    reported = item.version
                    if reported is None and item.string_version:
                        try:
                            reported = parse_version(item.string_version)
                        except ValueError:
                            reported = None
                    if reported is None or tuple(reported) < tuple(rule.minimum):
                        shown = item.string_version or (short_version(reported) if reported else "no version")
                        out.append(f"{name} {shown} (at least {short_version(rule.minimum)})")
                    break
        return out

    def judge(self, connection, state: HcdState):
        if not state.received_any:
            return self.no_result(REASON_NO_RESULT, "no hardcopy device attributes received")
        checks: list[EvaluationResult] = []
        summary: list[str] = []
        reasons: list[LangText] = []
        remediation = RemediationString(self.language(connection))

        missing = [f"{_subtype_label(subtype)}/{attribute_key(t)}" for subtype in self.subtypes
                   for t in self._missing(state, subtype, required_only=True)]
        if missing:
            log.info("IMV {imv_id} \"HCD\": missing mandatory attributes {missing}",
                     imv_id=connection.imv_id, missing=", ".join(missing))
            checks.append(E.NONCOMPLIANT_MAJOR)
            reasons.append(REASON_MISSING)
            remediation.add_instruction(MISSING_TITLE, MISSING_DESCRIPTION, MISSING_HEADER, missing)
            summary.append(f"{len(missing)} mandatory attributes missing")

        system = state.system
        violated_settings = []
        for key, (title, description) in SETTING_TEXTS.items():
            value = getattr(system, key)
            enabled = value is ForwardingStatus.ENABLED if key == "forwarding_enabled" else value is True
            if enabled:
                summary.append(f"{key.replace('_', ' ')}")
                severity = self.severities[key]
                if severity is not None:
                    checks.append(severity)
                    violated_settings.append((title, description))
        if violated_settings:
            reasons.append(REASON_SETTINGS)
            for title, description in violated_settings:
                remediation.add_instruction(title, description)

        outdated = self._outdated_firmware(state)
        if outdated:
            summary.append(f"{len(outdated)} outdated firmware")
            severity = self.severities["outdated_firmware"]
            if severity is not None:
                checks.append(severity)
                reasons.append(REASON_FIRMWARE)
                remediation.add_instruction(FIRMWARE_TITLE, FIRMWARE_DESCRIPTION, FIRMWARE_HEADER, outdated)

        evaluation = max(checks, default=E.COMPLIANT)
        self.measure(connection, state, "hcd", {
            "subtypes": {_subtype_label(subtype): subunit.report()
                         for subtype, subunit in sorted(state.subunits.items())},
            "missing": missing,
            "outdated_firmware": outdated,
            "evaluation": evaluation.label,
        })
        if evaluation is E.COMPLIANT:
            return Judgement(E.COMPLIANT, self.policy.recommendation(E.COMPLIANT),
                             summary="; ".join(summary) or "all mandatory attributes received")
        return Judgement(evaluation, self.policy.recommendation(evaluation), tuple(reasons),
                         remediation if remediation else None, "; ".join(summary))
