"""The RADIUS accounting part of the policy database (RFC 2866, RFC 5176).

One :class:`~nac.db.models.AccountingSession` row per session a NAS
accounts for, keyed by the NAS and its Acct-Session-Id; Start, Interim-Update
and Stop update it, Accounting-On / Accounting-Off close every open session
of the NAS (it restarted).  The row links the device assessed on the same
NAS for the same Calling-Station-Id (else User-Name).  The outcome of the
last CoA-Request or Disconnect-Request for it is kept beside.

:func:`record_accounting` and :func:`record_coa` take a Connection, so the
server commits them through its write queue (an Accounting-Response is sent
only once that commit is done); the readers take a Connection too.  Nothing
here knows RADIUS packets: :class:`AccountingRecord` is what the RADIUS
transport read from one.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from enum import IntEnum

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from nac.db.models import (
    ACCT_STARTED,
    ACCT_STOPPED,
    ACCT_UPDATED,
    AccountingSession,
    AssessmentSession,
    Device,
    utcnow,
)
from nac.db.store import NotFound, _Hot

__all__ = [
    "AccountingInfo",
    "AccountingRecord",
    "AcctStatusType",
    "TERMINATE_CAUSES",
    "close_session",
    "coa_targets",
    "decision_change",
    "list_accounting",
    "record_accounting",
    "record_coa",
]

_T = AccountingSession.__table__
_S = AssessmentSession.__table__
_D = Device.__table__


class AcctStatusType(IntEnum):
    """Acct-Status-Type values (RFC 2866 §5.1, RFC 2866 §4 for On/Off)."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


#: Acct-Terminate-Cause names (RFC 2866 §5.10, RFC 3580 §3.23)
TERMINATE_CAUSES = {
    1: "User-Request", 2: "Lost-Carrier", 3: "Lost-Service", 4: "Idle-Timeout", 5: "Session-Timeout",
    6: "Admin-Reset", 7: "Admin-Reboot", 8: "Port-Error", 9: "NAS-Error", 10: "NAS-Request",
    11: "NAS-Reboot", 12: "Port-Unneeded", 13: "Port-Preempted", 14: "Port-Suspended",
    15: "Service-Unavailable", 16: "Callback", 17: "User-Error", 18: "Host-Request",
    19: "Supplicant-Restart", 20: "Reauthentication-Failure", 21: "Port-Reinitialized",
    22: "Port-Administratively-Disabled",
}
NAS_REBOOT = 11


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """What one Accounting-Request says; text already escaped for display."""

    nas: str
    """the NAS's short name, else the address it sent from"""
    nas_address: str
    named: bool
    """whether ``nas`` is a [radius-client:NAME] (assessments name the NAS so)"""
    status_type: int
    acct_session_id: str | None = None
    nas_port: int | None = None
    nas_port_id: str | None = None
    calling_station_id: str | None = None
    called_station_id: str | None = None
    user_name: str | None = None
    framed_ip_address: str | None = None
    nas_ip_address: str | None = None
    """NAS-IP-Address or NAS-IPv6-Address, as the NAS reported it"""
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    terminate_cause: int | None = None
    delay: int = 0
    """Acct-Delay-Time: how long the NAS held the request before sending it"""


@dataclass(frozen=True, slots=True)
class AccountingInfo:
    id: int
    nas: str
    nas_address: str
    acct_session_id: str
    status: str
    user_name: str | None
    calling_station_id: str | None
    called_station_id: str | None
    nas_port: int | None
    nas_port_id: str | None
    framed_ip_address: str | None
    nas_ip_address: str | None
    device: str | None
    assessment_id: int | None
    started: datetime.datetime | None
    stopped: datetime.datetime | None
    updated: datetime.datetime
    session_time: int | None
    input_octets: int
    output_octets: int
    terminate_cause: str | None
    coa_action: str | None
    coa_result: str | None
    coa_time: datetime.datetime | None

    def as_dict(self) -> dict:
        return asdict(self)


_B = sa.bindparam
# constants in the SQL text itself: the statements below run with only their bound parameters
_STOPPED = sa.literal_column(f"'{ACCT_STOPPED}'")
_NAS_SESSIONS = {
    # the newest RADIUS assessment of the endpoint through this NAS (named, or by address)
    (named, column): _Hot(sa.select(_S.c.id, _S.c.device_id).where(
        (_S.c.nas == _B("b_nas")) if named else sa.and_(_S.c.nas.is_(None), _S.c.peer_address == _B("b_nas")),
        _S.c[column] == _B("b_value"), _S.c.transport == sa.literal_column("'radius'"))
        .order_by(_S.c.id.desc()).limit(_B("b_limit")).offset(_B("b_offset")))
    for named in (True, False) for column in ("station", "identity")}
_ROW = _Hot(sa.select(_T.c.id, _T.c.status).where(_T.c.nas == _B("b_nas"),
                                                   _T.c.acct_session_id == _B("b_sid")))
_INSERT_KEYS = ("nas", "nas_address", "acct_session_id", "status", "updated", "input_octets", "output_octets",
                "assessment_id", "device_id")
_INSERTS = {name: _Hot(dialect.insert(_T).on_conflict_do_nothing(), _INSERT_KEYS)
            for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))}
_KEPT = ("nas_port", "nas_port_id", "calling_station_id", "called_station_id", "user_name", "framed_ip_address",
         "nas_ip_address",
         "session_time", "input_octets", "output_octets", "terminate_cause")
# one statement for Start, Interim-Update and Stop: a value not sent keeps
# the one before; a stopped session stays stopped; the start time is the
# first one known
_UPDATE = _Hot(sa.update(_T).where(_T.c.id == _B("b_id")).values(
    updated=_B("b_now"), nas_address=_B("b_address"),
    status=sa.case((sa.and_(_T.c.status == _STOPPED, _B("b_status", type_=sa.String) != _STOPPED),
                    _T.c.status), else_=_B("b_status", type_=sa.String)),
    started=sa.func.coalesce(_T.c.started, _B("b_started", type_=_T.c.started.type)),
    stopped=sa.func.coalesce(_B("b_stopped", type_=_T.c.stopped.type), _T.c.stopped),
    **{name: sa.func.coalesce(_B(f"b_{name}", type_=_T.c[name].type), _T.c[name]) for name in _KEPT}))
_CLOSE_NAS = _Hot(sa.update(_T).where(_T.c.nas == _B("b_nas"), _T.c.status != _STOPPED).values(
    status=_STOPPED, stopped=_B("b_event", type_=_T.c.stopped.type), updated=_B("b_now", type_=_T.c.updated.type),
    terminate_cause=sa.func.coalesce(_T.c.terminate_cause, sa.literal_column(str(NAS_REBOOT)))))
_STATUS_OF = {AcctStatusType.START: ACCT_STARTED, AcctStatusType.INTERIM_UPDATE: ACCT_UPDATED,
              AcctStatusType.STOP: ACCT_STOPPED}


def _assessment(connection, rec: AccountingRecord) -> tuple[int, int | None] | None:
    """(assessment id, device row id) of the newest assessment of the
    endpoint through this NAS: by Calling-Station-Id, else User-Name."""
    nas = rec.nas if rec.named else rec.nas_address
    for column, value in (("station", rec.calling_station_id), ("identity", rec.user_name)):
        if value:
            row = _NAS_SESSIONS[rec.named, column].first(connection, {"b_nas": nas, "b_value": value,
                                                                  "b_limit": 1, "b_offset": 0})
            if row is not None:
                return row[0], row[1]
    return None


def record_accounting(connection, rec: AccountingRecord) -> int:
    """Keep what ``rec`` says; the row id (Start / Interim-Update / Stop),
    or the number of sessions Accounting-On / -Off closed."""
    now = utcnow()
    event = now - datetime.timedelta(seconds=max(0, rec.delay)) if rec.delay else now
    status_type = rec.status_type
    if status_type in (AcctStatusType.ACCOUNTING_ON, AcctStatusType.ACCOUNTING_OFF):
        # RFC 2866 §5.1: the NAS (re)started or stops accounting: whatever
        # it had open is over
        return _CLOSE_NAS.rowcount(connection, {"b_nas": rec.nas, "b_event": event, "b_now": now})
    key = {"b_nas": rec.nas, "b_sid": rec.acct_session_id}
    row = _ROW.first(connection, key)
    if row is None:
        linked = _assessment(connection, rec)
        _INSERTS[connection.dialect.name].rowcount(connection, {
            "nas": rec.nas, "nas_address": rec.nas_address, "acct_session_id": rec.acct_session_id,
            "status": ACCT_STARTED, "updated": now, "input_octets": 0, "output_octets": 0,
            "assessment_id": linked[0] if linked else None, "device_id": linked[1] if linked else None})
        row = _ROW.first(connection, key)
    started = None
    if status_type == AcctStatusType.START:
        started = event
    elif rec.session_time is not None:
        # a session seen first by a later request started this long before it
        started = event - datetime.timedelta(seconds=rec.session_time)
    params = {"b_id": row[0], "b_now": now, "b_address": rec.nas_address, "b_status": _STATUS_OF[status_type],
              "b_started": started, "b_stopped": event if status_type == AcctStatusType.STOP else None}
    for name in _KEPT:
        params[f"b_{name}"] = getattr(rec, name)
    if status_type != AcctStatusType.STOP:
        params["b_terminate_cause"] = None
    _UPDATE.rowcount(connection, params)
    return row[0]


def record_coa(connection, row_id: int, action: str, result: str) -> None:
    """The outcome of the CoA-Request / Disconnect-Request (``action``) sent
    for accounting session ``row_id``."""
    if connection.execute(sa.update(_T).where(_T.c.id == row_id).values(
            coa_action=action[:16], coa_result=result, coa_time=utcnow())).rowcount == 0:
        raise NotFound(f"no accounting session {row_id}")


_COLUMNS = (_T.c.id, _T.c.nas, _T.c.nas_address, _T.c.acct_session_id, _T.c.status, _T.c.user_name,
            _T.c.calling_station_id, _T.c.called_station_id, _T.c.nas_port, _T.c.nas_port_id,
            _T.c.framed_ip_address, _T.c.nas_ip_address, _D.c.device_id.label("device"), _T.c.assessment_id, _T.c.started,
            _T.c.stopped, _T.c.updated, _T.c.session_time, _T.c.input_octets, _T.c.output_octets,
            _T.c.terminate_cause, _T.c.coa_action, _T.c.coa_result, _T.c.coa_time)


def _info(row) -> AccountingInfo:
    values = row._asdict()
    cause = values["terminate_cause"]
    values["terminate_cause"] = None if cause is None else TERMINATE_CAUSES.get(cause, str(cause))
    return AccountingInfo(**values)


def _query(*, nas: str | None = None, station: str | None = None, device: str | None = None,
           open_only: bool = False):
    query = sa.select(*_COLUMNS).select_from(_T.outerjoin(_D, _D.c.id == _T.c.device_id))
    if nas is not None:
        query = query.where(_T.c.nas == nas)
    if station is not None:
        query = query.where(_T.c.calling_station_id == station)
    if device is not None:
        query = query.where(_D.c.device_id == device)
    if open_only:
        query = query.where(_T.c.status != ACCT_STOPPED)
    return query


def list_accounting(connection, limit: int = 20, offset: int = 0, **where) -> tuple[list[AccountingInfo], int]:
    """The accounting sessions, most recently updated first, and how many
    match in all (``where``: ``nas``, ``station``, ``device``, ``open_only``)."""
    query = _query(**where)
    total = connection.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = connection.execute(query.order_by(_T.c.updated.desc(), _T.c.id.desc()).limit(limit).offset(offset))
    return [_info(row) for row in rows], total


def coa_targets(connection, *, row_id: int | None = None, device_pk: int | None = None,
                station: str | None = None, nas: str | None = None) -> list[AccountingInfo]:
    """The open accounting sessions a CoA or Disconnect goes to: one by id,
    or those of a device (row id), or of a Calling-Station-Id (on ``nas``)."""
    if row_id is not None:
        query = _query().where(_T.c.id == row_id)
    else:
        query = _query(nas=nas, station=station, open_only=True)
        if device_pk is not None:
            query = query.where(_T.c.device_id == device_pk)
        elif station is None:
            return []
    return [_info(row) for row in connection.execute(query.order_by(_T.c.id))]


_DECIDED = ("allowed", "isolate", "denied")


def decision_change(connection, session_id: int) -> tuple[str | None, str | None, list[AccountingInfo]]:
    """(the previous decision of the endpoint of assessment ``session_id``,
    its decision now, the open accounting sessions a change is to be told
    to).  The endpoint is the device assessed (its earlier assessments,
    its accounting sessions), else, for RADIUS, the NAS and
    Calling-Station-Id.  The NAS session of a RADIUS assessment itself is
    left out: its Access-Accept carried the decision."""
    row = connection.execute(sa.select(_S.c.id, _S.c.device_id, _S.c.transport, _S.c.nas, _S.c.peer_address,
                                       _S.c.station, _S.c.access).where(_S.c.id == session_id)).first()
    if row is None:
        return None, None, []
    nas = row.nas or row.peer_address
    radius = row.transport == "radius"
    earlier = sa.select(_S.c.access).where(_S.c.id < session_id, _S.c.access.in_(_DECIDED))
    if row.device_id is not None:
        earlier = earlier.where(_S.c.device_id == row.device_id)
        query = _query(open_only=True).where(_T.c.device_id == row.device_id)
    elif radius and row.station:
        earlier = earlier.where(_S.c.transport == "radius", _S.c.station == row.station,
                                _S.c.nas == row.nas if row.nas else _S.c.peer_address == row.peer_address)
        query = _query(nas=nas, station=row.station, open_only=True)
    else:
        return None, row.access, []
    previous = connection.scalar(earlier.order_by(_S.c.id.desc()).limit(1))
    targets = [_info(r) for r in connection.execute(query.order_by(_T.c.id))
               if not (radius and r.nas == nas and r.calling_station_id == row.station)]
    return previous, row.access, targets


def close_session(connection, row_id: int, cause: int | None = None) -> None:
    """End accounting session ``row_id``: its NAS no longer has it (a NAK
    with Session-Context-Not-Found, or a Disconnect-ACK)."""
    connection.execute(sa.update(_T).where(_T.c.id == row_id, _T.c.status != ACCT_STOPPED).values(
        status=ACCT_STOPPED, stopped=utcnow(), updated=utcnow(),
        terminate_cause=sa.func.coalesce(_T.c.terminate_cause, cause)))
