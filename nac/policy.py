"""The group policy: which checks apply to an endpoint, and what its
decision becomes at the transports (:class:`nac.interfaces.IPolicySource`).

The facts follow strongTNC's model (read for facts, written anew): a device
is in the groups it was put in and in their ancestors; a device in no group
is in its product's default groups; an endpoint in no group at all (by
device, product or identity) is in the default group (the ``default_group``
setting, the built-in group ``default`` at first).  Each group's
enforcements apply a policy (a named check with a parameter) with a
maximum age: a check whose last result on the device allowed access and is
younger than that is skipped.  The same policy enforced by several of the
endpoint's groups is checked once, with the smallest maximum age.

Enforcement values (RADIUS Filter-Id / VLAN, IKEv2 traffic selectors,
Session-Timeout) come from the most specific group that sets them (the
deepest, then by name); a value no group sets is the transport's
configuration, which so stays the default group's.

What a check type means is the IMVs' business; this module knows the
syntax of each type's parameter (:func:`parse_argument`), so the API and
``nac-admin`` refuse a bad one.  The policy tables are few rows; they are
kept in memory as long as the database's group-policy generation (row 2
of ``policy_generation``, moved on by triggers whoever changes them) stays
the same, so each assessment costs one short read.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy as sa
from twisted.internet import defer
from zope.interface import implementer

from nac.db.models import (
    Device,
    Enforcement,
    Group,
    GroupDevice,
    GroupIdentity,
    GroupProduct,
    Policy,
    PolicyGeneration,
    PolicyResult,
    PolicyType,
    Product,
    Setting,
    utcnow,
)
from nac.ifimv import ActionRecommendation
from nac.interfaces import IEndpointPolicy, IPolicySource
from nac.tnccs.assessment import Endpoint, GroupEnforcement

__all__ = [
    "Check",
    "DEFAULT_GROUP_SETTING",
    "Endpoint",
    "EndpointPolicy",
    "GROUP_GENERATION_ROW",
    "PolicyModel",
    "PolicySource",
    "PortRanges",
    "UPDATE_POLICIES",
    "network_list",
    "parse_argument",
    "port_ranges",
    "resolve",
]

A = ActionRecommendation

GROUP_GENERATION_ROW = 2
DEFAULT_GROUP_SETTING = "default_group"

# -- policy parameters ---------------------------------------------------------------------------

PortRanges = tuple[tuple[int, int], ...]
"""Inclusive (first, last) port ranges."""

_PORT_ITEM = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


def port_ranges(raw: str) -> PortRanges:
    """Ports and ranges (``500 4500 10000-65000``), separated by blanks or
    commas; may be empty (``[imv:scanner] tcp_ports``, the port policies)."""
    out = []
    for item in re.split(r"[\s,]+", raw.strip()):
        if not item:
            continue
        m = _PORT_ITEM.fullmatch(item)
        if not m:
            raise ValueError(f"has {item!r}, which is not a port (0-65535) or a range like 10000-65000")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        if first > 65535 or last > 65535:
            raise ValueError(f"has {item!r}, which is beyond port 65535")
        if last < first:
            raise ValueError(f"has {item!r}, a range that ends before it starts")
        out.append((first, last))
    return tuple(out)


#: installed-packages: when a release is outdated (as ``[imv:os] package_updates``)
UPDATE_POLICIES = ("security", "all", "none")
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:*?-]{0,254}")

PORT_TYPES = {PolicyType.OPEN_TCP_PORTS, PolicyType.BLOCKED_TCP_PORTS, PolicyType.OPEN_UDP_PORTS,
              PolicyType.BLOCKED_UDP_PORTS}


def parse_argument(policy_type: str, raw: str):
    """The parameter of a policy of ``policy_type`` in its syntax; ValueError
    saying what is wrong (the message follows the value: "has 'x', …").

    * port types: :func:`port_ranges`;
    * installed-packages: ``security`` (default), ``all`` or ``none``;
    * forbidden-packages: package names (``*`` and ``?`` match any
      characters), separated by blanks or commas, at least one;
    * swid-tags, tpm-attestation, file and directory types: free text,
      passed to the IMV as it is; the others: empty.
    """
    kind = PolicyType(policy_type)
    raw = raw or ""
    if kind in PORT_TYPES:
        return port_ranges(raw)
    if kind is PolicyType.INSTALLED_PACKAGES:
        value = raw.strip() or "security"
        if value not in UPDATE_POLICIES:
            raise ValueError(f"is {raw!r}, not one of {', '.join(UPDATE_POLICIES)}")
        return value
    if kind is PolicyType.FORBIDDEN_PACKAGES:
        names = [name for name in re.split(r"[\s,]+", raw.strip()) if name]
        if not names:
            raise ValueError("names no package")
        for name in names:
            if not _PACKAGE_NAME.fullmatch(name):
                raise ValueError(f"has {name!r}, which is not a package name")
        return tuple(names)
    if kind in (PolicyType.FORWARDING_ENABLED, PolicyType.DEFAULT_PASSWORD, PolicyType.UNKNOWN_SOURCE):
        if raw.strip():
            raise ValueError(f"is {raw!r}: this policy type takes no parameter")
        return ""
    if any(ord(c) < 0x20 and c not in "\t" for c in raw):
        raise ValueError("has control characters")
    return raw


def network_list(raw: str) -> tuple:
    """IKEv2 traffic selectors of a group: networks (``10.1.0.0/16``)
    separated by commas, at least one."""
    networks = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ValueError(f"has {item!r}, which is not an IP network (address/prefix, host bits clear)") \
                from None
    if not networks:
        raise ValueError("names no network")
    return tuple(networks)


# -- values --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """A policy due on an endpoint, with the recommendations its enforcement gives."""

    policy_id: int
    name: str
    type: str
    argument: str
    rec_fail: ActionRecommendation
    rec_noresult: ActionRecommendation
    max_age: int
    group: str
    """The group whose enforcement brought it (the first by name with the smallest max age)."""

    @property
    def parameter(self):
        """The argument parsed (:func:`parse_argument`)."""
        return parse_argument(self.type, self.argument)

    def recommendation(self, outcome) -> ActionRecommendation:
        """ALLOW for a passed check (``outcome`` True), rec_fail for a failed
        one (False), rec_noresult without a result (None)."""
        if outcome is None:
            return self.rec_noresult
        return A.ALLOW if outcome else self.rec_fail


@dataclass(slots=True)
class _GroupRow:
    id: int
    name: str
    parent_id: int | None
    values: dict


_ENFORCEMENT_FIELDS = ("filter_id_allow", "filter_id_isolate", "vlan_allow", "vlan_isolate", "allow_ts",
                       "isolate_ts", "session_timeout")


@dataclass(slots=True)
class PolicyModel:
    """The policy tables in memory at one generation."""

    generation: int | None = None
    groups: dict[int, _GroupRow] = field(default_factory=dict)
    enforcements: dict[int, list[tuple]] = field(default_factory=dict)
    """group id -> [(policy id, name, type, argument, rec_fail, rec_noresult, max_age)]"""
    product_groups: dict[str, list[int]] = field(default_factory=dict)
    default_group: int | None = None

    @classmethod
    def load(cls, connection, generation: int | None) -> PolicyModel:
        model = cls(generation=generation)
        g = Group.__table__.c
        for row in connection.execute(sa.select(g.id, g.name, g.parent_id, *(g[f] for f in _ENFORCEMENT_FIELDS))):
            model.groups[row.id] = _GroupRow(row.id, row.name, row.parent_id,
                                             {f: getattr(row, f) for f in _ENFORCEMENT_FIELDS})
        e, p = Enforcement.__table__.c, Policy.__table__.c
        rows = connection.execute(
            sa.select(e.group_id, p.id, p.name, p.type, p.argument,
                      sa.func.coalesce(e.rec_fail, p.rec_fail), sa.func.coalesce(e.rec_noresult, p.rec_noresult),
                      e.max_age).join(Policy.__table__, p.id == e.policy_id).order_by(p.name))
        for group_id, *policy in rows:
            policy[4], policy[5] = A(policy[4]), A(policy[5])
            model.enforcements.setdefault(group_id, []).append(tuple(policy))
        gp, pr = GroupProduct.__table__.c, Product.__table__.c
        for name, group_id in connection.execute(
                sa.select(pr.name, gp.group_id).join(Product.__table__, pr.id == gp.product_id)):
            model.product_groups.setdefault(name, []).append(group_id)
        value = connection.execute(sa.select(Setting.value).where(Setting.name == DEFAULT_GROUP_SETTING)).scalar()
        if value is not None and value.isascii() and value.isdigit() and int(value) in model.groups:
            model.default_group = int(value)
        return model

    def ancestry(self, group_id: int) -> list[int]:
        """The group and its ancestors, nearest first (a cycle is cut)."""
        chain: list[int] = []
        while group_id is not None and group_id in self.groups and group_id not in chain:
            chain.append(group_id)
            group_id = self.groups[group_id].parent_id
        return chain

    def effective_groups(self, direct: Iterable[int], product: str | None) -> list[int]:
        """Every group of an endpoint whose own groups are ``direct`` (its
        device's and identity's), most specific first."""
        own = [g for g in dict.fromkeys(direct) if g in self.groups]
        if not own and product is not None:
            own = [g for g in self.product_groups.get(product, ()) if g in self.groups]
        if not own and self.default_group is not None:
            own = [self.default_group]
        found: dict[int, int] = {}
        for group_id in own:
            chain = self.ancestry(group_id)
            for distance, ancestor in enumerate(chain):
                depth = len(chain) - 1 - distance
                found[ancestor] = max(found.get(ancestor, -1), depth)
        return sorted(found, key=lambda gid: (-found[gid], self.groups[gid].name))

    def enforcement(self, groups: list[int]) -> GroupEnforcement:
        values = {}
        for name in _ENFORCEMENT_FIELDS:
            for gid in groups:
                value = self.groups[gid].values.get(name)
                if value is not None and value != "":
                    values[name] = value
                    break
        for name in ("allow_ts", "isolate_ts"):
            if name in values:
                try:
                    values[name] = network_list(values[name])
                except ValueError:
                    del values[name]  # written past the API's checks: the configuration's
        return GroupEnforcement(groups=tuple(self.groups[g].name for g in groups), **values)

    def checks(self, groups: list[int]) -> dict[int, Check]:
        """The policies the groups enforce, by policy id: each once, with
        the smallest max age among its enforcements."""
        chosen: dict[int, Check] = {}
        for gid in groups:
            for policy_id, name, kind, argument, rec_fail, rec_noresult, max_age in self.enforcements.get(gid, ()):
                known = chosen.get(policy_id)
                if known is None or max_age < known.max_age:
                    chosen[policy_id] = Check(policy_id, name, kind, argument, rec_fail, rec_noresult, max_age,
                                              self.groups[gid].name)
        return chosen


# -- resolution ----------------------------------------------------------------------------------

_GENERATION = sa.select(PolicyGeneration.generation).where(PolicyGeneration.id == GROUP_GENERATION_ROW)
_DEVICE_GROUPS = (sa.select(GroupDevice.group_id).join(Device, Device.id == GroupDevice.device_id)
                  .where(Device.device_id == sa.bindparam("device_id")))
_IDENTITY_GROUPS = sa.select(GroupIdentity.group_id).where(GroupIdentity.identity == sa.bindparam("identity"))
_RECENT = (sa.select(PolicyResult.policy_id, PolicyResult.time, PolicyResult.recommendation)
           .join(Device, Device.id == PolicyResult.device_id)
           .where(Device.device_id == sa.bindparam("device_id")))


def resolve(connection, endpoint: Endpoint, model: PolicyModel, now=None) -> EndpointPolicy:
    """The policy of ``endpoint`` from ``model`` and its memberships read on ``connection``."""
    direct: list[int] = []
    if endpoint.device_id is not None:
        direct += connection.execute(_DEVICE_GROUPS, {"device_id": endpoint.device_id}).scalars().all()
    if endpoint.identity:
        direct += connection.execute(_IDENTITY_GROUPS, {"identity": endpoint.identity}).scalars().all()
    groups = model.effective_groups(direct, endpoint.product)
    checks = model.checks(groups)
    skipped: set[int] = set()
    if endpoint.device_id is not None and any(c.max_age > 0 for c in checks.values()):
        now = now or utcnow()
        for policy_id, time, recommendation in connection.execute(_RECENT, {"device_id": endpoint.device_id}):
            check = checks.get(policy_id)
            if (check is not None and check.max_age > 0 and A(recommendation) is A.ALLOW
                    and (now - time).total_seconds() < check.max_age):
                skipped.add(policy_id)
    return EndpointPolicy(endpoint, model.enforcement(groups), tuple(checks.values()), frozenset(skipped))


@implementer(IEndpointPolicy)
class EndpointPolicy:
    """The policy in force for one endpoint (see :class:`IEndpointPolicy`)."""

    def __init__(self, endpoint: Endpoint, enforcement: GroupEnforcement, checks: tuple[Check, ...],
                 skipped: frozenset = frozenset(), store=None):
        self.endpoint = endpoint
        self.enforcement = enforcement
        self.groups = enforcement.groups
        self.all_checks = checks
        self.skipped = skipped
        self.store = store

    def governs(self, types) -> bool:
        wanted = {str(t) for t in types}
        return any(c.type in wanted for c in self.all_checks)

    def checks(self, types) -> list[Check]:
        wanted = {str(t) for t in types}
        return [c for c in self.all_checks if c.type in wanted and c.policy_id not in self.skipped]

    def record(self, check: Check, recommendation, session_id):
        device = self.endpoint.device_id
        if self.store is None or device is None or check.max_age <= 0:
            return defer.succeed(None)
        return self.store.writes.submit(record_policy_result, device, check.policy_id, session_id,
                                        A(recommendation))

    def __repr__(self) -> str:
        return f"EndpointPolicy(groups={self.groups!r}, checks={[c.name for c in self.all_checks]!r})"


def record_policy_result(connection, device_id: str, policy_id: int, session_id, recommendation) -> None:
    """Keep the latest outcome of a policy's check on a device (a write of the store's queue)."""
    device_pk = connection.execute(sa.select(Device.id).where(Device.device_id == device_id)).scalar()
    if device_pk is None:
        return
    table = PolicyResult.__table__
    connection.execute(sa.delete(table).where(table.c.device_id == device_pk, table.c.policy_id == policy_id))
    connection.execute(sa.insert(table).values(device_id=device_pk, policy_id=policy_id, session_id=session_id,
                                               time=utcnow(), recommendation=int(recommendation)))


@implementer(IPolicySource)
class PolicySource:
    """:class:`IPolicySource` over a :class:`nac.db.store.PolicyStore`: the
    policy tables kept in memory (:class:`PolicyModel`) while the group
    policy's generation stays the same, memberships read per endpoint."""

    def __init__(self, store):
        self.store = store
        self._model = PolicyModel()
        self._lock = threading.Lock()
        self.loads = 0
        """How often the tables were read (for tests and figures)."""

    def _resolve(self, connection, endpoint: Endpoint) -> EndpointPolicy:
        generation = connection.execute(_GENERATION).scalar()
        model = self._model
        if generation is None or generation != model.generation:
            model = PolicyModel.load(connection, generation)
            with self._lock:
                self._model = model
                self.loads += 1
        policy = resolve(connection, endpoint, model)
        policy.store = self.store
        return policy

    def resolve(self, endpoint: Endpoint):
        return self.store.read(self._resolve, endpoint)
