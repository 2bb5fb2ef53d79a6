"""The decisions a worker process commits reach the main process's listeners
(RADIUS CoA): the ``decided`` control message, its value types'
round-trip, and the main process's check of every field — a bad message is
one log line and reaches no listener."""

from __future__ import annotations

import ipaddress
import json

from twisted.logger import formatEventAsClassicLogText, globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac import processes as w
from nac.interfaces import IWorkerProcesses
from nac.tnccs.assessment import GroupEnforcement, RelayedDecision
from tests.test_db import decision
from tests.test_pt_tls_workers import FakeReactor

ENFORCEMENT = GroupEnforcement(groups=("lab", "staff"), filter_id_isolate="lab-quarantine", vlan_allow="10",
                               allow_ts=(ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8::/32")),
                               session_timeout=3600)


class Listeners:
    """The main process's store, as far as the relay goes."""

    def __init__(self):
        self.told: list[tuple[int, object]] = []

    def notify_decision(self, session_id, decision):
        self.told.append((session_id, decision))


class RelayedDecisionTests(unittest.TestCase):
    def test_group_enforcement_round_trips_through_json(self):
        for value in (ENFORCEMENT, GroupEnforcement()):
            self.assertEqual(GroupEnforcement.from_json(json.loads(json.dumps(value.to_json()))), value)

    def test_a_decision_keeps_its_access_and_enforcement(self):
        made = RelayedDecision.of(decision("isolate"))
        self.assertEqual(made, RelayedDecision("isolate", None))
        relayed = RelayedDecision("allowed", ENFORCEMENT)
        self.assertEqual(RelayedDecision.from_json(json.loads(json.dumps(relayed.to_json()))), relayed)


class DecisionRelayTests(unittest.TestCase):
    def setUp(self):
        self.store = Listeners()
        self.relay = w.decision_relay(self.store)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def texts(self) -> list[str]:
        return [formatEventAsClassicLogText(e) or "" for e in self.logged]

    def test_a_good_message_reaches_the_listeners(self):
        self.relay(1, {"nac_control": "decided", "session": 42,
                       "decision": RelayedDecision("isolate", ENFORCEMENT).to_json()})
        self.assertEqual(self.store.told, [(42, RelayedDecision("isolate", ENFORCEMENT))])
        self.assertEqual(self.texts(), [])

    def test_every_field_is_checked_and_a_bad_message_is_one_line(self):
        good = RelayedDecision("allowed", ENFORCEMENT).to_json()
        bad = [
            ({"session": "42", "decision": good}, "session: not a session number"),
            ({"session": True, "decision": good}, "session: not a session number"),
            ({"session": 0, "decision": good}, "session: not a session number"),
            ({"session": 2 ** 70, "decision": good}, "session: not a session number"),
            ({"decision": good}, "session: not a session number"),
            ({"session": 1}, "decision: not an object"),
            ({"session": 1, "decision": [good]}, "decision: not an object"),
            ({"session": 1, "decision": {**good, "access": "open"}}, "decision.access"),
            ({"session": 1, "decision": {**good, "access": ["allowed"]}}, "decision.access"),
            ({"session": 1, "decision": {**good, "enforcement": "lab"}}, "enforcement: not an object"),
            ({"session": 1, "decision": {**good, "enforcement": {"colour": "red"}}}, "unknown field 'colour'"),
            ({"session": 1, "decision": {**good, "enforcement": {"groups": "lab"}}}, "enforcement.groups"),
            ({"session": 1, "decision": {**good, "enforcement": {"filter_id_allow": 7}}},
             "enforcement.filter_id_allow"),
            ({"session": 1, "decision": {**good, "enforcement": {"vlan_isolate": "x" * 300}}},
             "enforcement.vlan_isolate"),
            ({"session": 1, "decision": {**good, "enforcement": {"session_timeout": -1}}},
             "enforcement.session_timeout"),
            ({"session": 1, "decision": {**good, "enforcement": {"session_timeout": 1.5}}},
             "enforcement.session_timeout"),
            ({"session": 1, "decision": {**good, "enforcement": {"allow_ts": "10.0.0.0/8"}}},
             "enforcement.allow_ts"),
            ({"session": 1, "decision": {**good, "enforcement": {"isolate_ts": ["10.0.0.0/33"]}}},
             "10.0.0.0/33"),
        ]
        # one worker number each: the repeat limiter keeps one line per worker
        for worker, (message, why) in enumerate(bad, 100):
            self.logged.clear()
            self.relay(worker, {"nac_control": "decided", **message})
            [line] = self.texts()
            self.assertIn(f"worker {worker} sent a decision nac cannot use, dropped: ", line)
            self.assertIn(why, line)
        self.assertEqual(self.store.told, [])


class ControlDispatchTests(unittest.TestCase):
    """The supervisor passes kinds it does not know to the handler registered for them."""

    def setUp(self):
        self.reactor = FakeReactor()
        self.sup = w.WorkerSupervisor("nac.conf", {}, 2, reactor=self.reactor, publish=lambda event: None)
        self.proto = w.WorkerProcess(self.sup, 1, b"{}\n")
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_the_supervisor_is_the_interface_transports_see(self):
        verifyObject(IWorkerProcesses, self.sup)
        self.assertEqual(self.sup.on_control, {})

    def test_a_registered_kind_goes_to_its_handler_with_the_worker_number(self):
        store = Listeners()
        self.sup.on_control["decided"] = w.decision_relay(store)
        line = json.dumps({"nac_control": "decided", "session": 7,
                           "decision": RelayedDecision("denied").to_json()}).encode()
        self.proto.outReceived(line + b"\n")
        self.assertEqual(store.told, [(7, RelayedDecision("denied"))])

    def test_an_unregistered_kind_is_dropped_and_a_failing_handler_costs_its_message_only(self):
        self.proto.outReceived(b'{"nac_control": "decided", "session": 7}\n')

        def broken(worker, message):
            raise RuntimeError("bug")

        self.sup.on_control["decided"] = broken
        self.proto.outReceived(b'{"nac_control": "decided", "session": 7}\n')
        [failure] = [e for e in self.logged if e.get("log_failure") is not None]
        self.assertIn("the handler of a 'decided' message of worker 1 failed",
                      formatEventAsClassicLogText(failure))
        self.flushLoggedErrors(RuntimeError)
        self.proto.outReceived(b'{"nac_control": "ready"}\n')
        self.assertTrue(self.proto.ready)
