"""strongSwan's sw-collector against nac: the three endpoints of strongTNC's
REST API it posts to, with strongTNC's JSON shapes and status codes (read in
strongTNC's ``apps/swid/api_views.py`` for facts; written anew):

* ``POST /api/swid/add-tags/`` ``{"data": [SWID tag XML, ...]}``: store the
  tags; 200 ``{"detail": "Added N SWID tags, replaced M SWID tags."}``,
  400 ``{"detail": "Invalid XML"}`` (or the reason) for a bad tag;
* ``POST /api/sessions/<id>/swid-measurement/`` ``{"data": [software ids]}``:
  412 with the JSON list of the software ids whose tag nac lacks, else the
  ids become the session's device's inventory and 200 ``[]``; 404
  ``{"detail": "Session with id \\"<id>\\" not found"}``;
* ``POST /api/sessions/<id>/swid-events/`` ``{"epoch", "lastEid", "events":
  [{"eid", "timestamp", "recordId", "sourceId", "action", "softwareId"}]}``:
  412 with the unknown software ids, else each event applied to the
  device's inventory (action 1 installs, 2 removes) and 200 ``[]``.

A missing, empty or non-list ``data`` (or a body that is not JSON) is 400
with strongTNC's messages.
Functions of an ORM session (one transaction each), returning (status,
JSON value).
"""

from __future__ import annotations

import sqlalchemy as sa

from nac.db.models import (
    AssessmentSession,
    DeviceSoftware,
    IDENTIFIER_LENGTH,
    SoftwareIdentifier,
    SwidTag,
    SwimaState,
    utcnow,
)
from nac.swid import SwidTagError, parse_swid_tag

CREATION, DELETION = 1, 2


def _data(body, what: str):
    items = body.get("data") if isinstance(body, dict) else None
    if items is None:
        return None, (400, {"detail": 'Missing "data" parameter'})
    if not items:
        return None, (400, {"detail": f"No {what} submitted"})
    if not isinstance(items, list):
        return None, (400, {"detail": 'The submitted "data" parameter does not contain a list'})
    return items, None


def add_tags(session, body) -> tuple[int, object]:
    tags, error = _data(body, "SWID tags")
    if error:
        return error
    added = replaced = 0
    for xml in tags:
        if not isinstance(xml, str):
            return 400, {"detail": "Invalid XML"}
        try:
            tag = parse_swid_tag(xml)
        except SwidTagError as exc:
            return 400, {"detail": "Invalid XML" if "well-formed" in str(exc) else str(exc)}
        software_id = tag.software_identifier
        if len(software_id) > IDENTIFIER_LENGTH:
            return 400, {"detail": "software id too long"}
        identifier = session.scalar(sa.select(SoftwareIdentifier).where(SoftwareIdentifier.tag_id == software_id))
        if identifier is None:
            identifier = SoftwareIdentifier(tag_id=software_id)
            session.add(identifier)
            session.flush()
        if identifier.tag is None:
            identifier.tag = SwidTag(xml=xml, updated=utcnow())
            added += 1
        else:
            identifier.tag.xml, identifier.tag.updated = xml, utcnow()
            replaced += 1
    session.flush()
    return 200, {"detail": f"Added {added} SWID tags, replaced {replaced} SWID tags."}


def _known(session, software_ids: list[str]) -> dict[str, int]:
    known: dict[str, int] = {}
    wanted = [s for s in dict.fromkeys(software_ids) if isinstance(s, str)]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        known.update(session.execute(
            sa.select(SoftwareIdentifier.tag_id, SoftwareIdentifier.id)
            .join(SwidTag, SwidTag.identifier_id == SoftwareIdentifier.id)
            .where(SoftwareIdentifier.tag_id.in_(chunk))).all())
    return known


def _session_device(session, session_id: str):
    """(True, device pk or None) for an existing session, else (False, None)."""
    if not (session_id.isascii() and session_id.isdigit()) or len(session_id) > 18:
        return False, None
    row = session.execute(sa.select(AssessmentSession.device_id).where(
        AssessmentSession.id == int(session_id))).first()
    return (row is not None), (row[0] if row is not None else None)


def _not_found(session_id: str):
    return 404, {"detail": f'Session with id "{session_id}" not found'}


def _inventory(session, device_pk: int, identifier_pk: int, installed: bool) -> None:
    row = session.get(DeviceSoftware, (device_pk, identifier_pk))
    now = utcnow()
    if row is None:
        session.add(DeviceSoftware(device_id=device_pk, identifier_id=identifier_pk, installed=installed,
                                   first_seen=now, last_seen=now))
    else:
        row.installed, row.last_seen = installed, now


def swid_measurement(session, session_id: str, body) -> tuple[int, object]:
    software_ids, error = _data(body, "software IDs")
    if error:
        return error
    if not all(isinstance(s, str) for s in software_ids):
        return 400, {"detail": "A software ID is not a string"}
    known = _known(session, software_ids)
    missing = [s for s in dict.fromkeys(software_ids) if s not in known]
    if missing:
        return 412, missing
    exists, device = _session_device(session, session_id)
    if not exists:
        return _not_found(session_id)
    if device is not None:
        for pk in dict.fromkeys(known.values()):
            _inventory(session, device, pk, True)
    session.flush()
    return 200, []


def swid_events(session, session_id: str, body) -> tuple[int, object]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return 400, {"detail": 'Missing "events" parameter'}
    events = body["events"]
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("softwareId"), str) \
                or event.get("action") not in (CREATION, DELETION):
            return 400, {"detail": "Invalid event"}
    known = _known(session, [e["softwareId"] for e in events])
    missing = [s for s in dict.fromkeys(e["softwareId"] for e in events) if s not in known]
    if missing:
        return 412, missing
    exists, device = _session_device(session, session_id)
    if not exists:
        return _not_found(session_id)
    if device is not None:
        for event in events:
            _inventory(session, device, known[event["softwareId"]], event["action"] == CREATION)
        epoch, last = body.get("epoch"), body.get("lastEid")
        if isinstance(epoch, int) and isinstance(last, int) and 0 <= epoch < 1 << 32 and 0 <= last < 1 << 32:
            state = session.get(SwimaState, device)
            if state is None:
                session.add(SwimaState(device_id=device, epoch=epoch, last_eid=last, updated=utcnow()))
            else:
                state.epoch, state.last_eid, state.updated = epoch, last, utcnow()
    session.flush()
    return 200, []
