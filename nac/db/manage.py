"""Managing the group policy, API tokens and the audit log: the operations
of the HTTP API and ``nac-admin``, as functions of an ORM session in a
transaction (:meth:`nac.db.store.PolicyDb.run`), returning plain JSON-ready
values.

Every value given is checked here, once for every caller: a bad one raises
:class:`FieldError` naming the field.  What the values mean at an
assessment is :mod:`nac.policy`'s business.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa

from nac.db.models import (
    ApiToken,
    AuditEntry,
    ConsoleUser,
    Device,
    Enforcement,
    Group,
    GroupDevice,
    GroupIdentity,
    GroupProduct,
    IDENTIFIER_LENGTH,
    Policy,
    PolicyType,
    Product,
    Setting,
    has_control_characters,
    utcnow,
)
from nac.db.passwords import hash_password
from nac.db.store import AlreadyExists, NotFound, StoreError
from nac.ifimv import ActionRecommendation
from nac.policy import DEFAULT_GROUP_SETTING, network_list, parse_argument

__all__ = [
    "FieldError", "RECOMMENDATION_NAMES", "ROLES", "TOKEN_PREFIX", "add_enforcement", "add_group", "add_policy",
    "CONSOLE_ROLES", "add_console_user", "add_token", "audit", "console_login_row", "delete_console_user",
    "list_console_users", "update_console_user", "check_token", "delete_enforcement", "delete_group", "delete_policy", "enforcement_info",
    "group_info", "list_enforcements", "list_groups", "list_policies", "list_tokens", "policy_info",
    "revoke_token", "set_device", "settings", "token_digest", "update_enforcement", "update_group",
    "update_policy", "update_settings",
]

A = ActionRecommendation

#: recommendation names in the API (strongTNC's "block" is no-access)
RECOMMENDATION_NAMES = {"allow": A.ALLOW, "isolate": A.ISOLATE, "block": A.NO_ACCESS,
                        "none": A.NO_RECOMMENDATION}
_REC_NAME = {rec: name for name, rec in RECOMMENDATION_NAMES.items()}
ROLES = ("read", "collector", "admin")
TOKEN_PREFIX = "nac_"
MAX_AGE_LIMIT = 10 * 365 * 86400


class FieldError(StoreError):
    """A value given for ``field`` is refused; the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


# -- checks of given values ---------------------------------------------------------------------


def _text(field: str, value: Any, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise FieldError(field, "must be a string")
    if not value and not empty:
        raise FieldError(field, "must not be empty")
    if len(value) > limit:
        raise FieldError(field, f"is longer than {limit} characters")
    if has_control_characters(value):
        raise FieldError(field, "must not contain control characters")
    return value


def _optional_text(field: str, value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return None
    return _text(field, value, limit)


def _integer(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "must be a whole number")
    if not low <= value <= high:
        raise FieldError(field, f"must be between {low} and {high}")
    return value


def _recommendation(field: str, value: Any, *, optional: bool = False) -> ActionRecommendation | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in RECOMMENDATION_NAMES:
        raise FieldError(field, f"must be one of {', '.join(RECOMMENDATION_NAMES)}")
    return RECOMMENDATION_NAMES[value]


def _vlan(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(field, value, 64)
    if text.isascii() and text.isdigit() and not 1 <= int(text) <= 4094:
        raise FieldError(field, "a VLAN number is 1-4094")
    return text


def _networks(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise FieldError(field, "must be a list of networks")
        value = ", ".join(value)
    text = _text(field, value, 4096)
    try:
        return ", ".join(str(n) for n in network_list(text))
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None


def _unknown(body: dict, known: set[str]) -> None:
    for key in body:
        if key not in known:
            raise FieldError(key, "is not a field of this resource")


# -- groups -------------------------------------------------------------------------------------

GROUP_VALUES = ("filter_id_allow", "filter_id_isolate", "vlan_allow", "vlan_isolate", "allow_ts", "isolate_ts",
                "session_timeout")
GROUP_FIELDS = {"name", "parent", "description", "products", "identities", *GROUP_VALUES}


def _ts_list(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def group_info(session, group: Group) -> dict:
    g = Group.__table__.c
    parent = session.scalar(sa.select(g.name).where(g.id == group.parent_id)) if group.parent_id else None
    devices = session.scalar(sa.select(sa.func.count()).where(GroupDevice.group_id == group.id))
    products = session.scalars(sa.select(Product.name).join(GroupProduct, GroupProduct.product_id == Product.id)
                               .where(GroupProduct.group_id == group.id).order_by(Product.name)).all()
    identities = session.scalars(sa.select(GroupIdentity.identity).where(GroupIdentity.group_id == group.id)
                                 .order_by(GroupIdentity.identity)).all()
    default = session.scalar(sa.select(Setting.value).where(Setting.name == DEFAULT_GROUP_SETTING))
    return {
        "id": group.id, "name": group.name, "parent": parent, "description": group.description or "",
        "default": default == str(group.id), "devices": devices, "products": list(products),
        "identities": list(identities),
        "filter_id_allow": group.filter_id_allow, "filter_id_isolate": group.filter_id_isolate,
        "vlan_allow": group.vlan_allow, "vlan_isolate": group.vlan_isolate,
        "allow_ts": _ts_list(group.allow_ts), "isolate_ts": _ts_list(group.isolate_ts),
        "session_timeout": group.session_timeout,
    }


def _group_by_name(session, name: str, field: str = "parent") -> Group:
    group = session.scalar(sa.select(Group).where(Group.name == name))
    if group is None:
        raise FieldError(field, f"there is no group {name!r}")
    return group


def _get(session, model, pk, what: str):
    row = session.get(model, pk)
    if row is None:
        raise NotFound(f"no {what} {pk}")
    return row


def _apply_group(session, group: Group, body: dict) -> None:
    _unknown(body, GROUP_FIELDS)
    if "name" in body:
        name = _text("name", body["name"], 50)
        other = session.scalar(sa.select(Group.id).where(Group.name == name))
        if other is not None and other != group.id:
            raise AlreadyExists(f"group {name!r} already exists")
        group.name = name
    if "description" in body:
        group.description = _text("description", body["description"] or "", 4096, empty=True)
    if "parent" in body:
        if body["parent"] is None:
            group.parent_id = None
        else:
            parent = _group_by_name(session, _text("parent", body["parent"], 50))
            # no cycles: the new parent must not be the group or below it
            seen, node = set(), parent
            while node is not None and node.id not in seen:
                if group.id is not None and node.id == group.id:
                    raise FieldError("parent", f"group {parent.name!r} is {group.name!r} or one of its subgroups")
                seen.add(node.id)
                node = session.get(Group, node.parent_id) if node.parent_id else None
            group.parent_id = parent.id
    for key in ("filter_id_allow", "filter_id_isolate"):
        if key in body:
            setattr(group, key, _optional_text(key, body[key], 253))
    for key in ("vlan_allow", "vlan_isolate"):
        if key in body:
            setattr(group, key, _vlan(key, body[key]))
    for key in ("allow_ts", "isolate_ts"):
        if key in body:
            setattr(group, key, _networks(key, body[key]))
    if "session_timeout" in body:
        value = body["session_timeout"]
        group.session_timeout = None if value is None else _integer("session_timeout", value, 0, 2**31 - 1)
    session.flush()
    if "products" in body:
        names = body["products"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FieldError("products", "must be a list of product names")
        ids = []
        for name in names:
            pk = session.scalar(sa.select(Product.id).where(Product.name == name))
            if pk is None:
                raise FieldError("products", f"there is no product {name!r}")
            ids.append(pk)
        session.execute(sa.delete(GroupProduct).where(GroupProduct.group_id == group.id))
        session.add_all(GroupProduct(group_id=group.id, product_id=pk) for pk in dict.fromkeys(ids))
    if "identities" in body:
        names = body["identities"]
        if not isinstance(names, list):
            raise FieldError("identities", "must be a list of identities")
        names = [_text("identities", n, IDENTIFIER_LENGTH) for n in names]
        session.execute(sa.delete(GroupIdentity).where(GroupIdentity.group_id == group.id))
        session.add_all(GroupIdentity(group_id=group.id, identity=n) for n in dict.fromkeys(names))
    session.flush()


def add_group(session, body: dict) -> dict:
    if "name" not in body:
        raise FieldError("name", "is required")
    group = Group(name="")
    try:
        with session.begin_nested():
            _apply_group(session, group, {"name": body["name"]})
            session.add(group)
            session.flush()
    except sa.exc.IntegrityError:
        raise AlreadyExists(f"group {body['name']!r} already exists") from None
    _apply_group(session, group, {k: v for k, v in body.items() if k != "name"})
    return group_info(session, group)


def update_group(session, group_id: int, body: dict) -> dict:
    group = _get(session, Group, group_id, "group")
    _apply_group(session, group, body)
    return group_info(session, group)


def delete_group(session, group_id: int) -> dict:
    group = _get(session, Group, group_id, "group")
    default = session.scalar(sa.select(Setting.value).where(Setting.name == DEFAULT_GROUP_SETTING))
    if default == str(group.id):
        raise FieldError("id", "the default group cannot be deleted (choose another default group first)")
    info = group_info(session, group)
    session.execute(sa.update(Group.__table__).where(Group.__table__.c.parent_id == group.id).values(parent_id=None))
    session.execute(sa.delete(Group.__table__).where(Group.__table__.c.id == group.id))
    return info


def list_groups(session) -> list[dict]:
    return [group_info(session, g) for g in session.scalars(sa.select(Group).order_by(Group.name))]


# -- policies and enforcements --------------------------------------------------------------------

POLICY_FIELDS = {"name", "type", "argument", "rec_fail", "rec_noresult"}


def policy_info(policy: Policy) -> dict:
    return {"id": policy.id, "name": policy.name, "type": policy.type, "argument": policy.argument or "",
            "rec_fail": _REC_NAME[A(policy.rec_fail)], "rec_noresult": _REC_NAME[A(policy.rec_noresult)]}


def _apply_policy(session, policy: Policy, body: dict) -> None:
    _unknown(body, POLICY_FIELDS)
    if "name" in body:
        name = _text("name", body["name"], 100)
        other = session.scalar(sa.select(Policy.id).where(Policy.name == name))
        if other is not None and other != policy.id:
            raise AlreadyExists(f"policy {name!r} already exists")
        policy.name = name
    if "type" in body:
        kind = body["type"]
        if not isinstance(kind, str) or kind not in {t.value for t in PolicyType}:
            raise FieldError("type", f"must be one of {', '.join(t.value for t in PolicyType)}")
        policy.type = kind
    if "argument" in body:
        policy.argument = _text("argument", body["argument"] if body["argument"] is not None else "", 65536,
                                empty=True)
    try:
        parse_argument(policy.type, policy.argument or "")
    except ValueError as exc:
        raise FieldError("argument", f"{exc} (for a {policy.type} policy)") from None
    if "rec_fail" in body:
        policy.rec_fail = _recommendation("rec_fail", body["rec_fail"])
    if "rec_noresult" in body:
        policy.rec_noresult = _recommendation("rec_noresult", body["rec_noresult"])


def add_policy(session, body: dict) -> dict:
    for key in ("name", "type"):
        if key not in body:
            raise FieldError(key, "is required")
    policy = Policy(name="", type=PolicyType.FORWARDING_ENABLED.value, argument="", rec_fail=A.NO_ACCESS,
                    rec_noresult=A.NO_RECOMMENDATION)
    _apply_policy(session, policy, {"argument": "", **body})
    session.add(policy)
    session.flush()
    return policy_info(policy)


def update_policy(session, policy_id: int, body: dict) -> dict:
    policy = _get(session, Policy, policy_id, "policy")
    _apply_policy(session, policy, body)
    session.flush()
    return policy_info(policy)


def delete_policy(session, policy_id: int) -> dict:
    policy = _get(session, Policy, policy_id, "policy")
    info = policy_info(policy)
    session.execute(sa.delete(Policy.__table__).where(Policy.__table__.c.id == policy_id))
    return info


def list_policies(session) -> list[dict]:
    return [policy_info(p) for p in session.scalars(sa.select(Policy).order_by(Policy.name))]


ENFORCEMENT_FIELDS = {"policy", "group", "max_age", "rec_fail", "rec_noresult"}


def enforcement_info(session, enforcement: Enforcement) -> dict:
    return {"id": enforcement.id, "policy": enforcement.policy_id, "group": enforcement.group_id,
            "policy_name": session.scalar(sa.select(Policy.name).where(Policy.id == enforcement.policy_id)),
            "group_name": session.scalar(sa.select(Group.name).where(Group.id == enforcement.group_id)),
            "max_age": enforcement.max_age,
            "rec_fail": None if enforcement.rec_fail is None else _REC_NAME[A(enforcement.rec_fail)],
            "rec_noresult": None if enforcement.rec_noresult is None else _REC_NAME[A(enforcement.rec_noresult)]}


def _apply_enforcement(session, enforcement: Enforcement, body: dict) -> None:
    _unknown(body, ENFORCEMENT_FIELDS)
    if "policy" in body:
        pk = _integer("policy", body["policy"], 1, 2**31 - 1)
        if session.get(Policy, pk) is None:
            raise FieldError("policy", f"there is no policy {pk}")
        enforcement.policy_id = pk
    if "group" in body:
        pk = _integer("group", body["group"], 1, 2**31 - 1)
        if session.get(Group, pk) is None:
            raise FieldError("group", f"there is no group {pk}")
        enforcement.group_id = pk
    if "max_age" in body:
        enforcement.max_age = _integer("max_age", body["max_age"], 0, MAX_AGE_LIMIT)
    for key in ("rec_fail", "rec_noresult"):
        if key in body:
            setattr(enforcement, key, _recommendation(key, body[key], optional=True))
    other = session.scalar(sa.select(Enforcement.id).where(Enforcement.policy_id == enforcement.policy_id,
                                                             Enforcement.group_id == enforcement.group_id))
    if other is not None and other != enforcement.id:
        raise AlreadyExists(f"policy {enforcement.policy_id} is already enforced on group {enforcement.group_id} "
                            f"(enforcement {other})")


def add_enforcement(session, body: dict) -> dict:
    for key in ("policy", "group"):
        if key not in body:
            raise FieldError(key, "is required")
    enforcement = Enforcement(max_age=0)
    _apply_enforcement(session, enforcement, body)
    session.add(enforcement)
    session.flush()
    return enforcement_info(session, enforcement)


def update_enforcement(session, enforcement_id: int, body: dict) -> dict:
    enforcement = _get(session, Enforcement, enforcement_id, "enforcement")
    _apply_enforcement(session, enforcement, body)
    session.flush()
    return enforcement_info(session, enforcement)


def delete_enforcement(session, enforcement_id: int) -> dict:
    enforcement = _get(session, Enforcement, enforcement_id, "enforcement")
    info = enforcement_info(session, enforcement)
    session.execute(sa.delete(Enforcement.__table__).where(Enforcement.__table__.c.id == enforcement_id))
    return info


def list_enforcements(session, group: int | None = None, policy: int | None = None) -> list[dict]:
    query = sa.select(Enforcement).order_by(Enforcement.id)
    if group is not None:
        query = query.where(Enforcement.group_id == group)
    if policy is not None:
        query = query.where(Enforcement.policy_id == policy)
    return [enforcement_info(session, e) for e in session.scalars(query)]


# -- devices and settings -----------------------------------------------------------------------

DEVICE_FIELDS = {"description", "trusted", "groups"}


def set_device(session, device_pk: int, body: dict) -> None:
    """Change a device's description, trust or groups (names; replaces them)."""
    _unknown(body, DEVICE_FIELDS)
    device = _get(session, Device, device_pk, "device")
    if "description" in body:
        device.description = _text("description", body["description"] or "", 4096, empty=True)
    if "trusted" in body:
        if not isinstance(body["trusted"], bool):
            raise FieldError("trusted", "must be true or false")
        device.trusted = body["trusted"]
    if "groups" in body:
        names = body["groups"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FieldError("groups", "must be a list of group names")
        ids = [_group_by_name(session, n, "groups").id for n in names]
        session.execute(sa.delete(GroupDevice).where(GroupDevice.device_id == device.id))
        session.add_all(GroupDevice(group_id=g, device_id=device.id) for g in dict.fromkeys(ids))
    session.flush()


def settings(session) -> dict:
    value = session.scalar(sa.select(Setting.value).where(Setting.name == DEFAULT_GROUP_SETTING))
    name = None
    if value is not None and value.isascii() and value.isdigit():
        name = session.scalar(sa.select(Group.name).where(Group.id == int(value)))
    return {"default_group": name}


def update_settings(session, body: dict) -> dict:
    _unknown(body, {"default_group"})
    if "default_group" in body:
        group = _group_by_name(session, _text("default_group", body["default_group"], 50), "default_group")
        row = session.get(Setting, DEFAULT_GROUP_SETTING)
        if row is None:
            session.add(Setting(name=DEFAULT_GROUP_SETTING, value=str(group.id)))
        else:
            row.value = str(group.id)
        session.flush()
    return settings(session)


# -- API tokens and the audit log -------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def add_token(session, name: str, role: str) -> tuple[dict, str]:
    """A new token: (its description, the token itself, shown once)."""
    name = _text("name", name, 64)
    if role not in ROLES:
        raise FieldError("role", f"must be one of {', '.join(ROLES)}")
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AlreadyExists(f"token {name!r} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, digest=token_digest(token), role=role, created=utcnow())
    session.add(row)
    session.flush()
    return _token_info(row), token


def _token_info(row: ApiToken) -> dict:
    return {"name": row.name, "role": row.role, "created": row.created, "last_used": row.last_used,
            "revoked": row.revoked}


def list_tokens(session) -> list[dict]:
    return [_token_info(r) for r in session.scalars(sa.select(ApiToken).order_by(ApiToken.name))]


def revoke_token(session, name: str) -> dict:
    row = session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFound(f"no token {name!r}")
    if row.revoked is None:
        row.revoked = utcnow()
    return _token_info(row)


_TOKEN_ROW = sa.select(ApiToken.__table__.c.name, ApiToken.__table__.c.role, ApiToken.__table__.c.digest).where(
    ApiToken.__table__.c.digest == sa.bindparam("digest"), ApiToken.__table__.c.revoked.is_(None))


def check_token(connection, token: str) -> tuple[str, str] | None:
    """(name, role) of the unrevoked token ``token``, else None (read-only:
    a Connection or a Session)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    digest = token_digest(token)
    row = connection.execute(_TOKEN_ROW, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.digest, digest):
        return None
    return row.name, row.role


# -- the web console's users ------------------------------------------------------------------------

CONSOLE_ROLES = ("read", "admin")
MAX_PASSWORD = 1024


def _console_role(value: Any) -> str:
    if value not in CONSOLE_ROLES:
        raise FieldError("role", f"must be one of {', '.join(CONSOLE_ROLES)}")
    return value


def _console_password(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PASSWORD:
        raise FieldError("password", f"is required: 1-{MAX_PASSWORD} characters")
    return value


def _console_user_info(row: ConsoleUser) -> dict:
    return {"name": row.name, "role": row.role, "enabled": bool(row.enabled), "created": row.created}


def _console_user(session, name: str) -> ConsoleUser:
    row = session.scalar(sa.select(ConsoleUser).where(ConsoleUser.name == name))
    if row is None:
        raise NotFound(f"no console user {name!r}")
    return row


def add_console_user(session, name: Any, password: Any, role: Any) -> dict:
    """A new console user (the password hashed with scrypt, about 60 ms)."""
    name = _text("name", name, 64)
    role = _console_role(role)
    password_hash = hash_password(_console_password(password))
    if session.scalar(sa.select(ConsoleUser.id).where(ConsoleUser.name == name)) is not None:
        raise AlreadyExists(f"console user {name!r} already exists")
    row = ConsoleUser(name=name, password_hash=password_hash, role=role, created=utcnow(), enabled=True)
    session.add(row)
    session.flush()
    return _console_user_info(row)


def update_console_user(session, name: str, body: dict) -> dict:
    """Change a console user's ``role``, ``enabled`` or ``password``."""
    _unknown(body, {"role", "enabled", "password"})
    row = _console_user(session, name)
    if "role" in body:
        row.role = _console_role(body["role"])
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise FieldError("enabled", "must be true or false")
        row.enabled = body["enabled"]
    if "password" in body:
        row.password_hash = hash_password(_console_password(body["password"]))
    session.flush()
    return _console_user_info(row)


def delete_console_user(session, name: str) -> dict:
    row = _console_user(session, name)
    info = _console_user_info(row)
    session.delete(row)
    return info


def list_console_users(session) -> list[dict]:
    return [_console_user_info(r) for r in session.scalars(sa.select(ConsoleUser).order_by(ConsoleUser.name))]


_CONSOLE_ROW = sa.select(ConsoleUser.__table__.c.password_hash, ConsoleUser.__table__.c.enabled,
                         ConsoleUser.__table__.c.role).where(ConsoleUser.__table__.c.name == sa.bindparam("name"))


def console_login_row(connection, name: str) -> tuple[str, bool, str] | None:
    """(password hash, enabled, role) of console user ``name``, None if there is none."""
    if not isinstance(name, str) or len(name) > 64:
        return None
    row = connection.execute(_CONSOLE_ROW, {"name": name}).first()
    return None if row is None else (row[0], bool(row[1]), row[2])


def audit(session, actor: str, action: str, resource: str, target: str, details: Any, peer: str = "") -> None:
    session.add(AuditEntry(time=utcnow(), actor=actor[:128], action=action[:16], resource=resource[:64],
                           target=str(target)[:IDENTIFIER_LENGTH], details=details, peer=peer[:64]))


def timestamp(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
