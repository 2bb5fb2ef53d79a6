"""Password guessing over EAP (RADIUS, IKEv2): EAP-TTLS with inner PAP,
EAP-MD5, EAP-MSCHAPv2 and the non-EAP MS-CHAP-V2, and outer EAP-MD5,
through the real authenticator and nac's own EAP peer, with the failed-login
throttle of nac.auth_throttle on a Clock.  A locked-out endpoint gets
EAP-Failure without its password being looked at; the real user from
another station still logs in."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from nac.auth_throttle import FailureThrottle, Logins, LoginSource, PasswordChecks
from nac.eap.logins import direct_source, relayed_source
from nac.eap.outcome import EapStatus
from nac.eap.server import EapServerSession, EapSettings
from nac.eap.ttls import TtlsSettings
from nac.tnccs.assessment import PeerInfo
from tests.test_auth_throttle import CapturedLog, ControlledCheck
from tests.test_eap_ttls import PASSWORDS, Passwords, PkiMixin, TtlsPeer

GUESSER = PeerInfo("radius", "192.0.2.10", 1812, nas="sw1", station="02-00-00-00-00-66")
REAL_USER = PeerInfo("radius", "192.0.2.10", 1812, nas="sw1", station="02-00-00-00-00-01")


class EapLoginThrottleTests(PkiMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.clock = Clock()
        self.log = CapturedLog(self)

    def logins(self, check=None, **kw) -> Logins:
        options = dict(failure_delay=0.0, max_failures_per_source=3, max_failures_per_user=50, lockout=300.0)
        options.update(kw)
        check = check or self.passwords.check_password
        return Logins(check, throttle=FailureThrottle(**options),
                      checks=PasswordChecks(check, concurrency=1), clock=self.clock)

    def eap_settings(self, logins, *, inner=("md5", "mschapv2", "pap"), methods=("ttls",),
                     source=relayed_source):
        ttls = TtlsSettings(context=self.context(), inner_methods=inner, credentials=self.passwords.credentials,
                            check_password=self.passwords.check_password, logins=logins, login_source=source)
        return EapSettings(methods=methods, ttls=ttls, credentials=self.passwords.credentials, logins=logins,
                           login_source=source)

    def converse(self, settings, peer_info, peer):
        """A whole conversation, the clock moving on while the server waits."""
        session = EapServerSession(peer_info, settings)
        request = session.start()
        for _ in range(400):
            d = session.receive(peer.respond(request))
            for _ in range(200):
                if d.called:
                    break
                self.clock.advance(0.25)
            outcome = self.successResultOf(d)
            if outcome.status is not EapStatus.CONTINUE:
                peer.respond(outcome.packet)
                return outcome
            request = outcome.packet
        raise AssertionError("the conversation did not end")

    def guesses(self, settings, inner: str, count: int, peer_info=GUESSER, user="carol") -> list[EapStatus]:
        return [self.converse(settings, peer_info, self.peer(user, password=f"guess{n}", inner=inner)).status
                for n in range(count)]

    def lock_lines(self) -> list[str]:
        return [line for line in self.log.lines("nac.auth") if "locking out" in line]

    def test_pap_guessing_is_locked_out_unchecked_and_the_real_user_still_logs_in(self):
        settings = self.eap_settings(self.logins(), inner=("pap",))
        self.assertEqual(self.guesses(settings, "pap", 8), [EapStatus.FAILURE] * 8)
        # three checked, five refused without a check
        self.assertEqual(self.passwords.asked.count("carol"), 3)
        self.assertEqual(self.lock_lines(), ["locking out sw1/02-00-00-00-00-66 for 300 s: 3 failed logins"])
        real = self.converse(settings, REAL_USER, self.peer("carol", inner="pap"))
        self.assertEqual(real.status, EapStatus.SUCCESS)

    def test_inner_eap_md5_and_mschapv2_guessing_is_locked_out(self):
        for inner in ("md5", "mschapv2"):
            self.passwords.asked.clear()
            settings = self.eap_settings(self.logins(), inner=(inner,))
            self.assertEqual(self.guesses(settings, inner, 6), [EapStatus.FAILURE] * 6, inner)
            # the secret is looked up for the three checked guesses only
            self.assertEqual(self.passwords.asked.count("carol"), 3, inner)
            real = self.converse(settings, REAL_USER, self.peer("carol", inner=inner))
            self.assertEqual(real.status, EapStatus.SUCCESS, inner)

    def test_non_eap_mschapv2_guessing_is_locked_out(self):
        settings = self.eap_settings(self.logins(), inner=("mschapv2",))
        self.assertEqual(self.guesses(settings, "ttls-mschapv2", 5), [EapStatus.FAILURE] * 5)
        self.assertEqual(self.passwords.asked.count("carol"), 3)
        real = self.converse(settings, REAL_USER, self.peer("carol", inner="ttls-mschapv2"))
        self.assertEqual(real.status, EapStatus.SUCCESS)

    def test_outer_eap_md5_of_an_ikev2_peer_is_locked_out_by_address(self):
        logins = self.logins()
        settings = EapSettings(methods=("md5",), credentials=self.passwords.credentials, logins=logins,
                               login_source=direct_source)
        guesser = PeerInfo("ikev2", "2001:db8:0:66::1", 500)
        for n in range(5):
            # another address in the same /64 is the same source
            peer_info = PeerInfo("ikev2", f"2001:db8:0:66::{n + 1}", 500)
            outcome = self.converse(settings, peer_info, OuterMd5Peer("carol", f"guess{n}"))
            self.assertEqual(outcome.status, EapStatus.FAILURE)
        self.assertEqual(self.passwords.asked.count("carol"), 3)
        self.assertEqual(self.lock_lines(), ["locking out 2001:db8:0:66::/64 for 300 s: 3 failed logins"])
        self.assertEqual(self.converse(settings, guesser, OuterMd5Peer("carol", PASSWORDS["carol"])).status,
                         EapStatus.FAILURE)
        real = PeerInfo("ikev2", "198.51.100.7", 500)
        self.assertEqual(self.converse(settings, real, OuterMd5Peer("carol", PASSWORDS["carol"])).status,
                         EapStatus.SUCCESS)

    def test_a_nas_without_station_ids_is_not_locked_out_as_a_whole(self):
        settings = self.eap_settings(self.logins(max_failures_per_user=4), inner=("pap",))
        nas_only = PeerInfo("radius", "192.0.2.10", 1812, nas="sw1")
        for n in range(6):
            self.converse(settings, nas_only, self.peer("dave", password=f"guess{n}", inner="pap"))
        # dave is locked out through this NAS; carol is not
        self.assertEqual(self.passwords.asked.count("dave"), 4)
        self.assertEqual(self.converse(settings, nas_only, self.peer("carol", inner="pap")).status,
                         EapStatus.SUCCESS)

    def test_the_check_after_a_failure_waits_the_delay(self):
        settings = self.eap_settings(self.logins(failure_delay=2.0), inner=("pap",))
        self.converse(settings, GUESSER, self.peer("carol", password="wrong", inner="pap"))
        start = self.clock.seconds()
        outcome = self.converse(settings, GUESSER, self.peer("carol", inner="pap"))
        self.assertEqual(outcome.status, EapStatus.SUCCESS)
        self.assertGreaterEqual(self.clock.seconds() - start, 2.0)

    def test_an_aborted_conversation_drops_its_waiting_password_check(self):
        check = ControlledCheck()
        logins = self.logins(check=check)
        settings = self.eap_settings(logins, inner=("pap",))
        sessions = []
        for station in ("02-00-00-00-00-01", "02-00-00-00-00-02"):
            session = EapServerSession(PeerInfo("radius", "192.0.2.10", 1812, nas="sw1", station=station),
                                       settings)
            peer = self.peer("carol", inner="pap")
            request = session.start()
            while True:
                d = session.receive(peer.respond(request))
                if not d.called:
                    break
                request = self.successResultOf(d).packet
            sessions.append(session)
        self.assertEqual(len(check.calls), 1)  # the second waits its turn
        sessions[1].abort("NAS gave up")
        check.waiting.pop().callback(True)
        self.assertEqual(len(check.calls), 1)
        self.assertEqual((logins.checks.pending, logins.checks.dropped), (0, 1))


class OuterMd5Peer:
    """An EAP peer answering the Identity and one MD5-Challenge."""

    def __init__(self, identity: str, password: str):
        self.identity, self.password = identity, password

    def respond(self, request: bytes) -> bytes | None:
        from nac.eap.md5 import Md5ChallengeData, md5_response
        from nac.eap.packet import EapCode, EapPacket, EapType

        packet = EapPacket.parse(request)
        if packet.code != EapCode.REQUEST:
            return None
        if packet.type == EapType.IDENTITY:
            return EapPacket.response(packet.identifier, EapType.IDENTITY, self.identity.encode()).build()
        challenge = Md5ChallengeData.parse(packet.type_data).value
        value = md5_response(packet.identifier, self.password.encode(), challenge)
        return EapPacket.response(packet.identifier, EapType.MD5_CHALLENGE,
                                  Md5ChallengeData(value).build()).build()


class LoginSourceTests(unittest.TestCase):
    def test_sources_of_relayed_and_direct_peers(self):
        self.assertEqual(relayed_source(REAL_USER), LoginSource("sw1/02-00-00-00-00-01"))
        self.assertEqual(relayed_source(PeerInfo("radius", "192.0.2.10", 1812)),
                         LoginSource("NAS 192.0.2.10", individual=False))
        self.assertEqual(direct_source(PeerInfo("ikev2", "192.0.2.99", 4500)), LoginSource("192.0.2.99"))
