"""The HTTP API's reads of the policy database: devices, sessions,
products, packages, users, SWID tags and the audit log, a page at a time,
as JSON-ready values (functions of a Connection, run by the store's pool).

A page costs a few indexed statements whatever the table's size: the rows
of the page, then what they refer to for those rows only, and the count.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from nac.db.manage import timestamp
from nac.db.models import (
    AssessmentSession,
    AuditEntry,
    Device,
    DeviceSoftware,
    Group,
    GroupDevice,
    GroupProduct,
    ImvResult,
    Measurement,
    Package,
    Product,
    SoftwareIdentifier,
    SwidTag,
    User,
    Version,
)
from nac.db.store import NotFound

S = AssessmentSession.__table__.c
D = Device.__table__.c
P = Product.__table__.c
ACCESS_VALUES = ("allowed", "isolate", "denied")


def page(items, total: int, limit: int, offset: int) -> dict:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _count(connection, query) -> int:
    return connection.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar()


def _last_session_ids():
    """Each device's newest session id."""
    return (sa.select(sa.func.max(S.id).label("id"), S.device_id).where(S.device_id.is_not(None))
            .group_by(S.device_id).subquery())


def _session_info(row) -> dict:
    return {"id": row.id, "identity": row.identity, "auth_method": row.auth_method, "transport": row.transport,
            "peer_address": row.peer_address, "peer_port": row.peer_port, "nas": row.nas,
            "device": row.device, "started": timestamp(row.started), "ended": timestamp(row.ended),
            "recommendation": None if row.recommendation is None else _rec_label(row.recommendation),
            "evaluation": None if row.evaluation is None else _eval_label(row.evaluation),
            "access": row.access, "reason": row.reason or ""}


def _rec_label(value) -> str:
    from nac.ifimv import ActionRecommendation
    return ActionRecommendation(value).label


def _eval_label(value) -> str:
    from nac.ifimv import EvaluationResult
    return EvaluationResult(value).label


_SESSION_COLUMNS = (S.id, S.identity, S.auth_method, S.transport, S.peer_address, S.peer_port, S.nas,
                    D.device_id.label("device"), S.started, S.ended, S.recommendation, S.evaluation, S.access,
                    S.reason)


def list_devices(connection, limit: int, offset: int, *, group: str | None = None, product: str | None = None,
                 decision: str | None = None, q: str | None = None) -> dict:
    query = sa.select(D.id).select_from(Device.__table__)
    if group is not None:
        gid = connection.execute(sa.select(Group.id).where(Group.name == group)).scalar()
        if gid is None:
            return page([], 0, limit, offset)
        query = query.where(D.id.in_(sa.select(GroupDevice.device_id).where(GroupDevice.group_id == gid)))
    if product is not None:
        query = query.where(D.product_id.in_(sa.select(P.id).where(P.name == product)))
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(sa.or_(D.device_id.like(pattern, escape="\\"), D.description.like(pattern, escape="\\")))
    if decision is not None:
        last = _last_session_ids()
        query = query.where(D.id.in_(sa.select(last.c.device_id).join(AssessmentSession.__table__, S.id == last.c.id)
                                     .where(S.access == decision)))
    total = _count(connection, query)
    ids = connection.execute(query.order_by(D.id).limit(limit).offset(offset)).scalars().all()
    return page(device_rows(connection, ids), total, limit, offset)


def device_rows(connection, ids: list[int]) -> list[dict]:
    if not ids:
        return []
    rows = connection.execute(sa.select(D.id, D.device_id, D.description, D.trusted, D.first_seen, D.last_seen,
                                        P.name.label("product"))
                              .select_from(Device.__table__.outerjoin(Product.__table__, P.id == D.product_id))
                              .where(D.id.in_(ids)).order_by(D.id)).all()
    groups: dict[int, list[str]] = {}
    for device, name in connection.execute(
            sa.select(GroupDevice.device_id, Group.name).join(Group, Group.id == GroupDevice.group_id)
            .where(GroupDevice.device_id.in_(ids)).order_by(Group.name)):
        groups.setdefault(device, []).append(name)
    last = {}
    newest = (sa.select(sa.func.max(S.id)).where(S.device_id.in_(ids)).group_by(S.device_id))
    for sid, device, access, started, reason in connection.execute(
            sa.select(S.id, S.device_id, S.access, S.started, S.reason).where(S.id.in_(newest))):
        last[device] = {"session": sid, "access": access, "time": timestamp(started), "reason": reason or ""}
    return [{"id": r.id, "device_id": r.device_id, "description": r.description or "", "trusted": bool(r.trusted),
             "product": r.product, "first_seen": timestamp(r.first_seen), "last_seen": timestamp(r.last_seen),
             "groups": groups.get(r.id, []), "last_decision": last.get(r.id)} for r in rows]


def device_detail(connection, pk: int, history: int = 20) -> dict:
    found = device_rows(connection, [pk])
    if not found:
        raise NotFound(f"no device {pk}")
    device = found[0]
    rows = connection.execute(sa.select(*_SESSION_COLUMNS).select_from(
        AssessmentSession.__table__.outerjoin(Device.__table__, D.id == S.device_id))
        .where(S.device_id == pk).order_by(S.id.desc()).limit(history)).all()
    device["history"] = [_session_info(r) for r in rows]
    device["inventory"] = connection.execute(sa.select(sa.func.count()).select_from(DeviceSoftware).where(
        DeviceSoftware.device_id == pk, DeviceSoftware.installed.is_(True))).scalar()
    return device


def list_sessions(connection, limit: int, offset: int, *, device: str | None = None, identity: str | None = None,
                  access: str | None = None, since: datetime.datetime | None = None,
                  until: datetime.datetime | None = None) -> dict:
    query = sa.select(*_SESSION_COLUMNS).select_from(
        AssessmentSession.__table__.outerjoin(Device.__table__, D.id == S.device_id))
    if device is not None:
        query = query.where(D.device_id == device)
    if identity is not None:
        query = query.where(S.identity == identity)
    if access is not None:
        query = query.where(S.access == access)
    if since is not None:
        query = query.where(S.started >= since)
    if until is not None:
        query = query.where(S.started < until)
    total = _count(connection, query)
    rows = connection.execute(query.order_by(S.id.desc()).limit(limit).offset(offset)).all()
    return page([_session_info(r) for r in rows], total, limit, offset)


def session_detail(connection, session_id: int) -> dict:
    row = connection.execute(sa.select(*_SESSION_COLUMNS).select_from(
        AssessmentSession.__table__.outerjoin(Device.__table__, D.id == S.device_id))
        .where(S.id == session_id)).first()
    if row is None:
        raise NotFound(f"no session {session_id}")
    info = _session_info(row)
    r = ImvResult.__table__.c
    info["results"] = [{"imv_id": x.imv_id, "imv": x.imv_name, "recommendation": _rec_label(x.recommendation),
                        "evaluation": _eval_label(x.evaluation), "reason": x.reason or "",
                        "remediation": x.remediation or "", "forced": bool(x.forced)}
                       for x in connection.execute(sa.select(ImvResult.__table__).where(r.session_id == session_id)
                                                   .order_by(r.imv_id))]
    return info


def list_products(connection) -> list[dict]:
    counts = dict(connection.execute(sa.select(D.product_id, sa.func.count()).where(D.product_id.is_not(None))
                                     .group_by(D.product_id)).all())
    defaults: dict[int, list[str]] = {}
    for product, name in connection.execute(sa.select(GroupProduct.product_id, Group.name)
                                            .join(Group, Group.id == GroupProduct.group_id).order_by(Group.name)):
        defaults.setdefault(product, []).append(name)
    return [{"id": pid, "name": name, "devices": counts.get(pid, 0), "default_groups": defaults.get(pid, [])}
            for pid, name in connection.execute(sa.select(P.id, P.name).order_by(P.name))]


def list_packages(connection, limit: int, offset: int, *, product: str | None = None, name: str | None = None,
                  blacklisted: bool | None = None) -> dict:
    v = Version.__table__.c
    query = (sa.select(P.name.label("product"), Package.name.label("package"), v.release, v.security,
                       v.blacklisted, v.time)
             .select_from(Version.__table__.join(Product.__table__, P.id == v.product_id)
                          .join(Package, Package.id == v.package_id)))
    if product is not None:
        query = query.where(P.name == product)
    if name is not None:
        query = query.where(Package.name == name)
    if blacklisted is not None:
        query = query.where(v.blacklisted.is_(blacklisted))
    total = _count(connection, query)
    rows = connection.execute(query.order_by(P.name, Package.name, v.release).limit(limit).offset(offset)).all()
    return page([{"product": r.product, "package": r.package, "release": r.release, "security": bool(r.security),
                  "blacklisted": bool(r.blacklisted), "time": timestamp(r.time)} for r in rows], total, limit, offset)


def list_users(connection) -> list[dict]:
    u = User.__table__.c
    return [{"name": r.name, "enabled": bool(r.enabled), "created": timestamp(r.created), "eap": r.eap}
            for r in connection.execute(sa.select(u.name, u.enabled, u.created, u.eap_secret.is_not(None).label("eap"))
                                        .order_by(u.name))]


def list_swid_tags(connection, limit: int, offset: int, *, software_id: str | None = None) -> dict:
    i = SoftwareIdentifier.__table__.c
    query = sa.select(i.id, i.tag_id, SwidTag.__table__.c.id.label("tag")).select_from(
        SoftwareIdentifier.__table__.outerjoin(SwidTag.__table__, SwidTag.__table__.c.identifier_id == i.id))
    if software_id is not None:
        query = query.where(i.tag_id == software_id)
    total = _count(connection, query)
    rows = connection.execute(query.order_by(i.id).limit(limit).offset(offset)).all()
    return page([{"id": r.id, "software_id": r.tag_id, "has_tag": r.tag is not None} for r in rows],
                total, limit, offset)


def list_audit(connection, limit: int, offset: int) -> dict:
    a = AuditEntry.__table__.c
    query = sa.select(AuditEntry.__table__)
    total = _count(connection, query)
    rows = connection.execute(query.order_by(a.id.desc()).limit(limit).offset(offset)).all()
    return page([{"id": r.id, "time": timestamp(r.time), "actor": r.actor, "action": r.action,
                  "resource": r.resource, "target": r.target, "details": r.details, "peer": r.peer} for r in rows],
                total, limit, offset)


# -- the web console's summaries ------------------------------------------------------------------------


def overview(connection, now: datetime.datetime, top: int = 8) -> dict:
    """What the console's first page shows: decisions per hour over the
    last day, totals of the last hour and day, devices whose newest
    decision is isolate or denied, the commonest reasons and transports of
    the last day, and the nac processes that assessed in the last hour."""
    day, hour = now - datetime.timedelta(days=1), now - datetime.timedelta(hours=1)
    hours = [{"start": day + datetime.timedelta(hours=n), "allowed": 0, "isolate": 0, "denied": 0, "other": 0}
             for n in range(24)]
    totals = {"hour": dict.fromkeys(ACCESS_VALUES + ("other",), 0), "day": dict.fromkeys(ACCESS_VALUES + ("other",), 0)}
    # counted by the database, an hour a bucket (the last one is the last hour)
    slot = sa.case(*[(S.started < day + datetime.timedelta(hours=n + 1), n) for n in range(23)], else_=23)
    for n, access, count in connection.execute(sa.select(slot, S.access, sa.func.count()).where(S.started >= day)
                                               .group_by(slot, S.access)):
        kind = access if access in ACCESS_VALUES else "other"
        hours[n][kind] += count
        totals["day"][kind] += count
        if n == 23:
            totals["hour"][kind] += count
    last = _last_session_ids()
    restricted = connection.execute(
        sa.select(D.id, D.device_id, S.access, S.started, S.reason)
        .select_from(last.join(AssessmentSession.__table__, S.id == last.c.id)
                     .join(Device.__table__, D.id == last.c.device_id))
        .where(S.access.in_(("isolate", "denied"))).order_by(S.started.desc()).limit(50)).all()
    r = ImvResult.__table__.c
    reasons = connection.execute(
        sa.select(r.imv_name, r.reason, sa.func.count().label("n"))
        .select_from(ImvResult.__table__.join(AssessmentSession.__table__, S.id == r.session_id))
        .where(S.started >= day, r.reason != "").group_by(r.imv_name, r.reason)
        .order_by(sa.func.count().desc(), r.reason).limit(top)).all()
    transports = connection.execute(sa.select(S.transport, sa.func.count()).where(S.started >= day)
                                    .group_by(S.transport).order_by(S.transport)).all()
    processes = connection.execute(
        sa.select(S.instance, S.process, sa.func.count(), sa.func.max(S.started)).where(S.started >= hour)
        .group_by(S.instance, S.process).order_by(S.instance, S.process)).all()
    return {
        "hours": hours, "totals": totals,
        "restricted": [{"id": x.id, "device_id": x.device_id, "access": x.access, "time": x.started,
                        "reason": x.reason or ""} for x in restricted],
        "reasons": [{"imv": x.imv_name, "reason": x.reason, "count": x.n} for x in reasons],
        "transports": [{"transport": t, "count": n} for t, n in transports],
        "processes": [{"instance": i or "", "process": p, "sessions": n, "last": t} for i, p, n, t in processes],
    }


def device_inventory(connection, pk: int, limit: int = 200) -> dict:
    """A device's installed software (SWIMA): software identifiers with the
    package and release they name, whether a SWID tag is stored."""
    ds = DeviceSoftware.__table__.c
    i = SoftwareIdentifier.__table__.c
    v = Version.__table__.c
    query = (sa.select(i.tag_id, Package.name.label("package"), v.release, v.blacklisted, v.security,
                       SwidTag.__table__.c.id.label("tag"), ds.first_seen)
             .select_from(DeviceSoftware.__table__.join(SoftwareIdentifier.__table__, i.id == ds.identifier_id)
                          .outerjoin(Version.__table__, v.id == i.version_id)
                          .outerjoin(Package, Package.id == v.package_id)
                          .outerjoin(SwidTag.__table__, SwidTag.__table__.c.identifier_id == i.id))
             .where(ds.device_id == pk, ds.installed.is_(True)))
    total = _count(connection, query)
    rows = connection.execute(query.order_by(i.tag_id).limit(limit)).all()
    return {"total": total, "items": [{"software_id": x.tag_id, "package": x.package, "release": x.release,
                                       "blacklisted": bool(x.blacklisted), "security": bool(x.security),
                                       "has_tag": x.tag is not None, "first_seen": x.first_seen} for x in rows]}


def device_pk(connection, device_id: str) -> int | None:
    return connection.execute(sa.select(D.id).where(D.device_id == device_id)).scalar()


def group_names(connection) -> list[str]:
    return list(connection.execute(sa.select(Group.name).order_by(Group.name)).scalars())


def product_names(connection) -> list[str]:
    return list(connection.execute(sa.select(P.name).order_by(P.name)).scalars())


def open_ports(connection, pk: int) -> dict | None:
    """The open ports the Scanner IMV saw at the device's newest assessment
    that measured them: ``{"session", "time", "open": [{"protocol", "port"}],
    "violations": ["tcp/22"]}``, None if it never did."""
    m = Measurement.__table__.c
    row = connection.execute(
        sa.select(m.session_id, m.created, m.payload)
        .select_from(Measurement.__table__.join(AssessmentSession.__table__, S.id == m.session_id))
        .where(S.device_id == pk, m.kind == "open-ports").order_by(m.id.desc()).limit(1)).first()
    if row is None or not isinstance(row.payload, dict):
        return None
    ports = [p for p in row.payload.get("open", []) if isinstance(p, dict)]
    violations = [str(v) for v in row.payload.get("violations", [])]
    return {"session": row.session_id, "time": row.created, "open": ports, "violations": violations}


def list_accounting(connection, limit: int, offset: int, *, nas: str | None = None, station: str | None = None,
                    device: str | None = None, open_only: bool = False) -> dict:
    """RADIUS accounting sessions (RFC 2866), most recently updated first."""
    from nac.db.accounting import list_accounting as rows_of
    rows, total = rows_of(connection, limit, offset, nas=nas, station=station, device=device, open_only=open_only)
    items = []
    for row in rows:
        item = row.as_dict()
        for key in ("started", "stopped", "updated", "coa_time"):
            item[key] = timestamp(item[key])
        items.append(item)
    return page(items, total, limit, offset)
