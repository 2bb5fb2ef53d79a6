"""Re-evaluation after a policy change (nac.reevaluate) against a real
database, SQLite and PostgreSQL: the real OS IMV judges a device again
with the package list it kept, the core's recommendation policy combines
that with the other IMVs' last results, and a changed decision is recorded
and heard by the store's decision listeners (the RADIUS CoA dispatcher in
the server; tests/test_reevaluate_e2e.py runs that end to end)."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from twisted.internet import defer, task
from twisted.trial import unittest

from imvs.os import OsImv
from nac.db import models as m
from nac.db.reevaluation import claim_reevaluation, keep_device_packages, policy_generations
from nac.db.store import PolicyStore
from nac.ifimv import ActionRecommendation as A
from nac.ifimv import EvaluationResult as E
from nac.ifimv import RecommendationPolicy
from nac.reevaluate import Reevaluator
from nac.server import attach_store
from nac.tnccs.assessment import Decision, PeerInfo
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from nac.tnccs.recommendations import ImvVerdict
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend

PRODUCT = "Debian 12 x86_64"
PACKAGES = [("bash", "5.2.15-2+b7"), ("openssl", "3.0.15-1~deb12u1"), ("zlib1g", "1:1.2.13.dfsg-1")]


class ReevaluationMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.core = self.make_core()
        self.heard: list[tuple[int, Decision]] = []
        self.store.decision_listeners.append(lambda sid, decision: self.heard.append((sid, decision)))
        self.store.db.import_packages(PRODUCT, PACKAGES)

    def make_core(self):
        core = TnccsCore(ImvManager([OsImv({"non_compliant_major": "isolate", "no_result": "allow"})]),
                         policy=RecommendationPolicy.DEFAULT)
        attach_store(core, self.store)
        return core

    def reevaluator(self, instance="a", **kwargs) -> Reevaluator:
        return Reevaluator(self.core, self.store, instance=instance, clock=task.Clock(), **kwargs)

    @defer.inlineCallbacks
    def assessed(self, device_id: str, *, access="allowed", others=(), packages=PACKAGES, acct="open",
                 measurements=None):
        """Record an assessment of ``device_id`` as the OS IMV and the core
        would (the os measurement, the package list, each IMV's result) and,
        with ``acct``, an accounting session of it ('open' or 'stopped')."""
        store = self.store
        peer = PeerInfo(transport="radius", address="192.0.2.1", identity="carol", auth_method="eap-ttls",
                        nas="sw1", station=f"02-00-00-00-00-{len(device_id):02d}")
        sid = yield store.session_started(peer, 7)
        yield store.device_seen(sid, device_id, PRODUCT)
        yield store.add_measurement(sid, "os", "os", {
            "product": PRODUCT, "device_id": device_id, "forwarding": "disabled", "default_password": False,
            "packages": {"count": len(packages), "ok": len(packages), "unknown": 0, "vulnerable": [],
                         "blacklisted": []}, "evaluation": "compliant"})
        yield store.keep_device_packages(sid, PRODUCT, "aa" * 16, list(packages))
        for (imv, kind), payload in (measurements or {}).items():
            yield store.add_measurement(sid, imv, kind, payload)
        verdicts = (ImvVerdict(1, "os", True, A.ALLOW, E.COMPLIANT),) + tuple(others)
        rec = {"allowed": A.ALLOW, "isolate": A.ISOLATE, "denied": A.NO_ACCESS}[access]
        yield store.session_decided(sid, Decision(recommendation=rec, evaluation=E.COMPLIANT, access=access,
                                                  imv_results=verdicts))
        if acct:
            with self.engine.begin() as c:
                device_pk = c.scalar(sa.select(m.Device.id).where(m.Device.device_id == device_id))
                c.execute(sa.insert(m.AccountingSession.__table__).values(
                    nas="sw1", nas_address="192.0.2.1", acct_session_id=f"acct-{device_id}",
                    status=m.ACCT_STOPPED if acct == "stopped" else m.ACCT_STARTED,
                    updated=datetime.datetime.now(datetime.timezone.utc), device_id=device_pk,
                    assessment_id=sid))
        self.heard.clear()
        return sid

    def sessions(self) -> list:
        with self.engine.begin() as c:
            return c.execute(sa.select(m.AssessmentSession.id, m.AssessmentSession.transport,
                                       m.AssessmentSession.access, m.AssessmentSession.reason)
                             .order_by(m.AssessmentSession.id)).all()

    @defer.inlineCallbacks
    def changed(self, reevaluator: Reevaluator, change):
        """Baseline, ``change()``, then one poll: the decisions changed."""
        yield reevaluator.poll()
        before = reevaluator.changed
        change()
        yield reevaluator.poll()
        yield self.store.writes.idle()
        return reevaluator.changed - before

    # -- tests -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_a_blacklisted_package_isolates_and_lifting_it_allows_again(self):
        first = yield self.assessed("dev-1")
        r = self.reevaluator()
        n = yield self.changed(r, lambda: self.store.db.blacklist_package(PRODUCT, "openssl"))
        self.assertEqual(n, 1)
        [(sid, decision)] = self.heard
        self.assertEqual((decision.access, decision.recommendation), ("isolate", A.ISOLATE))
        self.assertEqual(decision.imv_results[0].evaluation, E.NONCOMPLIANT_MAJOR)
        rows = self.sessions()
        self.assertEqual((rows[-1].id, rows[-1].transport, rows[-1].access), (sid, "reevaluation", "isolate"))
        self.assertGreater(sid, first)
        with self.engine.begin() as c:
            device = c.scalar(sa.select(m.AssessmentSession.device_id).where(m.AssessmentSession.id == sid))
            os_payload = c.scalar(sa.select(m.Measurement.payload).where(m.Measurement.session_id == sid))
        self.assertIsNotNone(device, "the re-evaluation session is not bound to the device")
        self.assertEqual(os_payload["packages"]["blacklisted"], [["openssl", "3.0.15-1~deb12u1"]])
        # nothing changed since: nothing judged, nothing recorded
        self.heard.clear()
        yield r.poll()
        self.assertEqual((self.heard, len(self.sessions())), ([], len(rows)))
        n = yield self.changed(r, lambda: self.store.db.blacklist_package(PRODUCT, "openssl", blacklisted=False))
        self.assertEqual(n, 1)
        figures = {f.name: f.samples[0].value for f in r.metric_families()}
        self.assertEqual(figures, {"nac_reevaluations": 2, "nac_reevaluation_devices": 2,
                                   "nac_reevaluation_changes": 2})
        self.assertEqual([d.access for _, d in self.heard], ["allowed"])
        self.assertEqual(self.sessions()[-1].transport, "reevaluation")

    @defer.inlineCallbacks
    def test_an_unchanged_decision_records_nothing(self):
        yield self.assessed("dev-2")
        count = len(self.sessions())
        n = yield self.changed(self.reevaluator(), lambda: self.store.db.blacklist_package(PRODUCT, "coreutils"))
        self.assertEqual((n, self.heard, len(self.sessions())), (0, [], count))

    @defer.inlineCallbacks
    def test_only_devices_with_an_open_accounting_session_are_judged(self):
        yield self.assessed("dev-stopped", acct="stopped")
        yield self.assessed("dev-none", acct=None)
        count = len(self.sessions())
        n = yield self.changed(self.reevaluator(), lambda: self.store.db.blacklist_package(PRODUCT, "bash"))
        self.assertEqual((n, self.heard, len(self.sessions())), (0, [], count))

    @defer.inlineCallbacks
    def test_the_other_imvs_last_results_stand(self):
        from imvs.scanner import ScannerImv

        self.core = TnccsCore(ImvManager([OsImv({"non_compliant_major": "no-access"}), ScannerImv()]),
                              policy=RecommendationPolicy.DEFAULT)
        attach_store(self.core, self.store)
        # the scanner isolated it: the OS IMV allowing again does not allow it ...
        scanner = ImvVerdict(2, "scanner", True, A.ISOLATE, E.NONCOMPLIANT_MINOR, "port 23 is open", "en")
        yield self.assessed("dev-3", access="isolate", others=(scanner,))
        r = self.reevaluator()
        n = yield self.changed(r, lambda: self.store.db.blacklist_package(PRODUCT, "coreutils"))
        self.assertEqual((n, self.heard), (0, []))
        # ... and its result goes with the OS IMV's new one into the new decision
        n = yield self.changed(r, lambda: self.store.db.blacklist_package(PRODUCT, "zlib1g"))
        self.assertEqual(n, 1)
        [(_, decision)] = self.heard
        self.assertEqual(decision.access, "denied")
        self.assertEqual([(v.imv_name, v.recommendation, v.reason) for v in decision.imv_results],
                         [("os", A.NO_ACCESS, decision.imv_results[0].reason),
                          ("scanner", A.ISOLATE, "port 23 is open")])
        self.assertIn("port 23 is open", self.sessions()[-1].reason)

    @defer.inlineCallbacks
    def test_a_port_policy_given_to_the_device_s_group_isolates_it(self):
        from imvs.scanner import ScannerImv
        from nac.db import manage

        self.core = TnccsCore(ImvManager([OsImv(), ScannerImv({"closed_port_policy": False})]),
                              policy=RecommendationPolicy.DEFAULT)
        attach_store(self.core, self.store)
        scanner = ImvVerdict(2, "scanner", True, A.ALLOW, E.COMPLIANT)
        yield self.assessed("dev-11", others=(scanner,), measurements={("scanner", "open-ports"): {
            "open": [{"protocol": "tcp", "port": 22}, {"protocol": "tcp", "port": 23}], "violations": [],
            "closed_port_policy": False}})
        r = self.reevaluator()

        def forbid_telnet():
            run = self.store.db.run
            lab = run(manage.add_group, {"name": "lab"})
            telnet = run(manage.add_policy, {"name": "no telnet", "type": "blocked-tcp-ports", "argument": "23",
                                             "rec_fail": "isolate"})
            run(manage.add_enforcement, {"policy": telnet["id"], "group": lab["id"], "max_age": 0})
            pk = run(lambda session: session.scalar(sa.select(m.Device.id).where(m.Device.device_id == "dev-11")))
            run(manage.set_device, pk, {"groups": ["lab"]})

        n = yield self.changed(r, forbid_telnet)
        self.assertEqual(n, 1)
        [(_, decision)] = self.heard
        self.assertEqual(decision.access, "isolate")
        self.assertEqual([(v.imv_name, v.recommendation) for v in decision.imv_results],
                         [("os", A.ALLOW), ("scanner", A.ISOLATE)])
        self.assertIn("tcp/23", decision.imv_results[1].remediation[0].instructions)
        self.assertEqual(decision.enforcement.groups, ("lab",))

    @defer.inlineCallbacks
    def test_one_instance_of_several_does_the_work(self):
        yield self.assessed("dev-4")
        a, b = self.reevaluator("a"), self.reevaluator("b")
        yield a.poll()
        yield b.poll()
        self.store.db.blacklist_package(PRODUCT, "openssl")
        yield a.poll()
        yield b.poll()
        yield self.store.writes.idle()
        self.assertEqual((a.changed, b.changed, a.runs, b.runs), (1, 0, 1, 0))
        self.assertEqual(len(self.heard), 1)

    @defer.inlineCallbacks
    def test_at_most_max_devices_are_judged_after_one_change(self):
        for name in ("dev-5", "dev-6", "dev-7"):
            yield self.assessed(name)
        r = self.reevaluator(max_devices=2)
        n = yield self.changed(r, lambda: self.store.db.blacklist_package(PRODUCT, "openssl"))
        self.assertEqual(n, 2)
        self.assertEqual(len(self.heard), 2)

    @defer.inlineCallbacks
    def test_the_package_list_is_rewritten_only_when_it_changed(self):
        yield self.assessed("dev-8")
        with self.engine.begin() as c:
            sid = c.scalar(sa.select(sa.func.max(m.AssessmentSession.id)))
            self.assertFalse(keep_device_packages(c, sid, PRODUCT, "aa" * 16, [("other", "1")]))
            kept = c.execute(sa.select(m.DevicePackages.packages)).scalar()
            self.assertEqual(kept, [list(p) for p in PACKAGES])
            self.assertTrue(keep_device_packages(c, sid, PRODUCT, "bb" * 16, [("other", "1")]))
            self.assertEqual(c.execute(sa.select(m.DevicePackages.packages)).scalar(), [["other", "1"]])

    @defer.inlineCallbacks
    def test_an_assessment_of_a_known_product_leaves_the_policy_generations(self):
        # on PostgreSQL the triggers fire once per INSERT statement, even one
        # inserting nothing: every assessment used to move the package policy on
        yield self.assessed("dev-9")
        before = self.store.db.read(policy_generations)
        yield self.assessed("dev-10")
        self.assertEqual(self.store.db.read(policy_generations), before)

    def test_a_claim_is_taken_once(self):
        with self.engine.begin() as c:
            self.assertTrue(claim_reevaluation(c, "policy:1:2", "a"))
        with self.engine.begin() as c:
            self.assertFalse(claim_reevaluation(c, "policy:1:2", "b"))
            self.assertFalse(claim_reevaluation(c, "policy:1:2", None))
            self.assertTrue(claim_reevaluation(c, "policy:1:2", "a"))  # its own, tried again
            self.assertTrue(claim_reevaluation(c, "policy:1:3", "b"))

    @defer.inlineCallbacks
    def test_a_change_the_database_failed_is_judged_at_the_next_poll(self):
        from nac.db.outage import StoreUnavailable

        yield self.assessed("dev-12")
        r = self.reevaluator()
        yield r.poll()
        read = self.store.read
        failing = []

        def unavailable(fn, *args, **kwargs):
            if fn.__name__ == "live_devices" and not failing:
                failing.append(fn)
                return defer.fail(StoreUnavailable("the database is away"))
            return read(fn, *args, **kwargs)

        self.store.read = unavailable
        self.addCleanup(setattr, self.store, "read", read)
        self.store.db.blacklist_package(PRODUCT, "openssl")
        yield r.poll()
        self.assertEqual((failing != [], r.changed, self.heard), (True, 0, []))
        yield r.poll()
        yield self.store.writes.idle()
        self.assertEqual((r.changed, [d.access for _, d in self.heard]), (1, ["isolate"]))


class SqliteReevaluationTests(SqliteBackend, ReevaluationMixin, unittest.TestCase):
    pass


class PostgresReevaluationTests(PostgresBackend, ReevaluationMixin, unittest.TestCase):
    pass
