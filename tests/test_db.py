"""nac.db: migrations, engine settings, models, passwords, PolicyDb and PolicyStore.

Database tests run on SQLite (a temporary file) and on PostgreSQL
(tests/postgres.py: the server NAC_TEST_POSTGRES_URL names, else a private
one the tests start): each test there works in a schema of its own, dropped
afterwards.
"""

from __future__ import annotations

import base64
import datetime
import os
import threading

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.db import engine as db_engine
from nac.db import models as m
from nac.db.engine import (
    SchemaError,
    check_schema,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from nac.db.passwords import hash_password, verify_password
from nac.db.store import (
    AlreadyExists,
    HeldConnectionDb,
    NotFound,
    PolicyDb,
    PolicyStore,
    StoreError,
    policy_generation,
)
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.interfaces import IPolicyStore
from nac.tnccs.assessment import Decision, PeerInfo
from nac.tnccs.imv_manager import Remediation
from nac.tnccs.recommendations import ImvVerdict
from tests.nacserver import private_postgres_schema
from tests.postgres import PostgresUnavailable, postgres_url

EXPECTED_TABLES = {
    "users", "products", "devices", "groups", "group_devices", "group_identities",
    "enforcements", "packages", "versions", "sessions", "results", "measurements",
    "sw_identifiers", "swid_tags", "device_software", "swima_states", "files", "file_hashes",
    "policy_generation", "aiks", "attestations", "alembic_version", "group_products", "policies",
    "policy_results", "settings", "api_tokens", "audit_log", "accounting_sessions", "console_users",
    "device_packages", "reevaluations",
}

UTC = datetime.timezone.utc


# -- backends (mixins, also used by test_admin) ------------------------------------------


class ControlCharacterTests(unittest.TestCase):
    def test_control_characters_are_c0_and_del(self):
        for code in range(0x300):
            c = chr(code)
            self.assertEqual(m.has_control_characters(f"a{c}b"), code < 0x20 or code == 0x7F, hex(code))
        self.assertFalse(m.has_control_characters("Debian GNU/Linux 12 (bookworm) x86_64 é€"))
        self.assertFalse(m.has_control_characters(""))


class SqliteBackend:
    """Each test gets a new SQLite file in its own temporary directory."""

    backend = "sqlite"

    def database_url(self) -> str:
        return f"sqlite:///{os.path.abspath(self.mktemp())}/nac.db"


class PostgresBackend:
    """Each test gets a fresh schema in the tests' PostgreSQL database."""

    backend = "postgresql"

    def database_url(self) -> str:
        try:
            base = postgres_url()
        except PostgresUnavailable as why:
            raise unittest.SkipTest(str(why))
        url, drop = private_postgres_schema(base, "nac_test")
        self.addCleanup(drop)
        return url


class DatabaseMixin:
    """An engine on a fresh database of the backend; ``self.url`` / ``self.engine``."""

    migrate = True

    def setUp(self):
        super().setUp()
        self.url = self.database_url()
        self.engine = make_engine(self.url)
        self.addCleanup(self.engine.dispose)
        if self.migrate:
            upgrade(self.engine)


def peer(identity="alice", address="192.0.2.7", port=40000, transport="pt-tls"):
    return PeerInfo(transport=transport, address=address, port=port, identity=identity,
                    auth_method="sasl-plain")


def decision(access="isolate"):
    os_verdict = ImvVerdict(1, "os", True, A.ISOLATE, E.NONCOMPLIANT_MINOR,
                            "2 packages need updates", "en")
    scanner_verdict = ImvVerdict(2, "scanner", False, A.NO_RECOMMENDATION, E.DONT_KNOW,
                                 forced=True)
    return Decision(
        recommendation=A.ISOLATE, evaluation=E.NONCOMPLIANT_MINOR, access=access,
        reasons=(("2 packages need updates", "en"), ("no scanner result", "en")),
        remediation=(Remediation(1, "apt upgrade openssl", "en", None),
                     Remediation(1, "", "en", "https://example.org/fix")),
        imv_results=(os_verdict, scanner_verdict))


# -- migrations --------------------------------------------------------------------------


class MigrationTestsMixin(DatabaseMixin):
    migrate = False

    def tables(self) -> set[str]:
        return set(sa.inspect(self.engine).get_table_names())

    def test_upgrade_creates_the_schema_from_an_empty_database(self):
        self.assertEqual(self.tables(), set())
        self.assertIsNone(current_revision(self.engine))
        self.assertEqual(upgrade(self.engine), head_revision())
        self.assertEqual(self.tables(), EXPECTED_TABLES)
        self.assertEqual(current_revision(self.engine), head_revision())

    def test_upgrade_is_idempotent(self):
        upgrade(self.engine)
        with db_engine.make_engine(self.url).begin() as connection:
            connection.execute(sa.insert(m.Product.__table__).values(name="Debian 12 x86_64"))
        self.assertEqual(upgrade(self.engine), head_revision())
        self.assertEqual(upgrade(self.url), head_revision())
        with self.engine.connect() as connection:
            self.assertEqual(connection.scalar(sa.select(sa.func.count()).select_from(
                m.Product.__table__)), 1)

    def test_migrations_create_what_the_models_declare(self):
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        upgrade(self.engine)
        with self.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            self.assertEqual(compare_metadata(context, m.Base.metadata), [])

    def test_versions_are_indexed_by_package_and_product(self):
        upgrade(self.engine)
        inspector = sa.inspect(self.engine)
        keys = [u["column_names"] for u in inspector.get_unique_constraints("versions")]
        keys += [i["column_names"] for i in inspector.get_indexes("versions")]
        self.assertTrue(any(k[:2] == ["package_id", "product_id"] for k in keys), keys)

    def test_policy_generation_moves_on_with_every_package_policy_change(self):
        from nac.db.store import policy_generation

        upgrade(self.engine)
        seen = []

        def change(statement, **params):
            with self.engine.begin() as connection:
                connection.execute(statement, params)
                seen.append(policy_generation(connection))

        with self.engine.connect() as connection:
            seen.append(policy_generation(connection))
        change(sa.insert(m.Product.__table__).values(id=1, name="Debian 12 x86_64"))
        change(sa.insert(m.Package.__table__).values(id=1, name="openssl"))
        change(sa.insert(m.Version.__table__).values(id=1, package_id=1, product_id=1, release="3.0.1",
                                                     time=m.utcnow()))
        change(sa.update(m.Version.__table__).values(blacklisted=True))
        change(sa.delete(m.Version.__table__))
        change(sa.update(m.Package.__table__).values(name="libssl3"))
        change(sa.delete(m.Product.__table__))
        self.assertEqual(seen, sorted(set(seen)), "every change moves the generation on")
        # sessions and devices are no package policy
        change(sa.insert(m.User.__table__).values(name="carol", password_hash="x", created=m.utcnow(),
                                                  enabled=True))
        self.assertEqual(seen[-1], seen[-2])

    def test_downgrade_to_base_removes_every_table(self):
        from alembic import command

        upgrade(self.engine)
        with self.engine.begin() as connection:
            command.downgrade(db_engine.alembic_config(connection), "base")
        self.assertEqual(self.tables() - {"alembic_version"}, set())
        self.assertIsNone(current_revision(self.engine))

    def test_missing_schema_tells_to_run_init(self):
        with self.assertRaises(SchemaError) as cm:
            check_schema(self.engine)
        self.assertIn("run `nac-admin init`", str(cm.exception))
        self.assertIsNone(cm.exception.revision)

    def test_unknown_revision_is_a_schema_error(self):
        upgrade(self.engine)
        with self.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff0000'")
        with self.assertRaises(SchemaError) as cm:
            check_schema(self.engine)
        self.assertIn("ffff0000", str(cm.exception))
        self.assertIn("unknown", str(cm.exception))
        self.assertRaises(SchemaError, upgrade, self.engine)

    def test_check_schema_returns_the_head_revision(self):
        upgrade(self.engine)
        self.assertEqual(check_schema(self.engine), head_revision())


class SqliteMigrationTests(SqliteBackend, MigrationTestsMixin, unittest.TestCase):
    pass


class PostgresMigrationTests(PostgresBackend, MigrationTestsMixin, unittest.TestCase):
    pass


# -- engine settings ---------------------------------------------------------------------


class SqliteEngineTests(SqliteBackend, DatabaseMixin, unittest.TestCase):
    def pragma(self, name):
        with self.engine.connect() as connection:
            return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

    def test_wal_journal_and_foreign_keys_are_on(self):
        self.assertEqual(self.pragma("journal_mode"), "wal")
        self.assertEqual(self.pragma("foreign_keys"), 1)
        self.assertEqual(self.pragma("busy_timeout"), db_engine.SQLITE_BUSY_TIMEOUT_MS)

    def test_foreign_keys_are_enforced(self):
        with self.assertRaises(sa.exc.IntegrityError):
            with self.engine.begin() as connection:
                connection.execute(sa.insert(m.ImvResult.__table__).values(
                    session_id=999, imv_id=1, imv_name="os", recommendation=0, evaluation=0))

    def test_parent_directory_is_created(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "a", "b", "nac.db")
        engine = make_engine(f"sqlite:///{path}")
        self.addCleanup(engine.dispose)
        upgrade(engine)
        self.assertTrue(os.path.isfile(path))

    def test_a_failed_transaction_leaves_no_ddl_behind(self):
        # DDL is transactional on SQLite too (nac issues BEGIN itself)
        with self.assertRaises(RuntimeError):
            with self.engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
                raise RuntimeError("abort")
        self.assertNotIn("scratch", sa.inspect(self.engine).get_table_names())

    def test_in_memory_database_keeps_its_schema_across_uses(self):
        engine = make_engine("sqlite://")
        self.addCleanup(engine.dispose)
        upgrade(engine)
        self.assertEqual(check_schema(engine), head_revision())

    def test_postgresql_url_means_psycopg(self):
        try:
            engine = make_engine("postgresql://nac@localhost/nac")
        except db_engine.DatabaseUnavailable as exc:
            self.assertIn("psycopg", str(exc))
            return
        self.addCleanup(engine.dispose)
        self.assertEqual(engine.url.drivername, "postgresql+psycopg")

    def test_display_url_hides_the_password(self):
        shown = db_engine.display_url("postgresql+psycopg://nac:s3cret@db/nac")
        self.assertNotIn("s3cret", shown)
        self.assertEqual(shown, "postgresql+psycopg://nac:***@db/nac")


# -- models ------------------------------------------------------------------------------


class ModelTestsMixin(DatabaseMixin):
    def session(self):
        return sa.orm.Session(self.engine, expire_on_commit=False)

    def test_every_model_round_trips(self):
        seen = datetime.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
        with self.session() as s, s.begin():
            product = m.Product(name="Debian 12 x86_64")
            device = m.Device(device_id="a488651e36664792b306cf8be72dd630", product=product,
                              first_seen=seen, last_seen=seen, trusted=True, description="lab")
            root = m.Group(name="Default")
            group = m.Group(name="Research", parent=root, devices=[device])
            group.identities.append(m.GroupIdentity(identity="alice"))
            policy = m.Policy(name="ssh and https", type="open-tcp-ports", argument="22 443",
                              rec_fail=A.ISOLATE, rec_noresult=A.NO_ACCESS)
            group.enforcements.append(m.Enforcement(policy=policy, max_age=86400, rec_fail=A.NO_ACCESS))
            package = m.Package(name="openssl")
            version = m.Version(package=package, product=product, release="3.0.13-1~deb12u1",
                                security=True, time=seen)
            session = m.AssessmentSession(connection_id=3, identity="alice", transport="pt-tls",
                                          peer_address="2001:db8::1", peer_port=271,
                                          device=device, started=seen)
            session.results.append(m.ImvResult(imv_id=1, imv_name="os",
                                               recommendation=A.ALLOW, evaluation=E.COMPLIANT))
            session.measurements.append(m.Measurement(
                imv_name="os", kind="installed-packages",
                payload={"openssl": "3.0.13-1~deb12u1", "count": 1, "ok": True}))
            identifier = m.SoftwareIdentifier(
                tag_id="strongswan.org__Debian_12-x86_64-bash-5.2.15-2+b8", version=version)
            identifier.tag = m.SwidTag(xml="<SoftwareIdentity name='bash'/>")
            s.add_all([group, session, identifier])
            s.flush()
            s.add(m.DeviceSoftware(device_id=device.id, identifier_id=identifier.id))
            s.add(m.SwimaState(device_id=device.id, epoch=0xFFFFFFFF, last_eid=0xFFFFFFFE))
            s.add(m.User(name="alice", password_hash=hash_password("pw")))
            s.add(m.File(path="/usr/bin/openssl", hashes=[m.FileHash(
                product=product, algorithm="sha256", digest="ab" * 32)]))
            ids = {"device": device.id, "session": session.id, "group": group.id}

        with self.session() as s:
            device = s.get(m.Device, ids["device"])
            self.assertEqual(device.product.name, "Debian 12 x86_64")
            self.assertEqual(device.first_seen, seen)
            self.assertEqual(device.first_seen.tzinfo, UTC)
            self.assertTrue(device.trusted)
            group = s.get(m.Group, ids["group"])
            self.assertEqual(group.parent.name, "Default")
            self.assertEqual([d.device_id for d in group.devices], [device.device_id])
            self.assertEqual([i.identity for i in group.identities], ["alice"])
            rule = group.enforcements[0]
            self.assertEqual((rule.policy.type, rule.policy.argument, rule.policy.rec_fail,
                              rule.policy.rec_noresult, rule.max_age, rule.rec_fail, rule.rec_noresult),
                             ("open-tcp-ports", "22 443", A.ISOLATE, A.NO_ACCESS, 86400, A.NO_ACCESS, None))
            self.assertIs(type(rule.rec_fail), A)
            session = s.get(m.AssessmentSession, ids["session"])
            self.assertEqual(session.device.id, device.id)
            self.assertIsNone(session.recommendation)
            self.assertEqual(session.results[0].evaluation, E.COMPLIANT)
            self.assertEqual(session.measurements[0].payload,
                             {"openssl": "3.0.13-1~deb12u1", "count": 1, "ok": True})
            identifier = s.scalar(sa.select(m.SoftwareIdentifier))
            self.assertEqual(identifier.tag.xml, "<SoftwareIdentity name='bash'/>")
            self.assertEqual(identifier.version.package.name, "openssl")
            self.assertTrue(identifier.version.security)
            state = s.get(m.SwimaState, device.id)
            self.assertEqual((state.epoch, state.last_eid), (0xFFFFFFFF, 0xFFFFFFFE))
            inventory = s.scalar(sa.select(m.DeviceSoftware))
            self.assertEqual(inventory.identifier.tag_id, identifier.tag_id)
            file_hash = s.scalar(sa.select(m.FileHash))
            self.assertEqual((file_hash.file.path, file_hash.algorithm, file_hash.product.name),
                             ("/usr/bin/openssl", "sha256", "Debian 12 x86_64"))

    def test_deleting_a_session_deletes_its_results_in_the_database(self):
        with self.session() as s, s.begin():
            session = m.AssessmentSession(connection_id=1, transport="radius",
                                          peer_address="192.0.2.1")
            session.results.append(m.ImvResult(imv_id=1, imv_name="os",
                                               recommendation=A.ALLOW, evaluation=E.COMPLIANT))
            s.add(session)
        with self.engine.begin() as connection:
            connection.execute(sa.delete(m.AssessmentSession.__table__))
            count = connection.scalar(sa.select(sa.func.count()).select_from(m.ImvResult.__table__))
        self.assertEqual(count, 0)

    def test_a_release_is_unique_per_package_and_product(self):
        with self.assertRaises(sa.exc.IntegrityError):
            with self.session() as s, s.begin():
                product, package = m.Product(name="Debian 12"), m.Package(name="bash")
                s.add_all([m.Version(package=package, product=product, release="5.2"),
                           m.Version(package=package, product=product, release="5.2")])

    def test_unknown_policy_types_are_refused(self):
        self.assertRaises(ValueError, m.Policy, type="open-tcp-port")
        self.assertEqual(m.Policy(type=m.PolicyType.SWID_TAGS).type, "swid-tags")

    def test_naive_datetimes_are_refused(self):
        with self.assertRaises(sa.exc.StatementError):
            with self.session() as s, s.begin():
                s.add(m.User(name="bob", password_hash="h",
                             created=datetime.datetime(2024, 1, 1)))

    def test_user_repr_shows_no_password_hash(self):
        user = m.User(name="alice", password_hash=hash_password("hunter2"))
        self.assertNotIn("scrypt", repr(user))
        self.assertNotIn(user.password_hash, repr(user))


class SqliteModelTests(SqliteBackend, ModelTestsMixin, unittest.TestCase):
    pass


class PostgresModelTests(PostgresBackend, ModelTestsMixin, unittest.TestCase):
    pass


# -- passwords ---------------------------------------------------------------------------


class PasswordTests(unittest.TestCase):
    def test_hash_has_the_documented_form(self):
        stored = hash_password("correct horse")
        scheme, n, r, p, salt, key = stored.split("$")
        self.assertEqual((scheme, n, r, p), ("scrypt", "16384", "8", "1"))
        self.assertEqual(len(base64.b64decode(salt)), 16)
        self.assertEqual(len(base64.b64decode(key)), 32)

    def test_verify_accepts_the_password_and_nothing_else(self):
        stored = hash_password("correct horse")
        self.assertTrue(verify_password("correct horse", stored))
        self.assertTrue(verify_password(b"correct horse", stored))
        self.assertFalse(verify_password("correct horse ", stored))
        self.assertFalse(verify_password("", stored))

    def test_non_ascii_passwords_are_utf8(self):
        stored = hash_password("pässwörd ✓")
        self.assertTrue(verify_password("pässwörd ✓".encode(), stored))

    def test_each_hash_has_its_own_salt(self):
        self.assertNotEqual(hash_password("same"), hash_password("same"))

    def test_the_password_is_not_in_the_hash(self):
        self.assertNotIn("hunter2", hash_password("hunter2"))

    def test_malformed_stored_values_do_not_verify(self):
        good = hash_password("pw")
        scheme, n, r, p, salt, key = good.split("$")
        for stored in [None, "", "pw", "scrypt", good + "$", good.replace("scrypt", "bcrypt"),
                       f"scrypt$1000${r}${p}${salt}${key}",  # n not a power of two
                       f"scrypt${2**30}${r}${p}${salt}${key}",  # too expensive
                       f"scrypt${n}$0${p}${salt}${key}", f"scrypt${n}${r}$-1${salt}${key}",
                       f"scrypt${n}${r}${p}$!!${key}", f"scrypt${n}${r}${p}${salt}$",
                       f"scrypt${n}${r}${p}${salt}$QUJD",
                       f"scrypt$１６３８４${r}${p}${salt}${key}",  # not ASCII digits
                       12345]:
            self.assertFalse(verify_password("pw", stored), stored)
        self.assertFalse(verify_password(None, good))

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=120))
    def test_arbitrary_stored_values_never_raise(self, stored):
        self.assertFalse(verify_password("pw", stored))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(["scrypt", "2", "4", "1", "8", "AAAA", "", "x", "$",
                                     "QUJDREVGR0hJSktMTU5PUA=="]), max_size=8))
    def test_near_miss_stored_values_never_raise(self, parts):
        self.assertIn(verify_password("pw", "$".join(parts)), (False, True))


# -- PolicyDb (blocking) -----------------------------------------------------------------


class PolicyDbTestsMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.db = PolicyDb(self.engine)

    def test_assessment_rows_are_stored_as_sqlalchemy_stores_them(self):
        """The assessment writes run on the driver's cursor (nac.db.store._Hot):
        the very values SQLAlchemy's own execution would have stored."""
        from nac.db import store

        sid = self.db.session_started(peer(), 7)
        self.db.device_seen(sid, "device-1", "Debian 12")
        self.db.add_measurement(sid, "os", "os", {"packages": 3, "names": ["a", "ü"], "ok": True})
        self.db.session_decided(sid, decision())
        # the same rows again, through SQLAlchemy
        now = m.utcnow()
        with self.engine.begin() as connection:
            raw_peer = {"connection_id": 7, "identity": "alice", "auth_method": "sasl-plain",
                        "transport": "pt-tls", "peer_address": "192.0.2.7", "peer_port": 40000,
                        "started": now, "reason": "", "instance": None, "process": None}
            other = connection.execute(store._INSERT_SESSION.statement, raw_peer).scalar_one()
            connection.execute(sa.update(m.AssessmentSession).where(m.AssessmentSession.id == sid)
                               .values(started=now))
        tables = {"sessions": m.AssessmentSession.__table__, "results": m.ImvResult.__table__,
                  "measurements": m.Measurement.__table__, "devices": m.Device.__table__}
        with self.engine.connect() as connection:
            def stored(table, column, value):
                # what the driver hands back, before SQLAlchemy converts it
                cursor = connection.connection.cursor()
                cursor.execute(f"SELECT * FROM {table} WHERE {column} = {int(value)} ORDER BY id")
                return [row[1:] for row in cursor.fetchall()]

            hot, plain = stored("sessions", "id", sid)[0], stored("sessions", "id", other)[0]
            names = [c.name for c in tables["sessions"].columns][1:]
            for name, a, b in zip(names, hot, plain):
                if name not in ("device_id", "ended", "recommendation", "evaluation", "access", "reason"):
                    self.assertEqual((name, type(a), a), (name, type(b), b))
            results = stored("results", "session_id", sid)
            self.assertEqual(len(results), 2)
            with self.engine.begin() as c2:
                c2.execute(sa.delete(m.ImvResult).where(m.ImvResult.session_id == sid))
                c2.execute(sa.insert(m.ImvResult.__table__), [
                    {"session_id": sid, "imv_id": 1, "imv_name": "os", "recommendation": A.ISOLATE,
                     "evaluation": E.NONCOMPLIANT_MINOR, "reason": "2 packages need updates",
                     "reason_language": "en", "remediation": "apt upgrade openssl\nhttps://example.org/fix",
                     "forced": False},
                    {"session_id": sid, "imv_id": 2, "imv_name": "scanner",
                     "recommendation": A.NO_RECOMMENDATION, "evaluation": E.DONT_KNOW, "reason": "",
                     "reason_language": "", "remediation": "", "forced": True}])
            again = stored("results", "session_id", sid)
            self.assertEqual([(type(v), v) for row in results for v in row],
                             [(type(v), v) for row in again for v in row])
            [(measured_sid, imv, kind, payload, created)] = stored("measurements", "session_id", sid)
            with self.engine.begin() as c2:
                c2.execute(sa.insert(m.Measurement.__table__).values(
                    session_id=sid, imv_name="os", kind="os", created=m.utcnow(),
                    payload={"packages": 3, "names": ["a", "ü"], "ok": True}))
            plain_payload = stored("measurements", "session_id", sid)[1][3]
            self.assertEqual((type(payload), payload), (type(plain_payload), plain_payload))
        # and they read back as the ORM has them
        info, results = self.db.session_results(sid)
        self.assertEqual((info.identity, info.device, info.access), ("alice", "device-1", "isolate"))
        self.assertEqual(info.started.tzinfo, datetime.timezone.utc)
        self.assertEqual([(r.imv_name, r.recommendation, r.forced) for r in results],
                         [("os", A.ISOLATE, False), ("scanner", A.NO_RECOMMENDATION, True)])

    def test_assessment_writes_work_through_sqlalchemy_too(self):
        """Where SQLAlchemy's compiler lacks what the driver's-cursor path
        takes from it, the statements run through SQLAlchemy instead."""
        from nac.db import store

        self.patch(store._Hot, "_compiled", lambda hot, dialect: False)
        self.db.add_user("alice", "wonderland")
        self.assertTrue(self.db.check_password("alice", "wonderland"))
        sid = self.db.session_started(peer(), 7)
        self.db.device_seen(sid, "device-1", "Debian 12")
        self.db.add_measurement(sid, "os", "os", {"packages": 3})
        self.db.session_decided(sid, decision())
        info, results = self.db.session_results(sid)
        self.assertEqual((info.identity, info.device, info.access, len(results)),
                         ("alice", "device-1", "isolate", 2))

    def test_password_check(self):
        self.db.add_user("alice", "wonderland")
        self.assertTrue(self.db.check_password("alice", "wonderland"))
        self.assertFalse(self.db.check_password("alice", "Wonderland"))
        self.assertFalse(self.db.check_password("bob", "wonderland"))

    def test_disabled_users_cannot_log_in(self):
        self.db.add_user("alice", "wonderland")
        with self.db.transaction() as s:
            s.execute(sa.update(m.User).values(enabled=False))
        self.assertFalse(self.db.check_password("alice", "wonderland"))

    def test_duplicate_and_unknown_users(self):
        self.db.add_user("alice", "a")
        with self.assertRaises(AlreadyExists) as cm:
            self.db.add_user("alice", "b")
        self.assertIn("alice", str(cm.exception))
        self.assertTrue(self.db.check_password("alice", "a"))
        self.assertRaises(NotFound, self.db.delete_user, "bob")
        self.db.delete_user("alice")
        self.assertEqual(self.db.list_users(), [])

    def test_bad_user_names_and_empty_passwords_are_refused(self):
        for name in ["", "a\x00b", "x" * 256, "tab\there"]:
            self.assertRaises(StoreError, self.db.add_user, name, "pw")
        self.assertRaises(StoreError, self.db.add_user, "alice", "")
        self.assertEqual(self.db.list_users(), [])

    def test_errors_do_not_contain_the_password(self):
        self.db.add_user("alice", "s3cret-pw")
        with self.assertRaises(AlreadyExists) as cm:
            self.db.add_user("alice", "s3cret-pw")
        self.assertNotIn("s3cret-pw", str(cm.exception))

    def test_session_start_and_decision(self):
        sid = self.db.session_started(peer(), 5)
        info, results = self.db.session_results(sid)
        self.assertEqual((info.identity, info.transport, info.peer_address, info.peer_port,
                          info.connection_id, info.auth_method),
                         ("alice", "pt-tls", "192.0.2.7", 40000, 5, "sasl-plain"))
        self.assertIsNone(info.ended)
        self.assertEqual(results, [])

        self.db.session_decided(sid, decision())
        info, results = self.db.session_results(sid)
        self.assertEqual((info.recommendation, info.evaluation, info.access),
                         (A.ISOLATE, E.NONCOMPLIANT_MINOR, "isolate"))
        self.assertEqual(info.reason, "2 packages need updates\nno scanner result")
        self.assertIsNotNone(info.ended)
        os_result, scanner_result = results
        self.assertEqual((os_result.imv_name, os_result.recommendation, os_result.evaluation,
                          os_result.reason, os_result.reason_language, os_result.forced),
                         ("os", A.ISOLATE, E.NONCOMPLIANT_MINOR, "2 packages need updates",
                          "en", False))
        self.assertEqual(os_result.remediation, "apt upgrade openssl\nhttps://example.org/fix")
        self.assertEqual((scanner_result.recommendation, scanner_result.forced,
                          scanner_result.remediation), (A.NO_RECOMMENDATION, True, ""))

    def test_a_later_decision_replaces_the_earlier_one(self):
        sid = self.db.session_started(peer(), 5)
        self.db.session_decided(sid, decision())
        allowed = Decision(A.ALLOW, E.COMPLIANT, "allowed",
                           imv_results=(ImvVerdict(1, "os", True, A.ALLOW, E.COMPLIANT),))
        self.db.session_decided(sid, allowed)
        info, results = self.db.session_results(sid)
        self.assertEqual(info.access, "allowed")
        self.assertEqual([(r.imv_name, r.recommendation) for r in results], [("os", A.ALLOW)])

    def test_deciding_an_unknown_session_fails(self):
        self.assertRaises(NotFound, self.db.session_decided, 12345, decision())
        self.assertRaises(NotFound, self.db.session_results, 12345)

    def test_sessions_without_identity(self):
        sid = self.db.session_started(peer(identity=None, transport="radius"), 1)
        self.assertIsNone(self.db.session_results(sid)[0].identity)

    def test_device_seen_creates_and_reuses_devices_and_products(self):
        first = self.db.session_started(peer(), 1)
        second = self.db.session_started(peer(), 2)
        device = self.db.device_seen(first, "a488651e36664792b306cf8be72dd630", "Debian 12 x86_64")
        self.assertEqual(self.db.device_seen(second, "a488651e36664792b306cf8be72dd630",
                                             "Debian 12 x86_64"), device)
        self.assertRaises(NotFound, self.db.device_seen, 999, "x")
        [info] = self.db.list_devices()
        self.assertEqual((info.id, info.device_id, info.product, info.trusted),
                         (device, "a488651e36664792b306cf8be72dd630", "Debian 12 x86_64", False))
        self.assertEqual(self.db.session_results(second)[0].device,
                         "a488651e36664792b306cf8be72dd630")

    def test_sessions_are_listed_newest_first(self):
        ids = [self.db.session_started(peer(identity=f"user{i}"), i) for i in range(5)]
        listed = self.db.list_sessions(limit=3)
        self.assertEqual([s.id for s in listed], ids[::-1][:3])

    def test_run_commits_or_rolls_back(self):
        def add_product(session, name):
            session.add(m.Product(name=name))
            session.flush()
            return name

        self.assertEqual(self.db.run(add_product, "Debian 12"), "Debian 12")

        def add_then_fail(session):
            add_product(session, "Ubuntu 24.04")
            raise RuntimeError("imv bug")

        self.assertRaises(RuntimeError, self.db.run, add_then_fail)
        names = self.db.run(lambda s: list(s.scalars(sa.select(m.Product.name))))
        self.assertEqual(names, ["Debian 12"])


class SqlitePolicyDbTests(SqliteBackend, PolicyDbTestsMixin, unittest.TestCase):
    def test_reads_go_on_while_another_process_writes(self):
        import sqlite3

        self.db.add_user("carol", "pw")
        other = sqlite3.connect(self.engine.url.database, isolation_level=None, timeout=0)
        self.addCleanup(other.close)
        with self.engine.connect() as connection:  # no waiting for locks: fail at once
            connection.exec_driver_sql("PRAGMA busy_timeout = 0")
        other.execute("BEGIN IMMEDIATE")  # a writer elsewhere holds the write lock
        other.execute("UPDATE users SET enabled = 1")
        self.assertEqual(self.db.password_row("carol")[1], True)
        self.assertEqual(self.db.read(policy_generation), self.db.read(policy_generation))
        # a write would wait for that lock: reads are what skip it
        with self.assertRaises(sa.exc.OperationalError):
            with self.engine.begin() as connection:
                connection.exec_driver_sql("SELECT 1")
        other.execute("ROLLBACK")


class PostgresPolicyDbTests(PostgresBackend, PolicyDbTestsMixin, unittest.TestCase):
    pass


# -- PolicyStore (Deferreds, thread pool) ------------------------------------------------


class PolicyStoreTestsMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine)
        self.store.start()
        self.addCleanup(self.store.stop)

    def test_provides_the_policy_store_interface(self):
        self.assertTrue(verifyObject(IPolicyStore, self.store))

    def test_pool_is_dedicated_and_bounded(self):
        # SQLite takes one writer at a time: one query thread, no lock queueing
        expected = 1 if self.backend == "sqlite" else 4
        self.assertEqual((self.store.threadpool.min, self.store.threadpool.max), (1, expected))
        self.assertTrue(self.store.threadpool.started)
        self.assertEqual(self.store.auth_pool.max, 2)
        self.assertTrue(self.store.auth_pool.started)

    @defer.inlineCallbacks
    def test_password_checks_do_not_wait_for_each_other_in_the_query_pool(self):
        yield self.store.run(lambda session: None)
        main = threading.current_thread()
        seen = []
        import nac.db.store as store_module
        real = store_module.check_against

        def spy(*args):
            seen.append(threading.current_thread().name)
            return real(*args)

        self.patch(store_module, "check_against", spy)
        self.store.db.add_user("erin", "a password")
        self.assertTrue((yield self.store.check_password("erin", "a password")))
        # verified once: remembered, no second scrypt
        self.assertTrue((yield self.store.check_password("erin", "a password")))
        self.assertFalse((yield self.store.check_password("erin", "wrong")))
        self.assertEqual(len(seen), 2)
        self.assertTrue(all("nac-auth" in name for name in seen), seen)
        self.assertNotIn(main.name, seen)

    @defer.inlineCallbacks
    def test_queries_run_off_the_reactor_thread(self):
        main = threading.current_thread()
        thread = yield self.store.run(lambda session: threading.current_thread())
        self.assertIsNot(thread, main)

    @defer.inlineCallbacks
    def test_check_password(self):
        yield self.store.run(
            lambda s: s.add(m.User(name="alice", password_hash=hash_password("pw"))))
        self.assertIs((yield self.store.check_password("alice", "pw")), True)
        self.assertIs((yield self.store.check_password("alice", "wrong")), False)
        self.assertIs((yield self.store.check_password("mallory", "pw")), False)

    @defer.inlineCallbacks
    def test_session_started_and_decided(self):
        sid = yield self.store.session_started(peer(), 9)
        self.assertIsInstance(sid, int)
        yield self.store.device_seen(sid, "d1", "Debian 12 x86_64")
        self.assertIsNone((yield self.store.session_decided(sid, decision())))
        info, results = self.store.db.session_results(sid)
        self.assertEqual((info.connection_id, info.access, info.device), (9, "isolate", "d1"))
        self.assertEqual([r.imv_name for r in results], ["os", "scanner"])

    @defer.inlineCallbacks
    def test_failures_arrive_as_errbacks(self):
        yield self.assertFailure(self.store.session_decided(4242, decision()), NotFound)

        def boom(session):
            raise ValueError("broken query")

        yield self.assertFailure(self.store.run(boom), ValueError)

    @defer.inlineCallbacks
    def test_concurrent_sessions(self):
        ids = yield defer.gatherResults(
            [self.store.session_started(peer(identity=f"u{i}"), i) for i in range(12)])
        self.assertEqual(len(set(ids)), 12)
        yield defer.gatherResults([self.store.session_decided(sid, decision()) for sid in ids])
        self.assertEqual(len(self.store.db.list_sessions(limit=100)), 12)

    @defer.inlineCallbacks
    def test_check_schema(self):
        self.assertEqual((yield self.store.check_schema()), head_revision())

    @defer.inlineCallbacks
    def test_writes_arriving_together_share_a_commit(self):
        first = self.store.session_started(peer(identity="first"), 1)
        # these arrive while the first one's transaction runs
        rest = [self.store.session_started(peer(identity=f"u{i}"), i) for i in range(2, 40)]
        ids = yield defer.gatherResults([first] + rest)
        self.assertEqual(len(set(ids)), 39)
        self.assertLessEqual(self.store.writes.batches, 3)
        sessions = {s.id: s for s in self.store.db.list_sessions(limit=100)}
        self.assertEqual(sessions[ids[0]].identity, "first")
        self.assertEqual(sessions[ids[5]].connection_id, 6)

    @defer.inlineCallbacks
    def test_the_writes_of_one_reactor_turn_go_together(self):
        before = self.store.writes.batches
        ids = yield defer.gatherResults([self.store.session_started(peer(), i) for i in (1, 2, 3)])
        self.assertEqual((len(set(ids)), self.store.writes.batches - before), (3, 1))
        yield defer.gatherResults([self.store.session_decided(sid, decision()) for sid in ids]
                                  + [self.store.add_measurement(ids[0], "os", "os", {"n": 1})])
        self.assertEqual(self.store.writes.batches - before, 2)

    @defer.inlineCallbacks
    def test_a_session_start_brings_the_policy_generation_with_it(self):
        self.assertIsNone(self.store.policy_generation)
        yield self.store.session_started(peer(), 1)
        before = self.store.db.read(policy_generation)
        self.assertEqual(self.store.policy_generation, before)
        yield self.store.session_decided((yield self.store.session_started(peer(), 2)), decision())
        self.assertEqual(self.store.policy_generation, before)
        self.store.db.import_packages("Debian 12", [("git", "1:2.39.5-0+deb12u2")])  # nac-admin
        yield self.store.session_started(peer(), 3)
        self.assertGreater(self.store.policy_generation, before)
        self.assertEqual(self.store.policy_generation, self.store.db.read(policy_generation))

    @defer.inlineCallbacks
    def test_a_failing_write_costs_the_others_in_its_batch_nothing(self):
        sid = yield self.store.session_started(peer(), 1)
        writes = [self.store.add_measurement(sid, "os", "os", {"n": 1}),
                  self.store.device_seen(sid, "d1", "Debian 12 x86_64"),
                  self.store.session_decided(4242, decision()),
                  self.store.session_decided(sid, decision()),
                  self.store.device_seen(sid, "\x01bad", None)]
        results = yield defer.DeferredList(writes, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, False, True, False])
        results[2][1].trap(NotFound)
        results[4][1].trap(StoreError)
        info, imv_results = self.store.db.session_results(sid)
        self.assertEqual((info.device, info.access), ("d1", "isolate"))
        self.assertEqual(len(imv_results), 2)

    @defer.inlineCallbacks
    def test_a_known_device_gets_its_product_and_sessions(self):
        one = yield self.store.session_started(peer(), 1)
        two = yield self.store.session_started(peer(), 2)
        pk = yield self.store.device_seen(one, "d1")
        self.assertEqual((yield self.store.device_seen(two, "d1", "Debian 12 x86_64")), pk)
        [device] = self.store.db.list_devices()
        self.assertEqual((device.device_id, device.product), ("d1", "Debian 12 x86_64"))
        self.assertEqual({s.device for s in self.store.db.list_sessions()}, {"d1"})

    @defer.inlineCallbacks
    def test_idle_fires_once_the_writes_and_those_they_lead_to_are_committed(self):
        yield self.store.writes.idle()  # nothing to wait for
        sid = self.store.session_started(peer(), 1)
        # a write submitted when the first one's result arrives
        sid.addCallback(lambda session_id: self.store.session_decided(session_id, decision()))
        yield self.store.writes.idle()
        [info] = self.store.db.list_sessions()
        self.assertEqual(info.access, "isolate")

    def test_stopping_commits_the_writes_still_waiting(self):
        pending = [self.store.session_started(peer(identity=f"u{i}"), i) for i in range(10)]
        self.store.stop()
        self.assertEqual(len(self.store.db.list_sessions(limit=100)), 10)
        for d in pending:
            d.addErrback(lambda f: None)


class SqlitePolicyStoreTests(SqliteBackend, PolicyStoreTestsMixin, unittest.TestCase):
    def pool_work(self) -> list[str]:
        """Names of the pool PolicyDb's methods called from now on."""
        called: list[str] = []
        for name in ("write_batch", "password_row", "eap_secret", "checkpoint"):
            real = getattr(self.store.db, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                called.append(_name)
                return _real(*args, **kwargs)

            setattr(self.store.db, name, spy)
        return called

    def hold_write_lock(self):
        """Another connection (as another process) takes the write lock;
        returns the function that releases it."""
        import sqlite3

        other = sqlite3.connect(self.engine.url.database, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE users SET enabled = 1")

        def release():
            other.execute("ROLLBACK")
            other.close()

        return release

    def test_inline_engine_never_waits_for_a_lock_nor_checkpoints(self):
        def pragmas(engine):
            with engine.connect() as connection:
                return tuple(connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                             for name in ("busy_timeout", "wal_autocheckpoint", "journal_mode"))

        self.assertEqual(pragmas(self.store.inline_db.engine), (0, 0, "wal"))
        self.assertEqual(pragmas(self.engine), (db_engine.SQLITE_BUSY_TIMEOUT_MS, 1000, "wal"))
        self.assertIs(self.store.inline_db.verified, self.store.db.verified)
        with self.assertRaises(ValueError):
            db_engine.make_engine("sqlite://", inline=True)  # in memory: no second engine sees it

    @defer.inlineCallbacks
    def test_assessment_writes_and_logins_run_inline(self):
        self.store.db.add_user("carol", "carol's password", eap=False)
        pool = self.pool_work()
        sid = yield self.store.session_started(peer(identity="carol"), 1)
        yield defer.gatherResults([self.store.device_seen(sid, "d1", "Debian 12 x86_64"),
                                   self.store.add_measurement(sid, "os", "os", {"n": 1})])
        yield self.store.session_decided(sid, decision("allow"))
        self.assertTrue((yield self.store.check_password("carol", "carol's password")))
        self.assertTrue((yield self.store.check_password("carol", "carol's password")))  # verified before
        self.assertFalse((yield self.store.check_password("carol", "wrong")))
        self.assertIsNone((yield self.store.eap_secret("carol")))
        self.assertEqual(pool, [])
        self.assertEqual((self.store.inline_runs, self.store.inline_fallbacks), (3 + 3 + 1, 0))
        info, results = self.store.db.session_results(sid)
        self.assertEqual((info.identity, info.device, info.access, len(results)), ("carol", "d1", "allow", 2))

    @defer.inlineCallbacks
    def test_a_locked_database_sends_the_writes_to_the_pool(self):
        self.store.db.add_user("carol", "carol's password")
        pool = self.pool_work()
        release = self.hold_write_lock()
        started = self.store.session_started(peer(identity="carol"), 1)
        # a reader is not held up by the writer (WAL): the login lookup stays inline
        self.assertTrue((yield self.store.check_password("carol", "carol's password")))
        # while the other writer holds the lock, the pool's write waits for it
        self.assertFalse(started.called)
        release()  # the other writer finishes, the pool's wait ends
        sid = yield started
        self.assertEqual(pool, ["write_batch"])
        self.assertEqual(self.store.inline_fallbacks, 1)
        self.assertEqual(self.store.db.session_results(sid)[0].identity, "carol")
        # the lock gone, the next writes are inline again
        yield self.store.session_decided(sid, decision())
        self.assertEqual(pool, ["write_batch"])

    @defer.inlineCallbacks
    def test_the_pool_checkpoints_what_the_inline_writes_logged(self):
        self.store.CHECKPOINT_EVERY = 3
        pool = self.pool_work()
        for i in range(7):  # one batch each
            yield self.store.session_started(peer(), i)
            if i % 3 == 2:
                yield self.store.run(lambda session: None)  # after the checkpoint queued in the pool
        self.assertEqual(pool, ["checkpoint", "checkpoint"])
        self.assertEqual(self.store.checkpoints, 2)
        busy, logged, copied = self.store.db.checkpoint()
        self.assertEqual((busy, logged), (0, copied))


class HeldConnectionDbTests(SqliteBackend, DatabaseMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.db = PolicyDb(self.engine)
        self.held = HeldConnectionDb(make_engine(self.url, inline=True))
        self.addCleanup(self.held.engine.dispose)
        self.addCleanup(self.held.close)

    def test_transactions_and_reads_reuse_their_connections(self):
        from nac.db.store import record_session_start

        self.db.add_user("carol", "pw")
        self.held.write_batch_once([(record_session_start, (peer(), 1))])
        writer = self.held._writer.connection.dbapi_connection
        self.held.write_batch_once([(record_session_start, (peer(), 2))])
        self.assertIs(self.held._writer.connection.dbapi_connection, writer)
        self.assertEqual(self.held.password_row("carol")[1], True)
        reader = self.held._reader.connection.dbapi_connection
        self.assertIsNot(reader, writer)
        # a read through SQLAlchemy (it begins a transaction) leaves none open to hold a WAL snapshot
        self.assertEqual(self.held.read(policy_generation), self.db.read(policy_generation))
        self.assertFalse(self.held._reader.in_transaction())
        self.assertIs(self.held._reader.connection.dbapi_connection, reader)
        self.assertEqual(len(self.db.list_sessions()), 2)

    def test_a_failed_transaction_keeps_nothing_and_its_connection_is_replaced(self):
        from nac.db.store import record_decision, record_session_start

        first = self.held._writer
        with self.assertRaises(NotFound):
            self.held.write_batch_once([(record_session_start, (peer(), 1)), (record_decision, (4242, decision()))])
        self.assertIsNone(self.held._writer)
        self.assertEqual(self.db.list_sessions(), [])
        [(ok, sid)] = self.held.write_batch_once([(record_session_start, (peer(), 2))])
        self.assertTrue(ok)
        self.assertIsNot(self.held._writer, first)
        self.assertEqual([s.id for s in self.db.list_sessions()], [sid])
        self.held.close()
        self.assertEqual((self.held._writer, self.held._reader), (None, None))


class InlineSettingTests(unittest.TestCase):
    def test_only_a_sqlite_file_has_an_inline_engine_and_it_can_be_turned_off(self):
        from nac import config as nac_config
        from nac.tap import build_store

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)

        def store(extra):
            cfg = nac_config.load(None, {("nac", "state_dir"): directory, **extra})
            made = build_store(cfg)
            self.addCleanup(made.db.engine.dispose)
            self.addCleanup(made.stop)
            return made

        self.assertIsNotNone(store({}).inline_db)
        self.assertIsNone(store({("nac", "db_inline"): "no"}).inline_db)
        memory = make_engine("sqlite://")
        self.addCleanup(memory.dispose)
        self.assertIsNone(PolicyStore(memory).inline_db)


class PostgresPolicyStoreTests(PostgresBackend, PolicyStoreTestsMixin, unittest.TestCase):
    def test_everything_goes_through_the_pool(self):
        self.assertIsNone(self.store.inline_db)


class RecordingReactor:
    """Just the system event trigger calls of a reactor."""

    def __init__(self):
        self.triggers = {}

    def addSystemEventTrigger(self, phase, event, fn, *args):
        handle = object()
        self.triggers[handle] = (phase, event, fn)
        return handle

    def removeSystemEventTrigger(self, handle):
        del self.triggers[handle]


class PolicyStoreLifetimeTests(unittest.TestCase):
    def setUp(self):
        self.engine = make_engine("sqlite://")
        self.addCleanup(self.engine.dispose)
        self.reactor = RecordingReactor()

    def test_start_registers_and_stop_removes_a_shutdown_trigger(self):
        store = PolicyStore(self.engine, reactor=self.reactor)
        store.start()
        [(phase, event, fn)] = self.reactor.triggers.values()
        self.assertEqual((phase, event), ("during", "shutdown"))
        self.assertTrue(store.threadpool.started)
        store.stop()
        self.assertEqual(self.reactor.triggers, {})
        self.assertFalse(store.threadpool.started)
        store.stop()  # twice is harmless

    def test_reactor_shutdown_stops_the_pool(self):
        store = PolicyStore(self.engine, reactor=self.reactor)
        store.start()
        [(_phase, _event, fn)] = self.reactor.triggers.values()
        fn()
        self.assertFalse(store.threadpool.started)
        store.stop()

    def test_service_start_and_stop_run_the_given_pool(self):
        pool = ThreadPool(minthreads=1, maxthreads=2, name="test-db")
        store = PolicyStore(self.engine, threadpool=pool, reactor=self.reactor)
        store.startService()
        self.assertTrue(pool.started)
        self.assertTrue(store.running)
        store.stopService()
        self.assertFalse(pool.started)
        self.assertEqual(self.reactor.triggers, {})
