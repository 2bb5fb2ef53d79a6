"""The EAP authenticator (RFC 3748): identifiers, discards, Nak, method
order, round cap, ordering of overlapping receives, aborts, the factory
the transports call, and that no secret reaches a log line."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet import defer
from twisted.logger import globalLogPublisher, formatEvent
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from nac import config
from nac.eap.outcome import EapOutcome, EapStatus
from nac.eap.server import EapServerSession, EapSettings, session_factory
from nac.eap.ttls import TtlsSettings
from nac.interfaces import IEapSession
from nac.tnccs.assessment import PeerInfo
from nac.tnccs.core import TnccsCore
from tests.test_eap_ttls import PASSWORDS, Passwords, PkiMixin, TtlsPeer, converse, eap, mschapv2_reply

PEER = PeerInfo("ikev2", "127.0.0.1", 500)


class Md5Peer:
    """A plain EAP peer: Identity, then EAP-MD5 (or a Nak for anything else)."""

    def __init__(self, identity, password, nak=(4,)):
        self.identity, self.password, self.nak = identity, password, nak
        self.result = None
        self.requests = []

    def respond(self, packet):
        code, ident = packet[0], packet[1]
        if code in (3, 4):
            self.result = "success" if code == 3 else "failure"
            return None
        self.requests.append(packet[4])
        if packet[4] == 1:
            return eap(2, ident, 1, self.identity.encode())
        if packet[4] == 4:
            challenge = packet[6:6 + packet[5]]
            return eap(2, ident, 4, b"\x10" + hashlib.md5(bytes((ident,)) + self.password.encode()
                                                             + challenge).digest())
        return eap(2, ident, 3, bytes(self.nak))


class SessionTests(PkiMixin, unittest.TestCase):
    def md5_session(self, methods=("md5",), **kw):
        return EapServerSession(PEER, EapSettings(methods=methods, credentials=self.passwords.credentials, **kw))

    def ttls_session(self, **ttls_kw):
        ttls = TtlsSettings(context=self.context(), credentials=self.passwords.credentials, **ttls_kw)
        return EapServerSession(PEER, EapSettings(methods=("ttls",), ttls=ttls,
                                                  credentials=self.passwords.credentials))

    def test_interface(self):
        verifyObject(IEapSession, self.md5_session())

    def test_outer_md5_success_has_no_msk(self):
        session = self.md5_session()
        peer = Md5Peer("carol", PASSWORDS["carol"])
        outcome, rounds = converse(self, session, peer)
        self.assertEqual((outcome.status, outcome.msk, outcome.identity), (EapStatus.SUCCESS, None, "carol"))
        self.assertEqual((rounds, peer.result), (2, "success"))

    def test_outer_md5_wrong_password(self):
        outcome, _ = converse(self, self.md5_session(), Md5Peer("carol", "guess"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(outcome.packet[0], 4)

    def test_identifiers(self):
        session = self.md5_session()
        request = session.start()
        ident = request[1]
        self.assertEqual(request, bytes((1, ident, 0, 5, 1)))
        wrong = self.successResultOf(session.receive(eap(2, (ident + 1) & 0xFF, 1, b"carol")))
        self.assertEqual((wrong.status, wrong.packet), (EapStatus.DISCARD, None))
        self.assertIn("identifier", wrong.reason)
        challenge = self.successResultOf(session.receive(eap(2, ident, 1, b"carol")))
        self.assertEqual(challenge.packet[1], (ident + 1) & 0xFF)
        # a duplicate of the old response no longer matches
        self.assertEqual(self.successResultOf(session.receive(eap(2, ident, 1, b"carol"))).status,
                         EapStatus.DISCARD)
        # Success/Failure carry the identifier of the Response they answer
        answer = eap(2, challenge.packet[1], 4, b"\x10" + bytes(16))
        final = self.successResultOf(session.receive(answer))
        self.assertEqual(final.packet, bytes((4, challenge.packet[1], 0, 4)))

    def test_radius_style_first_identity_response(self):
        session = self.md5_session()
        first = self.successResultOf(session.receive(eap(2, 0, 1, b"carol\x00networkid=x")))
        self.assertEqual((first.status, first.identity, first.packet[1], first.packet[4]),
                         (EapStatus.CONTINUE, "carol", 1, 4))

    def test_discards(self):
        session = self.md5_session()
        session.start()
        for packet, reason in ((b"\x01\x01\x00\x05\x01", "Request"), (b"\x02\x01", "invalid"),
                               (eap(3, 1), "Success")):
            out = self.successResultOf(session.receive(packet))
            self.assertEqual(out.status, EapStatus.DISCARD)
            self.assertIn(reason, out.reason)
        unstarted = self.md5_session()
        out = self.successResultOf(unstarted.receive(eap(2, 3, 4, b"\x10" + bytes(16))))
        self.assertEqual(out.status, EapStatus.DISCARD)

    def test_wrong_method_type_is_discarded(self):
        session = self.md5_session()
        request = session.start()
        challenge = self.successResultOf(session.receive(eap(2, request[1], 1, b"carol"))).packet
        out = self.successResultOf(session.receive(eap(2, challenge[1], 26, b"\x02")))
        self.assertEqual(out.status, EapStatus.DISCARD)
        self.assertFalse(session.finished)

    def test_nak_picks_the_next_method_the_peer_proposes(self):
        settings = self.settings(methods=("ttls", "md5"))
        session = EapServerSession(PEER, settings)
        peer = Md5Peer("carol", PASSWORDS["carol"])  # Naks TTLS proposing MD5
        outcome, _ = converse(self, session, peer)
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(peer.requests, [1, 21, 4])

    def test_nak_without_acceptable_method_fails(self):
        outcome, _ = converse(self, self.md5_session(methods=("ttls",), ttls=self.settings().ttls),
                              Md5Peer("carol", "x", nak=(26,)))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("proposed EAP_MSCHAPV2", outcome.reason)

    def test_nak_after_the_method_answered_is_discarded(self):
        settings = self.settings()
        session = EapServerSession(PEER, settings)
        peer = TtlsPeer(self.pki.ca_cert, "carol", "K8FW9")
        request = session.start()
        request = self.successResultOf(session.receive(peer.respond(request))).packet  # TTLS Start
        request = self.successResultOf(session.receive(peer.respond(request))).packet  # server flight
        out = self.successResultOf(session.receive(eap(2, request[1], 3, b"\x04")))
        self.assertEqual(out.status, EapStatus.DISCARD)

    def test_outer_mschapv2_has_an_msk(self):
        class Peer(Md5Peer):
            def respond(self, packet):
                if packet[0] == 1 and packet[4] == 26:
                    return eap(2, packet[1], 26, mschapv2_reply(packet[5:], "dave", PASSWORDS["dave"])[0])
                return super().respond(packet)

        outcome, rounds = converse(self, self.md5_session(methods=("mschapv2",)), Peer("dave", ""))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual((len(outcome.msk), rounds), (64, 3))

    def test_round_cap(self):
        session = EapServerSession(PEER, EapSettings(methods=("ttls",), ttls=self.settings(fragment_size=100).ttls,
                                                     max_rounds=5))
        outcome, _ = converse(self, session, TtlsPeer(self.pki.ca_cert, "carol", "K8FW9"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertIn("rounds", outcome.reason)

    def test_finished_session_discards(self):
        session = self.md5_session()
        converse(self, session, Md5Peer("carol", PASSWORDS["carol"]))
        self.assertEqual(self.successResultOf(session.receive(eap(2, 1, 1, b"x"))).status, EapStatus.DISCARD)

    def test_overlapping_receives_are_answered_in_order(self):
        pending = defer.Deferred()

        def slow_credentials(identity):
            return pending

        session = EapServerSession(PEER, EapSettings(methods=("md5",), credentials=slow_credentials))
        peer = Md5Peer("carol", PASSWORDS["carol"])
        request = session.start()
        challenge = self.successResultOf(session.receive(peer.respond(request))).packet
        first = session.receive(peer.respond(challenge))
        second = session.receive(peer.respond(challenge))  # a retransmission, queued
        self.assertNoResult(first)
        self.assertNoResult(second)
        pending.callback(PASSWORDS["carol"])
        self.assertEqual(self.successResultOf(first).status, EapStatus.SUCCESS)
        self.assertEqual(self.successResultOf(second).status, EapStatus.DISCARD)

    def test_packets_passed_by_an_outcomes_reader_queue_behind_the_waiting_ones(self):
        pending = defer.Deferred()
        session = EapServerSession(PEER, EapSettings(methods=("md5",), credentials=lambda identity: pending))
        peer = Md5Peer("carol", PASSWORDS["carol"])
        challenge = self.successResultOf(session.receive(peer.respond(session.start()))).packet
        response = peer.respond(challenge)
        order = []
        first = session.receive(response)
        second = session.receive(b"\x02")  # queued behind the first: too short, discarded
        # the transport reads the first outcome and passes another packet at once
        first.addCallback(lambda outcome: (order.append(("first", outcome.status)),
                                           session.receive(eap(2, 99, 1, b"x")).addCallback(
                                               lambda o: order.append(("third", o.status)))))
        second.addCallback(lambda outcome: order.append(("second", outcome.status)))
        self.assertEqual(order, [])
        pending.callback(PASSWORDS["carol"])
        self.assertEqual(order, [("first", EapStatus.SUCCESS), ("second", EapStatus.DISCARD),
                                 ("third", EapStatus.DISCARD)])

    def test_immediate_steps_are_answered_at_once(self):
        # fragments, ACKs, TLS flights: no waiting for the reactor or a thread
        session = self.ttls_session()
        request = session.start()
        d = session.receive(eap(2, request[1], 1, b"anonymous"))
        self.assertEqual(self.successResultOf(d).packet[4:], b"\x15\x20")  # EAP-TTLS Start

    def test_answer_gives_the_outcome_itself_when_ready_at_once(self):
        session = self.ttls_session()
        request = session.start()
        outcome = session.answer(eap(2, request[1], 1, b"anonymous"))
        self.assertIsInstance(outcome, EapOutcome)
        self.assertEqual((outcome.status, outcome.packet[4:]), (EapStatus.CONTINUE, b"\x15\x20"))

    def test_answer_waits_with_a_deferred_and_queues_behind_it(self):
        pending = defer.Deferred()
        session = EapServerSession(PEER, EapSettings(methods=("md5",), credentials=lambda identity: pending))
        peer = Md5Peer("carol", PASSWORDS["carol"])
        challenge = session.answer(peer.respond(session.start())).packet
        first = session.answer(peer.respond(challenge))
        second = session.answer(peer.respond(challenge))  # a retransmission, queued
        self.assertIsInstance(first, defer.Deferred)
        self.assertIsInstance(second, defer.Deferred)
        self.assertNoResult(first)
        self.assertNoResult(second)
        pending.callback(PASSWORDS["carol"])
        self.assertEqual(self.successResultOf(first).status, EapStatus.SUCCESS)
        self.assertEqual(self.successResultOf(second).status, EapStatus.DISCARD)
        # done waiting: answered at once again
        self.assertEqual(session.answer(eap(2, 1, 1, b"x")).status, EapStatus.DISCARD)

    def test_request_size_limit_lowers_the_ttls_fragment_size(self):
        for fragment_size, limit, largest in ((1024, 300, 300), (1024, None, 1029), (200, 1400, 205)):
            session = self.ttls_session(fragment_size=fragment_size)
            if limit is not None:
                session.limit_request_size(limit)
            peer = TtlsPeer(self.pki.ca_cert, "carol", PASSWORDS["carol"])
            sizes = []
            outcome, _rounds = converse(self, session, peer, sizes=sizes)
            self.assertEqual(outcome.status, EapStatus.SUCCESS, (fragment_size, limit))
            self.assertEqual(max(sizes), largest, (fragment_size, limit))

    def test_abort_while_waiting(self):
        pending = defer.Deferred()
        session = EapServerSession(PEER, EapSettings(methods=("md5",), credentials=lambda i: pending))
        peer = Md5Peer("carol", PASSWORDS["carol"])
        challenge = self.successResultOf(session.receive(peer.respond(session.start()))).packet
        d = session.receive(peer.respond(challenge))
        session.abort("timeout")
        pending.callback(PASSWORDS["carol"])
        self.assertEqual(self.successResultOf(d).status, EapStatus.DISCARD)
        self.assertTrue(session.finished)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(max_size=40), max_size=6))
    def test_random_packets_never_crash(self, packets):
        session = self.md5_session()
        request = session.start()
        for packet in [eap(2, request[1], 1, b"carol"), *packets]:
            out = self.successResultOf(session.receive(packet))
            self.assertIn(out.status, tuple(EapStatus))


class SecretsInLogsTests(PkiMixin, unittest.TestCase):
    def test_no_password_or_key_in_any_log_event(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        outcomes = []
        for password, inner in (("K8FW9", "md5"), ("K8FW9", "pap"), ("WrongPass1", "pap"),
                                ("K8FW9", "ttls-mschapv2"), ("WrongPass2", "md5")):
            session = self.session()
            outcome, _ = converse(self, session, TtlsPeer(self.pki.ca_cert, "carol", password, inner=inner))
            outcomes.append(outcome)
        self.assertEqual([o.status for o in outcomes], [EapStatus.SUCCESS] * 2 + [EapStatus.FAILURE]
                         + [EapStatus.SUCCESS, EapStatus.FAILURE])
        self.assertTrue(events)
        text = "\n".join(formatEvent(e) + repr(e) for e in events)
        for secret in ("K8FW9", "WrongPass1", "WrongPass2"):
            self.assertNotIn(secret, text)
        for outcome in outcomes:
            if outcome.msk:
                for form in (outcome.msk.hex(), outcome.msk.hex().upper(), repr(outcome.msk[:16])):
                    self.assertNotIn(form, text)
        self.assertIn("received EAP identity 'carol'", text)

    def test_failing_password_check_is_logged_without_its_text(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.passwords.check_password = lambda identity, password: defer.fail(
            RuntimeError(f"database said no to {password}"))
        outcome, _ = converse(self, self.session(), TtlsPeer(self.pki.ca_cert, "carol", "K8FW9", inner="pap"))
        self.assertEqual(outcome.status, EapStatus.FAILURE)
        text = "\n".join(formatEvent(e) + repr(e) for e in events)
        self.assertIn("checking the password of 'carol' failed: RuntimeError", text)
        self.assertNotIn("K8FW9", text)


class FactoryTests(unittest.TestCase):
    def config(self, text: str, **overrides):
        state = self.mktemp()
        path = self.mktemp()
        with open(path, "w") as fh:
            fh.write(f"[nac]\nstate_dir = {state}\n" + text)
        return config.load(path, overrides)

    def setUp(self):
        if "eap" not in config.SCHEMA:
            raise unittest.SkipTest("nac.config declares no [eap] section")

    def test_defaults_use_the_demo_certificate_and_the_radius_fragment_size(self):
        cfg = self.config("[radius]\nfragment_size = 200\n")
        passwords = Passwords()
        make = session_factory(cfg, TnccsCore(), None, "radius", credentials=passwords.credentials,
                               check_password=passwords.check_password)
        session = make(PeerInfo("radius", "127.0.0.1"))
        self.assertEqual(session.settings.methods, ("ttls",))
        self.assertEqual(session.settings.ttls.fragment_size, 200)
        self.assertIs(make(PEER).settings.ttls.context, session.settings.ttls.context)  # built once
        ca = f"{cfg.state_dir}/ca.pem"
        outcome, _ = converse(self, session, TtlsPeer(ca, "carol", "K8FW9", fragment_size=200,
                                                      posture=None))
        # pt-eap is the default posture method; this peer Naks it
        self.assertEqual(outcome.status, EapStatus.FAILURE)

    def test_eap_section(self):
        cfg = self.config("[eap]\nmethods = md5, ttls\ntnc = none\ninner_methods = pap\nfragment_size = 300\n"
                          "max_rounds = 20\n")
        passwords = Passwords()
        make = session_factory(cfg, TnccsCore(), None, "ikev2", credentials=passwords.credentials,
                               check_password=passwords.check_password)
        session = make(PEER)
        self.assertEqual((session.settings.methods, session.settings.max_rounds), (("md5", "ttls"), 20))
        self.assertEqual((session.settings.ttls.inner_methods, session.settings.ttls.fragment_size,
                          session.settings.ttls.posture), (("pap",), 300, None))
        outcome, _ = converse(self, session, Md5Peer("carol", PASSWORDS["carol"]))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        ca = f"{cfg.state_dir}/ca.pem"
        outcome, _ = converse(self, make(PEER), _NakMd5Peer(ca, "carol", "K8FW9", inner="pap"))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)

    def test_store_methods_are_used_by_default(self):
        class Store:
            def __init__(self):
                self.passwords = Passwords()
                self.eap_secret = self.passwords.credentials
                self.check_password = self.passwords.check_password

        store = Store()
        cfg = self.config("[eap]\nmethods = md5\n")
        outcome, _ = converse(self, session_factory(cfg, TnccsCore(), store, "ikev2")(PEER),
                              Md5Peer("carol", PASSWORDS["carol"]))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertEqual(store.passwords.asked, ["carol"])

    def test_unusable_certificate_is_a_config_error(self):
        cfg = self.config("[eap]\ncert = /nonexistent/cert.pem\nkey = /nonexistent/key.pem\n")
        with self.assertRaises(config.ConfigError) as caught:
            session_factory(cfg, TnccsCore(), None, "radius")
        self.assertIn("/nonexistent/cert.pem", str(caught.exception))


class _NakMd5Peer(TtlsPeer):
    """Naks the outer MD5 proposing TTLS."""

    def respond(self, packet):
        if packet[0] == 1 and packet[4] == 4:
            return eap(2, packet[1], 3, b"\x15")
        return super().respond(packet)

