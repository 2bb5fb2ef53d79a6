"""The relay between the processes serving one RADIUS port (transports.radius.relay)."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.logger import formatEvent
from twisted.trial import unittest

from tests.test_radius_server import LogCapture
from transports.radius import relay as r


class WireFormTests(unittest.TestCase):
    def test_datagram_and_address_come_back(self):
        for addr in (("127.0.0.1", 1812), ("::1", 0), ("fe80::1%eth0", 65535)):
            data = bytes(range(256)) * 16
            self.assertEqual(r.decode(r.encode(data, addr)), (data, addr))
        self.assertEqual(r.decode(r.encode(b"", ("10.0.0.1", 7))), (b"", ("10.0.0.1", 7)))

    def test_truncated_messages_are_refused(self):
        whole = r.encode(b"x", ("10.0.0.1", 7))
        for cut in (b"", whole[:1], whole[:9], whole[:10]):
            with self.assertRaises(ValueError):
                r.decode(cut)
        with self.assertRaises(ValueError):
            r.encode(b"", ("x" * 256, 1))


class RelayTests(unittest.TestCase):
    def setUp(self):
        self.ends = r.mesh(3)
        self.addCleanup(lambda: [sock.close() for sock in self.ends.values()])
        self.got: dict[int, list] = {0: [], 1: [], 2: []}
        self.relays = {
            k: r.RadiusRelay(k, {j: sock for (i, j), sock in self.ends.items() if i == k},
                             lambda data, addr, k=k: self.got[k].append((data, addr)))
            for k in range(3)}
        self.logs = LogCapture(self)

    def read(self, process: int) -> None:
        for inbox in self.relays[process].inboxes:
            inbox.doRead()

    def test_the_main_process_is_connected_with_each_worker(self):
        self.assertEqual(set(self.ends), {(0, 1), (1, 0), (0, 2), (2, 0)})
        self.assertEqual(set(self.relays[0].ends), {1, 2})
        self.assertEqual(set(self.relays[2].ends), {0})
        for sock in self.ends.values():
            self.assertEqual((sock.family, sock.type, sock.getblocking()),
                             (socket.AF_UNIX, socket.SOCK_DGRAM, False))

    def test_requests_reach_their_process_with_their_address(self):
        self.assertIsNone(self.relays[0].send(2, b"request one", ("192.0.2.1", 1645)))
        self.assertIsNone(self.relays[0].send(2, b"request two", ("2001:db8::1", 1812)))
        self.assertIsNone(self.relays[1].send(0, b"back", ("127.0.0.1", 5)))
        self.read(1)
        self.read(2)
        self.read(0)
        self.assertEqual(self.got, {0: [(b"back", ("127.0.0.1", 5))], 1: [],
                                    2: [(b"request one", ("192.0.2.1", 1645)),
                                        (b"request two", ("2001:db8::1", 1812))]})
        self.assertEqual((self.relays[0].relayed, self.relays[2].received), (2, 2))
        # workers are not connected with each other
        self.assertEqual(self.relays[1].send(2, b"x", ("127.0.0.1", 5)), "no such process")

    def test_a_full_queue_is_reported_not_waited_for(self):
        sent = 0
        while True:
            why = self.relays[0].send(1, bytes(4096), ("127.0.0.1", 1))
            if why is not None:
                break
            sent += 1
            self.assertLess(sent, 100000)
        self.assertIn("queue is full", why)
        self.assertGreater(sent, 20)  # a burst of requests fits
        self.read(1)
        self.assertEqual(len(self.got[1]), r.READS_PER_WAKEUP)  # then the reactor's turn
        self.assertIsNone(self.relays[0].send(1, b"room again", ("127.0.0.1", 1)))

    def test_a_process_gone_is_reported(self):
        self.ends[1, 0].close()
        self.assertIn("refused", self.relays[0].send(1, b"x", ("127.0.0.1", 1)).lower())

    def test_garbage_costs_a_log_line_and_the_next_request_arrives(self):
        self.ends[0, 1].send(b"\x09short")
        self.relays[0].send(1, b"good", ("127.0.0.1", 9))
        self.read(1)
        self.assertEqual(self.got[1], [(b"good", ("127.0.0.1", 9))])
        self.assertIn("discarding a request handed over by RADIUS process 0",
                      "\n".join(formatEvent(e) for e in self.logs.events))

    def test_readers_come_and_go_with_the_relay(self):
        relay = self.relays[0]
        relay.start(reactor)
        self.assertTrue(all(inbox in reactor.getReaders() for inbox in relay.inboxes))
        relay.stop(reactor)
        self.assertFalse(any(inbox in reactor.getReaders() for inbox in relay.inboxes))
