"""EAP-TTLS (RFC 5281, RFC 9427) through the real authenticator, against an
EAP-TTLS peer written here: a pyOpenSSL client over memory BIOs with its
own fragment and AVP code, computing the inner EAP-MD5 itself.  The MSK
the server derives must equal the client's own exporter output for
TLS 1.2 and TLS 1.3; wrong passwords, malformed packets and fragment
games end in EAP-Failure or a discard, never in an exception."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from OpenSSL import SSL
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.certs import ensure_demo_pki, issue_certificate
from nac.eap import mschapv2
from nac.eap.outcome import EapStatus
from nac.eap.server import EapServerSession, EapSettings
from nac.eap.tls import server_context
from nac.eap.ttls import TtlsSettings
from nac.interfaces import IEapSession
from nac.tnccs.core import PeerInfo

PASSWORDS = {"carol": "K8FW9", "dave": "Secret\u00e9!"}
_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


# -- the peer -----------------------------------------------------------------------------

def eap(code: int, identifier: int, eap_type: int | None = None, data: bytes = b"") -> bytes:
    if eap_type is None:
        return struct.pack(">BBH", code, identifier, 4)
    return struct.pack(">BBHB", code, identifier, 5 + len(data), eap_type) + data


def avp(code: int, data: bytes, vendor: int | None = None) -> bytes:
    head = 12 if vendor is not None else 8
    flags = 0x40 | (0x80 if vendor is not None else 0)
    out = struct.pack(">IB", code, flags) + (head + len(data)).to_bytes(3, "big")
    if vendor is not None:
        out += struct.pack(">I", vendor)
    return out + data + b"\x00" * (-(head + len(data)) % 4)


def read_avps(data: bytes) -> list[tuple[int, int | None, bytes]]:
    out, i = [], 0
    while i < len(data):
        code, flags = struct.unpack_from(">IB", data, i)
        length = int.from_bytes(data[i + 5:i + 8], "big")
        vendor = struct.unpack_from(">I", data, i + 8)[0] if flags & 0x80 else None
        head = 12 if flags & 0x80 else 8
        out.append((code, vendor, data[i + head:i + length]))
        i += length + (-length % 4)
    return out


class Fragmenter:
    """The peer's side of L/M fragmentation: splits what it sends, gathers what it gets."""

    def __init__(self, version: int, fragment_size: int, *, length_flag: int | None = 0x80):
        self.version, self.size, self.length_flag = version, fragment_size, length_flag
        self.out = b""
        self.gathered = bytearray()

    def send(self, message: bytes) -> bytes:
        if 1 + len(message) <= self.size:
            return bytes((self.version,)) + message
        head = bytes((self.version | 0x40 | (self.length_flag or 0),))
        room = self.size - 1
        if self.length_flag:
            head += struct.pack(">I", len(message))
            room -= 4
        self.out = message[room:]
        return head + message[:room]

    def next(self) -> bytes:
        room = self.size - 1
        chunk, self.out = self.out[:room], self.out[room:]
        return bytes((self.version | (0x40 if self.out else 0),)) + chunk

    def take(self, type_data: bytes) -> tuple[bytes | None, bytes | None]:
        """(reply now, whole message): an ACK or next fragment, or the message."""
        flags = type_data[0] if type_data else self.version
        body = type_data[5:] if self.length_flag and flags & self.length_flag else type_data[1:]
        if self.out:
            assert not body, "data while our fragments wait for ACKs"
            return self.next(), None
        self.gathered += body
        if flags & 0x40:
            return bytes((self.version,)), None
        message, self.gathered = bytes(self.gathered), bytearray()
        return None, message


class TtlsPeer:
    """An EAP-TTLS peer: outer identity, TLS, then the inner authentication
    (EAP-MD5, EAP-MSCHAPv2, PAP or MS-CHAP-V2) and, when given, a posture
    peer for EAP-TNC / PT-EAP requests."""

    def __init__(self, ca: Path, identity: str, password: str, *, inner: str = "md5",
                 tls_version: str = "1.3", fragment_size: int = 1024, outer_identity: str = "anonymous",
                 posture=None, client_cert: tuple[Path, Path] | None = None):
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(_VERSIONS[tls_version])
        ctx.set_max_proto_version(_VERSIONS[tls_version])
        ctx.load_verify_locations(str(ca))
        ctx.set_verify(SSL.VERIFY_PEER)
        if client_cert:
            ctx.use_certificate_chain_file(str(client_cert[0]))
            ctx.use_privatekey_file(str(client_cert[1]))
        self.tls = SSL.Connection(ctx, None)
        self.tls.set_connect_state()
        self.identity, self.password, self.inner = identity, password, inner
        self.outer_identity = outer_identity
        self.frag = Fragmenter(0, fragment_size)
        self.posture = posture
        self.handshake_done = False
        self.phase2_started = False
        self.result: str | None = None
        self.inner_packets: list[tuple[str, bytes]] = []
        self.outer_requests = 0
        self.ms_auth: bytes | None = None

    # -- outer EAP ---------------------------------------------------------------------

    def respond(self, packet: bytes) -> bytes | None:
        code, ident, length = struct.unpack_from(">BBH", packet)
        if code == 3:
            self.result = "success"
            return None
        if code == 4:
            self.result = "failure"
            return None
        assert code == 1, code
        self.outer_requests += 1
        eap_type, data = packet[4], packet[5:length]
        if eap_type == 1:
            return eap(2, ident, 1, self.outer_identity.encode())
        if eap_type != 21:
            return eap(2, ident, 3, bytes((21,)))
        return eap(2, ident, 21, self.ttls(data))

    def ttls(self, data: bytes) -> bytes:
        if data[0] & 0x20:  # Start
            self._handshake()
            return self.frag.send(self._records())
        reply, message = self.frag.take(data)
        if reply is not None:
            return reply
        if message:
            self.tls.bio_write(message)
        if not self.handshake_done:
            self._handshake()
            out = self._records()
            if out:
                return self.frag.send(out)
        app = self._read()
        if not app:
            if not self.phase2_started:
                self.phase2_started = True
                return self._send(self._phase2_start())
            raise AssertionError("an empty EAP-TTLS request in phase 2")
        return self._phase2(app)

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
            self.handshake_done = True
        except SSL.WantReadError:
            pass

    def _records(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.tls.bio_read(65536)
            except SSL.WantReadError:
                return out

    def _read(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.tls.recv(65536)
            except SSL.WantReadError:
                return out

    def _send(self, payload: bytes) -> bytes:
        self.tls.sendall(payload)
        return self.frag.send(self._records())

    def keys(self) -> tuple[bytes, bytes]:
        if self.tls.get_protocol_version() == SSL.TLS1_3_VERSION:
            material = self.tls.export_keying_material(b"EXPORTER_EAP_TLS_Key_Material", 128, b"\x15")
        else:
            material = self.tls.export_keying_material(b"ttls keying material", 128)
        return material[:64], material[64:]

    # -- phase 2 -----------------------------------------------------------------------

    def _inner(self, packet: bytes) -> bytes:
        self.inner_packets.append(("c2s", packet))
        return avp(79, packet)

    def _phase2_start(self) -> bytes:
        if self.inner == "pap":
            password = self.password.encode()
            return avp(1, self.identity.encode()) + avp(2, password + b"\x00" * (-len(password) % 16 or 0))
        if self.inner == "ttls-mschapv2":
            implicit = self.tls.export_keying_material(b"ttls challenge", 17)
            challenge, ident = implicit[:16], implicit[16]
            peer_challenge = bytes(range(16))
            nt_hash = mschapv2.nt_password_hash(self.password)
            nt = mschapv2.generate_nt_response(challenge, peer_challenge, self.identity.encode(), nt_hash)
            self.ms_auth = mschapv2.authenticator_response(nt_hash, nt, peer_challenge, challenge,
                                                           self.identity.encode())
            response = bytes((ident, 0)) + peer_challenge + b"\x00" * 8 + nt
            return (avp(1, self.identity.encode()) + avp(11, challenge, 311) + avp(25, response, 311))
        return self._inner(eap(2, 0, 1, self.identity.encode()))

    def _phase2(self, app: bytes) -> bytes:
        avps = read_avps(app)
        eap_data = b"".join(d for code, vendor, d in avps if code == 79 and vendor is None)
        if not eap_data:
            found = {(code, vendor): d for code, vendor, d in avps}
            if (26, 311) in found:
                assert found[(26, 311)][1:] == self.ms_auth, "wrong MS-CHAP2-Success"
            # MS-CHAP2-Success or MS-CHAP-Error: an empty TTLS response acknowledges it
            return b"\x00"
        self.inner_packets.append(("s2c", eap_data))
        code, ident, length, eap_type = struct.unpack_from(">BBHB", eap_data)
        data = eap_data[5:length]
        assert code == 1
        if eap_type == 1:
            return self._send(self._inner(eap(2, ident, 1, self.identity.encode())))
        if eap_type == 4:
            value = hashlib.md5(bytes((ident,)) + self.password.encode() + data[1:1 + data[0]]).digest()
            return self._send(self._inner(eap(2, ident, 4, b"\x10" + value)))
        if eap_type == 26:
            return self._send(self._inner(eap(2, ident, 26, self._mschapv2(data))))
        if eap_type in (38, 54) and self.posture is not None:
            return self._send(self._inner(eap(2, ident, eap_type, self.posture.respond(eap_type, data))))
        return self._send(self._inner(eap(2, ident, 3, b"\x00")))

    def _mschapv2(self, data: bytes) -> bytes:
        reply, auth = mschapv2_reply(data, self.identity, self.password)
        if auth is not None:
            self.ms_auth = auth
        elif data[0] == 3:
            assert data[4:46] == self.ms_auth, "wrong authenticator response"
        return reply


def mschapv2_reply(data: bytes, identity: str, password: str) -> tuple[bytes, bytes | None]:
    """A peer's answer to EAP-MSCHAPv2 type-data, and the authenticator
    response it then expects (for a Challenge)."""
    opcode, ms_id = data[0], data[1]
    if opcode == 1:
        challenge = data[5:21]
        peer_challenge = b"\x21" * 16
        nt_hash = mschapv2.nt_password_hash(password)
        user = identity.encode()
        nt = mschapv2.generate_nt_response(challenge, peer_challenge, user, nt_hash)
        auth = mschapv2.authenticator_response(nt_hash, nt, peer_challenge, challenge, user)
        value = bytes((49,)) + peer_challenge + b"\x00" * 8 + nt + b"\x00" + user
        return struct.pack(">BBH", 2, ms_id, 4 + len(value)) + value, auth
    return (b"\x03" if opcode == 3 else b"\x04"), None


def converse(testcase, session, peer, *, first: bytes | None = None, limit: int = 400):
    """Run a whole conversation; returns (final outcome, number of round trips)."""
    request = session.start() if first is None else None
    response = first
    for rounds in range(1, limit):
        if request is not None:
            response = peer.respond(request)
        outcome = testcase.successResultOf(session.receive(response))
        if outcome.status is not EapStatus.CONTINUE:
            peer.respond(outcome.packet)
            return outcome, rounds
        request = outcome.packet
    raise AssertionError("the conversation did not end")


class Passwords:
    """The credential callables a store would provide, recording the lookups."""

    def __init__(self, passwords=PASSWORDS):
        self.passwords = passwords
        self.asked: list[str] = []

    def credentials(self, identity):
        self.asked.append(identity)
        return defer.succeed(self.passwords.get(identity))

    def check_password(self, identity, password):
        self.asked.append(identity)
        return defer.succeed(self.passwords.get(identity) == password)


class PkiMixin:
    def setUp(self):
        self.state = Path(self.mktemp())
        self.pki = ensure_demo_pki(self.state)
        self.passwords = Passwords()

    def context(self, **kw):
        return server_context(cert=self.pki.server_cert, key=self.pki.server_key, **kw)

    def settings(self, *, methods=("ttls",), posture=None, fragment_size=1024, context=None, **ttls_kw):
        ttls = TtlsSettings(context=context or self.context(), credentials=self.passwords.credentials,
                            check_password=self.passwords.check_password, posture=posture,
                            fragment_size=fragment_size, **ttls_kw)
        return EapSettings(methods=methods, ttls=ttls, credentials=self.passwords.credentials)

    def session(self, settings=None, **kw) -> EapServerSession:
        return EapServerSession(PeerInfo("radius", "127.0.0.1", 1812), settings or self.settings(**kw))

    def peer(self, identity="carol", password=None, **kw) -> TtlsPeer:
        return TtlsPeer(self.pki.ca_cert, identity, PASSWORDS[identity] if password is None else password, **kw)


# -- tests --------------------------------------------------------------------------------

class TtlsKeyTests(PkiMixin, unittest.TestCase):
    def run_ttls(self, tls_version, inner="md5", **kw):
        session = self.session(**kw)
        verifyObject(IEapSession, session)
        peer = self.peer(tls_version=tls_version, inner=inner)
        outcome, rounds = converse(self, session, peer)
        return outcome, peer, rounds

    def test_tls13_msk_is_the_rfc9427_export(self):
        outcome, peer, _ = self.run_ttls("1.3")
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(peer.result, "success")
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
        self.assertEqual(len(outcome.msk), 64)
        self.assertEqual(outcome.identity, "carol")

    def test_tls12_msk_is_the_ttls_keying_material(self):
        outcome, peer, _ = self.run_ttls("1.2")
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
        self.assertNotEqual(outcome.msk, outcome.emsk)

    def test_inner_sequence_matches_hostapd_without_tnc(self):
        # Identity → MD5-Challenge → MD5 Response → outer Success: no inner Success
        outcome, peer, _ = self.run_ttls("1.2")
        self.assertEqual([(d, p[0], p[4]) for d, p in peer.inner_packets],
                         [("c2s", 2, 1), ("s2c", 1, 4), ("c2s", 2, 4)])
        self.assertEqual(outcome.packet, bytes((3, peer_last_id(outcome), 0, 4)))

    def test_mschapv2_inner_method(self):
        outcome, peer, _ = self.run_ttls("1.3", inner="md5",
                                         inner_methods=("mschapv2",))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.identity, "carol")
        self.assertEqual([p[4] for _, p in peer.inner_packets], [1, 26, 26, 26, 26])

    def test_nak_moves_to_the_next_inner_method(self):
        class NakMd5(TtlsPeer):
            def _phase2(self, app):
                avps = read_avps(app)
                data = avps[0][2]
                if data[4] == 4:
                    self.inner_packets.append(("s2c", data))
                    return self._send(self._inner(eap(2, data[1], 3, bytes((26,)))))
                return super()._phase2(app)

        session = self.session()
        peer = NakMd5(self.pki.ca_cert, "dave", PASSWORDS["dave"], tls_version="1.2")
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual([(d, p[4]) for d, p in peer.inner_packets],
                         [("c2s", 1), ("s2c", 4), ("c2s", 3), ("s2c", 26), ("c2s", 26), ("s2c", 26),
                          ("c2s", 26)])

    def test_pap(self):
        outcome, peer, _ = self.run_ttls("1.3", inner="pap")
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
        self.assertIn("carol", self.passwords.asked)

    def test_ttls_mschapv2_non_eap(self):
        outcome, peer, _ = self.run_ttls("1.2", inner="ttls-mschapv2")
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())

    def test_wrong_password_fails_for_each_inner_method(self):
        for inner, methods in (("md5", ("md5",)), ("md5", ("mschapv2",)), ("pap", ("pap",)),
                               ("ttls-mschapv2", ("mschapv2",))):
            session = self.session(inner_methods=methods)
            peer = self.peer(password="wrong", inner=inner)
            outcome, _ = converse(self, session, peer)
            self.assertEqual(outcome.status, EapStatus.FAILURE, (inner, methods))
            self.assertEqual(peer.result, "failure")
            self.assertIsNone(outcome.msk)
            self.assertTrue(session.finished)

    def test_unknown_user_fails(self):
        session = self.session()
        peer = TtlsPeer(self.pki.ca_cert, "mallory", "x")
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.FAILURE)

    def test_pap_refused_when_not_enabled(self):
        session = self.session(inner_methods=("md5",))
        outcome, _ = converse(self, session, self.peer(inner="pap"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("PAP is not enabled", outcome.reason)

    def test_client_certificate_replaces_phase2_authentication(self):
        cert, key = self.state / "dave.pem", self.state / "dave.key"
        issue_certificate(self.pki.ca_cert, self.pki.ca_key, "dave@nac.test", cert, key, client=True)
        session = self.session(context=self.context(ca=self.pki.ca_cert, client_cert="optional"),
                               client_cert_auth=True)
        peer = self.peer("dave", client_cert=(cert, key))
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.identity, "dave@nac.test")
        self.assertEqual(self.passwords.asked, [])


def peer_last_id(outcome) -> int:
    return outcome.packet[1]


class FragmentationTests(PkiMixin, unittest.TestCase):
    def test_small_fragments_both_ways(self):
        for version in ("1.2", "1.3"):
            _, whole = converse(self, self.session(), self.peer(tls_version=version))
            session = self.session(fragment_size=150)
            peer = self.peer(tls_version=version, fragment_size=150)
            outcome, rounds = converse(self, session, peer)
            self.assertEqual(outcome.status, EapStatus.SUCCESS, version)
            self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
            self.assertGreater(rounds, whole + 3, version)

    def test_no_packet_exceeds_the_fragment_size(self):
        session = self.session(fragment_size=100)
        peer = self.peer(fragment_size=1400)
        sizes = []
        request = session.start()
        while True:
            sizes.append(len(request))
            outcome = self.successResultOf(session.receive(peer.respond(request)))
            if outcome.status is not EapStatus.CONTINUE:
                break
            request = outcome.packet
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertLessEqual(max(sizes), 105)

    def test_reassembly_cap(self):
        session = self.session(max_message_size=4096)
        request = session.start()
        ident = self.successResultOf(session.receive(eap(2, request[1], 1, b"anonymous"))).packet[1]
        # L announces 1 MB
        out = self.successResultOf(session.receive(eap(2, ident, 21, b"\xc0" + struct.pack(">I", 1 << 20)
                                                       + b"\x16" * 100)))
        self.assertEqual(out.status, EapStatus.FAILURE)
        self.assertIn("exceeds", out.reason)

    def test_fragments_beyond_the_announced_length_fail(self):
        session = self.session()
        request = session.start()
        ident = self.successResultOf(session.receive(eap(2, request[1], 1, b"x"))).packet[1]
        out = self.successResultOf(session.receive(eap(2, ident, 21, b"\xc0" + struct.pack(">I", 120)
                                                       + b"\x16" * 100)))
        self.assertEqual((out.status, out.packet[5:]), (EapStatus.CONTINUE, b"\x00"))  # ACK
        out = self.successResultOf(session.receive(eap(2, out.packet[1], 21, b"\x00" + b"\x16" * 100)))
        self.assertEqual(out.status, EapStatus.FAILURE)


class MalformedTests(PkiMixin, unittest.TestCase):
    def started(self):
        session = self.session()
        request = session.start()
        out = self.successResultOf(session.receive(eap(2, request[1], 1, b"anonymous")))
        return session, out.packet[1]

    def test_garbage_tls_fails(self):
        session, ident = self.started()
        out = self.successResultOf(session.receive(eap(2, ident, 21, b"\x00" + b"\x16\x03\x01\x00\x05hello")))
        self.assertEqual(out.status, EapStatus.FAILURE)
        self.assertIn("TLS", out.reason)

    def test_peer_start_flag_fails(self):
        session, ident = self.started()
        out = self.successResultOf(session.receive(eap(2, ident, 21, b"\x20")))
        self.assertEqual(out.status, EapStatus.FAILURE)

    def test_wrong_version_fails(self):
        session, ident = self.started()
        out = self.successResultOf(session.receive(eap(2, ident, 21, b"\x01\x16\x03")))
        self.assertEqual(out.status, EapStatus.FAILURE)
        self.assertIn("unsupported version", out.reason)

    def test_garbage_in_the_tunnel_fails(self):
        class Garbage(TtlsPeer):
            def _phase2_start(self):
                return b"\x00\x00\x00\x4f\x40\x00\x00\x05"  # AVP Length shorter than its header

        outcome, _ = converse(self, self.session(), Garbage(self.pki.ca_cert, "carol", "K8FW9"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("AVP", outcome.reason)

    def test_unknown_mandatory_avp_fails(self):
        class Unknown(TtlsPeer):
            def _phase2_start(self):
                return avp(12345, b"x") + super()._phase2_start()

        outcome, _ = converse(self, self.session(), Unknown(self.pki.ca_cert, "carol", "K8FW9"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("mandatory", outcome.reason)

    def test_inner_identifier_mismatch_fails(self):
        class WrongId(TtlsPeer):
            def _phase2(self, app):
                data = read_avps(app)[0][2]
                if data[4] == 4:
                    return self._send(self._inner(eap(2, (data[1] + 7) & 0xFF, 4, b"\x10" + bytes(16))))
                return super()._phase2(app)

        outcome, _ = converse(self, self.session(), WrongId(self.pki.ca_cert, "carol", "K8FW9"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("identifier", outcome.reason)

    def test_silent_peer_is_asked_for_its_identity(self):
        class Silent(TtlsPeer):
            def _phase2_start(self):
                return b""

            def ttls(self, data):
                if self.handshake_done and self.phase2_started and not self.asked:
                    self.asked = True
                    self.tls.bio_write(self.frag.take(data)[1])
                    return self._phase2(self._read())
                return super().ttls(data)

        peer = Silent(self.pki.ca_cert, "carol", "K8FW9", tls_version="1.2")
        peer.asked = False
        peer.frag.send = lambda message, _orig=peer.frag.send: _orig(message) if message else b"\x00"
        outcome, _ = converse(self, self.session(), peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual([(d, p[4]) for d, p in peer.inner_packets][:2], [("s2c", 1), ("c2s", 1)])


class Tls13Tests(PkiMixin, unittest.TestCase):
    def test_phase2_sent_with_the_client_finished(self):
        """A peer may send its inner Identity in the same flight as its Finished."""

        class Eager(TtlsPeer):
            def ttls(self, data):
                if not self.handshake_done and not data[0] & 0x20:
                    reply, message = self.frag.take(data)
                    if reply is not None:
                        return reply
                    self.tls.bio_write(message)
                    self._handshake()
                    assert self.handshake_done
                    self.phase2_started = True
                    self.tls.sendall(self._phase2_start())
                    return self.frag.send(self._records())
                return super().ttls(data)

        peer = Eager(self.pki.ca_cert, "carol", "K8FW9", tls_version="1.3")
        outcome, rounds = converse(self, self.session(), peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual((outcome.msk, outcome.emsk), peer.keys())
        _, usual = converse(self, self.session(), self.peer(tls_version="1.3"))
        self.assertEqual(rounds, usual - 1)

    def test_min_tls_version_refuses_older_peers(self):
        session = self.session(context=self.context(min_tls_version="1.3"))
        outcome, _ = converse(self, session, self.peer(tls_version="1.2"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("TLS handshake failed", outcome.reason)

    def test_untrusted_client_certificate_is_refused(self):
        other = ensure_demo_pki(Path(self.mktemp()))
        cert, key = self.state / "eve.pem", self.state / "eve.key"
        issue_certificate(other.ca_cert, other.ca_key, "eve", cert, key, client=True)
        session = self.session(context=self.context(ca=self.pki.ca_cert, client_cert="optional"),
                               client_cert_auth=True)
        outcome, _ = converse(self, session, self.peer(client_cert=(cert, key)))
        self.assertEqual(outcome.status, EapStatus.FAILURE)


class RandomInputTests(PkiMixin, unittest.TestCase):
    """Random bytes where EAP-TTLS reads: outer type-data, and phase 2 data inside a real tunnel."""

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(max_size=80), min_size=1, max_size=5))
    def test_random_type_data(self, blobs):
        session = self.session(context=self.shared_context())
        ident = self.successResultOf(session.receive(eap(2, session.start()[1], 1, b"x"))).packet[1]
        for blob in blobs:
            out = self.successResultOf(session.receive(eap(2, ident, 21, blob)))
            self.assertIn(out.status, (EapStatus.CONTINUE, EapStatus.FAILURE, EapStatus.DISCARD))
            if out.status is not EapStatus.CONTINUE:
                break
            ident = out.packet[1]

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=200), st.booleans())
    def test_random_phase2_data(self, data, as_eap):
        payload = avp(79, data) if as_eap else data

        class Random(TtlsPeer):
            def _phase2_start(self):
                return payload

        session = self.session(context=self.shared_context())
        outcome, _ = converse(self, session, Random(self.pki.ca_cert, "carol", "K8FW9", tls_version="1.2"))
        # nothing at all: the server asks for the identity and the peer answers it
        self.assertEqual(outcome.status, EapStatus.FAILURE if payload else EapStatus.SUCCESS)

    def shared_context(self):
        if not hasattr(self, "_context"):
            self._context = self.context()
        return self._context
