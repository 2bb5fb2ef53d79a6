"""What re-evaluation after a policy change reads and writes
(:mod:`nac.reevaluate`, migration 0013).

* :func:`policy_generations`: the counters database triggers move on with
  every change to the package policy (row 1) and the group policy (row 2);
* :func:`claim_reevaluation`: of several nac instances on one database,
  the one that inserts the row for a change does the work;
* :func:`live_devices`: the devices a changed decision can still reach,
  those with an open RADIUS accounting session;
* :func:`last_assessment`: what the newest decided assessment of a device
  kept (its session, each IMV's result, its measurements, the device's
  installed packages);
* :func:`keep_device_packages`: the OS IMV's copy of a device's package
  list, rewritten only when its digest changes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from nac.db.models import (
    ACCT_STOPPED,
    AccountingSession,
    AssessmentSession,
    Device,
    DevicePackages,
    ImvResult,
    Measurement,
    PolicyGeneration,
    Product,
    Reevaluation,
    utcnow,
)

__all__ = [
    "DECIDED",
    "LastAssessment",
    "WATCHED_GENERATIONS",
    "claim_reevaluation",
    "keep_device_packages",
    "last_assessment",
    "live_devices",
    "policy_generations",
]

#: policy_generation rows whose change can change a decision judged from
#: what an endpoint reported: 1 packages (migration 0004), 2 group policy (0009)
WATCHED_GENERATIONS = (1, 2)
#: sessions.access values of a decision
DECIDED = ("allowed", "isolate", "denied")
#: how long the claims of past re-evaluations are kept
CLAIMS_KEPT = datetime.timedelta(days=1)

_A = AccountingSession.__table__
_S = AssessmentSession.__table__
_D = Device.__table__
_P = Product.__table__
_R = ImvResult.__table__
_M = Measurement.__table__
_K = DevicePackages.__table__
_G = PolicyGeneration.__table__
_C = Reevaluation.__table__


def policy_generations(connection) -> tuple[int, ...]:
    """The generations of :data:`WATCHED_GENERATIONS`, in that order (0 for a missing row)."""
    rows = {row[0]: row[1] for row in connection.execute(
        sa.select(_G.c.id, _G.c.generation).where(_G.c.id.in_(WATCHED_GENERATIONS)))}
    return tuple(int(rows.get(row, 0)) for row in WATCHED_GENERATIONS)


def claim_reevaluation(connection, key: str, instance: str | None) -> bool:
    """Whether the re-evaluation ``key`` is this instance's: it inserted its
    row first, or did before (a run it tries again); claims older than a
    day are dropped."""
    now = utcnow()
    connection.execute(sa.delete(_C).where(_C.c.started < now - CLAIMS_KEPT))
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    name = (instance or "")[:64] or None
    inserted = connection.scalar(dialect.insert(_C).values(key=key[:64], instance=name, started=now)
                                 .on_conflict_do_nothing().returning(_C.c.key))
    if inserted is not None:
        return True
    holder = connection.execute(sa.select(_C.c.instance).where(_C.c.key == key[:64])).first()
    return holder is not None and name is not None and holder[0] == name


def live_devices(connection, limit: int) -> tuple[list[int], int]:
    """(the row ids of up to ``limit`` devices with an open accounting
    session, the most recently updated first; how many there are in all)."""
    live = (sa.select(_A.c.device_id, sa.func.max(_A.c.updated).label("updated"))
            .where(_A.c.status != ACCT_STOPPED, _A.c.device_id.is_not(None)).group_by(_A.c.device_id))
    total = connection.scalar(sa.select(sa.func.count()).select_from(live.subquery()))
    rows = connection.execute(live.order_by(sa.desc("updated"), _A.c.device_id).limit(limit))
    return [row[0] for row in rows], int(total or 0)


@dataclass
class LastAssessment:
    """The newest decided assessment of a device and what it kept."""

    session_id: int
    device_pk: int
    device_id: str
    product: str | None
    identity: str | None
    auth_method: str
    transport: str
    peer_address: str
    nas: str | None
    station: str | None
    access: str
    results: list[dict] = field(default_factory=list)
    """Each IMV's result: imv_id, imv_name, recommendation, evaluation,
    reason, reason_language, remediation, forced."""
    measurements: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(IMV name, kind) -> payload"""
    packages: tuple[str, str, list] | None = None
    """(product, digest, [[name, release], ...]) the device reported last, or None"""


def last_assessment(connection, device_pk: int) -> LastAssessment | None:
    """The newest decided assessment of device ``device_pk`` (None: none)."""
    row = connection.execute(
        sa.select(_S.c.id, _D.c.device_id, _P.c.name, _S.c.identity, _S.c.auth_method, _S.c.transport,
                  _S.c.peer_address, _S.c.nas, _S.c.station, _S.c.access)
        .select_from(_S.join(_D, _D.c.id == _S.c.device_id).outerjoin(_P, _P.c.id == _D.c.product_id))
        .where(_S.c.device_id == device_pk, _S.c.access.in_(DECIDED))
        .order_by(_S.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    last = LastAssessment(session_id=row[0], device_pk=device_pk, device_id=row[1], product=row[2],
                          identity=row[3], auth_method=row[4], transport=row[5], peer_address=row[6],
                          nas=row[7], station=row[8], access=row[9])
    last.results = [dict(r._mapping) for r in connection.execute(
        sa.select(_R.c.imv_id, _R.c.imv_name, _R.c.recommendation, _R.c.evaluation, _R.c.reason,
                  _R.c.reason_language, _R.c.remediation, _R.c.forced)
        .where(_R.c.session_id == last.session_id).order_by(_R.c.imv_id))]
    for imv_name, kind, payload in connection.execute(
            sa.select(_M.c.imv_name, _M.c.kind, _M.c.payload).where(_M.c.session_id == last.session_id)
            .order_by(_M.c.id)):
        last.measurements[imv_name, kind] = payload
    kept = connection.execute(sa.select(_K.c.product, _K.c.digest, _K.c.packages)
                              .where(_K.c.device_id == device_pk)).first()
    if kept is not None:
        last.packages = (kept[0], kept[1], kept[2])
    return last


def keep_device_packages(connection, session_id: int, product: str, digest: str,
                         packages: list[tuple[str, str]]) -> bool:
    """Keep ``packages`` (with the ``digest`` naming them) as the installed
    packages of the device of session ``session_id``, unless the same list
    is kept already.  Whether the list was written; False too when
    the session has no device."""
    device_pk = connection.scalar(sa.select(_S.c.device_id).where(_S.c.id == session_id))
    if device_pk is None:
        return False
    kept = connection.execute(sa.select(_K.c.product, _K.c.digest).where(_K.c.device_id == device_pk)).first()
    if kept is not None and tuple(kept) == (product, digest):
        return False  # read, not written: most assessments send the list kept
    values = {"product": product, "digest": digest, "packages": [list(p) for p in packages], "updated": utcnow()}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_K).values(device_id=device_pk, **values)
    connection.execute(statement.on_conflict_do_update(index_elements=[_K.c.device_id], set_=values))
    return True
