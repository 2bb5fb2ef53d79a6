"""The SWIMA IMC (IETF PA subtype SWIMA, RFC 8412): software inventory and
software events of a Debian-family host, as strongSwan's imc-swima reports
them.

Software identifiers are built like strongSwan's SWID generator does:
``<regid>__<OS>_<version>-<arch>-<package>-<package version>`` with ':' and
'+' replaced by '~', e.g.
``strongswan.org__Debian_12-x86_64-bash-5.2.15-2~b8``.  The inventory is
what the dpkg status database lists as installed; events come from apt's
history log (``/var/log/apt/history.log`` and its rotated copies): one event
ID per apt run, in order, with EID 1 for what was installed before the log
begins.  Without a history log an events request is answered the way
strongSwan answers it without its collector database: a SWIMA Error and the
inventory instead.

Like strongSwan the IMC first proposes a segmentation contract, refuses
subscriptions ("subscriptions not enabled"), and answers the first SWIMA
Request of a message.
"""

from __future__ import annotations

import datetime
import gzip
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from nac.log import Logger

from nac.client.collectors.os import (
    DEFAULT_OS_RELEASE_PATHS,
    DPKG_STATUS,
    OsInfo,
    installed_packages,
    read_os_info,
)
from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.pa import PaAttribute, PaSubtype, PaTncErrorCode
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.swima import (
    SoftwareEvents,
    SoftwareIdentifierEvents,
    SoftwareIdentifierInventory,
    SoftwareInventory,
    SwimaEvent,
    SwimaEventAction,
    SwimaRecord,
    SwimaRequest,
)

__all__ = [
    "AptHistoryEntry",
    "DEFAULT_EID_EPOCH",
    "DEFAULT_TAG_CREATOR",
    "SOURCE_ID_GENERATOR",
    "SoftwareCatalog",
    "SwimaImc",
    "apt_history_paths",
    "read_apt_history",
    "software_identifier",
]

log = Logger(namespace="nac.client.swima")

DEFAULT_TAG_CREATOR = "strongswan.org"
DEFAULT_TAG_CREATOR_NAME = "strongSwan Project"
#: strongSwan's EID Epoch when it has no collector database of its own.
DEFAULT_EID_EPOCH = 0x11223344
#: Source ID strongSwan gives records it derives from the package manager.
SOURCE_ID_GENERATOR = 1
APT_LOG_DIR = "/var/log/apt"


def software_identifier(os_info: OsInfo, package: str, version: str, *,
                        tag_creator: str = DEFAULT_TAG_CREATOR) -> str:
    """strongSwan's software identifier of a package version."""
    sw_id = f"{tag_creator}__{os_info.name}_{os_info.version}-{os_info.arch}-{package}"
    if version:
        sw_id += f"-{version}"
    return sw_id.replace(":", "~").replace("+", "~")


# -- apt's history log -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AptHistoryEntry:
    """One apt run: when it started (RFC 3339, UTC) and what it changed, as
    (action, package, version) with action 'install' or 'remove'."""

    timestamp: str
    changes: tuple[tuple[str, str, str], ...]


_ITEM = re.compile(r"(\S+?) \(([^)]*)\)")
_history_cache: dict[str, tuple[tuple[int, int], tuple[AptHistoryEntry, ...]]] = {}


def apt_history_paths(directory: str | Path = APT_LOG_DIR) -> tuple[Path, ...]:
    """apt's history logs, oldest first (history.log.N.gz ... history.log)."""
    directory = Path(directory)
    rotated = []
    for path in directory.glob("history.log.*"):
        number = path.name[len("history.log."):].removesuffix(".gz")
        if number.isdigit():
            rotated.append((int(number), path))
    return tuple(p for _, p in sorted(rotated, reverse=True)) + (directory / "history.log",)


def _timestamp(value: str, tz: datetime.tzinfo | None) -> str | None:
    try:
        local = datetime.datetime.strptime(" ".join(value.split()), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    local = local.replace(tzinfo=tz) if tz is not None else local.astimezone()
    return local.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_history(text: str, tz: datetime.tzinfo | None) -> list[AptHistoryEntry]:
    entries = []
    for block in re.split(r"\n\s*\n", text):
        timestamp = None
        changes: list[tuple[str, str, str]] = []
        for line in block.splitlines():
            field, _, value = line.partition(": ")
            if field == "Start-Date":
                timestamp = _timestamp(value, tz)
            elif field in ("Install", "Upgrade", "Downgrade", "Remove", "Purge"):
                for package, versions in _ITEM.findall(value):
                    package = package.split(":")[0]  # strip the architecture
                    parts = [v.strip() for v in versions.split(",")]
                    if field == "Install":
                        changes.append(("install", package, parts[0]))
                    elif field in ("Upgrade", "Downgrade") and len(parts) >= 2:
                        changes.append(("remove", package, parts[0]))
                        changes.append(("install", package, parts[1]))
                    elif field in ("Remove", "Purge"):
                        changes.append(("remove", package, parts[0]))
        if timestamp is not None and changes:
            entries.append(AptHistoryEntry(timestamp, tuple(changes)))
    return entries


def read_apt_history(paths: Sequence[str | Path], *, tz: datetime.tzinfo | None = None
                     ) -> tuple[AptHistoryEntry, ...] | None:
    """The apt runs recorded in ``paths`` (oldest first; .gz read as such),
    or None when none of them can be read.  ``tz``: the time zone apt wrote
    its local times in (default: this host's)."""
    entries: list[AptHistoryEntry] = []
    found = False
    for path in paths:
        key = f"{path}\0{tz}"
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size)
            cached = _history_cache.get(key)
            if cached is None or cached[0] != stamp:
                raw = Path(path).read_bytes()
                if str(path).endswith(".gz"):
                    raw = gzip.decompress(raw)
                cached = (stamp, tuple(_parse_history(raw.decode("utf-8", "replace"), tz)))
                _history_cache[key] = cached
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        found = True
        entries.extend(cached[1])
    return tuple(entries) if found else None


# -- inventory and events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Software:
    identifier: str
    package: str
    version: str


class SoftwareCatalog:
    """The software of one host at one moment: inventory and events."""

    def __init__(self, os_info: OsInfo, packages, history: Sequence[AptHistoryEntry] | None, *,
                 tag_creator: str = DEFAULT_TAG_CREATOR, tag_creator_name: str = DEFAULT_TAG_CREATOR_NAME,
                 eid_epoch: int = DEFAULT_EID_EPOCH):
        self.os_info = os_info
        self.tag_creator = tag_creator
        self.tag_creator_name = tag_creator_name
        self.eid_epoch = eid_epoch
        # one record per identifier: a package installed for two architectures has one
        self.inventory = tuple({sw.identifier: sw for sw in
                                (self._software(p.name, p.version) for p in packages)}.values())
        self.events: tuple[tuple[int, str, SwimaEventAction, _Software], ...] | None = None
        self.last_eid = 1
        if history is not None:
            self._derive_events(history)

    def _software(self, package: str, version: str) -> _Software:
        return _Software(software_identifier(self.os_info, package, version, tag_creator=self.tag_creator),
                         package, version)

    def _derive_events(self, history: Sequence[AptHistoryEntry]) -> None:
        events = []
        present: dict[str, bool] = {}
        baseline: dict[str, _Software] = {}
        for index, entry in enumerate(history):
            eid = index + 2  # EID 1 holds what existed before the log begins
            for action, package, version in entry.changes:
                sw = self._software(package, version)
                if action == "install":
                    present[sw.identifier] = True
                    events.append((eid, entry.timestamp, SwimaEventAction.CREATION, sw))
                elif present.get(sw.identifier, True):
                    if sw.identifier not in present:
                        baseline[sw.identifier] = sw  # removed before the log shows it installed
                    present[sw.identifier] = False
                    events.append((eid, entry.timestamp, SwimaEventAction.DELETION, sw))
        for sw in self.inventory:
            if sw.identifier not in present:
                baseline[sw.identifier] = sw
        first = history[0].timestamp if history else _now()
        events.extend((1, first, SwimaEventAction.CREATION, sw) for sw in baseline.values())
        events.sort(key=lambda e: (e[0], e[3].identifier, e[2]))
        self.events = tuple(events)
        self.last_eid = len(history) + 1

    def swid_tag(self, sw: _Software) -> bytes:
        """A minimal ISO/IEC 19770-2:2015 SWID tag for the package version."""
        tag_id = sw.identifier.split("__", 1)[1]
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd"'
            f" name={quoteattr(sw.package)} tagId={quoteattr(tag_id)} version={quoteattr(sw.version)}"
            ' versionScheme="alphanumeric">'
            f"<Entity name={quoteattr(self.tag_creator_name)} regid={quoteattr(self.tag_creator)}"
            ' role="tagCreator"/></SoftwareIdentity>'
        ).encode()

    def record(self, sw: _Software, with_tag: bool) -> SwimaRecord:
        # record identifier 0 like strongSwan's package-manager records
        return SwimaRecord(0, sw.identifier, "", source_id=SOURCE_ID_GENERATOR,
                           record=self.swid_tag(sw) if with_tag else b"")

    def inventory_attribute(self, request: SwimaRequest) -> PaAttribute:
        targets = set(request.identifiers)
        with_tags = not request.identifiers_only
        records = tuple(self.record(sw, with_tags) for sw in self.inventory
                        if not targets or sw.identifier in targets)
        cls = SoftwareIdentifierInventory if request.identifiers_only else SoftwareInventory
        log.info("collected {n} SW{kind} record(s)", n=len(records), kind=" ID" if request.identifiers_only else "")
        return cls(request.request_id, self.eid_epoch, self.last_eid, records)

    def events_attribute(self, request: SwimaRequest) -> PaAttribute | None:
        if self.events is None:
            return None
        targets = set(request.identifiers)
        with_tags = not request.identifiers_only
        events = tuple(SwimaEvent(eid, stamp, action, self.record(sw, with_tags))
                       for eid, stamp, action, sw in self.events
                       if eid >= request.earliest_eid and (not targets or sw.identifier in targets))
        cls = SoftwareIdentifierEvents if request.identifiers_only else SoftwareEvents
        log.info("collected {n} SW{kind} event(s) at last EID {eid} of epoch 0x{epoch:08x}", n=len(events),
                 kind=" ID" if request.identifiers_only else "", eid=self.last_eid, epoch=self.eid_epoch)
        return cls(request.request_id, self.eid_epoch, self.last_eid, self.last_eid, events)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the IMC --------------------------------------------------------------------------------


class SwimaImc(PaTncImc):
    """strongSwan's SWIMA IMC, reading this host (or the given files)."""

    name = "SWIMA"
    subtype = PaSubtype.SWIMA

    def __init__(
        self,
        *,
        dpkg_status: str | Path = DPKG_STATUS,
        history_logs: Sequence[str | Path] | None = None,
        os_release: Sequence[str | Path] = DEFAULT_OS_RELEASE_PATHS,
        machine: str | None = None,
        tag_creator: str = DEFAULT_TAG_CREATOR,
        eid_epoch: int = DEFAULT_EID_EPOCH,
        history_timezone: datetime.tzinfo | None = None,
    ):
        self.dpkg_status = dpkg_status
        self.history_logs = None if history_logs is None else tuple(history_logs)
        self.os_release = tuple(os_release)
        self.machine = machine
        self.tag_creator = tag_creator
        self.eid_epoch = eid_epoch
        self.history_timezone = history_timezone

    def catalog(self) -> SoftwareCatalog | None:
        info = read_os_info(self.os_release, machine=self.machine)
        if info is None:
            return None
        logs = apt_history_paths() if self.history_logs is None else self.history_logs
        history = read_apt_history(logs, tz=self.history_timezone)
        return SoftwareCatalog(info, installed_packages(self.dpkg_status), history,
                               tag_creator=self.tag_creator, eid_epoch=self.eid_epoch)

    def handshake_attributes(self, connection) -> list[PaAttribute]:
        # announce segmentation support: the inventory may be large
        return [self.contract_request(connection)]

    def reply_attributes(self, connection, message: ReceivedPaMessage,
                         attributes: tuple[PaAttribute, ...]) -> list[PaAttribute]:
        request = next((a for a in attributes if isinstance(a, SwimaRequest)), None)
        if request is None:
            return []
        out: list[PaAttribute] = []
        kind = " ID" if request.identifiers_only else ""
        if request.subscribe or request.clear_subscriptions:
            out.append(PaTncErrorAttribute.swima_error(
                PaTncErrorCode.SWIMA_SUBSCRIPTION_DENIED_ERROR, request.request_id, "subscriptions not enabled"))
        catalog = self.catalog()
        if catalog is None:
            out.append(PaTncErrorAttribute.swima_error(
                PaTncErrorCode.SWIMA_ERROR, request.request_id, f"failed to collect SW{kind} inventory"))
            return out
        if request.earliest_eid > 0:
            events = catalog.events_attribute(request)
            if events is not None:
                out.append(events)
                return out
            out.append(PaTncErrorAttribute.swima_error(
                PaTncErrorCode.SWIMA_ERROR, request.request_id,
                f"failed to collect SW{kind} events, fallback to SW{kind} inventory"))
        out.append(catalog.inventory_attribute(request))
        return out
