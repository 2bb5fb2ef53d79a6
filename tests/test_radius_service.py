"""The RADIUS service over real UDP sockets on 127.0.0.1: nac's own NAS side,
FreeRADIUS's ``radclient``, the expiry timer on a task.Clock, start and stop."""

from __future__ import annotations

import os
import re
import shutil
import socket

from twisted.application.service import IService
from twisted.internet import defer, protocol, reactor, task, utils
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac import config as nac_config
from nac.interfaces import IPostureTransport
from tests.nacserver import free_port
from tests.test_radius_server import (
    EAP_IDENTITY,
    EAP_RESPONSE,
    PASSWORD,
    LogCapture,
    Md5Authenticator,
    decision,
    eap,
    md5_response,
)
from transports.radius.packet import (
    Attribute,
    AttributeType as A,
    Code,
    RadiusPacket,
    eap_message_attributes,
    sign_request,
    verify_response,
)
from transports.radius.service import RadiusService, make_service

SECRET = "udp-shared-s3cret"
RADCLIENT = shutil.which("radclient")


class UdpNas(protocol.DatagramProtocol):
    """A NAS on a real UDP socket: sends requests, collects replies."""

    def __init__(self, server_port: int):
        self.server = ("127.0.0.1", server_port)
        self.replies: list[bytes] = []
        self.waiting: list[defer.Deferred] = []

    def datagramReceived(self, data, addr):
        if self.waiting:
            self.waiting.pop(0).callback(data)
        else:
            self.replies.append(data)

    def send(self, data: bytes) -> None:
        self.transport.write(data, self.server)

    def reply(self, timeout: float = 5.0) -> defer.Deferred:
        """The next datagram, or None after ``timeout`` seconds."""
        if self.replies:
            return defer.succeed(self.replies.pop(0))
        d = defer.Deferred()
        self.waiting.append(d)

        def expired():
            if d in self.waiting:
                self.waiting.remove(d)
                d.callback(None)
        call = reactor.callLater(timeout, expired)
        d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
        return d


def request(eap_packet: bytes | None, state: bytes | None = None, code=Code.ACCESS_REQUEST,
            identifier: int = 0, secret: str = SECRET) -> tuple[RadiusPacket, bytes]:
    attrs = [Attribute(A.USER_NAME, b"carol")]
    if eap_packet is not None:
        attrs += eap_message_attributes(eap_packet)
    if state is not None:
        attrs.append(Attribute(A.STATE, state))
    attrs.append(Attribute(A.MESSAGE_AUTHENTICATOR, bytes(16)))
    packet = RadiusPacket(code, identifier, os.urandom(16), tuple(attrs))
    return packet, sign_request(packet, secret.encode())


IDENTITY = eap(EAP_RESPONSE, 3, bytes((EAP_IDENTITY,)) + b"carol")


class RadiusServiceTests(unittest.TestCase):
    def setUp(self):
        self.sessions: list[Md5Authenticator] = []
        self.logs = LogCapture(self)
        self.port = free_port(socket.SOCK_DGRAM)

    def config(self, **radius):
        overrides = {("nac", "transports"): "radius", ("nac", "state_dir"): self.mktemp(),
                     ("radius", "listen"): "127.0.0.1", ("radius", "port"): str(self.port),
                     ("radius", "secret"): SECRET, ("radius", "clients"): "127.0.0.1"}
        overrides.update({("radius", k): str(v) for k, v in radius.items()})
        return nac_config.load(None, overrides)

    def factory(self, peer):
        session = Md5Authenticator(peer, {"carol": PASSWORD}, decision=decision("allowed"))
        self.sessions.append(session)
        return session

    def start(self, clock=None, **radius) -> RadiusService:
        svc = make_service(self.config(**radius), core=None, store=None, eap_factory=self.factory, clock=clock)
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc

    def nas(self) -> UdpNas:
        nas = UdpNas(self.port)
        port = reactor.listenUDP(0, nas, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return nas

    def logged(self) -> str:
        from twisted.logger import formatEvent
        return "\n".join(formatEvent(e) for e in self.logs.events)

    def test_service_provides_the_transport_interfaces_and_logs_where_it_listens(self):
        svc = self.start()
        verifyObject(IService, svc)
        verifyObject(IPostureTransport, svc)
        self.assertEqual((svc.transport_name, svc.name), ("radius", "radius"))
        self.assertIn(f"RADIUS server listening on 127.0.0.1[{self.port}]", self.logged())

    @defer.inlineCallbacks
    def test_eap_md5_over_udp(self):
        self.start()
        nas = self.nas()
        first, data = request(IDENTITY)
        nas.send(data)
        challenge = verify_response((yield nas.reply()), first.authenticator, SECRET.encode())
        self.assertEqual(challenge.code, Code.ACCESS_CHALLENGE)
        second, data = request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE),
                               identifier=1)
        nas.send(data)
        accept = verify_response((yield nas.reply()), second.authenticator, SECRET.encode())
        self.assertEqual((accept.code, accept.value(A.FILTER_ID)), (Code.ACCESS_ACCEPT, "allow"))
        # a retransmission gets the same datagram
        nas.send(data)
        again = yield nas.reply()
        self.assertEqual(again, accept.raw)
        self.assertEqual(len(self.sessions[0].received), 2)

    @defer.inlineCallbacks
    def test_bad_datagrams_are_dropped_and_good_ones_served(self):
        self.start()
        nas = self.nas()
        for junk in (b"", b"\x01", os.urandom(100), request(IDENTITY, secret="wrong")[1],
                     b"\x0c\x00\x10\x00" + bytes(16)):
            nas.send(junk)
        status, data = request(None, code=Code.STATUS_SERVER, identifier=9)
        nas.send(data)
        reply = yield nas.reply()
        self.assertEqual(verify_response(reply, status.authenticator, SECRET.encode()).code, Code.ACCESS_ACCEPT)
        self.assertEqual(nas.replies, [])
        self.assertIn("bad Message-Authenticator", self.logged())

    @defer.inlineCallbacks
    def test_conversation_expires_on_the_timer(self):
        clock = task.Clock()
        svc = self.start(clock=clock, conversation_timeout="30s")
        nas = self.nas()
        packet, data = request(IDENTITY)
        nas.send(data)
        challenge = verify_response((yield nas.reply()), packet.authenticator, SECRET.encode())
        clock.advance(29)
        self.assertEqual(svc.server.conversations, 1)
        clock.advance(1)
        self.assertEqual(svc.server.conversations, 0)
        self.assertEqual(self.sessions[0].aborted, "RADIUS conversation timed out")
        _, data = request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE), identifier=1)
        nas.send(data)
        self.assertIsNone((yield nas.reply(timeout=0.3)))
        self.assertIn("carries an unknown State", self.logged())

    @defer.inlineCallbacks
    def test_stop_aborts_conversations_and_closes_the_port(self):
        svc = self.start()
        nas = self.nas()
        packet, data = request(IDENTITY)
        nas.send(data)
        yield nas.reply()
        yield svc.stopService()
        self.assertEqual(self.sessions[0].aborted, "server shutting down")
        # the port is free again
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", self.port))

    def test_a_reply_that_cannot_be_sent_costs_a_log_line_only(self):
        from transports.radius.service import RadiusProtocol

        class RefusingUdp:
            def write(self, datagram, addr):
                raise OSError(90, "Message too long")

        svc = make_service(self.config(), core=None, store=None, eap_factory=self.factory)
        proto = RadiusProtocol(svc.server, task.Clock())
        proto.transport = RefusingUdp()
        first, data = request(IDENTITY)
        proto.datagramReceived(data, ("127.0.0.1", 40000))
        self.assertIn("cannot send the RADIUS reply to 127.0.0.1[40000]", self.logged())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        # the conversation goes on: the NAS's retransmission is answered from the cache
        sent = []
        proto.transport = type("Udp", (), {"write": lambda self, d, a: sent.append((d, a))})()
        proto.datagramReceived(data, ("127.0.0.1", 40000))
        reply = verify_response(sent[0][0], first.authenticator, SECRET.encode())
        self.assertEqual((reply.code, sent[0][1]), (Code.ACCESS_CHALLENGE, ("127.0.0.1", 40000)))

    def test_replies_go_straight_to_the_listening_socket(self):
        from transports.radius.service import RadiusProtocol

        class Socket:
            def __init__(self, error=None):
                self.sent, self.error = [], error

            def sendto(self, datagram, addr):
                if self.error is not None:
                    raise self.error
                self.sent.append((datagram, addr))

        class Port:
            def __init__(self, sock):
                self.socket = sock

            def write(self, datagram, addr):
                raise AssertionError("the reply went through Port.write")

        svc = make_service(self.config(), core=None, store=None, eap_factory=self.factory)
        proto = RadiusProtocol(svc.server, task.Clock())
        first, data = request(IDENTITY)
        # a full socket buffer: the reply is lost (the NAS retransmits), a log line says so
        proto.transport = Port(Socket(BlockingIOError(11, "Resource temporarily unavailable")))
        proto.datagramReceived(data, ("127.0.0.1", 40001))
        self.assertIn("cannot send the RADIUS reply to 127.0.0.1[40001]", self.logged())
        self.assertEqual(len(self.flushLoggedErrors(BlockingIOError)), 1)
        # an ICMP error left on the socket by an earlier datagram is no reason for a log line
        proto.transport = Port(Socket(ConnectionRefusedError(111, "Connection refused")))
        proto.datagramReceived(data, ("127.0.0.1", 40001))
        self.assertEqual(self.logged().count("cannot send the RADIUS reply"), 1)
        sock = Socket()
        proto.transport = Port(sock)
        proto.datagramReceived(data, ("127.0.0.1", 40001))
        reply = verify_response(sock.sent[0][0], first.authenticator, SECRET.encode())
        self.assertEqual((reply.code, sock.sent[0][1]), (Code.ACCESS_CHALLENGE, ("127.0.0.1", 40001)))

    def two_processes(self, *, worker: bool = True):
        """The main process's service and (in this same process and reactor)
        worker 1's, as ``[radius] workers = 2`` has them: the worker gets a
        copy of the UDP socket and its end of the relay."""
        import types

        from nac.processes import WorkerShare

        class Supervisor:
            """What RadiusService hands nac's worker processes (IWorkerProcesses.share)."""
            processes = 2
            shares: dict = {}

            def share(self, name, processes, descriptors, data=None, label=None):
                self.shares[name] = (processes, descriptors, data, label)

        supervisor = Supervisor()
        cfg = self.config(workers=2)
        sessions = {0: [], 1: []}

        def factory(process):
            def make(peer):
                session = Md5Authenticator(peer, {"carol": PASSWORD}, decision=decision("allowed"))
                sessions[process].append(session)
                return session
            return make

        # Connection IDs must not repeat across the processes
        with self.assertRaises(ValueError):
            make_service(cfg, core=types.SimpleNamespace(connection_ids=(1, 1)), store=None,
                         eap_factory=factory(0), workers=supervisor)
        main = make_service(cfg, core=types.SimpleNamespace(connection_ids=(1, 2)), store=None,
                            eap_factory=factory(0), workers=supervisor)
        main.startService()
        self.addCleanup(main.stopService)
        processes, descriptors, data, label = supervisor.shares["radius"]
        self.assertEqual((processes, label, main.server.process, main.server.processes), (2, "RADIUS", 0, 2))
        ours = descriptors(1)
        self.assertEqual(ours["udp"], main._listening.socket.fileno())
        self.assertEqual(set(ours), {"udp", "relay-0"})
        if not worker:
            return main, None, sessions
        # worker 1, built as nac.processes builds it, from copies of what it would inherit
        share = WorkerShare(1, processes, 2, {label: os.dup(fd) for label, fd in ours.items()}, data)
        second = make_service(
            cfg, core=None, store=None, eap_factory=factory(1), process=share.process, processes=share.processes,
            adopt=(share.descriptors["udp"], share.data["family"]),
            relay={int(k.partition("-")[2]): fd for k, fd in share.descriptors.items() if k.startswith("relay-")})
        second.startService()
        self.addCleanup(second.stopService)
        self.assertEqual(second.where, f"127.0.0.1[{self.port}]")
        return main, second, sessions

    @defer.inlineCallbacks
    def test_two_processes_serve_one_port_each_its_own_conversations(self):
        main, second, sessions = self.two_processes()
        self.assertIn(f"RADIUS server listening on 127.0.0.1[{self.port}] with 2 processes", self.logged())
        nas = self.nas()
        for n in range(24):
            first, data = request(IDENTITY, identifier=2 * n)
            nas.send(data)
            challenge = verify_response((yield nas.reply()), first.authenticator, SECRET.encode())
            # the State names the process its Request Authenticator chose
            self.assertEqual(challenge.get(A.STATE)[0], first.authenticator[0] % 2)
            second_request, data = request(md5_response(challenge.eap_message(), PASSWORD),
                                           challenge.get(A.STATE), identifier=2 * n + 1)
            nas.send(data)
            accept = verify_response((yield nas.reply()), second_request.authenticator, SECRET.encode())
            self.assertEqual(accept.code, Code.ACCESS_ACCEPT)
            # a retransmission reaches the process that answered it, and its cache
            nas.send(data)
            self.assertEqual((yield nas.reply()), accept.raw)
        served = {k: len(v) for k, v in sessions.items()}
        self.assertEqual(sum(served.values()), 24)
        self.assertTrue(served[0] and served[1], served)
        self.assertTrue(all(len(session.received) == 2 for v in sessions.values() for session in v))
        # only the main process reads the socket; the worker's requests went through the relay
        self.assertEqual(main.server.counters.forwarded, second.protocol.relay.received)
        self.assertEqual(main.server.counters.forwarded, 3 * served[1])
        self.assertEqual(second.server.counters.dup_access_requests, served[1])

    @defer.inlineCallbacks
    def test_requests_for_a_process_that_cannot_be_reached(self):
        main, _, sessions = self.two_processes(worker=False)
        # worker 1 is gone for good: no end of the relay is left on its side
        main._mesh[1, 0].close()
        nas = self.nas()
        owned = {0: None, 1: None}
        while owned[1] is None:
            packet, data = request(IDENTITY)
            owned[packet.authenticator[0] % 2] = (packet, data)
        # a new conversation is served where it arrived, and stays there
        nas.send(owned[1][1])
        challenge = verify_response((yield nas.reply()), owned[1][0].authenticator, SECRET.encode())
        self.assertEqual(challenge.get(A.STATE)[0], 0)
        self.assertEqual(len(sessions[0]), 1)
        # one of its own conversations cannot go on: discarded, and said once
        for _ in range(3):
            nas.send(request(md5_response(challenge.eap_message(), PASSWORD), bytes((1,)) + bytes(15))[1])
        nas.send(request(md5_response(challenge.eap_message(), PASSWORD), challenge.get(A.STATE),
                         identifier=1)[1])
        accept = yield nas.reply()
        self.assertEqual(accept[0], Code.ACCESS_ACCEPT)
        self.assertEqual(nas.replies, [])
        self.assertEqual(self.logged().count("cannot hand RADIUS requests to process 1"), 1)
        self.assertEqual(main.server.counters.packets_dropped, 3)

    def test_secret_is_required(self):
        cfg = nac_config.load(None, {("radius", "listen"): "127.0.0.1"})
        with self.assertRaises(nac_config.ConfigError) as cm:
            make_service(cfg, None, None, eap_factory=self.factory)
        self.assertIn("[radius] secret", str(cm.exception))

    def test_default_eap_factory_comes_from_the_eap_server(self):
        svc = make_service(self.config(), core=None, store=None)
        self.assertTrue(callable(svc.server.eap_factory))


class RadclientTests(unittest.TestCase):
    """FreeRADIUS's radclient (Debian freeradius-utils) against the service."""

    def setUp(self):
        if RADCLIENT is None:
            raise unittest.SkipTest("radclient not installed (Debian package freeradius-utils)")
        self.port = free_port(socket.SOCK_DGRAM)
        self.sessions: list[Md5Authenticator] = []
        cfg = nac_config.load(None, {("radius", "listen"): "127.0.0.1", ("radius", "port"): str(self.port),
                                     ("radius", "secret"): SECRET, ("radius", "clients"): "127.0.0.1",
                                     ("radius", "vlan_allow"): "42"})
        self.svc = make_service(cfg, None, None, eap_factory=self.factory)
        self.svc.startService()
        self.addCleanup(self.svc.stopService)

    def factory(self, peer):
        session = Md5Authenticator(peer, {"carol": PASSWORD}, decision=decision("allowed"))
        self.sessions.append(session)
        return session

    def radclient(self, command: str, lines: list[str], secret: str = SECRET, timeout: float = 2.0) -> defer.Deferred:
        packet = self.mktemp()
        with open(packet, "w") as f:
            f.write("\n".join(lines) + "\n")
        secret_file = self.mktemp()
        with open(secret_file, "w") as f:
            f.write(secret + "\n")
        return utils.getProcessOutputAndValue(
            RADCLIENT, ["-x", "-r", "1", "-t", str(timeout), "-S", secret_file, "-f", packet,
                        f"127.0.0.1:{self.port}", command], env=dict(os.environ))

    @staticmethod
    def attribute(out: str, name: str) -> str:
        """An attribute radclient printed for the reply (not for what it sent)."""
        received = out[out.index("Received "):]
        m = re.search(rf"^\s*{name} = (.*)$", received, re.MULTILINE)
        if m is None:
            raise AssertionError(f"radclient printed no {name}:\n{out}")
        return m.group(1).strip().strip('"')

    @defer.inlineCallbacks
    def test_status_server_gets_access_accept(self):
        out, err, code = yield self.radclient("status", ["Message-Authenticator = 0x00"])
        out = out.decode()
        self.assertEqual(code, 0, out + err.decode())
        self.assertIn("Received Access-Accept", out)

    @defer.inlineCallbacks
    def test_eap_md5_conversation_with_radclient(self):
        out, err, code = yield self.radclient("auth", [
            'User-Name = "carol"', f"EAP-Message = 0x{IDENTITY.hex()}", "Message-Authenticator = 0x00"])
        out = out.decode()
        self.assertIn("Received Access-Challenge", out, out + err.decode())
        state = self.attribute(out, "State")
        challenge = bytes.fromhex(self.attribute(out, "EAP-Message")[2:])
        response = md5_response(challenge, PASSWORD)
        out, err, code = yield self.radclient("auth", [
            'User-Name = "carol"', f"EAP-Message = 0x{response.hex()}", f"State = {state}",
            "Message-Authenticator = 0x00"])
        out = out.decode()
        self.assertIn("Received Access-Accept", out, out + err.decode())
        self.assertEqual(self.attribute(out, "Tunnel-Private-Group-Id:1"), "42")
        self.assertEqual(self.attribute(out, "Tunnel-Type:1"), "VLAN")
        self.assertEqual(self.attribute(out, "Tunnel-Medium-Type:1"), "IEEE-802")
        self.assertEqual(self.attribute(out, "Filter-Id"), "allow")
        # radclient decrypts the MS-MPPE keys with the shared secret itself
        msk = self.sessions[0].msk
        self.assertEqual(self.attribute(out, "MS-MPPE-Recv-Key"), "0x" + msk[:32].hex())
        self.assertEqual(self.attribute(out, "MS-MPPE-Send-Key"), "0x" + msk[32:].hex())

    @defer.inlineCallbacks
    def test_wrong_secret_gets_no_reply_and_pap_gets_access_reject(self):
        out, err, code = yield self.radclient("auth", [
            'User-Name = "carol"', f"EAP-Message = 0x{IDENTITY.hex()}", "Message-Authenticator = 0x00"],
            secret="not-the-secret", timeout=0.5)
        out = out.decode() + err.decode()
        self.assertNotEqual(code, 0)
        self.assertIn("No reply from server", out)
        self.assertEqual(self.sessions, [])
        out, err, code = yield self.radclient("auth", ['User-Name = "carol"', 'User-Password = "secret"'])
        self.assertIn("Received Access-Reject", out.decode(), out.decode() + err.decode())


EAPOL_TEST = shutil.which("eapol_test")


class EapolTestTests(unittest.TestCase):
    """wpa_supplicant's eapol_test (Debian eapoltest) as supplicant and NAS: its
    RADIUS client checks our authenticators and the EAP result end to end.
    Outer EAP-MD5 with the test authenticator: no keys, hence ``-n``."""

    def setUp(self):
        if EAPOL_TEST is None:
            raise unittest.SkipTest("eapol_test not installed (Debian package eapoltest)")
        self.port = free_port(socket.SOCK_DGRAM)
        self.sessions: list[Md5Authenticator] = []
        cfg = nac_config.load(None, {("radius", "listen"): "127.0.0.1", ("radius", "port"): str(self.port),
                                     ("radius", "secret"): SECRET, ("radius", "clients"): "127.0.0.1"})
        self.svc = make_service(cfg, None, None, eap_factory=self.factory)
        self.svc.startService()
        self.addCleanup(self.svc.stopService)

    def factory(self, peer):
        session = Md5Authenticator(peer, {"carol": PASSWORD}, decision=decision("allowed"), msk=False)
        self.sessions.append(session)
        return session

    def eapol_test(self, password: str) -> defer.Deferred:
        conf = self.mktemp()
        with open(conf, "w") as f:
            f.write('network={\n\tkey_mgmt=IEEE8021X\n\teap=MD5\n\tidentity="carol"\n'
                    f'\tpassword="{password}"\n\teapol_flags=0\n}}\n')
        return utils.getProcessOutputAndValue(
            EAPOL_TEST, ["-c", conf, "-a", "127.0.0.1", "-p", str(self.port), "-s", SECRET, "-n",
                         "-r", "0", "-t", "10"], env=dict(os.environ))

    @defer.inlineCallbacks
    def test_eap_md5_success(self):
        out, err, code = yield self.eapol_test(PASSWORD)
        out = out.decode()
        self.assertEqual(code, 0, out[-3000:])
        self.assertIn("RADIUS message: code=2 (Access-Accept)", out)
        self.assertIn("CTRL-EVENT-EAP-SUCCESS", out)
        self.assertTrue(out.rstrip().endswith("SUCCESS"))
        self.assertEqual(len(self.sessions), 1)

    @defer.inlineCallbacks
    def test_wrong_password_is_rejected(self):
        out, err, code = yield self.eapol_test("not the password")
        out = out.decode()
        self.assertNotEqual(code, 0)
        self.assertIn("RADIUS message: code=3 (Access-Reject)", out)
        self.assertIn("CTRL-EVENT-EAP-FAILURE", out)
