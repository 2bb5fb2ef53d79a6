"""RADIUS accounting (RFC 2866) through the sans-IO accounting server: real
bytes in and out, every authenticator computed here with hashlib/hmac, not
with the code under test; duplicate handling (RFC 5080 §2.2.2), answers only
after the record is committed, the limits; and what the database keeps
(Start / Interim-Update / Stop, Accounting-On, the device link)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import struct

import sqlalchemy as sa
from twisted.internet import defer
from twisted.trial import unittest

from nac.db import PolicyDb
from nac.db.accounting import AccountingRecord, coa_targets, list_accounting, record_accounting
from tests.test_db import DatabaseMixin, PostgresBackend, SqliteBackend, peer
from transports.radius.accounting import AccountingServer
from transports.radius.clients import RadiusClient

SECRET = b"accounting secret"
NAS = ("127.0.0.1", 40001)


def attr(t: int, value: bytes) -> bytes:
    return bytes((t, len(value) + 2)) + value


def u32(t: int, n: int) -> bytes:
    return attr(t, struct.pack(">I", n))


def acct_request(attrs: bytes, identifier: int = 7, secret: bytes = SECRET, code: int = 4,
                 message_authenticator: bool = False) -> bytes:
    """An Accounting-Request as RFC 2866 §3 defines it, made with hashlib alone."""
    if message_authenticator:
        attrs = attr(80, bytes(16)) + attrs
    length = 20 + len(attrs)
    head = bytes((code, identifier)) + struct.pack(">H", length)
    if message_authenticator:
        mac = hmac.new(secret, head + bytes(16) + attrs, hashlib.md5).digest()
        attrs = attr(80, mac) + attrs[18:]
    auth = hashlib.md5(head + bytes(16) + attrs + secret).digest()
    return head + auth + attrs


def start(session=b"sess-1", user=b"carol", station=b"02-00-00-00-00-01", status=1, extra=b"") -> bytes:
    return (u32(40, status) + attr(44, session) + attr(1, user) + attr(31, station) + attr(30, b"AP-1:corp")
            + u32(5, 12) + attr(87, b"Gi1/0/12") + attr(8, bytes((10, 1, 2, 3))) + extra)


def expected_response(request: bytes, secret: bytes = SECRET, attrs: bytes = b"") -> bytes:
    length = 20 + len(attrs)
    head = bytes((5, request[1])) + struct.pack(">H", length)
    return head + hashlib.md5(head + request[4:20] + attrs + secret).digest() + attrs


class Recorder:
    """The store's side: every record, each with a Deferred the test fires."""

    def __init__(self):
        self.records: list[AccountingRecord] = []
        self.pending: list[defer.Deferred] = []

    def __call__(self, record):
        self.records.append(record)
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def commit(self, index=-1, value=1):
        self.pending[index].callback(value)


def answered(result) -> bytes | None:
    """What a Deferred reply fired with (the test fired it already)."""
    out = []
    result.addCallback(out.append)
    return out[0] if out else None


class AccountingServerTests(unittest.TestCase):
    def server(self, **kw) -> tuple[AccountingServer, Recorder]:
        recorder = Recorder()
        clients = [RadiusClient(ipaddress.ip_network("127.0.0.1/32"), SECRET, "sw1"),
                   RadiusClient(ipaddress.ip_network("127.0.0.2/32"), b"other secret", "sw2")]
        return AccountingServer(clients, recorder, **kw), recorder

    def test_start_is_answered_once_committed(self):
        server, rec = self.server()
        request = acct_request(start())
        result = server.respond(request, NAS, 100.0)
        self.assertIsInstance(result, defer.Deferred)
        self.assertFalse(result.called, "answered before the record is durable")
        [record] = rec.records
        self.assertEqual((record.nas, record.nas_address, record.named, record.status_type, record.acct_session_id,
                          record.user_name, record.calling_station_id, record.called_station_id, record.nas_port,
                          record.nas_port_id, record.framed_ip_address),
                         ("sw1", "127.0.0.1", True, 1, "sess-1", "carol", "02-00-00-00-00-01", "AP-1:corp", 12,
                          "Gi1/0/12", "10.1.2.3"))
        self.assertIsNone(record.nas_ip_address)  # none reported
        rec.commit()
        self.assertEqual(answered(result), expected_response(request))
        self.assertEqual(server.pending, 0)

    def test_the_nas_address_it_reports_is_kept(self):
        server, rec = self.server()
        for extra, expected in ((attr(4, bytes((192, 0, 2, 77))), "192.0.2.77"),
                                (attr(95, bytes.fromhex("20010db8000000000000000000000077")), "2001:db8::77")):
            server.respond(acct_request(start(extra=extra)), NAS, 100.0)
            self.assertEqual(rec.records[-1].nas_ip_address, expected)
            rec.commit()
        # a NAS-IP-Address of 3 octets: the request is malformed, dropped unanswered
        # and unrecorded (RFC 2866 §4.1), and the next one is served
        count = len(rec.records)
        self.assertIsNone(server.respond(acct_request(start(session=b"bad", extra=attr(4, b"\x01\x02\x03"))),
                                         NAS, 101.0))
        self.assertEqual(len(rec.records), count)
        server.respond(acct_request(start(session=b"next")), NAS, 102.0)
        self.assertEqual(rec.records[-1].acct_session_id, "next")

    def test_no_answer_when_the_record_fails_and_the_retransmission_is_recorded(self):
        server, rec = self.server()
        request = acct_request(start())
        result = server.respond(request, NAS, 100.0)
        rec.pending[0].errback(RuntimeError("database away"))
        self.assertIsNone(answered(result))
        self.flushLoggedErrors(RuntimeError)
        again = server.respond(request, NAS, 101.0)
        self.assertEqual(len(rec.records), 2)
        rec.commit()
        self.assertEqual(answered(again), expected_response(request))

    def test_wrong_secret_is_discarded(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(start(), secret=b"not the secret"), NAS, 1.0))
        self.assertEqual((rec.records, server.counters.bad_authenticators), ([], 1))

    def test_request_authenticator_covers_the_attributes(self):
        server, rec = self.server()
        request = bytearray(acct_request(start(user=b"carol")))
        request[request.index(b"carol")] = ord("k")  # karol: the authenticator no longer fits
        self.assertIsNone(server.respond(bytes(request), NAS, 1.0))
        self.assertEqual(rec.records, [])

    def test_an_authenticator_from_the_access_request_rule_is_refused(self):
        # a random Request Authenticator (Access-Request style) is not an accounting one
        server, rec = self.server()
        request = acct_request(start())
        self.assertIsNone(server.respond(request[:4] + bytes(range(16)) + request[20:], NAS, 1.0))
        self.assertEqual(rec.records, [])

    def test_each_nas_uses_its_own_secret(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(start()), ("127.0.0.2", 5000), 1.0))
        result = server.respond(acct_request(start(), secret=b"other secret"), ("127.0.0.2", 5000), 1.0)
        self.assertEqual(rec.records[0].nas, "sw2")
        rec.commit()
        self.assertEqual(answered(result), expected_response(acct_request(start(), secret=b"other secret"),
                                                             b"other secret"))

    def test_message_authenticator_is_checked_when_present(self):
        server, rec = self.server()
        good = acct_request(start(), message_authenticator=True)
        result = server.respond(good, NAS, 1.0)
        self.assertEqual(len(rec.records), 1)
        rec.commit()
        self.assertEqual(answered(result), expected_response(good))
        # a wrong Message-Authenticator under a right Request Authenticator
        attrs = attr(80, b"\x01" * 16) + start(session=b"sess-2")
        head = bytes((4, 9)) + struct.pack(">H", 20 + len(attrs))
        forged = head + hashlib.md5(head + bytes(16) + attrs + SECRET).digest() + attrs
        self.assertIsNone(server.respond(forged, NAS, 1.0))
        self.assertEqual(len(rec.records), 1)

    def test_discards_are_logged_once_per_sender_and_kind(self):
        from twisted.logger import formatEvent, globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        server, _ = self.server()
        for i in range(5):
            server.respond(acct_request(start(session=b"s%d" % i), identifier=i, secret=b"forged"), NAS, 1.0)
        lines = [formatEvent(e) for e in events if "bad Request Authenticator" in formatEvent(e)]
        self.assertEqual(lines, ["RADIUS Accounting-Request 0x00 from client 'sw1' (127.0.0.1) discarded: bad "
                                 "Request Authenticator (is the shared secret the same?)"])
        self.assertEqual(server.counters.bad_authenticators, 5)

    def test_unknown_client_is_discarded(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(start()), ("192.0.2.9", 1813), 1.0))
        self.assertEqual((rec.records, server.counters.unknown_clients), ([], 1))

    # -- duplicates (RFC 5080 §2.2.2) --------------------------------------------------------

    def test_retransmission_gets_the_same_response_and_no_second_record(self):
        server, rec = self.server()
        request = acct_request(start())
        first = server.respond(request, NAS, 1.0)
        rec.commit()
        reply = answered(first)
        self.assertEqual(server.respond(request, NAS, 3.0), reply)
        self.assertEqual(len(rec.records), 1)
        self.assertEqual(server.counters.dup_requests, 1)

    def test_retransmission_while_recording_is_discarded(self):
        server, rec = self.server()
        request = acct_request(start())
        first = server.respond(request, NAS, 1.0)
        self.assertIsNone(server.respond(request, NAS, 2.0))
        self.assertEqual(len(rec.records), 1)
        rec.commit()
        self.assertEqual(answered(first), expected_response(request))

    def test_same_identifier_new_authenticator_is_a_new_request(self):
        server, rec = self.server()
        server.respond(acct_request(start(session=b"a")), NAS, 1.0)
        rec.commit()
        server.respond(acct_request(start(session=b"b")), NAS, 2.0)
        self.assertEqual([r.acct_session_id for r in rec.records], ["a", "b"])

    def test_same_identifier_from_another_port_is_a_new_request(self):
        server, rec = self.server()
        request = acct_request(start())
        server.respond(request, NAS, 1.0)
        rec.commit()
        server.respond(request, (NAS[0], NAS[1] + 1), 2.0)
        self.assertEqual(len(rec.records), 2)

    def test_cached_responses_expire(self):
        server, rec = self.server(duplicate_lifetime=10.0)
        request = acct_request(start())
        server.respond(request, NAS, 1.0)
        rec.commit()
        server.expire(20.0)
        server.respond(request, NAS, 20.0)
        self.assertEqual(len(rec.records), 2)

    # -- limits --------------------------------------------------------------------------------

    def test_outstanding_requests_are_bounded(self):
        server, rec = self.server(max_pending=2, max_pending_per_nas=2)
        for i in range(3):
            server.respond(acct_request(start(session=b"s%d" % i), identifier=i), NAS, 1.0)
        self.assertEqual(len(rec.records), 2)
        self.assertEqual(server.counters.dropped, 1)
        rec.commit(0)
        server.respond(acct_request(start(session=b"s2"), identifier=2), NAS, 1.0)
        self.assertEqual(len(rec.records), 3)

    def test_one_nas_leaves_room_for_the_others(self):
        server, rec = self.server(max_pending=4, max_pending_per_nas=2)
        for i in range(3):
            server.respond(acct_request(start(session=b"s%d" % i), identifier=i), NAS, 1.0)
        self.assertEqual(len(rec.records), 2)
        server.respond(acct_request(start(), secret=b"other secret"), ("127.0.0.2", 9), 1.0)
        self.assertEqual(rec.records[-1].nas, "sw2")

    def test_request_rate_per_nas_is_bounded(self):
        server, rec = self.server(rate_per_nas=2, burst_per_nas=2)
        for i in range(3):
            server.respond(acct_request(start(session=b"s%d" % i), identifier=i), NAS, 1.0)
        self.assertEqual(len(rec.records), 2)
        server.respond(acct_request(start(session=b"s3"), identifier=3), NAS, 1.6)
        self.assertEqual(len(rec.records), 3)

    def test_request_rate_of_all_nases_is_bounded(self):
        server, rec = self.server(rate=1, rate_per_nas=100)
        server.respond(acct_request(start(session=b"a")), NAS, 1.0)
        server.respond(acct_request(start(session=b"b"), identifier=8), NAS, 1.0)
        server.respond(acct_request(start(), secret=b"other secret"), ("127.0.0.2", 9), 1.0)
        self.assertEqual(len(rec.records), 2)
        server.respond(acct_request(start(), secret=b"other secret"), ("127.0.0.2", 9), 2.1)
        self.assertEqual(len(rec.records), 3)

    def test_limits_are_counted_by_reason(self):
        server, rec = self.server(max_pending=1, max_pending_per_nas=1, rate_per_nas=100, burst_per_nas=2)
        server.respond(acct_request(start(session=b"a")), NAS, 1.0)
        server.respond(acct_request(start(session=b"b"), identifier=8), NAS, 1.0)  # one is being recorded
        rec.commit()
        server.respond(acct_request(start(session=b"c"), identifier=9), NAS, 1.0)
        rec.commit()
        server.respond(acct_request(start(session=b"d"), identifier=10), NAS, 1.0)  # burst of 2 used up
        counters = server.counters
        self.assertEqual((counters.dropped, counters.backlogged, counters.rate_limited), (2, 1, 1))

    def test_requests_are_counted_by_status_type(self):
        server, rec = self.server()
        for n, status in enumerate((1, 3, 3, 2, 7, 8, 99)):
            server.respond(acct_request(start(status=status), identifier=n), NAS, 1.0)
        server.respond(acct_request(attr(44, b"no status type"), identifier=20), NAS, 1.0)
        self.assertEqual(dict(server.counters.by_status_type),
                         {"start": 1, "interim_update": 2, "stop": 1, "accounting_on": 1, "accounting_off": 1,
                          "other": 2})
        self.assertEqual(server.counters.requests, 8)

    # -- what a request must hold ------------------------------------------------------------------

    def test_requests_without_status_type_or_session_id_are_discarded(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(attr(44, b"x")), NAS, 1.0))
        self.assertIsNone(server.respond(acct_request(u32(40, 1) + attr(1, b"carol")), NAS, 1.0))
        self.assertIsNone(server.respond(acct_request(u32(40, 99) + attr(44, b"x")), NAS, 1.0))
        self.assertEqual(rec.records, [])
        self.assertEqual(server.counters.malformed_requests, 3)

    def test_accounting_on_needs_no_session_id(self):
        server, rec = self.server()
        server.respond(acct_request(u32(40, 7)), NAS, 1.0)
        self.assertEqual(rec.records[0].status_type, 7)

    def test_bad_value_sizes_and_text_are_discarded(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(start() + attr(46, b"\0\0\1")), NAS, 1.0))
        self.assertIsNone(server.respond(acct_request(start() + attr(47, b"\0\0\0\0\1")), NAS, 1.0))
        self.assertIsNone(server.respond(acct_request(start(user=b"\xff\xfe")), NAS, 1.0))
        self.assertEqual(rec.records, [])

    def test_counters_with_gigawords_and_escaped_text(self):
        server, rec = self.server()
        server.respond(acct_request(start(status=2, user=b"ca\x1b[2Jrol") + u32(42, 5) + u32(52, 2) + u32(43, 7)
                                    + u32(46, 3600) + u32(49, 1)), NAS, 1.0)
        [record] = rec.records
        self.assertEqual((record.input_octets, record.output_octets, record.session_time, record.terminate_cause),
                         (2 * 2 ** 32 + 5, 7, 3600, 1))
        self.assertNotIn("\x1b", record.user_name)
        self.assertIn("rol", record.user_name)

    def test_proxy_state_is_echoed_in_the_response(self):
        server, rec = self.server()
        request = acct_request(start() + attr(33, b"proxy-1"))
        result = server.respond(request, NAS, 1.0)
        rec.commit()
        self.assertEqual(answered(result), expected_response(request, attrs=attr(33, b"proxy-1")))

    def test_status_server_is_answered_with_an_accounting_response(self):
        server, _ = self.server()
        auth = bytes(range(16))
        head = bytes((12, 3)) + struct.pack(">H", 38)
        mac = hmac.new(SECRET, head + auth + attr(80, bytes(16)), hashlib.md5).digest()
        request = head + auth + attr(80, mac)
        self.assertEqual(server.respond(request, NAS, 1.0), expected_response(request))
        unsigned = head[:2] + struct.pack(">H", 20) + auth
        self.assertIsNone(server.respond(unsigned, NAS, 1.0))

    def test_other_codes_are_ignored(self):
        server, rec = self.server()
        self.assertIsNone(server.respond(acct_request(start(), code=1), NAS, 1.0))
        self.assertEqual(rec.records, [])


class AccountingDatabaseMixin(DatabaseMixin):
    def setUp(self):
        super().setUp()
        self.db = PolicyDb(self.engine)

    def record(self, **kw):
        base = dict(nas="sw1", nas_address="127.0.0.1", named=True, status_type=1, acct_session_id="s1",
                    calling_station_id="02-00-00-00-00-01", user_name="carol")
        base.update(kw)
        return self.db.write(record_accounting, AccountingRecord(**base))

    def listing(self, **where):
        with self.engine.connect() as connection:
            return list_accounting(connection, **where)[0]

    def test_start_interim_stop(self):
        row = self.record(nas_port=12)
        self.assertEqual(self.record(status_type=3, session_time=60, input_octets=10, output_octets=20), row)
        [info] = self.listing()
        self.assertEqual((info.status, info.session_time, info.input_octets, info.nas_port), ("updated", 60, 10, 12))
        self.assertIsNone(info.stopped)
        self.record(status_type=2, session_time=120, input_octets=2 ** 33, terminate_cause=1)
        [info] = self.listing()
        self.assertEqual((info.status, info.input_octets, info.output_octets, info.terminate_cause),
                         ("stopped", 2 ** 33, 20, "User-Request"))
        self.assertIsNotNone(info.stopped)
        self.assertLessEqual(info.started, info.stopped)
        # a late Start reopens nothing
        self.record()
        self.assertEqual(self.listing()[0].status, "stopped")
        self.assertEqual(self.listing(open_only=True), [])

    def test_the_reported_nas_address_is_kept_and_a_later_request_without_it_keeps_it(self):
        row = self.record(nas_ip_address="192.0.2.77")
        self.record(status_type=3, session_time=5)
        with self.engine.connect() as connection:
            [target] = coa_targets(connection, row_id=row)
        self.assertEqual(target.nas_ip_address, "192.0.2.77")

    def test_accounting_on_closes_the_open_sessions_of_the_nas(self):
        self.record(acct_session_id="a")
        self.record(acct_session_id="b", nas="sw2")
        self.assertEqual(self.record(status_type=7, acct_session_id=None), 1)
        by_nas = {i.nas: i for i in self.listing()}
        self.assertEqual((by_nas["sw1"].status, by_nas["sw1"].terminate_cause), ("stopped", "NAS-Reboot"))
        self.assertEqual(by_nas["sw2"].status, "started")

    def test_session_is_linked_to_the_device_assessed_at_the_station(self):
        sid = self.db.session_started(dataclasses.replace(peer(transport="radius"), nas="sw1",
                                                          station="02-00-00-00-00-01"), 1)
        self.db.device_seen(sid, "machine-1")
        other = self.db.session_started(dataclasses.replace(peer(transport="radius"), nas="sw1",
                                                            station="02-00-00-00-00-99"), 2)
        self.db.device_seen(other, "machine-2")
        row = self.record()
        [info] = self.listing()
        self.assertEqual((info.device, info.assessment_id), ("machine-1", sid))
        with self.engine.connect() as connection:
            device_pk = connection.scalar(sa.text("SELECT id FROM devices WHERE device_id = 'machine-1'"))
            self.assertEqual([t.id for t in coa_targets(connection, device_pk=device_pk)], [row])
        self.assertEqual(self.listing(device="machine-2"), [])


class SqliteAccountingDatabaseTests(AccountingDatabaseMixin, SqliteBackend, unittest.TestCase):
    pass


class PostgresAccountingDatabaseTests(AccountingDatabaseMixin, PostgresBackend, unittest.TestCase):
    pass
