"""nac's policy database: who may log in, what was assessed, what is expected.

The tables follow the facts of strongSwan's IMV database (``libimcv/imv``)
and strongTNC, reorganised for SQLAlchemy and for both SQLite and PostgreSQL:

* accounts: :class:`User` (SASL PLAIN / EAP passwords, scrypt hashes);
* endpoints: :class:`Product` (OS name and version), :class:`Device` (the
  ITA-HSR Device ID the OS IMC reports, usually ``/etc/machine-id``);
* policy: :class:`Group` (a tree) with members (:class:`GroupDevice`,
  :class:`GroupIdentity`, products' default groups :class:`GroupProduct`),
  :class:`Policy` (a check and its parameter) and :class:`Enforcement`
  (a policy on a group), :class:`PolicyResult` (the latest outcome per
  device), :class:`Setting` (the default group);
* the HTTP API: :class:`ApiToken` (hashed) and the :class:`AuditEntry` log;
* package policy: :class:`Package` and its :class:`Version` releases per
  product, with security / blacklist flags;
* assessments: :class:`AssessmentSession` (one TNCCS connection), its
  :class:`ImvResult` per IMV and the :class:`Measurement` the IMVs kept;
* SWIMA (RFC 8412): :class:`SoftwareIdentifier`, :class:`SwidTag`,
  :class:`DeviceSoftware` (inventory per device) and :class:`SwimaState`
  (event epoch / last EID per device);
* RADIUS accounting: :class:`AccountingSession` (one NAS session, RFC 2866,
  with the last Change-of-Authorization sent for it, RFC 5176);
* attestation: :class:`File` and :class:`FileHash` reference digests, the
  TPMs' :class:`Aik` keys per device and the :class:`Attestation` history.

The schema is created and changed only by the Alembic migrations in
``nac/db/migrations``; a test compares them with these models.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from nac.ifimv import ActionRecommendation, EvaluationResult

__all__ = [
    "ABORTED",
    "ACCT_STARTED",
    "ACCT_STOPPED",
    "ACCT_UPDATED",
    "INTERRUPTED",
    "AccountingSession",
    "Aik",
    "AssessmentSession",
    "Attestation",
    "Base",
    "Device",
    "DeviceSoftware",
    "ApiToken",
    "AuditEntry",
    "Enforcement",
    "File",
    "FileHash",
    "Group",
    "GroupDevice",
    "GroupIdentity",
    "GroupProduct",
    "ImvResult",
    "IntEnumType",
    "Measurement",
    "Package",
    "Policy",
    "PolicyResult",
    "PolicyType",
    "Product",
    "Setting",
    "SoftwareIdentifier",
    "SwidTag",
    "SwimaState",
    "User",
    "UtcDateTime",
    "Version",
    "utcnow",
]

#: Constraint names are fixed so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Lengths of indexed strings stay well below PostgreSQL's B-tree entry limit.
NAME_LENGTH = 255

_CONTROL = re.compile("[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL, which no name,
    identifier or package field the database keeps may contain."""
    return _CONTROL.search(text) is not None

IDENTIFIER_LENGTH = 1024


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class UtcDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime on every backend.

    PostgreSQL keeps ``timestamp with time zone``; SQLite has no time zones,
    so the value is stored as naive UTC and made aware again when read.
    Naive datetimes are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        value = value.astimezone(datetime.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc)


class IntEnumType(sa.types.TypeDecorator):
    """An IF-IMV ``IntEnum`` stored as its numeric value, as strongSwan does."""

    impl = sa.SmallInteger
    cache_ok = True

    def __init__(self, enum_class: type[enum.IntEnum]):
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value, dialect):
        return None if value is None else int(self.enum_class(value))

    def process_result_value(self, value, dialect):
        return None if value is None else self.enum_class(value)


class PolicyType(enum.StrEnum):
    """What a policy checks (strongSwan's IMV work item types, by name, and
    nac's own ``forbidden-packages``)."""

    INSTALLED_PACKAGES = "installed-packages"
    UNKNOWN_SOURCE = "unknown-source"
    FORWARDING_ENABLED = "forwarding-enabled"
    DEFAULT_PASSWORD = "default-password"
    FILE_REFERENCE_MEASUREMENT = "file-reference-measurement"
    FILE_MEASUREMENT = "file-measurement"
    FILE_METADATA = "file-metadata"
    DIRECTORY_REFERENCE_MEASUREMENT = "directory-reference-measurement"
    DIRECTORY_MEASUREMENT = "directory-measurement"
    DIRECTORY_METADATA = "directory-metadata"
    OPEN_TCP_PORTS = "open-tcp-ports"
    BLOCKED_TCP_PORTS = "blocked-tcp-ports"
    OPEN_UDP_PORTS = "open-udp-ports"
    BLOCKED_UDP_PORTS = "blocked-udp-ports"
    SWID_TAGS = "swid-tags"
    TPM_ATTESTATION = "tpm-attestation"
    FORBIDDEN_PACKAGES = "forbidden-packages"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime.datetime: UtcDateTime(),
        str: sa.String(NAME_LENGTH),
        ActionRecommendation: IntEnumType(ActionRecommendation),
        EvaluationResult: IntEnumType(EvaluationResult),
    }


# -- accounts ----------------------------------------------------------------------------


class User(Base):
    """An account for password authentication (PT-TLS SASL PLAIN, EAP).

    ``password_hash`` is ``scrypt$n$r$p$salt$hash`` (:mod:`nac.db.passwords`);
    the repr never shows it nor the sealed ``eap_secret``.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str] = mapped_column()
    eap_secret: Mapped[str | None] = mapped_column(sa.Text)
    """The password for EAP-MD5 / MSCHAPv2, sealed by :mod:`nac.db.secrets`;
    NULL: the user may not use those methods."""
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    enabled: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, enabled={self.enabled!r})"


# -- endpoints ---------------------------------------------------------------------------


class Product(Base):
    """An operating system as the OS IMC names it, e.g. ``Debian 12 x86_64``."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)

    devices: Mapped[list[Device]] = relationship(back_populates="product")

    def __repr__(self) -> str:
        return f"Product(id={self.id!r}, name={self.name!r})"


class Device(Base):
    """An endpoint, known by its ITA-HSR Device ID (typically the machine-id)."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(unique=True)
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="SET NULL"), index=True)
    first_seen: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    trusted: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    description: Mapped[str] = mapped_column(sa.Text, default="", server_default="")

    product: Mapped[Product | None] = relationship(back_populates="devices")

    def __repr__(self) -> str:
        return f"Device(id={self.id!r}, device_id={self.device_id!r}, trusted={self.trusted!r})"


class DevicePackages(Base):
    """The installed packages a device reported last, whole (the OS IMV,
    migration 0013): what a change of the package policy is judged against
    without a new assessment (:mod:`nac.reevaluate`).  ``packages`` is a
    list of ``[name, release]``; ``digest`` names it (rewritten only when
    it changes)."""

    __tablename__ = "device_packages"

    device_id: Mapped[int] = mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True,
                                           autoincrement=False)
    product: Mapped[str] = mapped_column()
    digest: Mapped[str] = mapped_column(sa.String(64))
    packages: Mapped[Any] = mapped_column(sa.JSON)
    updated: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    """when the list was written"""

    def __repr__(self) -> str:
        return f"DevicePackages(device_id={self.device_id!r}, product={self.product!r}, digest={self.digest!r})"


class Reevaluation(Base):
    """One re-evaluation of the live endpoints after a policy change
    (migration 0013), keyed by the policy generations it follows: of
    several nac instances on one database, the one that inserts the row
    does the work."""

    __tablename__ = "reevaluations"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    instance: Mapped[str | None] = mapped_column(sa.String(64))
    started: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)


# -- policy ------------------------------------------------------------------------------


class Group(Base):
    """A set of devices and identities sharing enforcement rules; groups form
    a tree, and a member of a group is a member of its ancestors."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="SET NULL"), index=True)
    # what the group's members get from the transports (migration 0009);
    # NULL: the parent group's value, and at the top the configuration's
    filter_id_allow: Mapped[str | None] = mapped_column(sa.String(253))
    filter_id_isolate: Mapped[str | None] = mapped_column(sa.String(253))
    vlan_allow: Mapped[str | None] = mapped_column(sa.String(64))
    vlan_isolate: Mapped[str | None] = mapped_column(sa.String(64))
    allow_ts: Mapped[str | None] = mapped_column(sa.Text)
    """IKEv2 traffic selectors of Access Allowed: networks separated by commas"""
    isolate_ts: Mapped[str | None] = mapped_column(sa.Text)
    session_timeout: Mapped[int | None] = mapped_column()
    description: Mapped[str] = mapped_column(sa.Text, default="", server_default="")

    parent: Mapped[Group | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Group]] = relationship(back_populates="parent")
    devices: Mapped[list[Device]] = relationship(secondary="group_devices")
    identities: Mapped[list[GroupIdentity]] = relationship(
        back_populates="group", cascade="all, delete-orphan")
    enforcements: Mapped[list[Enforcement]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True)
    products: Mapped[list[Product]] = relationship(secondary="group_products")

    def __repr__(self) -> str:
        return f"Group(id={self.id!r}, name={self.name!r}, parent_id={self.parent_id!r})"


class GroupDevice(Base):
    """Membership of a device in a group."""

    __tablename__ = "group_devices"

    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    # the primary key serves lookups by group; this index the lookups by device
    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True)


class GroupIdentity(Base):
    """Membership of an identity (a user name, a certificate subject…) in a group.

    Identities are the names transports authenticate, not only :class:`User`
    rows, so this is a string rather than a foreign key.
    """

    __tablename__ = "group_identities"

    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    identity: Mapped[str] = mapped_column(
        sa.String(IDENTIFIER_LENGTH), primary_key=True, index=True)

    group: Mapped[Group] = relationship(back_populates="identities")


class GroupProduct(Base):
    """A product's default group: a device of that product in no group of its
    own is in these (strongTNC's ``groups_product_defaults``)."""

    __tablename__ = "group_products"

    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="CASCADE"), primary_key=True, index=True)


class Policy(Base):
    """A named check with its parameter (strongSwan's and strongTNC's policy):
    ``type`` is a :class:`PolicyType`, ``argument`` its parameter in the
    type's syntax (ports and ranges ``22 443 8000-8080`` for the port
    types, ``security`` / ``all`` / ``none`` for installed-packages, package
    names for forbidden-packages; see :mod:`nac.policy`); ``rec_fail`` /
    ``rec_noresult`` what a failed check or one without a result
    recommends, unless the enforcement says otherwise."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    type: Mapped[str] = mapped_column(sa.String(32))
    argument: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    rec_fail: Mapped[ActionRecommendation] = mapped_column(default=ActionRecommendation.NO_ACCESS)
    rec_noresult: Mapped[ActionRecommendation] = mapped_column(
        default=ActionRecommendation.NO_RECOMMENDATION)

    enforcements: Mapped[list[Enforcement]] = relationship(
        back_populates="policy", cascade="all, delete-orphan", passive_deletes=True)

    @validates("type")
    def _known_policy_type(self, key: str, value: str) -> str:
        return PolicyType(value).value

    def __repr__(self) -> str:
        return f"Policy(id={self.id!r}, name={self.name!r}, type={self.type!r})"


class Enforcement(Base):
    """A policy applied to the members of a group (strongTNC's enforcement).

    ``max_age``: seconds a good result of the check stays valid for a device
    (0: check at every assessment); ``rec_fail`` / ``rec_noresult``, when
    set, replace the policy's.
    """

    __tablename__ = "enforcements"
    __table_args__ = (sa.UniqueConstraint("policy_id", "group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("policies.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    max_age: Mapped[int] = mapped_column(default=0, server_default="0")
    rec_fail: Mapped[ActionRecommendation | None] = mapped_column()
    rec_noresult: Mapped[ActionRecommendation | None] = mapped_column()

    policy: Mapped[Policy] = relationship(back_populates="enforcements")
    group: Mapped[Group] = relationship(back_populates="enforcements")

    def __repr__(self) -> str:
        return (f"Enforcement(id={self.id!r}, policy_id={self.policy_id!r}, "
                f"group_id={self.group_id!r}, max_age={self.max_age!r})")


class PolicyResult(Base):
    """The latest outcome of a policy's check on a device, which an
    enforcement's ``max_age`` lets the next assessments skip while it is
    recent and allowed access."""

    __tablename__ = "policy_results"

    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int] = mapped_column(
        sa.ForeignKey("policies.id", ondelete="CASCADE"), primary_key=True, index=True)
    session_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sessions.id", ondelete="SET NULL"))
    time: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    recommendation: Mapped[ActionRecommendation] = mapped_column()


class Setting(Base):
    """A server-wide setting kept in the database, so that every nac process
    sharing it sees a change at once (``default_group``: the id of the group
    of endpoints in no other group)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class ApiToken(Base):
    """An HTTP API token: only its SHA-256 digest is kept (the token is
    256 random bits, so no slow hash is needed); ``role`` is ``read`` or
    ``admin``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_used: Mapped[datetime.datetime | None] = mapped_column()
    revoked: Mapped[datetime.datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, name={self.name!r}, role={self.role!r})"


class ConsoleUser(Base):
    """A person who logs in to the web console (not an endpoint: endpoints
    are :class:`User`).  ``password_hash`` is scrypt as in :class:`User`
    (:mod:`nac.db.passwords`); ``role`` is ``read`` or ``admin`` as the API
    tokens' (migration 0012)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    enabled: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    def __repr__(self) -> str:
        return f"ConsoleUser(id={self.id!r}, name={self.name!r}, role={self.role!r})"


class AuditEntry(Base):
    """Who changed what through the HTTP API, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    """the token's name (``token:NAME``) or the basic-auth user (``user:NAME``)"""
    action: Mapped[str] = mapped_column(sa.String(16))
    """create, update, delete"""
    resource: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(IDENTIFIER_LENGTH))
    details: Mapped[Any] = mapped_column(sa.JSON)
    peer: Mapped[str] = mapped_column(sa.String(64), default="", server_default="")


# -- package policy ----------------------------------------------------------------------


class Package(Base):
    """A software package name, shared by all products."""

    __tablename__ = "packages"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)

    versions: Mapped[list[Version]] = relationship(
        back_populates="package", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"Package(id={self.id!r}, name={self.name!r})"


class Version(Base):
    """A known release of a package on a product.

    ``security`` marks a release that fixes a vulnerability (older ones are
    then outdated); ``blacklisted`` forbids the release.  The OS IMV looks
    releases up by (package, product): ``ix_versions_lookup`` holds every
    column it reads, so its lookups never touch the table.
    """

    __tablename__ = "versions"
    __table_args__ = (
        sa.UniqueConstraint("package_id", "product_id", "release"),
        sa.Index("ix_versions_lookup", "package_id", "product_id", "release", "security", "blacklisted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(sa.ForeignKey("packages.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(
        sa.ForeignKey("products.id", ondelete="CASCADE"), index=True)
    release: Mapped[str] = mapped_column()
    security: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    blacklisted: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    time: Mapped[datetime.datetime] = mapped_column(default=utcnow)

    package: Mapped[Package] = relationship(back_populates="versions")
    product: Mapped[Product] = relationship()

    def __repr__(self) -> str:
        return (f"Version(id={self.id!r}, package_id={self.package_id!r}, "
                f"product_id={self.product_id!r}, release={self.release!r})")


class PolicyGeneration(Base):
    """Counters that database triggers move on with every change to what
    servers keep in memory: row 1 (migration 0004) with products, packages
    or versions (the OS IMV's package verdicts), row 2 (migration 0009) with
    groups, their members, policies, enforcements and settings (the group
    policy, :mod:`nac.policy`), row 3 (migration 0010) with files, their
    reference digests or products (the attestation IMV's references,
    :class:`nac.db.attestation.ReferenceCache`)."""

    __tablename__ = "policy_generation"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


# -- assessments -------------------------------------------------------------------------


#: ``sessions.access`` of a session that ended without a decision because
#: the endpoint or its transport gave up.
ABORTED = "aborted"
#: ``sessions.access`` of a session whose nac process stopped before it
#: ended (a crash, a kill), closed when that process started again.
INTERRUPTED = "interrupted"


class AssessmentSession(Base):
    """One posture assessment: a TNCCS connection from start to decision.

    ``recommendation`` / ``evaluation`` / ``access`` are the final decision
    (NULL until decided); ``reason`` the reason strings sent, one a line.
    A session that ended without a decision has ``ended`` and an ``access``
    of :data:`ABORTED` (the endpoint or the transport gave up) or
    :data:`INTERRUPTED` (its nac process stopped first and closed it when
    it started again), with the reason in ``reason``.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        # the open sessions of an instance's process, closed when it starts
        # again (migration 0008); only open sessions are in the index
        sa.Index("ix_sessions_open", "instance", "process", sqlite_where=sa.text("ended IS NULL"),
                 postgresql_where=sa.text("ended IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column()
    identity: Mapped[str | None] = mapped_column(sa.String(IDENTIFIER_LENGTH), index=True)
    auth_method: Mapped[str] = mapped_column(sa.String(32), default="none")
    device_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    transport: Mapped[str] = mapped_column(sa.String(16))
    peer_address: Mapped[str] = mapped_column(sa.String(64))
    peer_port: Mapped[int] = mapped_column(default=0)
    started: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)
    ended: Mapped[datetime.datetime | None] = mapped_column()
    recommendation: Mapped[ActionRecommendation | None] = mapped_column()
    evaluation: Mapped[EvaluationResult | None] = mapped_column()
    access: Mapped[str | None] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    # last, where migration 0005 added it to existing tables
    nas: Mapped[str | None] = mapped_column(sa.String(64))
    """The short name of the NAS that relayed the endpoint (a RADIUS
    ``[radius-client:NAME]``), NULL for others (migration 0005)."""
    instance: Mapped[str | None] = mapped_column(sa.String(64))
    """The nac instance that assessed (``[nac] instance``), NULL for sessions
    before migration 0008."""
    process: Mapped[int | None] = mapped_column(sa.SmallInteger)
    """Which of the instance's processes: 0 the main one, k its worker k."""
    station: Mapped[str | None] = mapped_column(sa.String(253))
    """The endpoint as its NAS names it (RADIUS Calling-Station-Id), which
    links accounting sessions to the device (migration 0011)."""

    device: Mapped[Device | None] = relationship()
    results: Mapped[list[ImvResult]] = relationship(
        back_populates="session", cascade="all, delete-orphan", order_by="ImvResult.imv_id")
    measurements: Mapped[list[Measurement]] = relationship(
        back_populates="session", cascade="all, delete-orphan", order_by="Measurement.id")

    def __repr__(self) -> str:
        return (f"AssessmentSession(id={self.id!r}, identity={self.identity!r}, "
                f"transport={self.transport!r}, access={self.access!r})")


class ImvResult(Base):
    """What one IMV recommended in one session.

    ``forced`` is set when the IMV gave no verdict in time and the core filled
    in its no-result recommendation.
    """

    __tablename__ = "results"
    __table_args__ = (sa.UniqueConstraint("session_id", "imv_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"))
    imv_id: Mapped[int] = mapped_column()
    imv_name: Mapped[str] = mapped_column(sa.String(64))
    recommendation: Mapped[ActionRecommendation] = mapped_column()
    evaluation: Mapped[EvaluationResult] = mapped_column()
    reason: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    reason_language: Mapped[str] = mapped_column(sa.String(32), default="", server_default="")
    remediation: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    forced: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    session: Mapped[AssessmentSession] = relationship(back_populates="results")

    def __repr__(self) -> str:
        return (f"ImvResult(session_id={self.session_id!r}, imv_name={self.imv_name!r}, "
                f"recommendation={self.recommendation!r})")


class Measurement(Base):
    """Something an IMV measured in a session, kept as JSON (a dict, list or string)."""

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    imv_name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[Any] = mapped_column(sa.JSON)
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow)

    session: Mapped[AssessmentSession] = relationship(back_populates="measurements")

    def __repr__(self) -> str:
        return (f"Measurement(id={self.id!r}, session_id={self.session_id!r}, "
                f"imv_name={self.imv_name!r}, kind={self.kind!r})")


# -- SWIMA (RFC 8412) ----------------------------------------------------------------------


class SoftwareIdentifier(Base):
    """A SWIMA Software Identifier: the tag id of a SWID tag (RFC 8412 §3.4),
    e.g. ``strongswan.org__Debian_12-x86_64-bash-5.2.15-2+b8``."""

    __tablename__ = "sw_identifiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag_id: Mapped[str] = mapped_column(sa.String(IDENTIFIER_LENGTH), unique=True)
    version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("versions.id", ondelete="SET NULL"), index=True)

    version: Mapped[Version | None] = relationship()
    tag: Mapped[SwidTag | None] = relationship(
        back_populates="identifier", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"SoftwareIdentifier(id={self.id!r}, tag_id={self.tag_id!r})"


class SwidTag(Base):
    """The ISO/IEC 19770-2 SWID tag (XML) behind a software identifier."""

    __tablename__ = "swid_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sw_identifiers.id", ondelete="CASCADE"), unique=True)
    xml: Mapped[str] = mapped_column(sa.Text)
    updated: Mapped[datetime.datetime] = mapped_column(default=utcnow)

    identifier: Mapped[SoftwareIdentifier] = relationship(back_populates="tag")

    def __repr__(self) -> str:
        return f"SwidTag(id={self.id!r}, identifier_id={self.identifier_id!r})"


class DeviceSoftware(Base):
    """A device's software inventory entry; ``installed`` false once a deletion event came."""

    __tablename__ = "device_software"

    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    identifier_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sw_identifiers.id", ondelete="CASCADE"), primary_key=True, index=True)
    installed: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    first_seen: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    tag_unavailable: Mapped[datetime.datetime | None] = mapped_column(nullable=True, default=None)
    """When the device last answered a request for this software's SWID tag
    without the tag (its collector has none): not asked again for a while."""

    identifier: Mapped[SoftwareIdentifier] = relationship()


class SwimaState(Base):
    """Where a device's SWIMA event log was last read (RFC 8412 §3.7):
    the EID epoch and the last event id, so the next request asks only for
    newer events.  Both are 32-bit unsigned on the wire."""

    __tablename__ = "swima_states"

    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(sa.BigInteger)
    last_eid: Mapped[int] = mapped_column(sa.BigInteger)
    updated: Mapped[datetime.datetime] = mapped_column(default=utcnow)


# -- attestation -------------------------------------------------------------------------


class File(Base):
    """A file path whose contents are measured."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(IDENTIFIER_LENGTH), unique=True)

    hashes: Mapped[list[FileHash]] = relationship(
        back_populates="file", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"File(id={self.id!r}, path={self.path!r})"


class FileHash(Base):
    """A reference digest of a file, per product (NULL: any product).

    ``algorithm`` is the hash name (``sha256``, ``sha384``, ``sha1``…),
    ``digest`` its lower-case hex value.
    """

    __tablename__ = "file_hashes"
    __table_args__ = (sa.Index(None, "file_id", "product_id", "algorithm"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(sa.ForeignKey("files.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="CASCADE"))
    algorithm: Mapped[str] = mapped_column(sa.String(16))
    digest: Mapped[str] = mapped_column(sa.String(128))

    file: Mapped[File] = relationship(back_populates="hashes")
    product: Mapped[Product | None] = relationship()

    def __repr__(self) -> str:
        return (f"FileHash(file_id={self.file_id!r}, product_id={self.product_id!r}, "
                f"algorithm={self.algorithm!r})")


class Aik(Base):
    """An Attestation Identity Key: the TPM key a device's quotes are signed with.

    ``keyid`` is the lower-case hex SHA-1 of the DER SubjectPublicKeyInfo
    (strongSwan's key ID, what its OS IMC sends as Device ID), ``public_key``
    that DER.  Only the quotes of a ``trusted`` AIK count.  The reference
    values that apply are those of ``product``, else of the device's product.
    """

    __tablename__ = "aiks"

    id: Mapped[int] = mapped_column(primary_key=True)
    keyid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    device_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="SET NULL"), index=True)
    trusted: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    description: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime.datetime | None] = mapped_column()

    device: Mapped[Device | None] = relationship()
    product: Mapped[Product | None] = relationship()

    def __repr__(self) -> str:
        return f"Aik(id={self.id!r}, keyid={self.keyid!r}, trusted={self.trusted!r})"


class Attestation(Base):
    """One remote attestation: when, by which AIK (``keyid``, also when the
    AIK is not registered), in which session, and the verdict; ``details``
    (JSON) says what was checked and what failed."""

    __tablename__ = "attestations"

    id: Mapped[int] = mapped_column(primary_key=True)
    keyid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    aik_id: Mapped[int | None] = mapped_column(sa.ForeignKey("aiks.id", ondelete="SET NULL"), index=True)
    session_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("sessions.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)
    evaluation: Mapped[EvaluationResult] = mapped_column()
    summary: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    details: Mapped[Any] = mapped_column(sa.JSON)

    aik: Mapped[Aik | None] = relationship()

    def __repr__(self) -> str:
        return f"Attestation(id={self.id!r}, keyid={self.keyid!r}, evaluation={self.evaluation!r})"


# -- RADIUS accounting -------------------------------------------------------------------

#: AccountingSession.status values
ACCT_STARTED, ACCT_UPDATED, ACCT_STOPPED = "started", "updated", "stopped"


class AccountingSession(Base):
    """One session a NAS accounts for (RFC 2866), by NAS and Acct-Session-Id.

    Text fields are as the NAS sent them, control characters escaped.
    Octets include the Gigawords (RFC 2869 §5.1-5.2).  ``device_id`` and
    ``assessment_id`` link the assessment of the same NAS and
    Calling-Station-Id (else User-Name) when one is known.  ``coa_*``: the
    last CoA-Request or Disconnect-Request sent for it and how it ended
    (RFC 5176).
    """

    __tablename__ = "accounting_sessions"
    __table_args__ = (sa.UniqueConstraint("nas", "acct_session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    nas: Mapped[str] = mapped_column(sa.String(64))
    """the NAS's short name ([radius-client:NAME]), else its address"""
    nas_address: Mapped[str] = mapped_column(sa.String(64))
    acct_session_id: Mapped[str] = mapped_column(sa.String(253))
    nas_port: Mapped[int | None] = mapped_column(sa.BigInteger)
    nas_port_id: Mapped[str | None] = mapped_column(sa.String(253))
    calling_station_id: Mapped[str | None] = mapped_column(sa.String(253), index=True)
    called_station_id: Mapped[str | None] = mapped_column(sa.String(253))
    user_name: Mapped[str | None] = mapped_column(sa.String(253))
    framed_ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    nas_ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    """the NAS-IP-Address (or NAS-IPv6-Address) the NAS reported (migration
    0014): what a CoA / Disconnect identifies it by, as RFC 5176 §3 asks"""
    device_id: Mapped[int | None] = mapped_column(sa.ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    assessment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sessions.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(sa.String(16))
    started: Mapped[datetime.datetime | None] = mapped_column()
    stopped: Mapped[datetime.datetime | None] = mapped_column()
    updated: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)
    session_time: Mapped[int | None] = mapped_column(sa.BigInteger)
    input_octets: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    output_octets: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    terminate_cause: Mapped[int | None] = mapped_column()
    coa_action: Mapped[str | None] = mapped_column(sa.String(16))
    coa_result: Mapped[str | None] = mapped_column(sa.Text)
    coa_time: Mapped[datetime.datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return (f"AccountingSession(id={self.id!r}, nas={self.nas!r}, "
                f"acct_session_id={self.acct_session_id!r}, status={self.status!r})")
