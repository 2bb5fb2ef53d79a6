"""The SWIMA IMV: software inventories and events of endpoints (RFC 8412).

Per connection, like strongSwan's imv-swima (read for facts, written anew):

1. On the first batch it proposes a TCG segmentation contract and sends a
   SWIMA Request for software identifiers (R flag, §5.7).  A device whose
   EID epoch and last EID are stored is asked only for the events since
   that EID (Earliest EID = last EID + 1); any other device for its full
   inventory (Earliest EID 0).
2. The answer updates the device's inventory in the policy store: a
   Software Identifier Inventory (§5.8) replaces it, Software Identifier
   Events (§5.9) are applied in EID order (creation, deletion, alteration).
   An events request falls back to the full inventory when the collector
   cannot collect events (a SWIMA Error, §5.16), when the EID epoch changed
   (its event log was reset, §3.7) or when the log went backwards; a
   partial event list (Last Consulted EID below Last EID, §5.9) is continued
   from the next EID.
3. The SWID tags the store lacks for the device's software are asked for
   with targeted SWIMA Requests (a list of identifiers, no R flag); the tags
   of the Software Inventory (§5.10) that answers are parsed with defusedxml
   (:mod:`nac.swid`) and stored.
4. Attributes larger than a PA-TNC message travel in TCG Segment Envelopes
   both ways (``nac.pa.segmentation``).

Every request is answered, refused or abandoned within a bounded number of
rounds (at most :data:`MAX_REQUESTS` SWIMA Requests per assessment, tags at
most ``max_tags``); :meth:`SwimaImv.solicit_recommendation` answers with
what has arrived.  SWIMA informs rather than judges: a received and stored
inventory is *compliant*, and the ``no_result`` recommendation applies when
none arrives.
"""

from __future__ import annotations

import datetime
import enum
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from imvs.policy import (
    MAX_PENDING_SEGMENTED,
    REASON_CHECK_FAILED,
    RECOMMENDATIONS,
    accept_contract,
    check_failed_option,
    contract_accepted,
    fetch_session_id,
    peer_address,
    propose_contract,
    reassemble,
    replace_state,
    send_attributes,
)
from nac.swid import DEFAULT_MAX_TAG_SIZE, SwidTagError, SwidTagFormat, parse_swid_tag
from nac.config import Option, boolean, byte_size, choice, non_negative_int, non_negative_seconds
from nac.db.outage import log_store_failure
from nac.db.models import (
    IDENTIFIER_LENGTH,
    NAME_LENGTH,
    AssessmentSession,
    Device,
    DeviceSoftware,
    Measurement,
    SoftwareIdentifier,
    SwidTag as SwidTagRow,
    SwimaState,
    has_control_characters,
    utcnow,
)
from nac.ifimv import ANY_IMC_ID, ActionRecommendation, ConnectionState, EvaluationResult
from nac.interfaces import IImv
from nac.log import Logger
from nac.pa import (
    ATTRIBUTE_HEADER_SIZE,
    MESSAGE_HEADER_SIZE,
    MaxAttributeSizeRequest,
    MaxAttributeSizeResponse,
    NextSegment,
    PaAttribute,
    PaMessage,
    PaSubtype,
    PaTncErrorCode,
    PaVendor,
    Reassembler,
    SegmentEnvelope,
    Segmenter,
)
from nac.pa.ietf import AssessmentResult, PaTncErrorAttribute
from nac.pa.ita import DeviceId
from nac.pa.segmentation import ReassemblyBudget, needs_segmentation
from nac.pa.swima import (
    SoftwareEvents,
    SoftwareIdentifierEvents,
    SoftwareIdentifierInventory,
    SoftwareInventory,
    SwimaEventAction,
    SwimaRecord,
    SwimaRequest,
    SwimaRequestFlag,
)
from nac.pa.tcg import NO_LIMIT

__all__ = [
    "DeviceSwimaState",
    "EventsApplied",
    "InventoryStored",
    "MAX_REQUESTS",
    "RequestKind",
    "SwimaImv",
    "TagsStored",
    "apply_events",
    "device_inventory",
    "device_swima_state",
    "store_inventory",
    "store_swid_tags",
]

log = Logger(namespace="nac.imv.swima")

A = ActionRecommendation
E = EvaluationResult

#: SWIMA Requests one assessment may send (first request, fallbacks, event
#: continuations, tag batches, retries after SWIMA Response Too Large).
MAX_REQUESTS = 16
#: Largest targeted request (the list of identifiers whose tags are wanted).
MAX_TAG_REQUEST_SIZE = 1024 * 1024
#: Tags asked for at once: as many as would fill about this many PA-TNC
#: messages at a typical tag size, so that over small transports (PT-EAP's
#: 32 KB) each assessment stores some tags before its rounds run out.
TAG_RESPONSE_MESSAGES = 4
TYPICAL_TAG_SIZE = 512
#: Identifiers looked up or written per SQL statement (bound parameters).
SQL_CHUNK = 500

#: The PA message type as strongSwan names it in logs.
_MESSAGE_TYPE = "IETF/SWIMA"
_SWID_DATA_MODELS = {
    (PaVendor.IETF, SwidTagFormat.ISO_2015): SwidTagFormat.ISO_2015,
    (PaVendor.IETF, SwidTagFormat.ISO_2009): SwidTagFormat.ISO_2009,
}
_EID_MAX = 0xFFFFFFFF
#: A SWIMA Request without identifiers: attribute header, flags + count,
#: Request ID, Earliest EID (§5.7).
_SWIMA_REQUEST_FIXED_SIZE = ATTRIBUTE_HEADER_SIZE + 12


# -- what the queries return (plain values: no ORM object leaves a transaction) ----------


@dataclass(frozen=True, slots=True)
class DeviceSwimaState:
    """A device's row id and where its SWIMA event log was last read (if ever)."""

    device_pk: int
    epoch: int | None
    last_eid: int | None


@dataclass(frozen=True, slots=True)
class InventoryStored:
    identifiers: int
    added: int
    removed: int
    lacking_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EventsApplied:
    created: int
    deleted: int
    altered: int
    lacking_tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TagsStored:
    stored: int
    updated: int
    refused: tuple[tuple[str, str], ...] = ()
    """(software identifier, why) of the tags that were not stored."""


# -- queries (run by PolicyStore.run in its thread pool, one transaction each) ------------


def _chunks(items: Sequence, size: int = SQL_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert_ignoring_duplicates(session: orm.Session, model, rows: list[dict], keys: list[str]) -> None:
    """INSERT rows, skipping those whose unique ``keys`` exist (written
    meanwhile by another nac instance sharing the database)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - nac supports SQLite and PostgreSQL
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(sa.insert(model), [row])
            except sa.exc.IntegrityError:
                pass
        return
    for chunk in _chunks(rows):
        session.execute(insert(model).on_conflict_do_nothing(index_elements=keys), list(chunk))


def _identifier_ids(session: orm.Session, tag_ids: Iterable[str]) -> dict[str, int]:
    """The row ids of these software identifiers, inserting the new ones."""
    wanted = list(dict.fromkeys(tag_ids))
    found: dict[str, int] = {}

    def lookup(names):
        for chunk in _chunks(names):
            for tag_id, row_id in session.execute(
                    sa.select(SoftwareIdentifier.tag_id, SoftwareIdentifier.id)
                    .where(SoftwareIdentifier.tag_id.in_(chunk))):
                found[tag_id] = row_id

    lookup(wanted)
    missing = [t for t in wanted if t not in found]
    if missing:
        _insert_ignoring_duplicates(session, SoftwareIdentifier, [{"tag_id": t} for t in missing],
                                    ["tag_id"])
        lookup(missing)
    return found


def _lacking_tags(session: orm.Session, device_pk: int | None, identifier_ids: Iterable[int],
                  limit: int, tag_retry: float = 0.0) -> tuple[str, ...]:
    """Identifiers without a stored SWID tag: the device's installed software
    (but for the tags it could not provide within the last ``tag_retry``
    seconds), or (no device) the given identifiers; at most ``limit``, sorted."""
    if limit <= 0:
        return ()
    query = (sa.select(SoftwareIdentifier.tag_id)
             .outerjoin(SwidTagRow, SwidTagRow.identifier_id == SoftwareIdentifier.id)
             .where(SwidTagRow.id.is_(None)))
    if device_pk is not None:
        query = query.join(DeviceSoftware, DeviceSoftware.identifier_id == SoftwareIdentifier.id).where(
            DeviceSoftware.device_id == device_pk, DeviceSoftware.installed.is_(True))
        if tag_retry > 0:
            asked_before = utcnow() - datetime.timedelta(seconds=tag_retry)
            query = query.where(sa.or_(DeviceSoftware.tag_unavailable.is_(None),
                                       DeviceSoftware.tag_unavailable < asked_before))
        return tuple(session.scalars(query.order_by(SoftwareIdentifier.tag_id).limit(limit)))
    out: list[str] = []
    for chunk in _chunks(list(identifier_ids)):
        out.extend(session.scalars(query.where(SoftwareIdentifier.id.in_(chunk))))
    return tuple(sorted(out)[:limit])


def _set_swima_state(session: orm.Session, device_pk: int, epoch: int, last_eid: int) -> None:
    row = session.get(SwimaState, device_pk)
    if row is None:
        session.add(SwimaState(device_id=device_pk, epoch=epoch, last_eid=last_eid, updated=utcnow()))
    else:
        row.epoch, row.last_eid, row.updated = epoch, last_eid, utcnow()


def _measure(session: orm.Session, session_id: int | None, kind: str, payload: dict) -> None:
    if session_id is not None and session.get(AssessmentSession, session_id) is not None:
        session.add(Measurement(session_id=session_id, imv_name="swima", kind=kind, payload=payload,
                                created=utcnow()))


def device_swima_state(session: orm.Session, device_id: str, session_id: int | None = None
                       ) -> DeviceSwimaState:
    """The device with this ITA Device ID (created if new, and bound to the
    session if no IMV did yet) and its stored EID epoch / last EID."""
    now = utcnow()
    query = sa.select(Device).where(Device.device_id == device_id)
    device = session.scalar(query)
    if device is None:
        _insert_ignoring_duplicates(session, Device, [{"device_id": device_id, "first_seen": now,
                                                       "last_seen": now}], ["device_id"])
        device = session.scalar(query)
    device.last_seen = now
    if session_id is not None:
        row = session.get(AssessmentSession, session_id)
        if row is not None and row.device_id is None:
            row.device_id = device.id
    state = session.get(SwimaState, device.id)
    if state is None:
        return DeviceSwimaState(device.id, None, None)
    return DeviceSwimaState(device.id, state.epoch, state.last_eid)


def store_inventory(session: orm.Session, device_pk: int | None, epoch: int, last_eid: int,
                    identifiers: Sequence[str], *, session_id: int | None = None,
                    max_tags: int = 0, tag_retry: float = 0.0) -> InventoryStored:
    """Replace the device's inventory with ``identifiers`` (a full inventory)
    and remember its EID epoch and last EID."""
    ids = _identifier_ids(session, identifiers)
    added = removed = 0
    if device_pk is not None:
        now = utcnow()
        current = dict(session.execute(
            sa.select(DeviceSoftware.identifier_id, DeviceSoftware.installed)
            .where(DeviceSoftware.device_id == device_pk)).all())
        wanted = set(ids.values())
        new = [i for i in wanted if i not in current]
        again = [i for i in wanted if i in current]
        gone = [i for i, installed in current.items() if installed and i not in wanted]
        added = len(new) + sum(1 for i in again if not current[i])
        removed = len(gone)
        _insert_ignoring_duplicates(session, DeviceSoftware, [
            {"device_id": device_pk, "identifier_id": i, "installed": True, "first_seen": now,
             "last_seen": now} for i in new], ["device_id", "identifier_id"])
        _update_installed(session, device_pk, again, True, now)
        _update_installed(session, device_pk, gone, False, now)
        _set_swima_state(session, device_pk, epoch, last_eid)
    _measure(session, session_id, "swima-inventory", {
        "epoch": epoch, "last_eid": last_eid, "identifiers": len(ids), "added": added,
        "removed": removed})
    lacking = _lacking_tags(session, device_pk, ids.values(), max_tags, tag_retry)
    return InventoryStored(len(ids), added, removed, lacking)


def _update_installed(session: orm.Session, device_pk: int, identifier_ids: Sequence[int],
                      installed: bool, now) -> None:
    for chunk in _chunks(list(identifier_ids)):
        session.execute(
            sa.update(DeviceSoftware)
            .where(DeviceSoftware.device_id == device_pk, DeviceSoftware.identifier_id.in_(chunk))
            .values(installed=installed, last_seen=now))


def apply_events(session: orm.Session, device_pk: int, epoch: int, last_eid: int,
                 events: Sequence[tuple[int, int, str]], *, session_id: int | None = None,
                 max_tags: int = 0, tag_retry: float = 0.0) -> EventsApplied:
    """Apply software events ``(eid, action, identifier)`` in EID order to
    the device's inventory and move its last EID on to ``last_eid``."""
    ordered = sorted(events, key=lambda e: e[0])  # stable: same-EID events keep their order
    ids = _identifier_ids(session, (identifier for _, _, identifier in ordered))
    now = utcnow()
    current: dict[int, bool] = {}
    for chunk in _chunks(list(set(ids.values()))):
        current.update(session.execute(
            sa.select(DeviceSoftware.identifier_id, DeviceSoftware.installed)
            .where(DeviceSoftware.device_id == device_pk, DeviceSoftware.identifier_id.in_(chunk))).all())
    final: dict[int, bool] = {}
    counts = {SwimaEventAction.CREATION: 0, SwimaEventAction.DELETION: 0, SwimaEventAction.ALTERATION: 0}
    for _eid, action, identifier in ordered:
        # creation and alteration both mean: installed now
        final[ids[identifier]] = action != SwimaEventAction.DELETION
        counts[SwimaEventAction(action)] += 1
    new = [i for i, installed in final.items() if i not in current]
    _insert_ignoring_duplicates(session, DeviceSoftware, [
        {"device_id": device_pk, "identifier_id": i, "installed": final[i], "first_seen": now,
         "last_seen": now} for i in new], ["device_id", "identifier_id"])
    _update_installed(session, device_pk, [i for i, v in final.items() if i in current and v], True, now)
    _update_installed(session, device_pk, [i for i, v in final.items() if i in current and not v],
                      False, now)
    _set_swima_state(session, device_pk, epoch, last_eid)
    applied = EventsApplied(counts[SwimaEventAction.CREATION], counts[SwimaEventAction.DELETION],
                            counts[SwimaEventAction.ALTERATION], ())
    _measure(session, session_id, "swima-events", {
        "epoch": epoch, "last_eid": last_eid, "created": applied.created, "deleted": applied.deleted,
        "altered": applied.altered})
    return EventsApplied(applied.created, applied.deleted, applied.altered,
                         _lacking_tags(session, device_pk, (), max_tags, tag_retry))


def mark_tags_unavailable(session: orm.Session, device_pk: int, identifiers: Iterable[str]) -> int:
    """The device answered a request for the SWID tags of ``identifiers``
    without them: remember when, so they are not asked for again for a while
    (``[imv:swima] tag_retry``).  Returns the number of entries marked."""
    wanted = list(identifiers)
    if not wanted:
        return 0
    ids = session.scalars(sa.select(SoftwareIdentifier.id).where(SoftwareIdentifier.tag_id.in_(wanted))).all()
    marked = 0
    now = utcnow()
    for chunk in _chunks(list(ids)):
        marked += session.execute(
            sa.update(DeviceSoftware)
            .where(DeviceSoftware.device_id == device_pk, DeviceSoftware.identifier_id.in_(chunk))
            .values(tag_unavailable=now)).rowcount or 0
    return marked


def store_swid_tags(session: orm.Session, records: Sequence[tuple[str, bytes, SwidTagFormat]], *,
                    max_tag_size: int = DEFAULT_MAX_TAG_SIZE, session_id: int | None = None) -> TagsStored:
    """Parse and store SWID tags ``(software identifier, XML, data model)``,
    replacing older ones; a tag that is invalid, not UTF-8, of another data
    model or of another identifier is refused.  Parsing happens here, in the
    store's thread, not on the reactor."""
    valid: dict[str, str] = {}
    refused = []
    for identifier, data, model in records:
        try:
            tag = parse_swid_tag(data, max_size=max_tag_size)
            xml = bytes(data).decode()
        except (SwidTagError, UnicodeDecodeError) as exc:
            refused.append((identifier, str(exc)[:200]))
            continue
        if tag.format is not model or tag.software_identifier != identifier:
            refused.append((identifier, f"the tag is {tag.software_identifier[:200]!r}"))
            continue
        valid[identifier] = xml
    ids = _identifier_ids(session, valid)
    existing: dict[int, SwidTagRow] = {}
    for chunk in _chunks(list(ids.values())):
        for row in session.scalars(sa.select(SwidTagRow).where(SwidTagRow.identifier_id.in_(chunk))):
            existing[row.identifier_id] = row
    now = utcnow()
    updated = 0
    new_rows = []
    for identifier, xml in valid.items():
        row = existing.get(ids[identifier])
        if row is None:
            new_rows.append({"identifier_id": ids[identifier], "xml": xml, "updated": now})
        elif row.xml != xml:
            row.xml, row.updated = xml, now
            updated += 1
    _insert_ignoring_duplicates(session, SwidTagRow, new_rows, ["identifier_id"])
    _measure(session, session_id, "swid-tags", {"stored": len(new_rows), "updated": updated,
                                                "refused": len(refused)})
    return TagsStored(len(new_rows), updated, tuple(refused))


def device_inventory(session: orm.Session, device_id: str, *, installed_only: bool = True
                     ) -> dict[str, bool]:
    """A device's software identifiers (ITA Device ID → {identifier: installed})."""
    query = (sa.select(SoftwareIdentifier.tag_id, DeviceSoftware.installed)
             .join(DeviceSoftware, DeviceSoftware.identifier_id == SoftwareIdentifier.id)
             .join(Device, Device.id == DeviceSoftware.device_id)
             .where(Device.device_id == device_id))
    if installed_only:
        query = query.where(DeviceSoftware.installed.is_(True))
    return dict(session.execute(query).all())


# -- per-connection state ---------------------------------------------------------------------


class RequestKind(enum.Enum):
    INVENTORY = "software ID inventory"
    EVENTS = "software ID events"
    TAGS = "SWID tags"


@dataclass(slots=True)
class _Request:
    """A SWIMA Request to send or awaiting its answer."""

    kind: RequestKind
    earliest_eid: int = 0
    targets: tuple[str, ...] = ()
    request_id: int = 0
    fallback: bool = False
    """An events request the collector refused: the inventory is next
    (unless it came with the refusal, as strongSwan's IMC sends it)."""


@dataclass(slots=True)
class SwimaConnectionState:
    """What the SWIMA IMV knows about one connection."""

    max_attribute_size: int
    reassembly: ReassemblyBudget | None = None
    device_id: str | None = None
    device: DeviceSwimaState | None = None
    session_id: int | None = None
    imc_id: int | None = None
    started: bool = False
    decided: bool = False
    pending: _Request | None = None
    next: _Request | None = None
    requests: int = 0
    request_ids: Any = None
    inventory_received: bool = False
    identifiers: int = 0
    events: int = 0
    tags_received: int = 0
    tags_requested: int = 0
    tags_refused: bool = False
    lacking_tags: list[str] = field(default_factory=list)
    failed: str | None = None
    store_failed: bool = False
    """The policy store failed to read or keep something of this assessment:
    the inventory is not known to be stored, the verdict is check_failed."""
    contract: MaxAttributeSizeResponse | None = None
    """What the SWIMA IMC accepts from us (our answer to its contract request)."""
    reassembler: Reassembler | None = None
    segmenters: dict[int, Segmenter] = field(default_factory=dict)
    next_base_id: int = 1

    def __post_init__(self):
        self.reassembler = Reassembler(max_attribute_size=self.max_attribute_size,
                                       max_pending=MAX_PENDING_SEGMENTED, budget=self.reassembly)
        first = secrets.randbits(31) + 1
        self.request_ids = iter(range(first, first + MAX_REQUESTS + 1))


# -- the IMV ----------------------------------------------------------------------------------


def _valid_text(value: str, limit: int) -> bool:
    return 0 < len(value.encode()) <= limit and not has_control_characters(value)


@implementer(IImv)
class SwimaImv:
    """IETF SWIMA (PA subtype 9) verifier, RFC 8412."""

    name = "swima"
    subscriptions = ((PaVendor.IETF, PaSubtype.SWIMA),
                     # the ITA Device ID comes with the OS collector's first message
                     (PaVendor.IETF, PaSubtype.OPERATING_SYSTEM))

    CONFIG_HELP = (
        "SWIMA (RFC 8412): each endpoint's software inventory, kept per device. A device seen before "
        "is asked only for the software events since its stored EID (a full inventory when events "
        "cannot be collected or the collector's event log was reset); the SWID tags the database "
        "lacks are asked for by identifier. Informational: an inventory received and stored is "
        "compliant. Load with `imvs = ..., swima`.")

    OPTIONS = [
        Option("events", boolean, True,
               "Ask a device whose event log position is stored only for the software events "
               "since then, instead of its whole inventory every time."),
        Option("max_tags", non_negative_int, 5000,
               "Most SWID tags the database lacks that one assessment asks for (0: none)."),
        Option("tag_retry", non_negative_seconds, 30 * 86400.0,
               "A device that answered a request for SWID tags without some of them (its collector has "
               "none, as strongSwan's for most Debian packages) is not asked for those again for this "
               "long (0: every assessment)."),
        Option("max_attribute_size", byte_size(64 * 1024, 256 * 1024 * 1024), 16 * 1024 * 1024,
               "Largest SWIMA attribute accepted, whole or reassembled from segments; "
               "announced in the segmentation contract."),
        Option("max_tag_size", byte_size(1024, 16 * 1024 * 1024), DEFAULT_MAX_TAG_SIZE,
               "Largest SWID tag parsed; larger ones are skipped."),
        Option("no_result", choice(*RECOMMENDATIONS), "no-recommendation",
               "Recommendation when no inventory was received: allow, isolate, "
               "no-access or no-recommendation (the other IMVs decide)."),
        check_failed_option("the inventory's check (reading or storing it)"),
    ]

    def __init__(self, options: dict | None = None):
        values = {option.name: option.default for option in self.OPTIONS}
        values.update(options or {})
        self.use_events: bool = values["events"]
        self.max_tags: int = values["max_tags"]
        self.tag_retry: float = values["tag_retry"]
        self.max_attribute_size: int = values["max_attribute_size"]
        self.max_tag_size: int = values["max_tag_size"]
        self.no_result: A = RECOMMENDATIONS[values["no_result"]]
        self.check_failed: A = RECOMMENDATIONS[values["check_failed"]]

    # -- IImv ----------------------------------------------------------------------------

    def notify_connection_change(self, connection, state) -> None:
        if state == ConnectionState.CREATE:
            replace_state(connection, self._new_state(connection))
        elif state == ConnectionState.HANDSHAKE:
            current = connection.state
            if not isinstance(current, SwimaConnectionState) or current.started:
                # a handshake retry starts the assessment anew
                replace_state(connection, self._new_state(connection))
        elif state == ConnectionState.DELETE:
            replace_state(connection, None)

    def receive_message(self, connection, message):
        return defer.ensureDeferred(self._receive(connection, message))

    def batch_ending(self, connection):
        return defer.ensureDeferred(self._batch_ending(connection))

    def solicit_recommendation(self, connection) -> None:
        self._decide(connection, self._state(connection))

    # -- state ---------------------------------------------------------------------------

    def _new_state(self, connection) -> SwimaConnectionState:
        return SwimaConnectionState(max_attribute_size=self.max_attribute_size,
                                    reassembly=getattr(connection, "reassembly", None))

    def _state(self, connection) -> SwimaConnectionState:
        if not isinstance(connection.state, SwimaConnectionState):
            replace_state(connection, self._new_state(connection))
        return connection.state

    # -- receiving ------------------------------------------------------------------------

    async def _receive(self, connection, message) -> None:
        state = self._state(connection)
        if message.vendor_id != PaVendor.IETF:
            return
        if message.subtype == PaSubtype.OPERATING_SYSTEM:
            self._device_id(connection, state, message.pa)
            return
        if message.subtype != PaSubtype.SWIMA:
            return
        log.debug("IMV {imv_id} \"SWIMA\" received message for Connection ID {cid} from IMC {imc}",
                 imv_id=connection.imv_id, cid=connection.connection_id, imc=message.collector_id)
        if state.imc_id is None:
            state.imc_id = message.collector_id
        reply: list[PaAttribute] = []
        for attribute in message.pa.attributes:
            await self._attribute(connection, state, message.collector_id, attribute, reply)
        if reply:
            self._send(connection, reply, collector_id=message.collector_id, exclusive=True)

    def _device_id(self, connection, state: SwimaConnectionState, pa: PaMessage) -> None:
        for attribute in pa.find(DeviceId):
            value = attribute.device_id
            if not _valid_text(value, NAME_LENGTH):
                log.warn("IMV {imv_id} ignores an unusable Device ID of {n} characters",
                         imv_id=connection.imv_id, n=len(value),
                         log_limit=("unusable Device ID", peer_address(connection)))
            elif state.device_id is None:
                state.device_id = value
                log.debug("IMV {imv_id} learned Device ID '{device}'", imv_id=connection.imv_id,
                          device=value)

    async def _attribute(self, connection, state: SwimaConnectionState, imc_id: int,
                         attribute: PaAttribute, reply: list[PaAttribute], *, whole: bool = True) -> None:
        if isinstance(attribute, MaxAttributeSizeRequest):
            state.contract = accept_contract(connection, imc_id, attribute, _MESSAGE_TYPE)
            reply.append(state.contract)
        elif isinstance(attribute, MaxAttributeSizeResponse):
            contract_accepted(connection, imc_id, attribute, _MESSAGE_TYPE)
        elif isinstance(attribute, SegmentEnvelope) and whole:
            inner = reassemble(connection, state.reassembler, imc_id, attribute, reply)
            if inner is not None:
                await self._attribute(connection, state, imc_id, inner, reply, whole=False)
        elif isinstance(attribute, NextSegment) and whole:
            self._next_segment(connection, state, imc_id, attribute, reply)
        elif isinstance(attribute, PaTncErrorAttribute):
            await self._pa_tnc_error(connection, state, attribute)
        elif isinstance(attribute, (SoftwareIdentifierInventory, SoftwareInventory)):
            await self._inventory(connection, state, attribute)
        elif isinstance(attribute, (SoftwareIdentifierEvents, SoftwareEvents)):
            await self._events(connection, state, attribute)
        else:
            log.debug("IMV {imv_id} ignores attribute {attr}", imv_id=connection.imv_id,
                      attr=attribute.describe())

    # -- segmentation ---------------------------------------------------------------------

    def _next_segment(self, connection, state: SwimaConnectionState, imc_id: int, request: NextSegment,
                      reply: list[PaAttribute]) -> None:
        segmenter = state.segmenters.get(request.base_attribute_id)
        if segmenter is None:
            log.warn("IMV {imv_id}: Next Segment from IMC {imc} for unknown base attribute ID {base}",
                     imv_id=connection.imv_id, imc=imc_id, base=request.base_attribute_id,
                     log_limit=("Next Segment for an unknown attribute", peer_address(connection)))
            return
        envelope = segmenter.on_next_segment(request)
        if segmenter.done:
            del state.segmenters[request.base_attribute_id]
            if segmenter.cancelled:
                log.info("IMC {imc} cancelled base attribute {base}", imc=imc_id,
                         base=request.base_attribute_id)
                if state.pending is not None:
                    state.pending = None
                    state.failed = state.failed or "the collector cancelled the SWIMA Request"
        if envelope is not None:
            reply.append(envelope)

    # -- answers ---------------------------------------------------------------------------

    def _answering(self, connection, state: SwimaConnectionState, request_id: int,
                   what: str) -> _Request | None:
        pending = state.pending
        if pending is None or pending.request_id != request_id:
            log.info("IMV {imv_id}: no request found for {what} with request ID {rid}",
                     imv_id=connection.imv_id, what=what, rid=request_id)
            return None
        return pending

    async def _pa_tnc_error(self, connection, state: SwimaConnectionState, error: PaTncErrorAttribute) -> None:
        code = error.error_code
        name = getattr(code, "name", str(code))
        if error.error_vendor != PaVendor.IETF:
            log.warn("IMV {imv_id} received PA-TNC error 0x{vendor:06x}/{code}",
                     imv_id=connection.imv_id, vendor=error.error_vendor, code=int(code),
                     log_limit=("PA-TNC error from a collector", peer_address(connection)))
            return
        if error.is_pa_tnc_message_error:
            # the collector refused one of our messages: it will not answer it
            log.warn("IMV {imv_id} received PA-TNC error '{name}'", imv_id=connection.imv_id, name=name,
                     log_limit=("PA-TNC error from a collector", peer_address(connection)))
            if state.pending is not None:
                state.pending = None
                state.failed = state.failed or f"the collector refused the SWIMA Request ({name})"
            return
        request_id = error.request_id
        log.info("IMV {imv_id} received PA-TNC error '{name}' for request {rid}",
                 imv_id=connection.imv_id, name=name, rid=request_id)
        if error.max_allowed_size is not None:
            log.info("  maximum PA-TNC attribute size is {n} bytes", n=error.max_allowed_size)
        if error.description:
            log.info("  description: {text}", text=error.description[:200])
        if code == PaTncErrorCode.SWIMA_SUBSCRIPTION_DENIED_ERROR or request_id is None:
            return  # nac never subscribes
        pending = self._answering(connection, state, request_id, "PA-TNC error")
        if pending is None:
            return
        if code == PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR:
            self._too_large(connection, state, pending)
        elif pending.kind is RequestKind.EVENTS:
            # strongSwan's collector sends the inventory right after this error
            pending.fallback = True
        elif pending.kind is RequestKind.TAGS:
            state.pending = None
            state.tags_refused = True
            await self._tags_unavailable(connection, state, pending.targets)
        else:
            state.pending = None
            state.failed = state.failed or "the collector could not report its inventory"

    def _too_large(self, connection, state: SwimaConnectionState, pending: _Request) -> None:
        """RFC 8412 §5.16: ask for less (fewer tags at a time; identifiers
        instead of events), or give up when nothing smaller can be asked."""
        state.pending = None
        if pending.kind is RequestKind.TAGS and len(pending.targets) > 1:
            half = len(pending.targets) // 2
            state.lacking_tags[:0] = pending.targets[half:]
            state.next = _Request(RequestKind.TAGS, targets=pending.targets[:half])
        elif pending.kind is RequestKind.EVENTS:
            state.next = _Request(RequestKind.INVENTORY)
        elif pending.kind is RequestKind.TAGS:
            state.tags_refused = True
        else:
            state.failed = state.failed or "the software inventory is too large for the collector"

    async def _inventory(self, connection, state: SwimaConnectionState, attribute) -> None:
        with_tags = isinstance(attribute, SoftwareInventory)
        what = "software inventory" if with_tags else "software ID inventory"
        log.info("IMV {imv_id} received {what} with {n} item(s) for request {rid} at last eid {eid} "
                 "of epoch 0x{epoch:08x}", imv_id=connection.imv_id, what=what,
                 n=len(attribute.records), rid=attribute.request_id, eid=attribute.last_eid,
                 epoch=attribute.eid_epoch)
        pending = self._answering(connection, state, attribute.request_id, what)
        if pending is None:
            return
        state.pending = None
        tags = self._tags(connection, attribute.records, pending) if with_tags else []
        if pending.kind is RequestKind.TAGS:
            await self._store_tags(connection, state, tags)
            delivered = {record.software_identifier for record in attribute.records}
            await self._tags_unavailable(connection, state, [t for t in pending.targets if t not in delivered])
            return
        state.next = None  # the fallback came with the refusal
        identifiers = self._identifiers(connection, attribute.records)
        stored = await self._db(connection, state, store_inventory,
                                state.device.device_pk if state.device else None,
                                attribute.eid_epoch, attribute.last_eid, identifiers,
                                session_id=state.session_id, max_tags=self._tags_wanted(state),
                                tag_retry=self.tag_retry)
        if stored is None and connection.store is not None:
            return
        state.inventory_received = True
        state.identifiers = len(identifiers)
        if stored is not None:
            state.identifiers = stored.identifiers
            state.lacking_tags = list(stored.lacking_tags)
            log.info("IMV {imv_id} stored an inventory of {n} SW IDs ({added} added, {removed} removed), "
                     "{lacking} without SWID tag", imv_id=connection.imv_id, n=stored.identifiers,
                     added=stored.added, removed=stored.removed, lacking=len(stored.lacking_tags))
        if tags:
            await self._store_tags(connection, state, tags)

    async def _events(self, connection, state: SwimaConnectionState, attribute) -> None:
        with_tags = isinstance(attribute, SoftwareEvents)
        what = "software events" if with_tags else "software ID events"
        log.info("IMV {imv_id} received {what} with {n} item(s) for request {rid} at last eid {eid} "
                 "of epoch 0x{epoch:08x}", imv_id=connection.imv_id, what=what,
                 n=len(attribute.events), rid=attribute.request_id, eid=attribute.last_eid,
                 epoch=attribute.eid_epoch)
        pending = self._answering(connection, state, attribute.request_id, what)
        if pending is None:
            return
        if pending.kind is not RequestKind.EVENTS or state.device is None:
            log.warn("IMV {imv_id}: {what} do not answer a {kind} request", imv_id=connection.imv_id,
                     what=what, kind=pending.kind.value)
            state.pending = None
            state.failed = state.failed or "the collector answered with events, not an inventory"
            return
        stored = state.device
        if attribute.eid_epoch != stored.epoch:
            log.info("IMV {imv_id}: EID epoch changed from 0x{old:08x} to 0x{new:08x}, requesting the "
                     "full software ID inventory", imv_id=connection.imv_id, old=stored.epoch,
                     new=attribute.eid_epoch)
            self._fall_back(state)
            return
        if attribute.last_eid < stored.last_eid or attribute.last_consulted_eid > attribute.last_eid:
            log.warn("IMV {imv_id}: event log at last eid {eid} (consulted {consulted}) is behind the "
                     "stored last eid {stored}; requesting the full software ID inventory",
                     imv_id=connection.imv_id, eid=attribute.last_eid,
                     consulted=attribute.last_consulted_eid, stored=stored.last_eid)
            self._fall_back(state)
            return
        state.pending = None
        # events up to here are complete (§5.9); never move the stored position back
        consulted = max(attribute.last_consulted_eid, pending.earliest_eid - 1)
        events = []
        for event in attribute.events:
            identifier = event.record.software_identifier
            if not pending.earliest_eid <= event.eid <= consulted:
                log.debug("ignoring event {eid} outside the requested range", eid=event.eid)
            elif _valid_text(identifier, IDENTIFIER_LENGTH):
                events.append((event.eid, int(event.action), identifier))
            else:
                log.warn("IMV {imv_id} skips an event with an unusable software identifier",
                         imv_id=connection.imv_id,
                         log_limit=("unusable software identifier", peer_address(connection)))
        applied = await self._db(connection, state, apply_events, stored.device_pk,
                                 attribute.eid_epoch, consulted, events,
                                 session_id=state.session_id, max_tags=self._tags_wanted(state),
                                 tag_retry=self.tag_retry)
        if applied is None:
            return
        state.device = DeviceSwimaState(stored.device_pk, attribute.eid_epoch, consulted)
        state.inventory_received = True
        state.events += len(events)
        state.lacking_tags = list(applied.lacking_tags)
        log.info("IMV {imv_id} applied {n} SW ID event(s): {c} created, {d} deleted, {a} altered; last "
                 "eid now {eid}", imv_id=connection.imv_id, n=len(events), c=applied.created,
                 d=applied.deleted, a=applied.altered, eid=consulted)
        if pending.earliest_eid <= consulted < attribute.last_eid:
            # a partial list (§5.9): continue where the collector stopped
            log.info("IMV {imv_id}: events up to eid {consulted} of {last} reported, asking for the rest",
                     imv_id=connection.imv_id, consulted=consulted, last=attribute.last_eid)
            state.next = _Request(RequestKind.EVENTS, earliest_eid=consulted + 1)
        if with_tags:
            records = [e.record for e in attribute.events if e.action != SwimaEventAction.DELETION]
            tags = self._tags(connection, records, None)
            if tags:
                await self._store_tags(connection, state, tags)

    def _fall_back(self, state: SwimaConnectionState) -> None:
        state.pending = None
        state.next = _Request(RequestKind.INVENTORY)

    def _identifiers(self, connection, records: Sequence[SwimaRecord]) -> list[str]:
        out = []
        skipped = 0
        for record in records:
            if _valid_text(record.software_identifier, IDENTIFIER_LENGTH):
                out.append(record.software_identifier)
            else:
                skipped += 1
        if skipped:
            log.warn("IMV {imv_id} skipped {n} unusable software identifier(s)",
                     imv_id=connection.imv_id, n=skipped)
        return out

    def _tags(self, connection, records: Sequence[SwimaRecord], pending: _Request | None
              ) -> list[tuple[str, bytes, SwidTagFormat]]:
        """The records that may carry a wanted SWID tag: (identifier, XML, data model)."""
        wanted = set(pending.targets) if pending is not None and pending.kind is RequestKind.TAGS else None
        out = []
        for record in records:
            identifier = record.software_identifier
            if wanted is not None and identifier not in wanted:
                log.warn("IMV {imv_id}: SWID tag for '{id}' was not requested", imv_id=connection.imv_id,
                         id=identifier[:200], log_limit=("SWID tag not requested", peer_address(connection)))
                continue
            model = _SWID_DATA_MODELS.get((record.data_model_pen, record.data_model_type))
            if model is None:
                log.info("IMV {imv_id}: only ISO/IEC 19770-2 SWID tags are supported, not data model "
                         "0x{pen:06x}/{type}", imv_id=connection.imv_id, pen=record.data_model_pen,
                         type=record.data_model_type,
                         log_limit=("unsupported SWID data model", peer_address(connection)))
            elif record.record and _valid_text(identifier, IDENTIFIER_LENGTH):
                out.append((identifier, record.record, model))
        return out

    async def _store_tags(self, connection, state: SwimaConnectionState,
                          records: list[tuple[str, bytes, SwidTagFormat]]) -> None:
        if not records:
            return
        stored = await self._db(connection, state, store_swid_tags, records,
                                max_tag_size=self.max_tag_size, session_id=state.session_id)
        if stored is None:
            if connection.store is None:
                state.tags_received += len(records)
            return
        for identifier, why in stored.refused[:10]:
            log.warn("IMV {imv_id}: invalid SWID tag for '{id}': {why}", imv_id=connection.imv_id,
                     id=identifier[:200], why=why)
        state.tags_received += stored.stored + stored.updated
        log.info("IMV {imv_id} stored {n} new and {u} updated SWID tag(s), refused {r}",
                 imv_id=connection.imv_id, n=stored.stored, u=stored.updated, r=len(stored.refused))
        received = {identifier for identifier, _, _ in records}
        state.lacking_tags = [t for t in state.lacking_tags if t not in received]

    async def _tags_unavailable(self, connection, state: SwimaConnectionState, identifiers) -> None:
        if not identifiers or state.device is None:
            return
        marked = await self._db(connection, state, mark_tags_unavailable, state.device.device_pk, identifiers)
        if marked:
            log.info("IMV {imv_id}: the endpoint has no SWID tag for {n} software identifier(s); not asking "
                     "again for {days:g} day(s)", imv_id=connection.imv_id, n=marked,
                     days=self.tag_retry / 86400)

    async def _db(self, connection, state: SwimaConnectionState, fn, *args, **kwargs):
        """``fn`` in the policy store (None without a store or when it fails;
        after one failure the store is not asked again in this assessment,
        whose verdict is check_failed anyway: it waits once at most)."""
        store = connection.store
        if store is None or state.store_failed:
            return None
        try:
            return await store.run(fn, *args, **kwargs)
        except Exception:
            log_store_failure(log, Failure(), "IMV {imv_id}: storing SWIMA data of Connection ID {cid} failed",
                              imv_id=connection.imv_id, cid=connection.connection_id)
            state.failed = "the software inventory could not be stored"
            state.store_failed = True
            return None

    # -- requests ----------------------------------------------------------------------------

    async def _batch_ending(self, connection) -> None:
        state = self._state(connection)
        if state.decided:
            return
        if not state.started:
            state.started = True
            await self._first_request(connection, state)
            return
        pending = state.pending
        if pending is not None and pending.fallback:
            state.next = _Request(RequestKind.INVENTORY)
            state.pending = None
        if state.pending is not None or state.segmenters:
            return  # still waiting for an answer, or for the collector to take our segments
        request = state.next
        state.next = None
        if request is None and state.inventory_received and not state.failed:
            request = self._tag_request(connection, state)
        if request is not None and state.failed is None:
            if state.requests < MAX_REQUESTS:
                self._issue(connection, state, request)
                return
            log.warn("IMV {imv_id} sent {n} SWIMA Requests on Connection ID {cid}; asking no more",
                     imv_id=connection.imv_id, n=state.requests, cid=connection.connection_id)
        self._decide(connection, state)

    async def _first_request(self, connection, state: SwimaConnectionState) -> None:
        if connection.store is not None:
            await fetch_session_id(connection, state, bounded=True)
            if state.device_id is not None:
                state.device = await self._db(connection, state, device_swima_state, state.device_id,
                                              state.session_id)
                if state.device is None:
                    state.failed = None  # without the stored state a full inventory still helps
        device = state.device
        if (self.use_events and device is not None and device.epoch is not None
                and device.last_eid is not None and device.last_eid < _EID_MAX):
            request = _Request(RequestKind.EVENTS, earliest_eid=device.last_eid + 1)
        else:
            request = _Request(RequestKind.INVENTORY)
        contract = propose_contract(connection, self.max_attribute_size, _MESSAGE_TYPE)
        # the first request goes to any SWIMA collector, as strongSwan's does
        self._issue(connection, state, request, before=[contract], collector_id=ANY_IMC_ID,
                    exclusive=False)

    def _tags_wanted(self, state: SwimaConnectionState) -> int:
        if state.tags_refused:
            return 0
        return max(0, self.max_tags - state.tags_requested)

    def _tag_request(self, connection, state: SwimaConnectionState) -> _Request | None:
        budget = self._tags_wanted(state)
        if not budget or not state.lacking_tags:
            return None
        if state.contract is not None and state.contract.max_segment_size != NO_LIMIT:
            room = min(state.contract.max_attribute_size, MAX_TAG_REQUEST_SIZE)
        else:
            room = connection.max_message_size - MESSAGE_HEADER_SIZE
        budget = min(budget, max(1, TAG_RESPONSE_MESSAGES * connection.max_message_size // TYPICAL_TAG_SIZE))
        size = _SWIMA_REQUEST_FIXED_SIZE
        targets = []
        while state.lacking_tags and len(targets) < budget:
            candidate = state.lacking_tags[0]
            grown = size + 2 + len(candidate.encode())
            if grown > room:
                break
            targets.append(state.lacking_tags.pop(0))
            size = grown
        if not targets:
            return None
        state.tags_requested += len(targets)
        log.info("{n} SWID tag target(s)", n=len(targets))
        return _Request(RequestKind.TAGS, targets=tuple(targets))

    def _issue(self, connection, state: SwimaConnectionState, request: _Request, *,
               before: Sequence[PaAttribute] = (), collector_id: int | None = None,
               exclusive: bool = True) -> None:
        request.request_id = next(state.request_ids)
        state.requests += 1
        state.pending = request
        flags = SwimaRequestFlag(0) if request.kind is RequestKind.TAGS else SwimaRequestFlag.RESULT_TYPE
        attribute = SwimaRequest(request.request_id, request.earliest_eid, request.targets, flags)
        log.info("IMV {imv_id} issues sw request {rid} with earliest eid {eid}",
                 imv_id=connection.imv_id, rid=request.request_id, eid=request.earliest_eid)
        if collector_id is None:
            collector_id = state.imc_id if state.imc_id is not None else ANY_IMC_ID
        exclusive = exclusive and collector_id != ANY_IMC_ID
        self._send(connection, [*before, attribute], collector_id=collector_id, exclusive=exclusive,
                   state=state)

    def _send(self, connection, attributes: Sequence[PaAttribute], *, collector_id: int,
              exclusive: bool, state: SwimaConnectionState | None = None) -> None:
        """One PA-TNC message; an attribute too large for it goes in segments
        when the collector's contract allows (else it is dropped, logged)."""
        contract = state.contract if state is not None else None

        def fit(attribute: PaAttribute, data: bytes, space: int) -> bytes | None:
            if len(data) <= space and (
                    contract is None or not needs_segmentation(len(data), contract.max_segment_size)):
                return data
            segment = self._first_segment(connection, state, data, space)
            if segment is None:
                log.error("IMV {imv_id}: {attr} of {n} bytes does not fit a {limit}-byte PA-TNC "
                          "message and cannot be segmented; dropped", imv_id=connection.imv_id,
                          attr=attribute.full_name, n=len(data), limit=connection.max_message_size)
                if state is not None and isinstance(attribute, SwimaRequest):
                    state.pending = None
                    state.failed = state.failed or "the SWIMA Request could not be sent"
            return segment

        send_attributes(connection, PaVendor.IETF, PaSubtype.SWIMA, attributes, collector_id=collector_id,
                        exclusive=exclusive, fit=fit)

    def _first_segment(self, connection, state: SwimaConnectionState | None, data: bytes,
                       space: int) -> bytes | None:
        contract = state.contract if state is not None else None
        if contract is None or contract.max_segment_size == NO_LIMIT or len(data) > contract.max_attribute_size:
            return None
        base_id = state.next_base_id
        state.next_base_id = (base_id % 0xFFFFFF) + 1
        try:
            segmenter = Segmenter(data, base_attribute_id=base_id, max_segment_size=contract.max_segment_size)
            envelope = segmenter.first_segment(space)
        except ValueError:
            return None
        state.segmenters[base_id] = segmenter
        log.debug("IMV {imv_id} sends a {n}-byte attribute in segments of {seg} bytes (base attribute "
                  "ID {base})", imv_id=connection.imv_id, n=len(data), seg=contract.max_segment_size,
                  base=base_id)
        return envelope.build()

    # -- deciding ------------------------------------------------------------------------------

    def _decide(self, connection, state: SwimaConnectionState) -> None:
        if state.decided:
            return
        state.decided = True
        if state.store_failed:
            # a check nac could not make never allows, whatever no_result says
            rec, ev = self.check_failed, E.ERROR
            result = state.failed or "the software inventory could not be stored"
            connection.set_reason(REASON_CHECK_FAILED["en"])
        elif state.inventory_received and state.failed is None:
            rec, ev = A.ALLOW, E.COMPLIANT
            if state.events or not state.identifiers:
                result = f"received {state.events} SW ID event(s) and {state.tags_received} SWID tag(s)"
            else:
                result = (f"received inventory of {state.identifiers} SW IDs and "
                          f"{state.tags_received} SWID tags")
            if state.lacking_tags and state.tags_requested:
                result += f", {len(state.lacking_tags)} tag(s) still missing"
        else:
            rec = self.no_result
            ev = E.ERROR if state.failed else E.DONT_KNOW
            result = state.failed or "no software inventory received"
            if rec in (A.ISOLATE, A.NO_ACCESS):
                connection.set_reason("No software inventory was received")
        log.info("IMV {imv_id} \"SWIMA\" on Connection ID {cid}: {rec} - {result}",
                 imv_id=connection.imv_id, cid=connection.connection_id, rec=rec.label, result=result)
        if state.imc_id is not None:
            self._send(connection, [AssessmentResult(int(ev))], collector_id=state.imc_id, exclusive=True)
        connection.provide_recommendation(rec, ev)
