"""What the posture tests share: whole assessments of nac's TNC client
through a real TNCS core (:func:`run_assessment`, :class:`ImvHarness`), a
migrated policy database behind a started PolicyStore
(:class:`PolicyStoreMixin`), IMVs scripted with functions
(:class:`ScriptedImv`) and one TNCCS connection fed client batches
directly (:class:`CoreHarness`)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from twisted.internet import defer
from zope.interface import implementer

from nac.client.pb_client import PbTncClient
from nac.db.store import PolicyStore
from nac.ifimv import ConnectionState
from nac.interfaces import IImv
from nac.pa import PaMessage
from nac.pb import PbBatch, PbPa
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.test_collectors import SWIMA_PACKAGES, Host
from tests.test_db import DatabaseMixin

from tests.vectors import VECTORS  # noqa: F401 (the core's tests import it from here)
ETC = Path(__file__).resolve().parents[1] / "etc" / "nac.conf"
#: The ITA Device ID of the fixture hosts (tests.test_collectors.Host).
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"
#: PT-EAP's limits (strongSwan's 32,754-byte batches).
PT_EAP = TransportLimits(max_batch_size=32754, max_message_size=32722)


def tmpdir(testcase, prefix: str = "nac-imv-") -> Path:
    """A directory removed after the test."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    testcase.addCleanup(shutil.rmtree, path, True)
    return path


# -- whole assessments: nac's client against the core -----------------------------------------


@dataclass
class Assessment:
    """One PB-TNC exchange: the client's outcome, the server's decision and batches."""

    outcome: object
    decision: object
    server_batches: list
    rounds: int

    def attributes(self, subtype: int) -> list:
        """(PbPa, attribute) of every PA message of ``subtype`` the server sent."""
        out = []
        for batch in self.server_batches:
            for msg in batch.messages:
                if isinstance(msg, PbPa) and msg.pa_subtype == subtype:
                    out.extend((msg, a) for a in PaMessage.parse(msg.body).attributes)
        return out

    def sent(self, subtype: int, cls) -> list:
        """The attributes of class ``cls`` in the server's PA messages of ``subtype``."""
        return [a for _, a in self.attributes(subtype) if isinstance(a, cls)]

    def verdict(self, name: str):
        [verdict] = [v for v in self.decision.imv_results if v.imv_name == name]
        return verdict


@defer.inlineCallbacks
def run_assessment(testcase, imcs, imvs, *, store=None, limits=TransportLimits(), max_rounds=10,
                   language="en", policy_source=None):
    """Run one whole assessment: nac's PB-TNC client with ``imcs`` against a
    TnccsCore with ``imvs`` (and the group policy of ``policy_source``),
    batch by batch until either side closes."""
    core = TnccsCore(ImvManager(imvs), store=store, max_rounds=max_rounds)
    core.policy_source = policy_source
    connection = core.open_connection(PeerInfo("pt-tls", "127.0.0.1", 40000, "carol"), limits)
    client = PbTncClient(imcs, max_batch_size=limits.max_batch_size,
                         max_message_size=limits.max_message_size, language=language)
    data = client.start()
    server_batches = []
    rounds = 0
    while True:
        rounds += 1
        testcase.assertLess(rounds, 60, "the exchange does not end")
        outcome = yield connection.receive_batch(data)
        if outcome.close:
            break
        step = None
        for batch in outcome.batches:
            server_batches.append(PbBatch.parse(batch))
            step = client.receive_batch(batch)
        if step.close:
            if step.batch is not None:
                yield connection.receive_batch(step.batch)
            break
        data = step.batch
    return Assessment(client.outcome, connection.decision, server_batches, rounds)


class ImvHarness:
    """Runs whole assessments of nac's client against the core (mixed into
    test cases that set ``self.store`` to a PolicyStore or None)."""

    store = None

    def host(self, packages=SWIMA_PACKAGES, **kw) -> Host:
        return Host(tmpdir(self), packages, **kw)

    @defer.inlineCallbacks
    def assess(self, imcs, imvs, *, limits=TransportLimits(), max_rounds=10, language="en",
               use_store=True, policy_source=None):
        """An assessment that must complete."""
        result = yield run_assessment(self, imcs, imvs, store=self.store if use_store else None,
                                      limits=limits, max_rounds=max_rounds, language=language,
                                      policy_source=policy_source)
        self.assertTrue(result.outcome.completed, result.outcome.error)
        if use_store and self.store is not None:
            # the IMVs' records and the decision are written in the background
            yield self.store.writes.idle()
        return result


class PolicyStoreMixin(DatabaseMixin):
    """A migrated database per test (SQLite or PostgreSQL, see
    tests/postgres.py) behind a real, started PolicyStore:
    ``self.store`` and its ``self.db``."""

    def setUp(self):
        super().setUp()
        self.store = PolicyStore(self.engine)
        self.store.start()
        self.addCleanup(self.store.stop)
        self.db = self.store.db


# -- the core alone, with scripted IMVs ---------------------------------------------------------


@implementer(IImv)
class ScriptedImv:
    """An IMV whose reactions are given as functions of (connection[, message])."""

    def __init__(self, name, subscriptions, on_message=None, *, on_batch_ending=None, on_solicit=None):
        self.name = name
        self.subscriptions = subscriptions
        self.on_message, self.on_batch_ending, self.on_solicit = on_message, on_batch_ending, on_solicit
        self.states: list[ConnectionState] = []
        self.received = []

    def notify_connection_change(self, connection, state):
        self.states.append(state)

    def receive_message(self, connection, message):
        self.received.append(message)
        if self.on_message:
            return self.on_message(connection, message)

    def batch_ending(self, connection):
        if self.on_batch_ending:
            return self.on_batch_ending(connection)

    def solicit_recommendation(self, connection):
        if self.on_solicit:
            return self.on_solicit(connection)


class CoreHarness:
    """One connection of a real TnccsCore with ``imvs``, speaking
    ``protocol``, fed whole client batches; the IMVs must answer at once."""

    transport = "test"
    protocol = "pb-tnc"

    def __init__(self, testcase, imvs, limits=None, **core_kw):
        self.core = TnccsCore(ImvManager(imvs), **core_kw)
        self.conn = self.core.open_connection(PeerInfo(self.transport, "127.0.0.1", identity="carol"),
                                              limits or TransportLimits(), protocol=self.protocol)
        self.tc = testcase

    def parse(self, batch: bytes):
        """A server batch, parsed and checked to be addressed to the client."""
        raise NotImplementedError

    def send(self, data: bytes):
        outcomes = []
        self.conn.receive_batch(data).addCallback(outcomes.append)
        self.tc.assertEqual(len(outcomes), 1, "the core did not answer synchronously")
        out = outcomes[0]
        parsed = [self.parse(b) for b in out.batches]
        return SimpleNamespace(batches=out.batches, parsed=parsed, decision=out.decision, close=out.close)
