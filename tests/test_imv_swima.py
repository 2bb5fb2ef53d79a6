"""The SWIMA IMV (RFC 8412) against a real SQLite policy store, driven by
PB-TNC batches of nac's own TNC client running its OS and SWIMA collectors
over fixture files (dpkg status, apt history): full inventories, events
since the stored EID, SWID tags the store lacks, epoch changes, silent
collectors, segmented attributes both ways and malformed attributes; and
the ISO/IEC 19770-2 tag parser."""

from __future__ import annotations

import datetime
import os
import re
import struct
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.swid import SwidTagError, SwidTagFormat, parse_swid_tag
from imvs.swima import MAX_REQUESTS, SwimaImv, device_inventory, device_swima_state, store_inventory
from nac import config
from nac.client.collectors.swima import SwimaImc
from nac.client.imc import PaTncImc, ReceivedPaMessage
from nac.db import models as m
from nac.db.engine import make_engine, upgrade
from nac.db.outage import StoreUnavailable
from nac.db.store import PolicyDb
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.interfaces import IImv
from nac.pa import (
    MaxAttributeSizeRequest,
    PaSubtype,
    NextSegment,
    PaMessage,
    PaTncErrorCode,
    SegmentEnvelope,
    UnknownAttribute,
)
from nac.pa.ietf import PaTncErrorAttribute
from nac.pa.ita import DeviceId
from nac.pa.swima import (
    SoftwareEvents,
    SoftwareIdentifierEvents,
    SoftwareIdentifierInventory,
    SoftwareInventory,
    SwimaEvent,
    SwimaEventAction,
    SwimaRecord,
    SwimaRequest,
    SwimaRequestFlag,
)
from nac.pb import BatchType as B, Direction, PbBatch, PbPa
from nac.tnccs.assessment import PeerInfo, TransportLimits
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager, load_imv
from tests.posture import ETC, MACHINE_ID, PT_EAP, Assessment, PolicyStoreMixin, run_assessment, tmpdir
from tests.test_collectors import HISTORY, SWIMA_PACKAGES, Host, sw_id
from tests.test_db import PostgresBackend, SqliteBackend

SWIMA = 9
STRONGSWAN_EPOCH = 0x11223344

MORE_HISTORY = """
Start-Date: 2026-04-01  07:00:00
Commandline: apt-get install vim
Install: vim:amd64 (2:9.0.1378-2)
Remove: git:amd64 (1:2.39.5-0+deb12u3)
End-Date: 2026-04-01  07:00:09
"""


def swima_kw(host: Host) -> dict:
    """The SwimaImc arguments of ``host.swima_imc()``, for subclasses."""
    return dict(dpkg_status=host.status, history_logs=[host.history], os_release=[host.os_release],
                machine="x86_64", history_timezone=datetime.timezone.utc)


class RecordingSwimaImc(SwimaImc):
    """nac's SWIMA collector, remembering every attribute an IMV sent it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def reply_attributes(self, connection, message: ReceivedPaMessage, attributes):
        self.seen.extend(attributes)
        return super().reply_attributes(connection, message, attributes)


class SwimaDatabaseMixin(PolicyStoreMixin):
    """Whole assessments with the SWIMA IMV against a real PolicyStore."""

    def host(self, packages=SWIMA_PACKAGES, history=HISTORY, root=None) -> Host:
        return Host(root or tmpdir(self, "nac-swima-"), packages, history=history)

    def assess(self, imcs, *, imv=None, limits=TransportLimits(), max_rounds=10):
        """Run one whole assessment of ``imcs`` through the core and the client."""
        return run_assessment(self, imcs, [imv or SwimaImv()], store=self.store, limits=limits,
                              max_rounds=max_rounds)

    def inventory(self, installed_only=True):
        return self.db.run(device_inventory, MACHINE_ID, installed_only=installed_only)

    def swima_state(self):
        def read(session):
            device = session.scalar(sa.select(m.Device).where(m.Device.device_id == MACHINE_ID))
            state = session.get(m.SwimaState, device.id)
            return state.epoch, state.last_eid
        return self.db.run(read)

    def tags(self) -> dict[str, str]:
        def read(session):
            rows = session.execute(sa.select(m.SoftwareIdentifier.tag_id, m.SwidTag.xml)
                                   .join(m.SwidTag, m.SwidTag.identifier_id == m.SoftwareIdentifier.id))
            return dict(rows.all())
        return self.db.run(read)

    def measurements(self):
        return self.db.run(lambda s: [(r.kind, r.payload) for r in s.scalars(
            sa.select(m.Measurement).order_by(m.Measurement.id))])

    def verdict(self, assessment: Assessment):
        [verdict] = assessment.decision.imv_results
        return verdict.recommendation, verdict.evaluation


class FlowTestsMixin(SwimaDatabaseMixin):
    @defer.inlineCallbacks
    def test_first_assessment_stores_the_full_inventory_and_its_tags(self):
        host = self.host()
        swima = RecordingSwimaImc(**swima_kw(host))
        result = yield self.assess([host.os_imc(), swima])

        first, tags = result.sent(SWIMA, SwimaRequest)
        # a device never seen: its whole inventory, identifiers only
        self.assertEqual((first.earliest_eid, first.flags, first.identifiers),
                         (0, SwimaRequestFlag.RESULT_TYPE, ()))
        [(message, contract)] = [(msg, a) for msg, a in result.attributes(SWIMA)
                                 if isinstance(a, MaxAttributeSizeRequest)]
        # strongSwan's segment size for PT-TLS, and a bounded attribute size
        self.assertEqual((contract.max_attribute_size, contract.max_segment_size),
                         (16 * 1024 * 1024, 2097080))
        self.assertEqual((message.collector_id, message.exclusive), (0xFFFF, False))
        expected = sorted(sw_id(n, v) for n, v in SWIMA_PACKAGES)
        # then the tags the store lacks, in one targeted request
        self.assertEqual((tags.earliest_eid, tags.flags, tags.identifiers), (0, 0, tuple(expected)))

        self.assertEqual(self.inventory(), dict.fromkeys(expected, True))
        self.assertEqual(self.swima_state(), (STRONGSWAN_EPOCH, 5))
        stored = self.tags()
        self.assertEqual(sorted(stored), expected)
        parsed = parse_swid_tag(stored[sw_id("bash", "5.2.15-2+b8")])
        self.assertEqual((parsed.name, parsed.version), ("bash", "5.2.15-2+b8"))

        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(result.decision.access, "allowed")
        # like strongSwan, the IMV tells its IMC the result
        [assessment] = result.outcome.imv_results
        self.assertEqual((assessment.imc_name, assessment.result_label), ("SWIMA", "compliant"))
        # the session is bound to the device the ITA Device ID names
        self.assertEqual(self.db.list_sessions()[0].device, MACHINE_ID)
        kinds = [kind for kind, _ in self.measurements()]
        self.assertEqual(kinds, ["swima-inventory", "swid-tags"])
        self.assertEqual(self.measurements()[0][1]["identifiers"], 4)
        self.assertLessEqual(result.rounds, 4)

    @defer.inlineCallbacks
    def test_second_assessment_asks_only_for_events_since_the_last_eid(self):
        host = self.host()
        yield self.assess([host.os_imc(), host.swima_imc()])
        # apt installs vim and removes git
        after = [p for p in SWIMA_PACKAGES if p[0] != "git"] + [("vim", "2:9.0.1378-2")]
        host = self.host(packages=after, history=HISTORY + MORE_HISTORY, root=host.root)
        result = yield self.assess([host.os_imc(), host.swima_imc()])

        events, tags = result.sent(SWIMA, SwimaRequest)
        self.assertEqual((events.earliest_eid, events.flags, events.identifiers),
                         (6, SwimaRequestFlag.RESULT_TYPE, ()))
        # only the new software lacks its tag
        self.assertEqual(tags.identifiers, (sw_id("vim", "2:9.0.1378-2"),))
        self.assertEqual(self.inventory(), dict.fromkeys(sorted(sw_id(n, v) for n, v in after), True))
        self.assertIs(self.inventory(installed_only=False)[sw_id("git", "1:2.39.5-0+deb12u3")], False)
        self.assertEqual(self.swima_state(), (STRONGSWAN_EPOCH, 6))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        events_measured = [p for kind, p in self.measurements() if kind == "swima-events"]
        self.assertEqual(events_measured, [{"epoch": STRONGSWAN_EPOCH, "last_eid": 6, "created": 1,
                                            "deleted": 1, "altered": 0}])

        # nothing new: one request, no events, nothing else to ask
        result = yield self.assess([host.os_imc(), host.swima_imc()])
        [events] = result.sent(SWIMA, SwimaRequest)
        self.assertEqual(events.earliest_eid, 7)
        self.assertEqual(self.swima_state(), (STRONGSWAN_EPOCH, 6))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(len(self.inventory()), 4)

    @defer.inlineCallbacks
    def test_epoch_change_falls_back_to_the_full_inventory(self):
        host = self.host()
        yield self.assess([host.os_imc(), host.swima_imc()])
        # the collector's event log was reset: a new epoch, other software
        after = [("bash", "5.2.15-2+b8"), ("zsh", "5.9-4+b6")]
        host = self.host(packages=after, history="", root=host.root)
        result = yield self.assess([host.os_imc(), host.swima_imc(eid_epoch=0x55667788)])

        events, inventory, tags = result.sent(SWIMA, SwimaRequest)
        self.assertEqual(events.earliest_eid, 6)
        self.assertEqual((inventory.earliest_eid, inventory.flags), (0, SwimaRequestFlag.RESULT_TYPE))
        self.assertEqual(tags.identifiers, (sw_id("zsh", "5.9-4+b6"),))
        self.assertEqual(self.inventory(), dict.fromkeys(sorted(sw_id(n, v) for n, v in after), True))
        self.assertEqual(self.swima_state(), (0x55667788, 1))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))

    @defer.inlineCallbacks
    def test_collector_without_event_log_answers_with_its_inventory_like_strongswan(self):
        host = self.host(history=None)
        yield self.assess([host.os_imc(), host.swima_imc()])
        self.assertEqual(self.swima_state(), (STRONGSWAN_EPOCH, 1))
        swima = RecordingSwimaImc(**swima_kw(host))
        result = yield self.assess([host.os_imc(), swima])
        # events from EID 2 refused with a SWIMA Error, the inventory in the same
        # message: no further request, nothing lacking
        [events] = result.sent(SWIMA, SwimaRequest)
        self.assertEqual(events.earliest_eid, 2)
        self.assertEqual(self.inventory(), dict.fromkeys(sorted(sw_id(n, v) for n, v in SWIMA_PACKAGES), True))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        self.assertLessEqual(result.rounds, 3)

    @defer.inlineCallbacks
    def test_collector_that_never_answers_gets_the_no_result_recommendation(self):
        host = self.host()
        result = yield self.assess([host.os_imc()])  # no SWIMA collector at all
        self.assertEqual(len(result.sent(SWIMA, SwimaRequest)), 1)
        self.assertEqual(self.verdict(result), (A.NO_RECOMMENDATION, E.DONT_KNOW))
        self.assertEqual(result.decision.access, "denied")
        self.assertLessEqual(result.rounds, 3)
        self.assertEqual(self.inventory(), {})

        imv = SwimaImv(options={"no_result": "allow"})
        result = yield self.assess([host.os_imc()], imv=imv)
        self.assertEqual(self.verdict(result), (A.ALLOW, E.DONT_KNOW))
        self.assertEqual(result.decision.access, "allowed")

        imv = SwimaImv(options={"no_result": "isolate"})
        result = yield self.assess([host.os_imc()], imv=imv)
        self.assertEqual(result.decision.access, "isolate")
        self.assertEqual([r.text for r in result.outcome.reasons], ["No software inventory was received"])

    @defer.inlineCallbacks
    def test_an_inventory_the_database_cannot_read_or_keep_never_allows(self):
        """The database is away: whatever no_result says, the check that
        could not be made gives check_failed (no-access by default), quietly."""
        host = self.host()
        tries = []

        def unavailable(*args, **kw):
            tries.append(args[0])
            return defer.fail(StoreUnavailable("OperationalError: refused"))

        self.patch(self.store, "run", unavailable)
        for options, access in (({"no_result": "allow"}, "denied"),
                                ({"no_result": "allow", "check_failed": "isolate"}, "isolate")):
            del tries[:]
            result = yield self.assess([host.os_imc(), RecordingSwimaImc(**swima_kw(host))],
                                       imv=SwimaImv(options=options))
            self.assertEqual(len(tries), 1)  # the assessment waited for the database once
            self.assertEqual(result.decision.access, access)
            self.assertEqual(self.verdict(result)[1], E.ERROR)
            self.assertEqual([r.text for r in result.outcome.reasons], ["The security policy could not be checked"])
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_large_inventory_travels_in_segments_both_ways(self):
        # ~70 KB of identifiers and ~200 KB of tags through 32 KB PA-TNC messages
        packages = [(f"package-{i:04d}-" + "with-a-very-long-name-" * 6, f"1:{i}.0.{i % 7}-1+deb12u{i % 3}")
                    for i in range(400)]
        host = self.host(packages=packages)
        swima = RecordingSwimaImc(**swima_kw(host))
        result = yield self.assess([host.os_imc(), swima], limits=PT_EAP, max_rounds=40)

        contract = result.sent(SWIMA, MaxAttributeSizeRequest)[0]
        self.assertEqual(contract.max_segment_size, 32698)  # strongSwan's over PT-EAP
        # the collector's inventory and tags arrived in segments the IMV asked for
        self.assertGreaterEqual(len(result.sent(SWIMA, NextSegment)), 2 + 2 * 3)
        # the targeted tag requests went out in segments, a response of a few messages each
        self.assertGreaterEqual(len(result.sent(SWIMA, SegmentEnvelope)), 2)
        tag_requests = [a for a in swima.seen if isinstance(a, SwimaRequest) and a.identifiers]
        self.assertEqual([len(r.identifiers) for r in tag_requests], [255, 145])
        self.assertEqual(len(self.inventory()), 400)
        self.assertEqual(len(self.tags()), 400)
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        for batch in result.server_batches:
            self.assertLessEqual(len(batch.build()), PT_EAP.max_batch_size)

    @defer.inlineCallbacks
    def test_tags_arrive_over_several_assessments_when_rounds_run_out(self):
        packages = [(f"package-{i:04d}-" + "with-a-long-name-" * 4, f"{i}.0-1") for i in range(400)]
        host = self.host(packages=packages)
        result = yield self.assess([host.os_imc(), host.swima_imc()], limits=PT_EAP, max_rounds=10)
        # the inventory is in, the tags only partly: still compliant
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        self.assertEqual(len(self.inventory()), 400)
        first = len(self.tags())
        self.assertTrue(0 < first < 400, first)
        result = yield self.assess([host.os_imc(), host.swima_imc()], limits=PT_EAP, max_rounds=10)
        self.assertEqual(len(self.tags()), 400)

    @defer.inlineCallbacks
    def test_too_large_responses_make_the_imv_ask_for_fewer_tags(self):
        host = self.host()

        class Limited(RecordingSwimaImc):
            def reply_attributes(self, connection, message, attributes):
                request = next((a for a in attributes if isinstance(a, SwimaRequest)), None)
                if request is not None and len(request.identifiers) > 2:
                    self.seen.append(request)
                    return [PaTncErrorAttribute.swima_error(
                        PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR, request.request_id,
                        "response too large", max_allowed_size=1000)]
                return super().reply_attributes(connection, message, attributes)

        result = yield self.assess([host.os_imc(), Limited(**swima_kw(host))])
        self.assertEqual([len(r.identifiers) for r in result.sent(SWIMA, SwimaRequest)], [0, 4, 2, 2])
        self.assertEqual(len(self.tags()), 4)
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))


class MalformedTestsMixin(SwimaDatabaseMixin):
    @defer.inlineCallbacks
    def test_malformed_inventory_gets_a_pa_tnc_error_and_no_result(self):
        host = self.host()

        class Broken(RecordingSwimaImc):
            def reply_attributes(self, connection, message, attributes):
                self.seen.extend(attributes)
                if any(isinstance(a, SwimaRequest) for a in attributes):
                    # a record count of 5 and no records
                    return [UnknownAttribute(0, 14, struct.pack(">B3sIII", 0, b"\0\0\5", 1, 2, 3))]
                return []

        swima = Broken(**swima_kw(host))
        result = yield self.assess([host.os_imc(), swima])
        [error] = [a for a in swima.seen if isinstance(a, PaTncErrorAttribute)]
        self.assertEqual(error.error_code, PaTncErrorCode.INVALID_PARAMETER)
        self.assertEqual(self.verdict(result), (A.NO_RECOMMENDATION, E.DONT_KNOW))
        self.assertEqual(self.inventory(), {})

    @defer.inlineCallbacks
    def test_malformed_segmented_inventory_gets_a_pa_tnc_error_from_the_imv(self):
        host = self.host()

        class Broken(RecordingSwimaImc):
            def reply_attributes(self, connection, message, attributes):
                self.seen.extend(attributes)
                if any(isinstance(a, SwimaRequest) for a in attributes):
                    return [UnknownAttribute(0, 14, b"\0\0\0\x07" + b"\x55" * 70000)]
                return []

        swima = Broken(**swima_kw(host))
        result = yield self.assess([host.os_imc(), swima], limits=PT_EAP)
        [error] = [a for a in swima.seen if isinstance(a, PaTncErrorAttribute)]
        self.assertEqual(error.error_code, PaTncErrorCode.INVALID_PARAMETER)
        # strongSwan's way of naming a segmented attribute: 0xffffffff + base attribute ID
        self.assertEqual(error.message_header[:4], b"\xff\xff\xff\xff")
        self.assertGreaterEqual(len(result.sent(SWIMA, NextSegment)), 2)
        self.assertEqual(self.verdict(result), (A.NO_RECOMMENDATION, E.DONT_KNOW))


def tag_xml(identifier: str, name: str = "pkg", version: str = "1.0") -> bytes:
    regid, _, tag_id = identifier.partition("__")
    return (f'<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" '
            f'name="{name}" tagId="{tag_id}" version="{version}">'
            f'<Entity name="Example" regid="{regid}" role="tagCreator"/></SoftwareIdentity>').encode()


def ids(*names: str) -> list[str]:
    return [f"example.org__{name}" for name in names]


class ScriptedSwimaImc(PaTncImc):
    """A SWIMA collector whose answers a test writes: ``answer(request, n)``
    returns the attributes answering the n-th SWIMA Request."""

    name = "SWIMA"
    subtype = PaSubtype.SWIMA

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[SwimaRequest] = []
        self.seen = []

    def handshake_attributes(self, connection):
        return [self.contract_request(connection)]

    def reply_attributes(self, connection, message, attributes):
        self.seen.extend(attributes)
        out = []
        for attribute in attributes:
            if isinstance(attribute, SwimaRequest):
                self.requests.append(attribute)
                out.extend(self.answer(attribute, len(self.requests)))
        return out


def swima_error(request, code=PaTncErrorCode.SWIMA_ERROR, **kw):
    return PaTncErrorAttribute.swima_error(code, request.request_id, "scripted refusal", **kw)


def events(request, epoch, last_eid, consulted, *items, with_tags=False):
    cls = SoftwareEvents if with_tags else SoftwareIdentifierEvents
    return cls(request.request_id, epoch, last_eid, consulted, tuple(
        SwimaEvent(eid, "2026-05-01T10:00:00Z", action,
                   SwimaRecord(0, identifier, record=tag_xml(identifier) if with_tags else b""))
        for eid, action, identifier in items))


def inventory(request, epoch, last_eid, identifiers):
    return SoftwareIdentifierInventory(request.request_id, epoch, last_eid,
                                       tuple(SwimaRecord(0, i) for i in identifiers))


C, D, ALT = SwimaEventAction.CREATION, SwimaEventAction.DELETION, SwimaEventAction.ALTERATION
EPOCH = 0x0A0B0C0D


class ScriptedCollectorTestsMixin(SwimaDatabaseMixin):
    """Collector behaviour nac's own collector never shows, scripted."""

    def remember(self, epoch, last_eid, installed=()):
        """The store knows the device at (epoch, last EID) with ``installed``."""
        def prepare(session):
            device = device_swima_state(session, MACHINE_ID)
            session.add(m.SwimaState(device_id=device.device_pk, epoch=epoch, last_eid=last_eid))
        self.db.run(prepare)
        if installed:
            self.db.run(store_inventory, self.db.run(device_swima_state, MACHINE_ID).device_pk,
                        epoch, last_eid, list(installed))

    @defer.inlineCallbacks
    def run_scripted(self, answer, **kw):
        imc = ScriptedSwimaImc(answer)
        result = yield self.assess([self.host().os_imc(), imc], **kw)
        return imc, result

    @defer.inlineCallbacks
    def test_partial_event_lists_are_continued_and_tags_in_events_stored(self):
        self.remember(EPOCH, 3, ids("a", "b"))

        def answer(request, n):
            if n == 1:  # events 4-6 of 9
                return [events(request, EPOCH, 9, 6, (4, D, ids("a")[0]), (5, C, ids("c")[0]),
                               (6, ALT, ids("b")[0]), with_tags=True)]
            return [events(request, EPOCH, 9, 9, (7, C, ids("d")[0]), (9, D, ids("c")[0]),
                           with_tags=True)]

        imc, result = yield self.run_scripted(answer)
        self.assertEqual([(r.earliest_eid, r.flags) for r in imc.requests],
                         [(4, SwimaRequestFlag.RESULT_TYPE), (7, SwimaRequestFlag.RESULT_TYPE)])
        self.assertEqual(self.inventory(), dict.fromkeys(ids("b", "d"), True))
        self.assertEqual(self.swima_state(), (EPOCH, 9))
        # the events carried the tags, "b"'s with its alteration: nothing left to ask for
        self.assertEqual(sorted(self.tags()), ids("b", "c", "d"))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))

    @defer.inlineCallbacks
    def test_refused_events_without_inventory_make_the_imv_ask_for_it(self):
        self.remember(EPOCH, 3)

        def answer(request, n):
            if n == 1:
                return [swima_error(request)]
            return [inventory(request, EPOCH, 12, ids("x", "y"))]

        imc, result = yield self.run_scripted(answer)
        self.assertEqual([r.earliest_eid for r in imc.requests], [4, 0, 0])
        self.assertEqual(imc.requests[2].identifiers, tuple(ids("x", "y")))
        self.assertEqual(self.inventory(), dict.fromkeys(ids("x", "y"), True))
        self.assertEqual(self.swima_state(), (EPOCH, 12))

    @defer.inlineCallbacks
    def test_too_large_events_make_the_imv_ask_for_the_inventory(self):
        self.remember(EPOCH, 3)

        def answer(request, n):
            if request.earliest_eid:
                return [swima_error(request, PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR,
                                    max_allowed_size=100)]
            return [inventory(request, EPOCH, 12, ids("x"))]

        imc, result = yield self.run_scripted(answer, imv=SwimaImv(options={"max_tags": 0}))
        self.assertEqual([r.earliest_eid for r in imc.requests], [4, 0])
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))

    @defer.inlineCallbacks
    def test_refused_inventory_is_an_error_without_result(self):
        for code in (PaTncErrorCode.SWIMA_ERROR, PaTncErrorCode.SWIMA_RESPONSE_TOO_LARGE_ERROR):
            imc, result = yield self.run_scripted(lambda request, n: [swima_error(request, code)])
            self.assertEqual(len(imc.requests), 1)
            self.assertEqual(self.verdict(result), (A.NO_RECOMMENDATION, E.ERROR))

    @defer.inlineCallbacks
    def test_answers_to_unknown_requests_are_ignored(self):
        def answer(request, n):
            other = SwimaRequest(request.request_id ^ 0x5A5A)
            return [inventory(other, EPOCH, 3, ids("x")), swima_error(other)]

        imc, result = yield self.run_scripted(answer)
        self.assertEqual(self.inventory(), {})
        self.assertEqual(self.verdict(result), (A.NO_RECOMMENDATION, E.DONT_KNOW))

    @defer.inlineCallbacks
    def test_requests_are_bounded_when_the_collector_reports_one_event_at_a_time(self):
        self.remember(EPOCH, 0)

        def answer(request, n):
            eid = request.earliest_eid
            return [events(request, EPOCH, 1000, eid, (eid, C, ids(f"p{eid}")[0]))]

        imc, result = yield self.run_scripted(answer, max_rounds=40,
                                              imv=SwimaImv(options={"max_tags": 0}))
        self.assertEqual(len(imc.requests), MAX_REQUESTS)
        self.assertEqual(self.swima_state(), (EPOCH, MAX_REQUESTS))
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))
        self.assertLessEqual(result.rounds, MAX_REQUESTS + 2)

    @defer.inlineCallbacks
    def test_tags_the_endpoint_could_not_provide_are_not_asked_for_again(self):
        wanted = ids("a", "b", "c")

        def first(request, n):
            if n == 1:
                return [inventory(request, EPOCH, 1, wanted)]
            # the collector has a tag for "a" only (strongSwan's has none for most packages)
            return [SoftwareInventory(request.request_id, EPOCH, 1, (SwimaRecord(0, wanted[0], record=tag_xml(wanted[0])),))]

        imc, _ = yield self.run_scripted(first)
        self.assertEqual(imc.requests[1].identifiers, tuple(wanted))
        self.assertEqual(list(self.tags()), wanted[:1])

        def again(request, n):
            self.assertEqual(n, 1, "the IMV asked again for tags the endpoint had not got")
            return [events(request, EPOCH, 1, 1)]

        imc, result = yield self.run_scripted(again)
        self.assertEqual(len(imc.requests), 1)  # only the events since the last EID
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))

        def retry(request, n):
            return [events(request, EPOCH, 1, 1)] if n == 1 else [swima_error(request)]

        # with tag_retry = 0 the IMV asks every time; a refusal marks the targets too
        imc, _ = yield self.run_scripted(retry, imv=SwimaImv({"tag_retry": 0.0}))
        self.assertEqual(imc.requests[1].identifiers, tuple(wanted[1:]))

        def refused_before(request, n):
            self.assertEqual(n, 1)
            return [events(request, EPOCH, 1, 1)]

        imc, _ = yield self.run_scripted(refused_before)
        self.assertEqual(len(imc.requests), 1)

    def test_tag_retry_option(self):
        self.assertEqual(SwimaImv().tag_retry, 30 * 86400.0)
        cfg = config.load(None, {("nac", "imvs"): "swima", ("imv:swima", "tag_retry"): "7d"})
        self.assertEqual(cfg.imv_options("swima", SwimaImv.OPTIONS)["tag_retry"], 7 * 86400.0)

    @defer.inlineCallbacks
    def test_only_requested_matching_iso_tags_are_stored(self):
        wanted = ids("good", "mismatch", "other-model", "broken")

        def answer(request, n):
            if n == 1:
                return [inventory(request, EPOCH, 1, wanted)]
            return [SoftwareInventory(request.request_id, EPOCH, 1, (
                SwimaRecord(0, wanted[0], record=tag_xml(wanted[0], "good", "2.0")),
                SwimaRecord(0, wanted[1], record=tag_xml(ids("something-else")[0])),
                SwimaRecord(0, wanted[2], data_model_pen=0x123456, record=tag_xml(wanted[2])),
                SwimaRecord(0, wanted[3], record=b"<SoftwareIdentity"),
                SwimaRecord(0, ids("unrequested")[0], record=tag_xml(ids("unrequested")[0])),
            ))]

        imc, result = yield self.run_scripted(answer)
        self.assertEqual(imc.requests[1].identifiers, tuple(sorted(wanted)))
        self.assertEqual(list(self.tags()), wanted[:1])
        self.assertEqual(parse_swid_tag(self.tags()[wanted[0]]).version, "2.0")
        self.assertEqual(self.verdict(result), (A.ALLOW, E.COMPLIANT))


class SqliteScriptedCollectorTests(SqliteBackend, ScriptedCollectorTestsMixin, unittest.TestCase):
    pass


class PostgresScriptedCollectorTests(PostgresBackend, ScriptedCollectorTestsMixin, unittest.TestCase):
    pass


class SqliteFlowTests(SqliteBackend, FlowTestsMixin, unittest.TestCase):
    pass


class PostgresFlowTests(PostgresBackend, FlowTestsMixin, unittest.TestCase):
    pass


class SqliteMalformedTests(SqliteBackend, MalformedTestsMixin, unittest.TestCase):
    pass


class PostgresMalformedTests(PostgresBackend, MalformedTestsMixin, unittest.TestCase):
    pass


class SynchronousStore:
    """The PolicyStore calls the IMV and the core use, run inline on a real
    PolicyDb, so hypothesis can drive whole assessments without a reactor."""

    def __init__(self, db: PolicyDb):
        self.db = db

    def run(self, fn, *args, **kwargs):
        return defer.maybeDeferred(self.db.run, fn, *args, **kwargs)

    def session_started(self, peer, connection_id):
        return defer.maybeDeferred(self.db.session_started, peer, connection_id)

    def session_decided(self, session_id, decision):
        return defer.maybeDeferred(self.db.session_decided, session_id, decision)


SWIMA_TYPES = st.sampled_from([8, 13, 14, 15, 16, 17, 18, 19])
#: What the store knows of the device: nothing, or an (EID epoch, last EID).
STORED = st.one_of(st.none(), st.tuples(st.sampled_from([1, 0x11223344]), st.integers(0, 25)))


class NeverCrashTests(unittest.TestCase):
    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        engine = make_engine(f"sqlite:///{os.path.abspath(directory)}/nac.db")
        self.addCleanup(engine.dispose)
        upgrade(engine)
        self.store = SynchronousStore(PolicyDb(engine))

    def first_round(self, stored=None, limits=TransportLimits()):
        """A connection whose IMV has sent its first request; the request id.
        ``stored``: the (epoch, last EID) the device has in the store, if any."""

        def prepare(session):
            device = device_swima_state(session, MACHINE_ID)
            session.execute(sa.delete(m.SwimaState))
            if stored is not None:
                session.add(m.SwimaState(device_id=device.device_pk, epoch=stored[0], last_eid=stored[1]))

        self.store.db.run(prepare)
        core = TnccsCore(ImvManager([SwimaImv()]), store=self.store)
        connection = core.open_connection(PeerInfo("pt-tls", "127.0.0.1"), limits)
        first = PbBatch(B.CDATA, Direction.TO_SERVER, (
            PbPa(0, 1, 1, 0xFFFF, PaMessage(1, (DeviceId(MACHINE_ID),)).build()),
            PbPa(0, SWIMA, 3, 0xFFFF, PaMessage(2, (MaxAttributeSizeRequest(0xFFFFFFFF, 2000),)).build()),
        )).build()
        out = self.receive(connection, first)
        [request] = [a for b in out.batches for msg in PbBatch.parse(b).messages if isinstance(msg, PbPa)
                     for a in PaMessage.parse(msg.body).attributes if isinstance(a, SwimaRequest)]
        return connection, request.request_id

    def receive(self, connection, data):
        results = []
        connection.receive_batch(data).addBoth(results.append)
        self.assertEqual(len(results), 1)
        self.assertNotIsInstance(results[0], Exception)
        return results[0]

    def swima_batch(self, *attributes: bytes) -> bytes:
        body = struct.pack(">B3xI", 1, 7) + b"".join(attributes)
        return PbBatch(B.CDATA, Direction.TO_SERVER, (PbPa(0, SWIMA, 3, 1, body, exclusive=True),)).build()

    def check_answered(self, connection, data):
        out = self.receive(connection, data)
        for batch in out.batches:
            PbBatch.parse(batch)
        self.assertEqual(self.flushLoggedErrors(), [])
        # and the connection still ends with a decision
        for _ in range(MAX_REQUESTS + 12):
            if connection.finished or connection.decision is not None:
                break
            out = self.receive(connection, PbBatch(B.CDATA, Direction.TO_SERVER).build())
        self.assertIsNotNone(connection.decision)
        self.assertEqual(self.flushLoggedErrors(), [])

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(SWIMA_TYPES, st.binary(max_size=300), st.booleans(), STORED)
    def test_random_attribute_bodies(self, attr_type, value, echo_request_id, stored):
        connection, request_id = self.first_round(stored)
        if echo_request_id and len(value) >= 8:
            value = value[:4] + request_id.to_bytes(4, "big") + value[8:]
        attribute = struct.pack(">III", 0, attr_type, 12 + len(value)) + value
        self.check_answered(connection, self.swima_batch(attribute))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 3),
                              st.text(min_size=0, max_size=40)), max_size=12),
           st.integers(0, 0xFFFFFFFF), st.integers(0, 30), st.integers(0, 30),
           st.sampled_from([15, 17, 14, 16]), STORED, st.booleans())
    def test_random_well_formed_answers(self, events, epoch, last_eid, consulted, attr_type, stored,
                                        echo_request_id):
        connection, request_id = self.first_round(stored)
        if not echo_request_id:
            request_id ^= 1
        if stored is not None and epoch % 2:
            epoch = stored[0]
        records = [SwimaRecord(0, f"example.org__{text}" if eid % 2 else text,
                               record=tag_xml(f"example.org__{text}") if eid % 3 else text.encode())
                   for eid, _, text in events]
        if attr_type in (15, 17):
            cls = SoftwareIdentifierEvents if attr_type == 15 else SoftwareEvents
            attribute = cls(request_id, epoch, last_eid, consulted, tuple(
                SwimaEvent(eid, "2026-01-01T00:00:00Z", action, record)
                for (eid, action, _), record in zip(events, records)))
        else:
            cls = SoftwareIdentifierInventory if attr_type == 14 else SoftwareInventory
            attribute = cls(request_id, epoch, last_eid, tuple(records))
        self.check_answered(connection, self.swima_batch(attribute.build()))

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(min_size=0, max_size=200), st.booleans(), st.booleans(), st.integers(0, 3))
    def test_random_segments(self, segment, more, start, base_id):
        connection, _ = self.first_round()
        envelope = SegmentEnvelope(base_id, segment, more=more, start=start)
        self.check_answered(connection, self.swima_batch(envelope.build(), NextSegment(base_id).build()))


class ImvContractTests(unittest.TestCase):
    def test_provides_the_imv_interface(self):
        imv = SwimaImv()
        self.assertTrue(verifyObject(IImv, imv))
        self.assertIn((0, SWIMA), imv.subscriptions)
        self.assertIn((0, 1), imv.subscriptions)  # the ITA Device ID comes in OS messages

    def test_sample_configuration_documents_every_option_with_its_default(self):
        text = ETC.read_text()
        block = text[text.index("[imv:swima]"):]
        block = block[:block.find("\n[", 1)] if "\n[" in block[1:] else block
        # every "# key = value" of the block, uncommented, must load as the defaults
        keys = re.findall(r"^# (\w+) = (.*)$", block, re.MULTILINE)
        self.assertEqual(sorted(k for k, _ in keys), sorted(o.name for o in SwimaImv.OPTIONS))
        path = self.mktemp()
        Path(path).write_text("[imv:swima]\n" + "".join(f"{k} = {v}\n" for k, v in keys))
        documented = load_imv("imvs.swima:SwimaImv", config.load(path).imv_options)
        imv = load_imv("imvs.swima:SwimaImv", config.load(str(ETC)).imv_options)
        for loaded in (documented, imv):
            self.assertEqual((loaded.use_events, loaded.max_tags, loaded.max_attribute_size,
                              loaded.max_tag_size, loaded.no_result),
                             (True, 5000, 16 * 1024 * 1024, 64 * 1024, A.NO_RECOMMENDATION))

    def test_options_are_validated(self):
        path = self.mktemp()
        Path(path).write_text("[imv:swima]\nmax_tags = 10\nno_result = isolate\nmax_attribute_size = 1M\n")
        imv = load_imv("imvs.swima:SwimaImv", config.load(path).imv_options)
        self.assertEqual((imv.max_tags, imv.no_result, imv.max_attribute_size), (10, A.ISOLATE, 1024 * 1024))
        Path(path).write_text("[imv:swima]\nno_result = maybe\n")
        with self.assertRaises(config.ConfigError) as caught:
            load_imv("imvs.swima:SwimaImv", config.load(path).imv_options)
        self.assertIn("no_result", str(caught.exception))


# -- SWID tags ------------------------------------------------------------------------------

TAG_2015 = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" '
    'name="bash" tagId="Debian_12-x86_64-bash-5.2.15-2~b8" version="5.2.15-2+b8" '
    'versionScheme="alphanumeric" patch="true">'
    '<Entity name="strongSwan Project" regid="strongswan.org" role="tagCreator softwareCreator"/>'
    '</SoftwareIdentity>')

TAG_2009 = (
    '<software_identification_tag xmlns="http://standards.iso.org/iso/19770/-2/2009/schema.xsd">'
    '<product_title>Example Editor</product_title>'
    '<product_version><name>4.2</name></product_version>'
    '<tag_creator><name>Example Inc.</name><regid>regid.2001-01.com.example</regid></tag_creator>'
    '<unique_id>editor-4.2</unique_id>'
    '</software_identification_tag>')


class SwidTagTests(unittest.TestCase):
    def test_iso_2015_tag(self):
        tag = parse_swid_tag(TAG_2015.encode())
        self.assertEqual((tag.name, tag.version, tag.version_scheme, tag.tag_creator_regid,
                          tag.tag_creator_name, tag.patch, tag.corpus, tag.format),
                         ("bash", "5.2.15-2+b8", "alphanumeric", "strongswan.org", "strongSwan Project",
                          True, False, SwidTagFormat.ISO_2015))
        self.assertEqual(tag.software_identifier, "strongswan.org__Debian_12-x86_64-bash-5.2.15-2~b8")

    def test_iso_2009_tag(self):
        tag = parse_swid_tag(TAG_2009)
        self.assertEqual((tag.name, tag.version, tag.software_identifier, tag.format),
                         ("Example Editor", "4.2", "regid.2001-01.com.example__editor-4.2",
                          SwidTagFormat.ISO_2009))

    def test_tags_nac_collectors_make(self):
        host = Host(tmpdir(self), SWIMA_PACKAGES[:1])
        catalog = host.swima_imc().catalog()
        record = catalog.record(catalog.inventory[0], True)
        tag = parse_swid_tag(record.record)
        self.assertEqual(tag.software_identifier, record.software_identifier)

    def test_unsafe_and_broken_tags_are_refused(self):
        laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><SoftwareIdentity>&lol2;</SoftwareIdentity>')
        external = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                    '<SoftwareIdentity>&e;</SoftwareIdentity>')
        no_creator = TAG_2015.replace('role="tagCreator softwareCreator"', 'role="softwareCreator"')
        for bad in (laughs, external, "<SoftwareIdentity", "not xml", no_creator,
                    TAG_2015.replace(' tagId="Debian_12-x86_64-bash-5.2.15-2~b8"', ""),
                    "<other xmlns='urn:x'/>", "<SoftwareIdentity name='a' tagId='b'/>"):
            with self.assertRaises(SwidTagError, msg=bad[:60]):
                parse_swid_tag(bad)

    def test_size_limit_is_checked_before_parsing(self):
        big = TAG_2015.replace("</SoftwareIdentity>", "<Meta x='" + "a" * 70000 + "'/></SoftwareIdentity>")
        with self.assertRaises(SwidTagError) as caught:
            parse_swid_tag(big)
        self.assertIn("exceeds", str(caught.exception))
        self.assertEqual(parse_swid_tag(big, max_size=100000).name, "bash")

    @settings(max_examples=200, deadline=None)
    @given(st.one_of(st.binary(max_size=400), st.text(max_size=200).map(str.encode),
                     st.text(max_size=60).map(lambda t: TAG_2015.replace("bash", t).encode())))
    def test_never_crashes_on_random_input(self, data):
        try:
            parse_swid_tag(data)
        except SwidTagError:
            pass
