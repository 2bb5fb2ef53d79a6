"""Repeated warnings about network input: one line per (kind, peer) and
interval, then a summary with the count (nac.log.RepeatLimiter), memory
bounded however many peers there are, summaries written by a service once
the flood stops and when nac stops; and the log of real floods staying a
handful of lines: malformed PB-TNC / PA-TNC / IF-M input through the TNCS
core, IKE integrity failures.  (RADIUS over real UDP: test_log_e2e.py.)"""

from __future__ import annotations

import re
import threading

from twisted.internet.task import Clock
from twisted.logger import LogLevel, LogPublisher, formatEvent, globalLogPublisher
from twisted.trial import unittest

from nac import log as nac_log
from nac.log import Logger, RepeatLimiter, RepeatSummaryService
from tests.test_ikev2_sa import ExchangeType, IkeMessage, ResponderMixin, establish

INTERVAL = 10.0


class Capture:
    """A logger whose events are kept, and a limiter on a test clock."""

    def __init__(self, test: unittest.TestCase, **limits):
        self.clock = Clock()
        self.events: list[dict] = []
        self.limiter = RepeatLimiter(INTERVAL, clock=self.clock, **limits)
        test.patch(nac_log, "repeats", self.limiter)
        self.log = Logger(namespace="nac.test", observer=self.events.append)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


def summary(kind: str, count: int, peer: str, seconds: int = 10) -> str:
    return f"{kind}: … {count:,} more like this from {peer} in the last {seconds} s"


class RepeatLimiterTests(unittest.TestCase):
    def test_one_line_per_kind_and_peer_then_a_summary(self):
        cap = Capture(self)
        for n in range(12_346):
            cap.log.warn("bad datagram {n} from {host}", n=n, host="192.0.2.1",
                         log_limit=("bad datagram", "192.0.2.1"))
        cap.log.warn("bad datagram from {host}", host="192.0.2.2", log_limit=("bad datagram", "192.0.2.2"))
        cap.log.warn("other fault from {host}", host="192.0.2.1", log_limit=("other fault", "192.0.2.1"))
        self.assertEqual(cap.lines(), ["bad datagram 0 from 192.0.2.1", "bad datagram from 192.0.2.2",
                                       "other fault from 192.0.2.1"])
        cap.clock.advance(INTERVAL - 0.5)
        cap.log.warn("bad datagram {n}", n=-1, log_limit=("bad datagram", "192.0.2.1"))
        self.assertEqual(len(cap.events), 3)  # the window is still open
        cap.clock.advance(0.5)
        cap.limiter.flush()
        # the summary at the level and in the namespace of the first line, with its fields
        self.assertEqual(cap.lines()[3:], [summary("bad datagram", 12_346, "192.0.2.1")])
        last = cap.events[-1]
        self.assertEqual((last["log_level"], last["log_namespace"], last["repeated"], last["peer"],
                          last["kind"]), (LogLevel.warn, "nac.test", 12_346, "192.0.2.1", "bad datagram"))
        # a new window: the next one goes through again
        cap.log.warn("bad datagram again", log_limit=("bad datagram", "192.0.2.1"))
        self.assertEqual(cap.lines()[-1], "bad datagram again")

    def test_a_window_that_held_nothing_ends_without_a_line(self):
        cap = Capture(self)
        cap.log.info("once", log_limit=("k", "p"))
        cap.clock.advance(INTERVAL)
        cap.limiter.flush()
        cap.log.info("twice", log_limit=("k", "p"))
        self.assertEqual(cap.lines(), ["once", "twice"])

    def test_ended_windows_are_summed_up_before_the_next_line_of_any_kind(self):
        cap = Capture(self)
        for _ in range(3):
            cap.log.warn("a", log_limit=("a", "p"))
        cap.clock.advance(INTERVAL)
        cap.log.warn("b", log_limit=("b", "q"))
        self.assertEqual(cap.lines(), ["a", summary("a", 2, "p"), "b"])

    def test_lines_below_the_threshold_are_not_counted(self):
        cap = Capture(self)
        self.addCleanup(nac_log.set_level, "info")
        nac_log.set_level("warn")
        for _ in range(5):
            cap.log.info("quiet", log_limit=("k", "p"))
        nac_log.set_level("info")
        cap.log.info("heard", log_limit=("k", "p"))
        self.assertEqual(cap.lines(), ["heard"])

    def test_the_table_is_bounded_and_further_peers_share_one_window_per_kind(self):
        cap = Capture(self, max_keys=4)
        for i in range(1000):
            cap.log.warn("from {host}", host=f"10.0.{i // 256}.{i % 256}",
                         log_limit=("spoofed", f"10.0.{i // 256}.{i % 256}"))
        # four peers of their own, the fifth one's line stands for all others
        self.assertEqual(cap.lines(), [f"from 10.0.0.{i}" for i in range(5)])
        self.assertLessEqual(len(cap.limiter._windows), 5)
        cap.clock.advance(INTERVAL)
        cap.limiter.flush()
        self.assertEqual(cap.lines()[5:], [summary("spoofed", 995, "other peers")])
        self.assertEqual(cap.limiter._windows, {})

    def test_everything_is_summed_up_when_nac_stops(self):
        cap = Capture(self)
        service = RepeatSummaryService(cap.limiter, clock=cap.clock)
        service.startService()
        for _ in range(4):
            cap.log.warn("x", log_limit=("x", "p"))
        cap.clock.advance(3)
        service.stopService()
        self.assertEqual(cap.lines(), ["x", summary("x", 3, "p", seconds=3)])
        self.assertEqual(cap.clock.getDelayedCalls(), [])

    def test_the_service_writes_summaries_once_a_flood_stopped(self):
        cap = Capture(self)
        service = RepeatSummaryService(cap.limiter, clock=cap.clock)
        service.startService()
        self.addCleanup(service.stopService)
        for _ in range(7):
            cap.log.warn("x", log_limit=("x", "p"))
        cap.clock.pump([1.0] * 9)
        self.assertEqual(len(cap.events), 1)
        cap.clock.advance(1.0)
        self.assertEqual(cap.lines(), ["x", summary("x", 6, "p")])

    def test_failures_can_be_limited(self):
        cap = Capture(self)
        for _ in range(3):
            try:
                1 / 0
            except ZeroDivisionError:
                cap.log.failure("internal error on a datagram from {host}", host="h",
                                log_limit=("internal error", "h"))
        self.assertEqual(len(cap.events), 1)
        self.assertIn("log_failure", cap.events[0])
        self.flushLoggedErrors(ZeroDivisionError)

    def test_threads_count_every_line(self):
        cap = Capture(self)

        def flood():
            for _ in range(2000):
                cap.log.warn("t", log_limit=("t", "p"))

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cap.clock.advance(INTERVAL)
        cap.limiter.flush()
        self.assertEqual(cap.lines(), ["t", summary("t", 7999, "p")])

    def test_each_test_starts_with_an_empty_limiter(self):
        # tests/__init__.py empties the process's limiter before every test
        self.assertEqual(nac_log.repeats._windows, {})
        Logger(namespace="nac.test", observer=LogPublisher()).warn("x", log_limit=("x", "p"))
        self.assertEqual(len(nac_log.repeats._windows), 1)


# -- floods through the real code -------------------------------------------------------------


class Lines:
    """Everything logged while a test runs, as text lines."""

    def __init__(self, test: unittest.TestCase):
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def matching(self, pattern: str) -> list[str]:
        return [line for line in (formatEvent(e) for e in self.events) if re.search(pattern, line)]


def held_and_shown(lines: list[str], kind: str) -> int:
    """How many events the lines stand for: each line one, a summary its count."""
    total = 0
    for line in lines:
        m = re.search(re.escape(kind) + r": … ([\d,]+) more like this", line)
        total += int(m.group(1).replace(",", "")) if m else 1
    return total


class TnccsFloodTests(unittest.TestCase):
    """A PB-TNC batch full of bad PA-TNC messages, and one full of invalid
    IF-M segments (the 500 KB batch that logged 30,007 lines)."""

    def core(self):
        from imvs.os import OsImv
        from nac.tnccs.core import TnccsCore
        from nac.tnccs.imv_manager import ImvManager

        manager = ImvManager()
        manager.add(OsImv())
        return TnccsCore(manager)

    def batch(self, pa_bodies: list[bytes]) -> bytes:
        from nac.pb.batch import BatchType, Direction, PbBatch
        from nac.pb.messages import PbPa

        messages = tuple(PbPa(pa_vendor=0, pa_subtype=1, collector_id=1, validator_id=0xFFFF, body=body)
                         for body in pa_bodies)
        return PbBatch(BatchType.CDATA, Direction.TO_SERVER, messages).build()

    def run_batch(self, data: bytes):
        from nac.tnccs.assessment import PeerInfo, TransportLimits

        conn = self.core().open_connection(PeerInfo("pt-tls", "192.0.2.7", identity="carol"),
                                           TransportLimits(max_batch_size=64 * 1024 * 1024,
                                                           max_message_size=64 * 1024 * 1024))
        return self.successResultOf(conn.receive_batch(data))

    def test_invalid_pa_tnc_messages(self):
        lines = Lines(self)
        self.run_batch(self.batch([b"\x02" + bytes(7)] * 5000))  # PA-TNC version 2: invalid
        found = lines.matching(r"invalid PA-TNC message")
        self.assertEqual(len(found), 1, found[:5])
        nac_log.repeats.flush(everything=True)
        found = lines.matching(r"invalid PA-TNC message")
        self.assertEqual(held_and_shown(found, "invalid PA-TNC message"), 5000)
        self.assertLessEqual(len(found), 2)
        self.assertIn("from 192.0.2.7", found[-1])

    def test_invalid_segments(self):
        from nac.pa import PaMessage
        from nac.pa.tcg import SegmentEnvelope

        # 30,000 envelopes continuing base attributes that were never started,
        # in three PA-TNC messages of the most attributes one may hold
        bodies = [PaMessage(m, tuple(SegmentEnvelope(n + 1, b"x" * 4, more=True, start=False)
                                     for n in range(10_000))).build() for m in range(3)]
        self.assertLess(sum(map(len, bodies)), 700_000)
        lines = Lines(self)
        self.run_batch(self.batch(bodies))
        nac_log.repeats.flush(everything=True)
        found = lines.matching(r"invalid segment|invalid IF-M segment")
        self.assertLessEqual(len(found), 2, found[:5])
        self.assertEqual(held_and_shown(found, "invalid IF-M segment"), 30_000)


class IkeFloodTests(ResponderMixin, unittest.TestCase):
    def test_integrity_failures_of_an_established_sa(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        establish(self, harness, initiator)
        lines = Lines(self)
        (request,) = initiator.request(ExchangeType.INFORMATIONAL, [])
        forged = request[:-1] + bytes((request[-1] ^ 1,))  # the last byte of the ICV
        IkeMessage.parse(forged)
        for _ in range(3000):
            harness.deliver(forged, src=initiator.address)
        nac_log.repeats.flush(everything=True)
        found = lines.matching("integrity check failed|IKE integrity check failure")
        self.assertLessEqual(len(found), 2, found[:5])
        self.assertEqual(held_and_shown(found, "IKE integrity check failure"), 3000)
        self.assertEqual(harness.responder.counters.integrity_failures, 3000)
