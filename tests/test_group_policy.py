"""The group policy (nac.policy) against a real database: which groups an
endpoint is in, which checks apply, what the transports enforce, and that a
change is seen at the next lookup (the generation triggers), on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime
import ipaddress

import sqlalchemy as sa
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.db import manage
from nac.db import models as m
from nac.db.store import PolicyStore
from nac.ifimv import ActionRecommendation as A
from nac.interfaces import IEndpointPolicy, IPolicySource
from nac.policy import PolicySource, parse_argument, record_policy_result
from nac.tnccs.assessment import Endpoint
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend


class ArgumentTests(unittest.TestCase):
    def test_each_type_checks_its_parameter(self):
        self.assertEqual(parse_argument("open-tcp-ports", "22, 8000-8080"), ((22, 22), (8000, 8080)))
        self.assertRaises(ValueError, parse_argument, "open-tcp-ports", "22 70000")
        self.assertEqual(parse_argument("installed-packages", ""), "security")
        self.assertRaises(ValueError, parse_argument, "installed-packages", "sometimes")
        self.assertEqual(parse_argument("forbidden-packages", "telnetd, rsh*"), ("telnetd", "rsh*"))
        self.assertRaises(ValueError, parse_argument, "forbidden-packages", "  ")
        self.assertRaises(ValueError, parse_argument, "forwarding-enabled", "yes")
        self.assertRaises(ValueError, parse_argument, "no-such-type", "")


class GroupPolicyMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.source = PolicySource(self.store)

    def run_db(self, fn, *args):
        return self.store.db.run(fn, *args)

    def device(self, device_id, product=None):
        with self.engine.begin() as c:
            product_id = None
            if product is not None:
                product_id = c.execute(sa.select(m.Product.id).where(m.Product.name == product)).scalar()
                if product_id is None:
                    product_id = c.execute(sa.insert(m.Product.__table__).values(name=product)
                                           .returning(m.Product.__table__.c.id)).scalar()
            now = datetime.datetime.now(datetime.timezone.utc)
            return c.execute(sa.insert(m.Device.__table__).values(
                device_id=device_id, product_id=product_id, first_seen=now, last_seen=now, trusted=False,
                description="").returning(m.Device.__table__.c.id)).scalar()

    @defer.inlineCallbacks
    def test_an_endpoint_in_no_group_is_in_the_default_group(self):
        self.assertTrue(verifyObject(IPolicySource, self.source))
        policy = yield self.source.resolve(Endpoint("alice", "dev-1", "Debian 12"))
        self.assertTrue(verifyObject(IEndpointPolicy, policy))
        self.assertEqual(policy.groups, ("default",))
        self.assertEqual(policy.enforcement.vlan_isolate, None)
        self.assertFalse(policy.governs(["open-tcp-ports"]))

    @defer.inlineCallbacks
    def test_groups_by_device_identity_product_and_ancestry(self):
        servers = self.run_db(manage.add_group, {"name": "servers", "vlan_isolate": 66, "allow_ts": "10.9.0.0/16"})
        web = self.run_db(manage.add_group, {"name": "web", "parent": "servers", "vlan_isolate": "77"})
        self.run_db(manage.add_group, {"name": "guests", "identities": ["guest"], "filter_id_allow": "guest"})
        self.device("dev-web", "Debian 12")
        self.device("dev-other", "Debian 12")
        self.run_db(manage.set_device, self.store.db.run(
            lambda s: s.scalar(sa.select(m.Device.id).where(m.Device.device_id == "dev-web"))), {"groups": ["web"]})
        policy = yield self.source.resolve(Endpoint("carol", "dev-web", "Debian 12"))
        self.assertEqual(policy.groups, ("web", "servers"))
        self.assertEqual(policy.enforcement.vlan_isolate, "77")  # the most specific group's
        self.assertEqual(policy.enforcement.allow_ts, (ipaddress.ip_network("10.9.0.0/16"),))
        policy = yield self.source.resolve(Endpoint("guest", "dev-other", "Debian 12"))
        self.assertEqual((policy.groups, policy.enforcement.filter_id_allow), (("guests",), "guest"))
        # a product's default group, for a device in no group of its own
        self.run_db(manage.update_group, servers["id"], {"products": ["Debian 12"]})
        policy = yield self.source.resolve(Endpoint("carol", "dev-other", "Debian 12"))
        self.assertEqual(policy.groups, ("servers",))
        self.assertEqual(web["parent"], "servers")

    @defer.inlineCallbacks
    def test_checks_of_the_groups_each_once_and_changes_seen_at_the_next_lookup(self):
        lab = self.run_db(manage.add_group, {"name": "lab", "identities": ["dave"]})
        ssh = self.run_db(manage.add_policy, {"name": "ssh only", "type": "open-tcp-ports", "argument": "22",
                                              "rec_fail": "isolate"})
        self.run_db(manage.add_enforcement, {"policy": ssh["id"], "group": lab["id"], "max_age": 0})
        policy = yield self.source.resolve(Endpoint("dave"))
        self.assertTrue(policy.governs(["open-tcp-ports", "blocked-tcp-ports"]))
        [check] = policy.checks(["open-tcp-ports"])
        self.assertEqual((check.name, check.parameter, check.rec_fail, check.group),
                         ("ssh only", ((22, 22),), A.ISOLATE, "lab"))
        loads = self.source.loads
        yield self.source.resolve(Endpoint("dave"))
        self.assertEqual(self.source.loads, loads)  # nothing changed: kept in memory
        self.run_db(manage.update_policy, ssh["id"], {"argument": "22 443", "rec_fail": "block"})
        [check] = (yield self.source.resolve(Endpoint("dave"))).checks(["open-tcp-ports"])
        self.assertEqual((check.parameter, check.rec_fail), (((22, 22), (443, 443)), A.NO_ACCESS))
        self.assertEqual(self.source.loads, loads + 1)

    @defer.inlineCallbacks
    def test_a_recent_good_result_skips_a_check_with_a_max_age(self):
        lab = self.run_db(manage.add_group, {"name": "lab"})
        pw = self.run_db(manage.add_policy, {"name": "no default password", "type": "default-password"})
        self.run_db(manage.add_enforcement, {"policy": pw["id"], "group": lab["id"], "max_age": 3600})
        pk = self.device("dev-lab")
        self.run_db(manage.set_device, pk, {"groups": ["lab"]})
        endpoint = Endpoint(None, "dev-lab")
        [check] = (yield self.source.resolve(endpoint)).checks(["default-password"])
        with self.engine.begin() as c:
            record_policy_result(c, "dev-lab", pw["id"], None, A.NO_ACCESS)
        self.assertEqual(len((yield self.source.resolve(endpoint)).checks(["default-password"])), 1)
        with self.engine.begin() as c:
            record_policy_result(c, "dev-lab", pw["id"], None, A.ALLOW)
        policy = yield self.source.resolve(endpoint)
        self.assertEqual(policy.checks(["default-password"]), [])
        self.assertTrue(policy.governs(["default-password"]))

    def test_bad_values_name_their_field(self):
        for fn, body, field in (
                (manage.add_group, {"name": "x", "vlan_allow": 5000}, "vlan_allow"),
                (manage.add_group, {"name": "x", "isolate_ts": "10.0.0.1/8"}, "isolate_ts"),
                (manage.add_group, {"name": "x", "parent": "nope"}, "parent"),
                (manage.add_group, {"name": "", }, "name"),
                (manage.add_policy, {"name": "p", "type": "open-tcp-ports", "argument": "x"}, "argument"),
                (manage.add_policy, {"name": "p", "type": "nope"}, "type"),
                (manage.add_policy, {"name": "p", "type": "default-password", "rec_fail": "deny"}, "rec_fail"),
                (manage.add_enforcement, {"policy": 999, "group": 1}, "policy")):
            with self.assertRaises(manage.FieldError) as cm:
                self.run_db(fn, body)
            self.assertEqual(cm.exception.field, field, body)

    def test_a_group_cannot_become_its_own_ancestor(self):
        a = self.run_db(manage.add_group, {"name": "a"})
        self.run_db(manage.add_group, {"name": "b", "parent": "a"})
        with self.assertRaises(manage.FieldError) as cm:
            self.run_db(manage.update_group, a["id"], {"parent": "b"})
        self.assertEqual(cm.exception.field, "parent")


class SqliteGroupPolicyTests(SqliteBackend, GroupPolicyMixin, unittest.TestCase):
    pass


class PostgresGroupPolicyTests(PostgresBackend, GroupPolicyMixin, unittest.TestCase):
    pass
