"""EAP-TTLS (RFC 5281, RFC 9427) through the real authenticator, against
nac's EAP-TTLS peer (nac.eap.peer, the one nac-eap-client runs) behind the
small respond() interface these tests drive.  The MSK the server derives
must equal the peer's own exporter output for TLS 1.2 and TLS 1.3; wrong
passwords, malformed packets and fragment games end in EAP-Failure or a
discard, never in an exception."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac.certs import ensure_demo_pki, issue_certificate
from nac.eap import mschapv2
from nac.eap import peer as eap_peer
from nac.eap.avp import VENDOR_MICROSOFT, Avp, AvpCode, MicrosoftAvpCode, build_avps, parse_avps
from nac.eap.fragments import EAP_TTLS, FragmentChannel
from nac.eap.outcome import EapStatus
from nac.eap.packet import EapPacket, EapType
from nac.eap.server import EapServerSession, EapSettings
from nac.eap.tls import TlsError, TlsTunnel, peer_context, server_context
from nac.eap.tnc import PtEap
from nac.eap.ttls import STALE_PHASE2, TtlsSettings
from nac.interfaces import IEapSession
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from twisted.logger import formatEvent, globalLogPublisher

PASSWORDS = {"carol": "K8FW9", "dave": "Secret\u00e9!"}


# -- the peer -----------------------------------------------------------------------------

def eap(code: int, identifier: int, eap_type: int | None = None, data: bytes = b"") -> bytes:
    if eap_type is None:
        return struct.pack(">BBH", code, identifier, 4)
    return struct.pack(">BBHB", code, identifier, 5 + len(data), eap_type) + data


class ScriptedPosture(eap_peer.PeerMethod):
    """A posture method answered by a test object's ``respond(eap_type, type_data)``."""

    responder = None
    may_succeed = True  # the server says when the exchange is over

    def process(self, request):
        return self.responder.respond(int(request.type), request.type_data)


class TtlsPeer:
    """nac's EAP peer running EAP-TTLS (nac.eap.peer), driven packet by
    packet: outer identity, TLS, the inner authentication (EAP-MD5,
    EAP-MSCHAPv2, PAP or MS-CHAP-V2) and the posture method ``tnc`` with
    the collectors ``imcs`` (nac's own PT-EAP / EAP-TNC peer) or, when
    given, a scripted ``posture`` peer for EAP-TNC / PT-EAP requests.  ``inner_packets`` records the
    tunnelled EAP packets; ``ttls_class`` replaces the EAP-TTLS method
    (tests that misbehave in phase 2)."""

    ttls_class = eap_peer.TtlsPeer

    def __init__(self, ca: Path, identity: str, password: str, *, inner: str = "md5",
                 tls_version: str = "1.3", fragment_size: int = 1024, outer_identity: str = "anonymous",
                 posture=None, tnc: str = "none", imcs=(), client_cert: tuple[Path, Path] | None = None,
                 phase2_with_finished: bool = False, server_name: str | None = None):
        cert, key = client_cert or (None, None)
        context = eap_peer.peer_context(cacert=ca, min_tls_version=tls_version, max_tls_version=tls_version,
                                        cert=cert, key=key)
        self.inner_packets: list[tuple[str, bytes]] = []
        self.posture = posture
        self.result: str | None = None
        settings = eap_peer.PeerSettings(
            identity=identity, password=password, outer_identity=outer_identity, inner=inner,
            tls_context=context, fragment_size=fragment_size, tnc=tnc, imcs=tuple(imcs),
            phase2_with_finished=phase2_with_finished, server_name=server_name,
            trace=lambda direction, packet: self.inner_packets.append((direction, packet)))
        self.peer = eap_peer.EapPeer(settings)
        ttls_class = self.ttls_class
        if posture is not None:
            scripted = {name: type(f"Scripted{cls.TYPE.name}", (ScriptedPosture,),
                                   {"TYPE": cls.TYPE, "responder": posture})
                        for name, cls in ttls_class.POSTURE_METHODS.items()}

            class ttls_class(ttls_class):
                def posture_class(self, name):
                    return scripted.get(name)

        self.peer.METHODS = {**eap_peer.EapPeer.METHODS, "ttls": ttls_class}

    def respond(self, packet: bytes) -> bytes | None:
        step = self.peer.receive(packet)
        if step.status is eap_peer.PeerStatus.SUCCESS:
            self.result = "success"
        elif step.status is eap_peer.PeerStatus.FAILURE:
            self.result = "failure"
        return step.response

    def keys(self) -> tuple[bytes, bytes]:
        return self.peer.msk, self.peer.emsk


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


def converse(testcase, session, peer, *, first: bytes | None = None, limit: int = 400,
             sizes: list[int] | None = None):
    """Run a whole conversation; returns (final outcome, number of round trips).
    ``sizes`` collects the length of each request the server sent on the way."""
    request = session.start() if first is None else None
    response = first
    for rounds in range(1, limit):
        if request is not None:
            if sizes is not None:
                sizes.append(len(request))
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
        outcome, peer, _ = self.run_ttls("1.3", inner="mschapv2", inner_methods=("mschapv2",))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(outcome.identity, "carol")
        self.assertEqual([p[4] for _, p in peer.inner_packets], [1, 26, 26, 26, 26])

    def test_nak_moves_to_the_next_inner_method(self):
        # the server offers EAP-MD5 first; a peer set up for EAP-MSCHAPv2 Naks it proposing 26
        session = self.session()
        peer = self.peer("dave", tls_version="1.2", inner="mschapv2")
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual([(d, p[4]) for d, p in peer.inner_packets],
                         [("c2s", 1), ("s2c", 4), ("c2s", 3), ("s2c", 26), ("c2s", 26), ("s2c", 26),
                          ("c2s", 26)])
        self.assertEqual(peer.inner_packets[2][1][5:], bytes((26,)))

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
        for inner, methods in (("md5", ("md5",)), ("mschapv2", ("mschapv2",)), ("pap", ("pap",)),
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


class ServerCertificateTests(PkiMixin, unittest.TestCase):
    """What nac's peer (nac-eap-client) accepts of the EAP-TTLS server's
    certificate, beyond its chain: a name, when it is told one, and
    serverAuth among the extended key usages the certificate lists."""

    def serve_with(self, name: str, *, client: bool = False) -> EapServerSession:
        cert, key = self.state / f"{name}.pem", self.state / f"{name}.key"
        issue_certificate(self.pki.ca_cert, self.pki.ca_key, name, cert, key, client=client, san_dns=[name],
                          replace=True)
        return self.session(context=server_context(cert=cert, key=key))

    def outcome(self, session, peer) -> tuple:
        outcome, _ = converse(self, session, peer)
        return outcome.status, peer.result

    def refusal(self, session, peer) -> str | None:
        """Why the peer ended the conversation (None: it did not)."""
        request = session.start()
        for _ in range(100):
            response = peer.respond(request)
            if peer.peer.error is not None or response is None:
                break
            outcome = self.successResultOf(session.receive(response))
            if outcome.status is not EapStatus.CONTINUE:
                peer.respond(outcome.packet)
                break
            request = outcome.packet
        return peer.peer.error

    def test_a_certificate_naming_the_server_is_accepted(self):
        session = self.serve_with("radius.example.org")
        self.assertEqual(self.outcome(session, self.peer(server_name="radius.example.org")),
                         (EapStatus.SUCCESS, "success"))

    def test_a_certificate_naming_another_is_refused(self):
        session = self.serve_with("rogue.example.org")
        self.assertIn("the server certificate is not for 'radius.example.org'",
                      self.refusal(session, self.peer(server_name="radius.example.org")))

    def test_a_client_certificate_is_refused_as_a_server_certificate(self):
        # its extended key usage is clientAuth alone: a user's certificate
        # from the same CA, not a server's.  OpenSSL refuses it in the chain
        # check (a TLS client verifies for the purpose "SSL server", which
        # wants serverAuth when the certificate lists usages), name or not.
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        for name in ("radius.example.org", None):
            session = self.serve_with("radius.example.org", client=True)
            cert = x509.load_pem_x509_certificate((self.state / "radius.example.org.pem").read_bytes())
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            self.assertEqual(list(usage), [ExtendedKeyUsageOID.CLIENT_AUTH])
            self.assertEqual(self.refusal(session, self.peer(server_name=name)),
                             "EAP-TTLS: TLS handshake failed: certificate verify failed", name)


class TlsTunnelEndTests(PkiMixin, unittest.TestCase):
    """How the end of a tunnel by the peer is reported."""

    def tunnels(self, version: str) -> tuple[TlsTunnel, TlsTunnel]:
        server = TlsTunnel(self.context())
        client = TlsTunnel(peer_context(cacert=self.pki.ca_cert, min_tls_version=version,
                                        max_tls_version=version), client=True)
        client.receive(b"")
        return server, client

    def established(self, version: str) -> tuple[TlsTunnel, TlsTunnel]:
        server, client = self.tunnels(version)
        while not (server.handshake_done and client.handshake_done):
            server.receive(client.data_to_send())
            client.receive(server.data_to_send())
        return server, client

    def test_close_notify_after_the_handshake(self):
        for version in ("1.2", "1.3"):
            server, client = self.established(version)
            client._conn.shutdown()
            server.receive(client.data_to_send())
            error = self.assertRaises(TlsError, server.read)
            self.assertEqual((str(error), error.peer_closed),
                             ("the peer closed the TLS connection (close_notify)", True))

    def test_close_notify_sent_as_a_fatal_alert(self):
        # strongSwan's TLS stack closes with level 2 (fatal): OpenSSL reports
        # it, at TLS 1.2, as an error without a reason ("OpenSSL error" before)
        server, client = self.tunnels("1.2")
        client_hello = client.data_to_send()
        error = self.assertRaises(TlsError, server.receive, client_hello + bytes.fromhex("15030300020200"))
        self.assertEqual((str(error), error.peer_closed),
                         ("the peer closed the TLS connection (close_notify as a fatal alert)", True))

    def test_another_fatal_alert_is_named(self):
        server, client = self.tunnels("1.2")
        error = self.assertRaises(TlsError, server.receive, client.data_to_send() + bytes.fromhex("15030300020228"))
        self.assertTrue(error.peer_closed)
        self.assertEqual(str(error), "the peer ended the TLS connection with a fatal alert: tls alert handshake failure")

    def test_a_failure_of_our_own_is_not_the_peers_end(self):
        server, _ = self.tunnels("1.2")
        error = self.assertRaises(TlsError, server.receive, b"\x16\x03\x03\x00\x05" + b"\xff" * 5)
        self.assertFalse(error.peer_closed)
        self.assertTrue(str(error).startswith("TLS handshake failed: "), str(error))


# -- the TLS exporters, written from RFC 5705 / RFC 5246 §5 and RFC 8446 §7.1, §7.5,
# independently of nac.eap (which asks OpenSSL for them)


def tls12_prf(secret: bytes, label: bytes, seed: bytes, length: int, digest: str) -> bytes:
    out, a = b"", label + seed
    while len(out) < length:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + label + seed, digest).digest()
    return out[:length]


def hkdf_expand_label(secret: bytes, label: bytes, context: bytes, length: int, digest: str) -> bytes:
    info = length.to_bytes(2, "big") + bytes((6 + len(label),)) + b"tls13 " + label + bytes((len(context),)) + context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes((counter,)), digest).digest()
        out += block
        counter += 1
    return out[:length]


def tls13_exporter(exporter_secret: bytes, label: bytes, context: bytes, length: int, digest: str) -> bytes:
    derived = hkdf_expand_label(exporter_secret, label, hashlib.new(digest, b"").digest(),
                                hashlib.new(digest).digest_size, digest)
    return hkdf_expand_label(derived, b"exporter", hashlib.new(digest, context).digest(), length, digest)


class IndependentKeyTests(PkiMixin, unittest.TestCase):
    """MSK, EMSK and the MS-CHAP-V2 implicit challenge against the RFCs'
    labels and lengths, from the TLS secrets OpenSSL logs (RFC 5281 §8 and
    §11.2.4 for TLS 1.2; RFC 9427 §2.1 for TLS 1.3)."""

    def keylogged_session(self, **kw):
        self.keylog: list[str] = []
        context = self.context()
        context.set_keylog_callback(lambda _conn, line: self.keylog.append(line.decode()))
        return self.session(context=context, **kw)

    def exporter(self, tls: dict, label: bytes, context: bytes | None, length: int) -> bytes:
        """The TLS exporter of the conversation ``tls`` describes, computed here."""
        digest = "sha384" if tls["cipher"].endswith("SHA384") else "sha256"
        if tls["version"] == "TLSv1.3":
            secret = next(bytes.fromhex(line.split()[2]) for line in self.keylog
                          if line.startswith("EXPORTER_SECRET ") and line.split()[1] == tls["client_random"].hex())
            return tls13_exporter(secret, label, context or b"", length, digest)
        assert context is None
        return tls12_prf(tls["master_key"], label, tls["client_random"] + tls["server_random"], length, digest)

    def recording_peer(self, *, tls_version: str, inner: str = "md5", challenge_label: bytes | None = None):
        """nac's peer, recording what its TLS connection negotiated; with
        ``challenge_label``, its MS-CHAP-V2 challenge is computed here."""
        test, seen = self, {}

        class Recording(eap_peer.TtlsPeer):
            def phase2_start(self):
                conn = self._tunnel._conn
                seen.update(version=conn.get_protocol_version_name(), cipher=conn.get_cipher_name(),
                            client_random=conn.client_random(), server_random=conn.server_random(),
                            master_key=conn.master_key() if conn.get_protocol_version_name() != "TLSv1.3" else b"")
                return super().phase2_start()

            def _ms_chap_v2(self, name):
                if challenge_label is None:
                    return super()._ms_chap_v2(name)
                implicit = test.exporter(seen, challenge_label, None, 17)
                challenge, ident = implicit[:16], implicit[16]
                password_hash = mschapv2.nt_password_hash(self.settings.password)
                peer_challenge = b"\x42" * 16
                nt_response = mschapv2.generate_nt_response(challenge, peer_challenge, name, password_hash)
                self._ms_expected = bytes((ident,)) + mschapv2.authenticator_response(
                    password_hash, nt_response, peer_challenge, challenge, name)
                return build_avps((Avp(AvpCode.USER_NAME, name),
                                   Avp(MicrosoftAvpCode.MS_CHAP_CHALLENGE, challenge, VENDOR_MICROSOFT),
                                   Avp(MicrosoftAvpCode.MS_CHAP2_RESPONSE,
                                       bytes((ident, 0)) + peer_challenge + bytes(8) + nt_response,
                                       VENDOR_MICROSOFT)))

        peer_class = type("Peer", (TtlsPeer,), {"ttls_class": Recording})
        return peer_class(self.pki.ca_cert, "carol", PASSWORDS["carol"], tls_version=tls_version, inner=inner), seen

    def test_msk_and_emsk_are_the_rfcs_exports(self):
        for version, label, context in (("1.2", b"ttls keying material", None),
                                        ("1.3", b"EXPORTER_EAP_TLS_Key_Material", b"\x15")):
            session = self.keylogged_session()
            peer, tls = self.recording_peer(tls_version=version)
            outcome, _ = converse(self, session, peer)
            self.assertEqual(outcome.status, EapStatus.SUCCESS)
            self.assertEqual(tls["version"], f"TLSv{version}")
            material = self.exporter(tls, label, context, 128)
            self.assertEqual((outcome.msk, outcome.emsk), (material[:64], material[64:]), version)

    def test_ttls_mschapv2_implicit_challenge_is_the_ttls_challenge_export(self):
        for version in ("1.2", "1.3"):
            session = self.keylogged_session()
            peer, _ = self.recording_peer(tls_version=version, inner="ttls-mschapv2", challenge_label=b"ttls challenge")
            outcome, _ = converse(self, session, peer)
            self.assertEqual(outcome.status, EapStatus.SUCCESS, outcome.reason)
            self.assertEqual(peer.result, "success")  # the server's authenticator response verified too

    def test_ttls_mschapv2_challenge_of_another_label_is_refused(self):
        session = self.keylogged_session()
        peer, _ = self.recording_peer(tls_version="1.2", inner="ttls-mschapv2", challenge_label=b"ttls keying material")
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("implicit challenge", outcome.reason)


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
        outcome, _rounds = converse(self, session, peer, sizes=sizes)
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

    def test_unannounced_fragments_beyond_the_cap_fail(self):
        # fragments without a Message Length: the cap applies as they arrive
        session = self.session(max_message_size=4096)
        request = session.start()
        out = self.successResultOf(session.receive(eap(2, request[1], 1, b"anonymous")))
        for _ in range(4):
            out = self.successResultOf(session.receive(eap(2, out.packet[1], 21, b"\x40" + b"\x16" * 1000)))
            self.assertEqual((out.status, out.packet[5:]), (EapStatus.CONTINUE, b"\x00"))  # ACK
        out = self.successResultOf(session.receive(eap(2, out.packet[1], 21, b"\x40" + b"\x16" * 1000)))
        self.assertEqual(out.status, EapStatus.FAILURE)
        self.assertIn("exceed the 4096-byte", out.reason)

    def test_many_fragments_reassemble_in_order(self):
        channel = FragmentChannel(EAP_TTLS, fragment_size=1024, max_message_size=1 << 20)
        message = bytes(range(256)) * 2000  # 512000 bytes in 500 fragments
        pieces = [message[i:i + 1024] for i in range(0, len(message), 1024)]
        first = b"\xc0" + struct.pack(">I", len(message)) + pieces[0]
        self.assertEqual(channel.receive(first).send, b"\x00")
        for piece in pieces[1:-1]:
            self.assertEqual(channel.receive(b"\x40" + piece).send, b"\x00")
        self.assertEqual(channel.receive(b"\x00" + pieces[-1]).message, message)
        self.assertFalse(channel.receiving)

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

    def peer_with(self, phase2_class, **kw) -> TtlsPeer:
        """A peer whose EAP-TTLS phase 2 is ``phase2_class`` (a nac.eap.peer.TtlsPeer)."""
        peer_class = type("Peer", (TtlsPeer,), {"ttls_class": phase2_class})
        return peer_class(self.pki.ca_cert, "carol", "K8FW9", **kw)

    def test_garbage_in_the_tunnel_fails(self):
        class Garbage(eap_peer.TtlsPeer):
            def phase2_start(self):
                return b"\x00\x00\x00\x4f\x40\x00\x00\x05"  # AVP Length shorter than its header

        outcome, _ = converse(self, self.session(), self.peer_with(Garbage))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("AVP", outcome.reason)

    def test_unknown_mandatory_avp_fails(self):
        class Unknown(eap_peer.TtlsPeer):
            def phase2_start(self):
                return Avp(12345, b"x").build() + super().phase2_start()

        outcome, _ = converse(self, self.session(), self.peer_with(Unknown))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("mandatory", outcome.reason)

    def test_inner_identifier_mismatch_fails(self):
        class WrongId(eap_peer.TtlsPeer):
            def phase2(self, data):
                request = EapPacket.parse([a for a in parse_avps(data) if a.code == AvpCode.EAP_MESSAGE][0].data)
                if request.type == EapType.MD5_CHALLENGE:
                    return self.tunnel_eap(EapPacket.response((request.identifier + 7) & 0xFF,
                                                              EapType.MD5_CHALLENGE, b"\x10" + bytes(16)))
                return super().phase2(data)

        outcome, _ = converse(self, self.session(), self.peer_with(WrongId))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("identifier", outcome.reason)

    def test_a_nak_proposing_the_refused_method_fails_naming_the_cause(self):
        """wpa_supplicant 2.10 re-authenticating with the EAP-TTLS state of an
        authentication that ended with EAP-TNC Naks EAP-MD5 proposing EAP-MD5
        (its configured phase 2 method): offering it again would loop."""
        requests = []

        class StalePhase2(eap_peer.TtlsPeer):
            def phase2(self, data):
                request = EapPacket.parse([a for a in parse_avps(data) if a.code == AvpCode.EAP_MESSAGE][0].data)
                requests.append(request.type)
                if request.type != EapType.IDENTITY:
                    return self.tunnel_eap(EapPacket.response(request.identifier, EapType.NAK,
                                                              bytes((EapType.MD5_CHALLENGE,))))
                return super().phase2(data)

        peer = self.peer_with(StalePhase2, tls_version="1.2")
        outcome, _ = converse(self, self.session(), peer)
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(outcome.reason, "the peer Naks EAP_MD5 and proposes it: " + STALE_PHASE2)
        self.assertIn("fast_reauth=0", outcome.reason)
        self.assertEqual(requests, [EapType.MD5_CHALLENGE])
        self.assertEqual([(d, p[4:]) for d, p in peer.inner_packets], [("c2s", b"\x01carol"), ("c2s", b"\x03\x04")])

    def test_peer_closing_the_tunnel_during_the_posture_assessment_is_named(self):
        """A client that ends the tunnel with close_notify in phase 2, as
        strongSwan's does after a fatal PB-TNC error, is logged as such."""
        class Closing(eap_peer.TtlsPeer):
            def phase2(self, data):
                request = EapPacket.parse([a for a in parse_avps(data) if a.code == AvpCode.EAP_MESSAGE][0].data)
                if request.type == EapType.PT_EAP:
                    self._tunnel._conn.shutdown()  # the close_notify record, nothing else
                    return b""
                return super().phase2(data)

        core = TnccsCore()
        session = self.session(posture=lambda peer: PtEap(core, peer))
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        outcome, _ = converse(self, session, self.peer_with(Closing, tnc="pt-eap"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(outcome.reason, "the peer closed the TLS connection (close_notify) during the posture "
                                         "assessment (EAP_PT_EAP)")
        self.assertIn("EAP_TTLS: " + outcome.reason, [formatEvent(e) for e in events])
        self.assertEqual(core.connections, {})

    def test_silent_peer_is_asked_for_its_identity(self):
        class Silent(eap_peer.TtlsPeer):
            def phase2_start(self):
                return b""

        peer = self.peer_with(Silent, tls_version="1.2")
        outcome, _ = converse(self, self.session(), peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual([(d, p[4]) for d, p in peer.inner_packets][:2], [("s2c", 1), ("c2s", 1)])


class Tls13Tests(PkiMixin, unittest.TestCase):
    def test_phase2_sent_with_the_client_finished(self):
        """A peer may send its inner Identity in the same flight as its Finished."""
        peer = self.peer(tls_version="1.3", phase2_with_finished=True)
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
        payload = Avp(AvpCode.EAP_MESSAGE, data).build() if as_eap else data

        class Random(eap_peer.TtlsPeer):
            def phase2_start(self):
                return payload

        session = self.session(context=self.shared_context())
        peer = type("Peer", (TtlsPeer,), {"ttls_class": Random})(self.pki.ca_cert, "carol", "K8FW9",
                                                                   tls_version="1.2")
        outcome, _ = converse(self, session, peer)
        # nothing at all: the server asks for the identity and the peer answers it
        self.assertEqual(outcome.status, EapStatus.FAILURE if payload else EapStatus.SUCCESS)

    def shared_context(self):
        if not hasattr(self, "_context"):
            self._context = self.context()
        return self._context
