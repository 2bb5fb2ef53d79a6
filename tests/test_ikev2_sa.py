"""The IKEv2 responder (transports.ikev2.sa), sans-IO, driven by a scripted
initiator built from nac's own codec and real crypto: IKE_SA_INIT with
proposal selection, INVALID_KE_PAYLOAD and cookies; IKE_AUTH with the real
EAP authenticator (EAP-MD5, and EAP-TTLS with PT-EAP carrying PB-TNC to a
real TNCS core with an IMV that allows, isolates or denies) and the gateway
certificate's signature checked by the initiator; CHILD_SAs narrowed to the
allow / isolate traffic selectors with a virtual IP; retransmissions,
fragmentation, INFORMATIONAL, CREATE_CHILD_SA rekeying, lifetimes; bad input
answered with the right notify or dropped.  Also the virtual IP pool and the
XFRM requests of ``kernel = xfrm``."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from twisted.internet import defer, protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from nac import config as nac_config
from nac.eap.outcome import EapStatus
from nac.eap.server import EapServerSession, EapSettings, session_factory
from nac.eap.tnc import PtEap
from nac.ifimv import ActionRecommendation as A, EvaluationResult as E
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvManager
from tests.test_eap_server import Md5Peer
from tests.test_eap_tnc import ProductImc, VerdictImv
from tests.test_eap_ttls import PASSWORDS, PkiMixin
from transports.ikev2 import crypto
from transports.ikev2.fragment import FragmentReassembly, fragment_message
from transports.ikev2.kernel import XfrmKernel, install_commands, masked, remove_commands
from transports.ikev2.message import (
    AuthMethod,
    Authentication,
    CertEncoding,
    CertRequest,
    Certificate,
    CfgType,
    Configuration,
    ConfigurationAttribute,
    ConfigurationAttributeType,
    Delete,
    Eap,
    ExchangeType,
    IDi,
    IDr,
    IkeMessage,
    KeyExchange,
    Nonce,
    Notify,
    NotifyType,
    PayloadType,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    TSi,
    TSr,
    UnknownPayload,
    frame_nat_t,
    unframe_nat_t,
)
from transports.ikev2.pool import PoolExhausted, VirtualIpPool
from transports.ikev2.sa import (
    GatewayCredential,
    IkeResponder,
    IkeSaState,
    ResponderSettings,
    narrow_traffic_selectors,
)
from transports.ikev2.transforms import Algorithms, parse_proposal, parse_proposals

GATEWAY = ("127.0.0.1", 500)
GATEWAY_NAT = ("127.0.0.1", 4500)
CLIENT = ("127.0.0.1", 5500)
CLIENT_NAT = ("127.0.0.1", 5501)


# -- the scripted initiator ------------------------------------------------------------------------


class ScriptedInitiator:
    """An IKEv2 initiator as strongSwan's charon behaves, from nac's codec and
    crypto: IKE_SA_INIT (cookies and INVALID_KE_PAYLOAD handled), IKE_AUTH
    with EAP through ``eap_peer`` (``respond(packet) -> packet | None``),
    AUTH from the MSK, a CHILD_SA with a virtual IP; INFORMATIONAL and
    CREATE_CHILD_SA on request.  Sans-IO: methods return datagrams to send
    and take the datagrams received."""

    def __init__(self, *, ike: str = "aes256-sha256-x25519", esp: str = "aes256gcm16", ke_group: int | None = None,
                 identity: str = "carol@strongswan.org", eap_peer=None, fragmentation: bool = True,
                 hashes: bool = True, virtual_ip: bool = True, eap_only: bool = False, id_r: str | None = None,
                 ts_r: str = "0.0.0.0/0", fragment_size: int | None = None, address=CLIENT,
                 behind_nat: bool = False, initial_contact: bool = True, certreq: bool = False) -> None:
        self.ike = parse_proposals([ike])
        self.esp = parse_proposals([esp], ProtocolId.ESP)
        self.group = ke_group or Algorithms.from_proposal(self.ike[0]).dh_group
        self.identity = identity
        self.eap_peer = eap_peer
        self.fragmentation = fragmentation
        self.hashes = hashes
        self.virtual_ip = virtual_ip
        self.eap_only = eap_only
        self.id_r = id_r
        self.ts_r = ts_r
        self.fragment_size = fragment_size
        self.initial_contact = initial_contact
        self.certreq = certreq
        self.address = address
        # behind a NAT, the address an initiator sees on its interface is not the one the gateway sees
        self.claimed_address = ("192.168.1.10", address[1]) if behind_nat else address
        self.spi_i = crypto.new_spi()
        self.spi_r = bytes(8)
        self.nonce_i = crypto.new_nonce()
        self.cookie: bytes | None = None
        self.dh = crypto.DiffieHellman.generate(self.group)
        self.mid = 0
        self.keys: crypto.IkeSaKeys | None = None
        self.init_request = b""
        self.init_response = b""
        self.reassembly = FragmentReassembly()
        self.esp_spi = os.urandom(4)
        self.id_r_received: IDr | None = None
        self.server_cert: x509.Certificate | None = None
        self.server_auth: Authentication | None = None
        self.responses: list[tuple[Notify | None, tuple]] = []
        self.msk: bytes | None = None

    # -- IKE_SA_INIT

    def ike_sa_init(self) -> bytes:
        payloads = []
        if self.cookie is not None:
            payloads.append(Notify(NotifyType.COOKIE, self.cookie))
        payloads += [SecurityAssociation(self.ike), KeyExchange(self.group, self.dh.public_value),
                     Nonce(self.nonce_i),
                     Notify(NotifyType.NAT_DETECTION_SOURCE_IP,
                            crypto.nat_detection_hash(self.spi_i, bytes(8), *self.claimed_address)),
                     Notify(NotifyType.NAT_DETECTION_DESTINATION_IP,
                            crypto.nat_detection_hash(self.spi_i, bytes(8), *GATEWAY))]
        if self.fragmentation:
            payloads.append(Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if self.hashes:
            payloads.append(crypto.signature_hash_algorithms_notify())
        self.init_request = IkeMessage(self.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, tuple(payloads),
                                       initiator=True).build()
        return self.init_request

    def receive_init(self, data: bytes) -> str:
        """'ok', 'cookie', 'invalid_ke' or the name of the error notify."""
        message = IkeMessage.parse(data)
        assert message.response and message.exchange == ExchangeType.IKE_SA_INIT
        notify = next((p for p in message.payloads if isinstance(p, Notify)), None)
        if notify is not None and notify.notify_type == NotifyType.COOKIE:
            self.cookie = notify.data
            return "cookie"
        if notify is not None and notify.notify_type == NotifyType.INVALID_KE_PAYLOAD:
            self.group = int.from_bytes(notify.data, "big")
            self.dh = crypto.DiffieHellman.generate(self.group)
            return "invalid_ke"
        if notify is not None and notify.is_error:
            return NotifyType(notify.notify_type).name
        self.init_response = data
        self.spi_r = message.spi_r
        self.init_payloads = message.payloads
        chosen = next(p for p in message.payloads if isinstance(p, SecurityAssociation)).proposals[0]
        ke = next(p for p in message.payloads if isinstance(p, KeyExchange))
        self.nonce_r = next(p for p in message.payloads if isinstance(p, Nonce)).data
        self.algorithms = Algorithms.from_proposal(chosen)
        self.keys = crypto.derive_ike_sa_keys(self.algorithms, self.dh.shared_secret(ke.data), self.nonce_i,
                                              self.nonce_r, self.spi_i, self.spi_r)
        self.mid = 1
        return "ok"

    # -- protected messages

    def request(self, exchange: int, inner, *, mid: int | None = None) -> list[bytes]:
        mid = self.mid if mid is None else mid
        header = IkeMessage(self.spi_i, self.spi_r, exchange, mid, initiator=True)
        whole = header.seal(inner, self.keys.initiator_sk)
        if self.fragment_size and len(whole) > self.fragment_size:
            return fragment_message(header, inner, self.keys.initiator_sk, self.fragment_size)
        return [whole]

    def receive(self, datagrams: list[bytes]) -> tuple:
        """The inner payloads of the response (reassembled when fragmented)."""
        inner = None
        for data in datagrams:
            inner = self.receive_one(data)
        assert inner is not None, "incomplete response"
        return inner

    def receive_one(self, data: bytes) -> tuple | None:
        """One datagram of the response to the outstanding request: its inner
        payloads, or None while fragments are missing."""
        message = IkeMessage.parse(data)
        assert message.response and not message.initiator, "not a response from the responder"
        assert message.message_id == self.mid, f"response {message.message_id}, {self.mid} expected"
        if message.fragment is not None:
            inner = self.reassembly.add(message, self.keys.responder_sk)
            if inner is None:
                return None
        else:
            inner = message.unseal(self.keys.responder_sk)
        self.mid = message.message_id + 1
        error = next((p for p in inner if isinstance(p, Notify) and p.is_error), None)
        self.responses.append((error, inner))
        return inner

    # -- IKE_AUTH

    def first_ike_auth(self) -> list[bytes]:
        self.id_i = IDi.of(self.identity)
        inner = [self.id_i]
        if self.id_r:
            inner.append(IDr.of(self.id_r))
        if self.initial_contact:
            inner.append(Notify(NotifyType.INITIAL_CONTACT))
        if self.certreq:  # for any CA: strongSwan names its CAs by key hash
            inner.append(CertRequest(CertEncoding.X509_CERT_SIGNATURE, hashlib.sha1(b"some CA key").digest()))
        if self.virtual_ip:
            inner.append(Configuration(CfgType.CFG_REQUEST, (
                ConfigurationAttribute(ConfigurationAttributeType.INTERNAL_IP4_ADDRESS),
                ConfigurationAttribute(ConfigurationAttributeType.INTERNAL_IP4_DNS))))
        self.child_sa = SecurityAssociation(tuple(dataclasses.replace(p, spi=self.esp_spi) for p in self.esp))
        ts_i = TrafficSelector.from_network("0.0.0.0/0") if self.virtual_ip else \
            TrafficSelector.from_network(f"{self.address[0]}/32")
        inner += [self.child_sa, TSi((ts_i,)), TSr((TrafficSelector.from_network(self.ts_r),))]
        if self.eap_only:
            inner.append(Notify(NotifyType.EAP_ONLY_AUTHENTICATION))
        return self.request(ExchangeType.IKE_AUTH, inner)

    def octets(self, who: str) -> bytes:
        if who == "i":
            return crypto.signed_octets(self.init_request, self.nonce_r, self.keys.prf, self.keys.sk_pi,
                                        self.id_i.build_body())
        return crypto.signed_octets(self.init_response, self.nonce_i, self.keys.prf, self.keys.sk_pr,
                                    self.id_r_received.build_body())

    def check_first_response(self, inner) -> bytes:
        """Verify the gateway's IDr/CERT/AUTH; the EAP request it carries."""
        self.id_r_received = next(p for p in inner if isinstance(p, IDr))
        auth = next((p for p in inner if isinstance(p, Authentication)), None)
        if auth is not None:
            cert = next(p for p in inner if isinstance(p, Certificate))
            self.server_cert = x509.load_der_x509_certificate(cert.data)
            crypto.verify_auth(self.server_cert.public_key(), auth, self.octets("r"),
                               hash_algorithms=frozenset(crypto.HashAlgorithm))
            self.server_auth = auth
        return next(p for p in inner if isinstance(p, Eap)).data

    def final_ike_auth(self) -> list[bytes]:
        secret = self.msk or self.keys.sk_pi
        auth = Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                              crypto.shared_key_auth(self.keys.prf, secret, self.octets("i")))
        return self.request(ExchangeType.IKE_AUTH, [auth])

    def check_final_response(self, inner) -> None:
        auth = next(p for p in inner if isinstance(p, Authentication))
        secret = self.msk or self.keys.sk_pr
        assert auth.data == crypto.shared_key_auth(self.keys.prf, secret, self.octets("r")), "gateway AUTH wrong"


class Harness:
    """A responder and what it sent, with a clock."""

    def __init__(self, settings: ResponderSettings, eap_factory, *, kernel=None, now: float = 1000.0):
        self.sent = []
        self.now = now
        self.responder = IkeResponder(settings, eap_factory, self.sent.append, kernel=kernel, now=now)

    def deliver(self, data: bytes, *, src=CLIENT, port: int = 500) -> list[bytes]:
        """One datagram in; the IKE messages sent back (NAT-T marker removed)."""
        before = len(self.sent)
        raw = frame_nat_t(data) if port == 4500 else data
        self.responder.datagram_received(raw, ("127.0.0.1", port), src, self.now)
        out = []
        for datagram in self.sent[before:]:
            if datagram.remote != src:
                continue  # to another peer (a DELETE of a replaced IKE SA)
            assert datagram.local_port == port
            if port == 4500:
                kind, body = unframe_nat_t(datagram.data)
                out.append(body)
            else:
                out.append(datagram.data)
        return out

    def deliver_all(self, datagrams, **kw) -> list[bytes]:
        out = []
        for data in datagrams:
            out += self.deliver(data, **kw)
        return out


def establish(testcase, harness: Harness, initiator: ScriptedInitiator, *, port: int = 500, limit: int = 200):
    """Run IKE_SA_INIT and IKE_AUTH to the end; (final inner payloads, EAP round trips)."""
    for _ in range(4):
        (answer,) = harness.deliver(initiator.ike_sa_init(), src=initiator.address)
        status = initiator.receive_init(answer)
        if status == "ok":
            break
        testcase.assertIn(status, ("cookie", "invalid_ke"))
    testcase.assertEqual(status, "ok")
    src = initiator.address if port == 500 else (initiator.address[0], initiator.address[1] + 1)
    inner = initiator.receive(harness.deliver_all(initiator.first_ike_auth(), src=src, port=port))
    eap_request = initiator.check_first_response(inner)
    rounds = 0
    while True:
        rounds += 1
        testcase.assertLess(rounds, limit)
        response = initiator.eap_peer.respond(eap_request)
        inner = initiator.receive(harness.deliver_all(
            initiator.request(ExchangeType.IKE_AUTH, [Eap(response)]), src=src, port=port))
        eap = next((p for p in inner if isinstance(p, Eap)), None)
        if eap is None or eap.data[0] != 1:
            break
        eap_request = eap.data
    if eap is None or eap.data[0] == 4 or any(isinstance(p, Notify) and p.is_error for p in inner):
        if eap is not None:
            initiator.eap_peer.respond(eap.data)
        return inner, rounds
    initiator.eap_peer.respond(eap.data)  # EAP-Success
    if hasattr(initiator.eap_peer, "keys"):  # a key-generating method (EAP-TTLS); EAP-MD5 makes none
        initiator.msk = initiator.eap_peer.keys()[0]
    inner = initiator.receive(harness.deliver_all(initiator.final_ike_auth(), src=src, port=port))
    if not any(isinstance(p, Notify) and p.notify_type == NotifyType.AUTHENTICATION_FAILED for p in inner):
        initiator.check_final_response(inner)
    return inner, rounds


def payload(inner, kind):
    return next((p for p in inner if isinstance(p, kind)), None)


def notifies(inner) -> list[int]:
    return [p.notify_type for p in inner if isinstance(p, Notify)]


class ResponderMixin(PkiMixin):
    """The demo PKI (tests.test_eap_ttls.PkiMixin), a gateway credential from
    it and settings like ``[ikev2]``'s defaults."""

    def setUp(self):
        super().setUp()
        self.credential = GatewayCredential.from_pem(self.pki.server_cert.read_bytes(),
                                                     self.pki.server_key.read_bytes())
        self.pool = VirtualIpPool("10.10.0.0/24")

    def gateway(self, *, eap=None, kernel=None, **overrides) -> Harness:
        values = dict(
            ike_proposals=parse_proposals(["aes256-sha256-x25519", "aes128-sha256-modp3072",
                                           "aes256gcm16-prfsha384-ecp384"]),
            esp_proposals=parse_proposals(["aes256gcm16", "aes128-sha256"], ProtocolId.ESP),
            credential=self.credential, pool=self.pool, dns=(ipaddress.ip_address("10.1.0.53"),))
        values.update(overrides)
        settings = ResponderSettings(**values)
        return Harness(settings, eap or self.md5_factory(), kernel=kernel)

    def md5_factory(self):
        def make(peer):
            self.eap_peers.append(peer)
            return EapServerSession(peer, EapSettings(methods=("md5",), credentials=self.passwords.credentials))
        self.eap_peers = []
        return make

    def ttls_factory(self, posture=None):
        settings = self.settings(posture=posture)

        def make(peer):
            self.eap_peers.append(peer)
            return EapServerSession(peer, settings)
        self.eap_peers = []
        return make

    def md5_initiator(self, password=None, **kw) -> ScriptedInitiator:
        return ScriptedInitiator(eap_peer=Md5Peer("carol", PASSWORDS["carol"] if password is None else password),
                                 **kw)


# -- IKE_SA_INIT ------------------------------------------------------------------------------------


class IkeSaInitTests(ResponderMixin, unittest.TestCase):
    def test_response_selects_the_configured_proposal_with_nat_detection_and_features(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        (answer,) = harness.deliver(initiator.ike_sa_init())
        self.assertEqual(initiator.receive_init(answer), "ok")
        message = IkeMessage.parse(answer)
        self.assertEqual(message.describe(),
                         "IKE_SA_INIT response 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) ]")
        self.assertEqual(initiator.algorithms.dh_group, 31)
        self.assertNotEqual(message.spi_r, bytes(8))
        natd_s = [p for p in message.payloads if isinstance(p, Notify)][0]
        self.assertEqual(natd_s.data, crypto.nat_detection_hash(initiator.spi_i, message.spi_r, *GATEWAY))
        sa = harness.responder.ike_sa(message.spi_r)
        self.assertEqual(sa.state, IkeSaState.HALF_OPEN)
        self.assertFalse(sa.peer_behind_nat)
        self.assertEqual(harness.responder.half_open, 1)

    def test_initiators_ke_group_is_used_when_acceptable(self):
        # x25519 is preferred, but the initiator's KE is for MODP-3072, also acceptable: no INVALID_KE round trip
        harness = self.gateway(ike_proposals=parse_proposals(["aes256-sha256-x25519-modp3072"]))
        initiator = self.md5_initiator(ike="aes256-sha256-x25519-modp3072", ke_group=15)
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "ok")
        self.assertEqual(initiator.algorithms.dh_group, 15)

    def test_invalid_ke_payload_names_the_group_to_use(self):
        harness = self.gateway(ike_proposals=parse_proposals(["aes128gcm16-prfsha256-ecp256"]))
        initiator = self.md5_initiator(ike="aes128gcm16-prfsha256-x25519-ecp256")
        (answer,) = harness.deliver(initiator.ike_sa_init())
        message = IkeMessage.parse(answer)
        self.assertEqual(message.spi_r, bytes(8))
        self.assertEqual(message.describe(), "IKE_SA_INIT response 0 [ N(INVAL_KE) ]")
        self.assertEqual(message.payloads[0].data, (19).to_bytes(2, "big"))
        self.assertEqual(harness.responder.half_open, 0)  # no state for it
        self.assertEqual(initiator.receive_init(answer), "invalid_ke")
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "ok")
        self.assertEqual(initiator.algorithms.dh_group, 19)

    def test_no_proposal_chosen(self):
        harness = self.gateway()
        initiator = self.md5_initiator(ike="aes128-sha1-modp2048")
        (answer,) = harness.deliver(initiator.ike_sa_init())
        self.assertEqual(initiator.receive_init(answer), "NO_PROPOSAL_CHOSEN")
        self.assertEqual(harness.responder.ike_sas, [])

    def test_retransmitted_request_gets_the_same_response(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        request = initiator.ike_sa_init()
        (first,) = harness.deliver(request)
        (second,) = harness.deliver(request)
        self.assertEqual(first, second)
        self.assertEqual(len(harness.responder.ike_sas), 1)
        self.assertEqual(harness.responder.counters.retransmits_answered, 1)

    def test_cookies_above_the_threshold(self):
        harness = self.gateway(cookie_threshold=2)
        for _ in range(2):
            other = self.md5_initiator()
            self.assertEqual(other.receive_init(harness.deliver(other.ike_sa_init())[0]), "ok")
        initiator = self.md5_initiator()
        (answer,) = harness.deliver(initiator.ike_sa_init())
        message = IkeMessage.parse(answer)
        self.assertEqual(message.describe(), "IKE_SA_INIT response 0 [ N(COOKIE) ]")
        self.assertEqual(message.spi_r, bytes(8))
        self.assertEqual(len(harness.responder.ike_sas), 2)  # stateless
        self.assertEqual(initiator.receive_init(answer), "cookie")
        # the cookie is the first payload of the retried request, as RFC 7296 §2.6 wants
        self.assertEqual(IkeMessage.parse(initiator.ike_sa_init()).payloads[0].notify_type, NotifyType.COOKIE)
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "ok")
        self.assertEqual(harness.responder.half_open, 3)
        # a forged or stale cookie gets a fresh one, no state
        forger = self.md5_initiator()
        forger.cookie = initiator.cookie
        self.assertEqual(forger.receive_init(harness.deliver(forger.ike_sa_init())[0]), "cookie")
        # from another address the same cookie is worthless
        thief = ScriptedInitiator(eap_peer=None, address=("127.0.0.2", 500))
        thief.spi_i, thief.nonce_i, thief.cookie = initiator.spi_i, initiator.nonce_i, initiator.cookie
        self.assertEqual(thief.receive_init(harness.deliver(thief.ike_sa_init(), src=thief.address)[0]), "cookie")
        self.assertEqual(harness.responder.half_open, 3)

    def test_cookie_survives_one_secret_rotation(self):
        harness = self.gateway(cookie_threshold=1)
        first = self.md5_initiator()
        first.receive_init(harness.deliver(first.ike_sa_init())[0])
        initiator = self.md5_initiator()
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "cookie")
        harness.now += 70  # one rotation of the 60 s secret
        harness.responder.expire(harness.now - 45)  # keep the first SA half-open
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "ok")

    def test_max_half_open_drops_silently(self):
        harness = self.gateway(cookie_threshold=100, max_half_open=3)
        for _ in range(3):
            other = self.md5_initiator()
            harness.deliver(other.ike_sa_init())
        initiator = self.md5_initiator()
        self.assertEqual(harness.deliver(initiator.ike_sa_init()), [])
        self.assertEqual(harness.responder.counters.half_open_dropped, 1)
        # half-open SAs time out and make room again
        harness.now += 31
        harness.responder.expire(harness.now)
        self.assertEqual(harness.responder.half_open, 0)
        self.assertEqual(initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0]), "ok")

    def test_one_address_answering_cookies_gets_only_its_share(self):
        # the attack: one address that echoes every cookie, filling the table
        harness = self.gateway(cookie_threshold=2, max_half_open_per_peer=4)
        flooder = ("127.0.0.66", 500)
        answered = 0
        for _ in range(12):
            initiator = ScriptedInitiator(eap_peer=None, address=flooder)
            for _attempt in range(2):  # the cookie round trip when asked for one
                replies = harness.deliver(initiator.ike_sa_init(), src=flooder)
                if not replies or initiator.receive_init(replies[0]) != "cookie":
                    break
            answered += bool(replies) and initiator.keys is not None
        self.assertEqual(answered, 4)
        self.assertEqual(harness.responder.half_open, 4)
        self.assertEqual(harness.responder.counters.half_open_peer_dropped, 8)
        # everybody else still gets in (with a cookie: the table is above the threshold)
        other = self.md5_initiator()
        self.assertEqual(other.receive_init(harness.deliver(other.ike_sa_init())[0]), "cookie")
        self.assertEqual(other.receive_init(harness.deliver(other.ike_sa_init())[0]), "ok")
        establish(self, harness, self.md5_initiator())
        # the flooder's share comes back when its half-open SAs time out
        harness.now += 31
        harness.responder.expire(harness.now)
        self.assertEqual(harness.responder._half_open_by_peer, {})
        late = ScriptedInitiator(eap_peer=None, address=flooder)
        self.assertEqual(late.receive_init(harness.deliver(late.ike_sa_init(), src=flooder)[0]), "ok")

    def test_fragment_memory_of_all_ike_sas_is_returned_when_they_go(self):
        harness = self.gateway(max_fragment_memory=64 * 1024)
        self.assertEqual(harness.responder.fragment_budget.limit, 64 * 1024)
        establish(self, harness, self.md5_initiator(fragment_size=300))
        # a half-open SA whose IKE_AUTH stopped after its first fragment
        stalled = self.md5_initiator(fragment_size=150)
        stalled.receive_init(harness.deliver(stalled.ike_sa_init())[0])
        first_fragment = stalled.first_ike_auth()[0]
        harness.deliver(first_fragment, port=4500)
        self.assertGreater(harness.responder.fragment_budget.used, 0)
        harness.now += 31
        harness.responder.expire(harness.now)
        self.assertEqual(harness.responder.fragment_budget.used, 0)

    def test_malformed_request_gets_invalid_syntax(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        request = bytearray(initiator.ike_sa_init())
        # truncate the SA payload's length: the chain no longer adds up
        request[28 + 3] -= 4
        (answer,) = harness.deliver(bytes(request))
        message = IkeMessage.parse(answer)
        self.assertEqual(message.describe(), "IKE_SA_INIT response 0 [ N(INVAL_SYN) ]")
        self.assertEqual(message.spi_i, initiator.spi_i)
        self.assertEqual(harness.responder.ike_sas, [])

    def test_missing_payload_gets_invalid_syntax(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        message = IkeMessage.parse(initiator.ike_sa_init())
        without_nonce = dataclasses.replace(message, payloads=tuple(p for p in message.payloads
                                                                    if not isinstance(p, Nonce)))
        (answer,) = harness.deliver(without_nonce.build())
        self.assertEqual(IkeMessage.parse(answer).payloads[0].notify_type, NotifyType.INVALID_SYNTAX)

    def test_unknown_critical_payload(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        message = IkeMessage.parse(initiator.ike_sa_init())
        crafted = dataclasses.replace(message, payloads=message.payloads + (UnknownPayload(200, b"x", critical=True),))
        (answer,) = harness.deliver(crafted.build())
        notify = IkeMessage.parse(answer).payloads[0]
        self.assertEqual((notify.notify_type, notify.data), (NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([200])))

    def test_other_major_version(self):
        harness = self.gateway()
        request = bytearray(self.md5_initiator().ike_sa_init())
        request[17] = 0x30
        (answer,) = harness.deliver(bytes(request))
        notify = IkeMessage.parse(answer).payloads[0]
        self.assertEqual((notify.notify_type, notify.data), (NotifyType.INVALID_MAJOR_VERSION, b"\x20"))

    def test_invalid_public_value(self):
        harness = self.gateway()
        initiator = self.md5_initiator(ike="aes128-sha256-modp3072")
        message = IkeMessage.parse(initiator.ike_sa_init())
        bad = tuple(KeyExchange(15, bytes(384)) if isinstance(p, KeyExchange) else p for p in message.payloads)
        (answer,) = harness.deliver(dataclasses.replace(message, payloads=bad).build())
        self.assertEqual(IkeMessage.parse(answer).payloads[0].notify_type, NotifyType.NO_PROPOSAL_CHOSEN)

    def test_nat_detected(self):
        harness = self.gateway()
        initiator = self.md5_initiator(address=("127.0.0.1", 5500))
        request = initiator.ike_sa_init()
        # the datagram arrives from another port than the initiator put in its NATD_S_IP
        (answer,) = harness.deliver(request, src=("127.0.0.1", 6000))
        sa = harness.responder.ike_sa(IkeMessage.parse(answer).spi_r)
        self.assertTrue(sa.peer_behind_nat)


# -- IKE_AUTH ---------------------------------------------------------------------------------------


class IkeAuthTests(ResponderMixin, unittest.TestCase):
    def test_eap_md5_establishes_with_a_virtual_ip_and_the_allow_selectors(self):
        recorded = []
        harness = self.gateway(kernel=XfrmKernel(recorded.append))
        initiator = self.md5_initiator(id_r="nac.test")
        inner, rounds = establish(self, harness, initiator)
        self.assertEqual(rounds, 2)  # Identity, MD5
        self.assertEqual(initiator.eap_peer.result, "success")
        # the gateway proved its certificate (RFC 7427, ECDSA P-256 with SHA-256)
        self.assertEqual(initiator.server_auth.method, AuthMethod.DIGITAL_SIGNATURE)
        self.assertEqual(initiator.id_r_received, IDr.of("nac.test"))
        self.assertEqual(initiator.server_cert.subject.rfc4514_string(), "CN=nac.test,O=nac demo")
        # CP reply, then the CHILD_SA
        message = [type(p).__name__ for p in inner]
        self.assertEqual(message, ["Authentication", "Configuration", "SecurityAssociation", "TSi", "TSr"])
        cp = payload(inner, Configuration)
        self.assertEqual(cp.cfg_type, CfgType.CFG_REPLY)
        self.assertEqual([a.address for a in cp.attributes],
                         [ipaddress.ip_address("10.10.0.1"), ipaddress.ip_address("10.1.0.53")])
        self.assertEqual(payload(inner, TSi).selectors, (TrafficSelector.from_network("10.10.0.1/32"),))
        self.assertEqual(payload(inner, TSr).selectors, (TrafficSelector.from_network("10.1.0.0/16"),))
        chosen = payload(inner, SecurityAssociation).proposals[0]
        self.assertEqual(chosen, dataclasses.replace(parse_proposal("aes256gcm16", ProtocolId.ESP), spi=chosen.spi))
        sa = harness.responder.ike_sas[0]
        self.assertEqual(sa.state, IkeSaState.ESTABLISHED)
        self.assertEqual(harness.responder.half_open, 0)
        (child,) = sa.children
        self.assertEqual((child.inbound_spi, child.outbound_spi), (chosen.spi, initiator.esp_spi))
        self.assertEqual(child.access, "allowed")
        # KEYMAT as the initiator derives it
        keys = crypto.derive_child_sa_keys(initiator.keys.prf, initiator.keys.sk_d,
                                           Algorithms.from_proposal(chosen), initiator.nonce_i, initiator.nonce_r)
        self.assertEqual(child.keys, keys)
        # the kernel was asked to install exactly that CHILD_SA
        self.assertEqual(recorded, [install_commands(child)])
        # the EAP session saw the IKE identity and the transport
        self.assertEqual((self.eap_peers[0].transport, self.eap_peers[0].identity),
                         ("ikev2", "carol@strongswan.org"))

    def test_wrong_password_is_an_eap_failure_and_no_state_is_left(self):
        harness = self.gateway()
        initiator = self.md5_initiator(password="wrong")
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(payload(inner, Eap).data[0], 4)  # EAP-Failure
        # alone, as strongSwan's responder sends it: no AUTHENTICATION_FAILED beside it
        self.assertEqual([type(p) for p in inner], [Eap])
        self.assertEqual(initiator.eap_peer.result, "failure")
        self.assertEqual(harness.responder.ike_sas, [])
        self.assertEqual(harness.responder.half_open, 0)
        self.assertEqual(self.pool.online, 0)
        self.assertEqual(harness.responder.counters.authentication_failures, 1)
        # further requests for the SA are ignored
        self.assertEqual(harness.deliver_all(initiator.request(ExchangeType.INFORMATIONAL, [])), [])

    def test_wrong_final_auth_is_authentication_failed(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.msk = b"not the key" * 4  # MD5 makes no MSK: the gateway expects SK_pi
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(notifies(inner), [NotifyType.AUTHENTICATION_FAILED])
        self.assertEqual(harness.responder.ike_sas, [])

    def test_initiator_with_its_own_auth_is_refused(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        initiator.id_i = IDi.of(initiator.identity)
        auth = Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE, bytes(32))
        inner = initiator.receive(harness.deliver_all(initiator.request(ExchangeType.IKE_AUTH, [initiator.id_i, auth])))
        self.assertEqual(notifies(inner), [NotifyType.AUTHENTICATION_FAILED])
        self.assertEqual(harness.responder.ike_sas, [])

    def test_eap_only_authentication_rfc5998(self):
        harness = self.gateway(eap_only="yes", eap=self.ttls_factory())
        initiator = ScriptedInitiator(eap_peer=self.peer(), eap_only=True)
        inner, _ = establish(self, harness, initiator)
        self.assertIsNone(initiator.server_auth)  # no certificate AUTH
        self.assertIsNotNone(initiator.msk)  # both AUTHs from the EAP-TTLS MSK
        self.assertEqual(harness.responder.ike_sas[0].state, IkeSaState.ESTABLISHED)

    def test_eap_only_with_a_method_without_msk_fails(self):
        harness = self.gateway(eap_only="yes")
        initiator = self.md5_initiator(eap_only=True)
        inner, _ = establish(self, harness, initiator)
        self.assertIsNone(initiator.server_auth)
        self.assertEqual(payload(inner, Eap).data[0], 4)
        self.assertEqual(notifies(inner), [])
        self.assertEqual(harness.responder.ike_sas, [])

    def test_eap_only_not_offered_falls_back_to_the_certificate(self):
        harness = self.gateway(eap_only="yes")
        initiator = self.md5_initiator()
        establish(self, harness, initiator)
        self.assertIsNotNone(initiator.server_auth)

    def test_eap_only_auto_follows_the_initiators_certificate_request(self):
        # strongSwan initiators offer EAP-only whatever they expect: one
        # with 'remote { auth = eap-ttls }' and send_certreq = no asks for no
        # certificate, one with 'remote { auth = pubkey }' sends CERTREQ
        for certreq, eap_only in ((False, True), (True, False)):
            harness = self.gateway(eap=self.ttls_factory(), eap_authenticates_gateway=True)
            self.assertEqual(harness.responder.settings.eap_only, "auto")
            initiator = ScriptedInitiator(eap_peer=self.peer(), eap_only=True, certreq=certreq)
            establish(self, harness, initiator)
            self.assertEqual(initiator.server_auth is None, eap_only, certreq)
            self.assertEqual(harness.responder.ike_sas[0].state, IkeSaState.ESTABLISHED)

    def test_eap_only_auto_needs_a_method_that_authenticates_the_gateway(self):
        harness = self.gateway(eap_authenticates_gateway=False)  # [eap] methods = md5
        initiator = self.md5_initiator(eap_only=True)
        establish(self, harness, initiator)
        self.assertIsNotNone(initiator.server_auth)
        self.assertEqual(harness.responder.ike_sas[0].state, IkeSaState.ESTABLISHED)

    def test_eap_only_no_always_shows_the_certificate(self):
        harness = self.gateway(eap_only="no", eap=self.ttls_factory(), eap_authenticates_gateway=True)
        initiator = ScriptedInitiator(eap_peer=self.peer(), eap_only=True)
        establish(self, harness, initiator)
        self.assertIsNotNone(initiator.server_auth)

    def test_signature_without_hash_algorithms_notify_is_rfc4754(self):
        harness = self.gateway()
        initiator = self.md5_initiator(hashes=False)
        establish(self, harness, initiator)
        self.assertEqual(initiator.server_auth.method, AuthMethod.ECDSA_SHA256_P256)

    def test_default_idr_is_the_certificate_subject(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        establish(self, harness, initiator)
        self.assertEqual(initiator.id_r_received.id_type, 9)  # ID_DER_ASN1_DN
        self.assertEqual(initiator.id_r_received.data, initiator.server_cert.subject.public_bytes())

    def test_nat_t_float_to_port_4500(self):
        harness = self.gateway()
        initiator = self.md5_initiator(behind_nat=True)
        inner, _ = establish(self, harness, initiator, port=4500)
        sa = harness.responder.ike_sas[0]
        self.assertTrue(sa.peer_behind_nat)
        self.assertEqual((sa.local[1], sa.remote), (4500, CLIENT_NAT))
        self.assertEqual(sa.children[0].encap, (4500, 5501))  # ESP in UDP

    def test_float_to_port_4500_without_nat_keeps_plain_esp(self):
        # strongSwan floats at once when it offers MOBIKE; ESP is encapsulated only behind a NAT
        harness = self.gateway()
        initiator = self.md5_initiator()
        establish(self, harness, initiator, port=4500)
        sa = harness.responder.ike_sas[0]
        self.assertEqual((sa.local[1], sa.peer_behind_nat, sa.children[0].encap), (4500, False, None))

    def test_retransmitted_ike_auth_gets_the_cached_response(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        request = initiator.first_ike_auth()
        first = harness.deliver_all(request)
        second = harness.deliver_all(request)
        self.assertEqual(first, second)  # byte for byte, not re-encrypted
        self.assertEqual(len(self.eap_peers), 1)  # one EAP conversation
        eap_request = initiator.check_first_response(initiator.receive(first))
        reply = initiator.request(ExchangeType.IKE_AUTH, [Eap(initiator.eap_peer.respond(eap_request))])
        answer = harness.deliver_all(reply)
        self.assertEqual(harness.deliver_all(reply), answer)
        # an old message ID and a future one are ignored
        self.assertEqual(harness.deliver_all(initiator.request(ExchangeType.IKE_AUTH, [], mid=1)), [])
        self.assertEqual(harness.deliver_all(initiator.request(ExchangeType.IKE_AUTH, [], mid=9)), [])

    def test_request_while_the_eap_layer_works_is_not_processed_twice(self):
        pending = []

        class SlowSession:
            finished = False

            def start(self):
                return bytes((1, 7, 0, 5, 1))

            def receive(self, packet):
                d = defer.Deferred()
                pending.append(d)
                return d

            def abort(self, reason):
                self.aborted = reason

        harness = self.gateway(eap=lambda peer: SlowSession())
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        initiator.check_first_response(initiator.receive(harness.deliver_all(initiator.first_ike_auth())))
        request = initiator.request(ExchangeType.IKE_AUTH, [Eap(bytes((2, 7, 0, 10, 1)) + b"carol")])
        self.assertEqual(harness.deliver_all(request), [])
        self.assertEqual(harness.deliver_all(request), [])  # the retransmit while waiting
        self.assertEqual(len(pending), 1)
        before = len(harness.sent)
        pending[0].callback(_continue(bytes((1, 8, 0, 6, 4, 0))))
        self.assertEqual(len(harness.sent), before + 1)  # answered when the EAP layer is done
        inner = initiator.receive([harness.sent[-1].data])
        self.assertEqual(payload(inner, Eap).data, bytes((1, 8, 0, 6, 4, 0)))

    def test_responses_are_fragmented_when_large(self):
        harness = self.gateway(fragment_size=576, eap=self.ttls_factory())
        initiator = ScriptedInitiator(eap_peer=self.peer(), fragment_size=400)
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(harness.responder.ike_sas[0].state, IkeSaState.ESTABLISHED)
        sizes = [len(d.data) for d in harness.sent]
        self.assertLessEqual(max(sizes), 576 - 28)
        fragments = [IkeMessage.parse(d.data) for d in harness.sent if IkeMessage.parse(d.data).fragment]
        self.assertGreater(len(fragments), 2)

    def test_no_fragmentation_without_the_initiators_support(self):
        harness = self.gateway(fragment_size=576)
        initiator = self.md5_initiator(fragmentation=False)
        establish(self, harness, initiator)
        self.assertFalse(any(IkeMessage.parse(d.data).fragment for d in harness.sent))

    def test_tampered_request_is_dropped(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        (request,) = initiator.first_ike_auth()
        tampered = request[:-1] + bytes([request[-1] ^ 1])
        self.assertEqual(harness.deliver(tampered), [])
        self.assertEqual(harness.responder.counters.integrity_failures, 1)
        # the real one still works
        self.assertTrue(initiator.receive(harness.deliver(request)))

    def test_bad_inner_payload_is_answered_inside_sk_and_ends_ike_auth(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        inner = initiator.receive(harness.deliver_all(initiator.request(
            ExchangeType.IKE_AUTH, [IDi.of("carol"), UnknownPayload(222, b"?", critical=True)])))
        self.assertEqual([(p.notify_type, p.data) for p in inner],
                         [(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([222]))])
        self.assertEqual(harness.responder.ike_sas, [])

    def test_half_open_and_stalled_authentication_time_out(self):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        initiator.receive(harness.deliver_all(initiator.first_ike_auth()))
        (sa,) = harness.responder.ike_sas
        eap = sa.eap
        harness.now += 59
        harness.responder.expire(harness.now)
        self.assertEqual(len(harness.responder.ike_sas), 1)
        harness.now += 2
        harness.responder.expire(harness.now)
        self.assertEqual(harness.responder.ike_sas, [])
        self.assertTrue(eap.finished)  # the EAP conversation was aborted


def _continue(packet):
    from nac.eap.outcome import EapOutcome
    return EapOutcome(EapStatus.CONTINUE, packet)


# -- TNC inside IKEv2: EAP-TTLS ▸ PT-EAP ▸ PB-TNC ---------------------------------------------------


class PostureTests(ResponderMixin, unittest.TestCase):
    """The strongSwan gateway scenario of the seeds with nac's own client
    library: EAP-TTLS (inner EAP-MD5) then PT-EAP carrying PB-TNC to a real
    TNCS core; the IMV's verdict decides the CHILD_SA."""

    def run_posture(self, recommendation, evaluation=E.COMPLIANT):
        imv = VerdictImv(recommendation, evaluation)
        core = TnccsCore(ImvManager([imv]))
        harness = self.gateway(eap=self.ttls_factory(posture=lambda peer: PtEap(core, peer)))
        peer = self.peer(tnc="pt-eap", imcs=(ProductImc(),))
        initiator = ScriptedInitiator(eap_peer=peer, id_r="nac.test")
        inner, rounds = establish(self, harness, initiator)
        return harness, initiator, inner, imv, core, peer.peer

    def test_allowed_endpoint_gets_the_allow_network(self):
        harness, initiator, inner, imv, core, peer = self.run_posture(A.ALLOW)
        self.assertEqual(peer.posture.recommendation_label, "Access Allowed")
        self.assertEqual(len(imv.received), 1)
        # the IMV saw who authenticated inside the tunnel, over IKEv2
        self.assertEqual((imv.peers[0].transport, imv.peers[0].identity, imv.peers[0].auth_method),
                         ("ikev2", "carol", "eap-ttls/md5"))
        self.assertEqual(payload(inner, TSr).selectors, (TrafficSelector.from_network("10.1.0.0/16"),))
        self.assertEqual(payload(inner, TSi).selectors, (TrafficSelector.from_network("10.10.0.1/32"),))
        (sa,) = harness.responder.ike_sas
        self.assertEqual((sa.state, sa.decision.access, sa.identity), (IkeSaState.ESTABLISHED, "allowed", "carol"))
        self.assertEqual(sa.msk, initiator.msk)  # AUTH from the EAP-TTLS MSK both ways
        self.assertEqual(core.connections, {})

    def test_isolated_endpoint_gets_the_isolate_network(self):
        harness, initiator, inner, imv, core, peer = self.run_posture(A.ISOLATE, E.NONCOMPLIANT_MINOR)
        self.assertEqual(peer.posture.recommendation_label, "Quarantined")
        # narrowed from the 0.0.0.0/0 asked for to the remediation network inside the allow network
        self.assertEqual(payload(inner, TSr).selectors, (TrafficSelector.from_network("10.1.0.16/28"),))
        (sa,) = harness.responder.ike_sas
        self.assertEqual(sa.children[0].access, "isolate")

    def test_denied_endpoint_gets_an_eap_failure(self):
        harness, initiator, inner, imv, core, peer = self.run_posture(A.NO_ACCESS, E.NONCOMPLIANT_MAJOR)
        self.assertEqual(peer.posture.recommendation_label, "Access Denied")
        self.assertEqual(payload(inner, Eap).data[0], 4)
        self.assertEqual(notifies(inner), [])
        self.assertEqual(harness.responder.ike_sas, [])
        self.assertEqual(self.pool.online, 0)
        self.assertEqual(core.connections, {})

    def test_isolated_peer_asking_for_the_allow_network_is_narrowed_to_the_remediation_network(self):
        # strongSwan's TNC examples: the client asks for 10.1.0.0/16 however it is judged
        imv = VerdictImv(A.ISOLATE, E.NONCOMPLIANT_MINOR)
        core = TnccsCore(ImvManager([imv]))
        harness = self.gateway(eap=self.ttls_factory(posture=lambda peer: PtEap(core, peer)))
        initiator = ScriptedInitiator(eap_peer=self.peer(tnc="pt-eap", imcs=(ProductImc(),)), ts_r="10.1.0.0/16")
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(payload(inner, TSr).selectors, (TrafficSelector.from_network("10.1.0.16/28"),))
        self.assertEqual(harness.responder.ike_sas[0].children[0].access, "isolate")

    def test_isolated_peer_asking_only_outside_the_isolate_network_gets_ts_unacceptable(self):
        imv = VerdictImv(A.ISOLATE, E.NONCOMPLIANT_MINOR)
        core = TnccsCore(ImvManager([imv]))
        harness = self.gateway(eap=self.ttls_factory(posture=lambda peer: PtEap(core, peer)),
                               isolate_ts=(ipaddress.ip_network("10.2.0.0/16"),))
        initiator = ScriptedInitiator(eap_peer=self.peer(tnc="pt-eap", imcs=(ProductImc(),)), ts_r="10.1.0.0/16")
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(notifies(inner), [NotifyType.TS_UNACCEPTABLE])
        # the IKE SA stands, without a CHILD_SA
        (sa,) = harness.responder.ike_sas
        self.assertEqual((sa.state, sa.children), (IkeSaState.ESTABLISHED, []))

    def test_session_factory_from_the_configuration(self):
        """The EAP server as twistd builds it for [ikev2]: ttls with pt-eap."""
        cfg = nac_config.load(None, {("nac", "state_dir"): str(self.state), ("eap", "inner_methods"): "md5"})
        core = TnccsCore(ImvManager([VerdictImv(A.ALLOW)]))
        factory = session_factory(cfg, core, None, "ikev2", credentials=self.passwords.credentials)
        harness = self.gateway(eap=factory)
        initiator = ScriptedInitiator(eap_peer=self.peer(tnc="pt-eap", imcs=(ProductImc(),)))
        inner, _ = establish(self, harness, initiator)
        self.assertEqual(harness.responder.ike_sas[0].decision.access, "allowed")


# -- established IKE SAs ----------------------------------------------------------------------------


class EstablishedTests(ResponderMixin, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.recorded = []
        self.harness = self.gateway(kernel=XfrmKernel(self.recorded.append))
        self.initiator = self.md5_initiator()
        self.final, _ = establish(self, self.harness, self.initiator)
        (self.sa,) = self.harness.responder.ike_sas

    def exchange(self, exchange, inner):
        return self.initiator.receive(self.harness.deliver_all(self.initiator.request(exchange, inner)))

    def test_liveness_check(self):
        self.assertEqual(self.exchange(ExchangeType.INFORMATIONAL, []), ())
        self.assertEqual(self.sa.state, IkeSaState.ESTABLISHED)

    def test_delete_child_sa(self):
        (child,) = self.sa.children
        inner = self.exchange(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.ESP, (self.initiator.esp_spi,))])
        self.assertEqual(inner, (Delete(ProtocolId.ESP, (child.inbound_spi,)),))
        self.assertEqual(self.sa.children, [])
        self.assertEqual(self.recorded[-1], remove_commands(child))

    def test_delete_ike_sa_removes_everything(self):
        (child,) = self.sa.children
        self.assertEqual(self.pool.online, 1)
        self.assertEqual(self.exchange(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.IKE)]), ())
        self.assertEqual(self.harness.responder.ike_sas, [])
        self.assertEqual(self.pool.online, 0)
        self.assertEqual(self.recorded[-1], remove_commands(child))
        # the same identity gets its address back next time
        # (leases are by the EAP identity, the one the peer authenticated as)
        self.assertEqual(self.pool.acquire("carol"), ipaddress.ip_address("10.10.0.1"))

    def test_rekey_child_sa_with_pfs(self):
        (old,) = self.sa.children
        nonce = crypto.new_nonce()
        dh = crypto.DiffieHellman.generate(19)
        spi = os.urandom(4)
        proposal = dataclasses.replace(parse_proposal("aes128-sha256-ecp256", ProtocolId.ESP), spi=spi)
        harness = self.harness
        harness.responder.settings = dataclasses.replace(
            harness.responder.settings, esp_proposals=parse_proposals(["aes128-sha256-ecp256"], ProtocolId.ESP))
        inner = self.exchange(ExchangeType.CREATE_CHILD_SA, [
            Notify(NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=self.initiator.esp_spi),
            SecurityAssociation((proposal,)), Nonce(nonce), KeyExchange(19, dh.public_value),
            TSi((TrafficSelector.from_network("0.0.0.0/0"),)), TSr((TrafficSelector.from_network("0.0.0.0/0"),))])
        self.assertEqual([type(p).__name__ for p in inner], ["SecurityAssociation", "Nonce", "KeyExchange", "TSi",
                                                             "TSr"])
        self.assertEqual(payload(inner, TSi).selectors, (TrafficSelector.from_network("10.10.0.1/32"),))
        new = self.sa.children[-1]
        self.assertEqual(len(self.sa.children), 2)  # the old one until the peer deletes it
        shared = dh.shared_secret(payload(inner, KeyExchange).data)
        keys = crypto.derive_child_sa_keys(self.initiator.keys.prf, self.initiator.keys.sk_d,
                                           Algorithms.from_proposal(proposal), nonce, payload(inner, Nonce).data,
                                           shared)
        self.assertEqual(new.keys, keys)
        self.assertEqual(self.harness.responder.counters.child_rekeys, 1)
        # the kernel gets the new states under the same reqid, the policies stay
        self.assertEqual(new.reqid, old.reqid)
        self.assertEqual(self.recorded[-1], install_commands(new, policies=False))
        self.assertEqual(len(self.recorded[-1]), 2)
        self.exchange(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.ESP, (old.outbound_spi,))])
        self.assertEqual(self.sa.children, [new])
        self.assertEqual(self.recorded[-1], remove_commands(old, policies=False))
        # the last of them takes the policies along
        self.exchange(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.ESP, (new.outbound_spi,))])
        self.assertEqual(self.recorded[-1], remove_commands(new))

    def test_create_child_sa_with_the_wrong_ke_group(self):
        self.harness.responder.settings = dataclasses.replace(
            self.harness.responder.settings, esp_proposals=parse_proposals(["aes128-sha256-ecp256"], ProtocolId.ESP))
        dh = crypto.DiffieHellman.generate(31)
        proposal = dataclasses.replace(parse_proposal("aes128-sha256-ecp256-x25519", ProtocolId.ESP), spi=os.urandom(4))
        inner = self.exchange(ExchangeType.CREATE_CHILD_SA, [
            SecurityAssociation((proposal,)), Nonce(crypto.new_nonce()), KeyExchange(31, dh.public_value),
            TSi((TrafficSelector.from_network("0.0.0.0/0"),)), TSr((TrafficSelector.from_network("0.0.0.0/0"),))])
        # x25519 is offered and acceptable?  No: only ecp256 is configured
        self.assertEqual([(p.notify_type, p.data) for p in inner], [(NotifyType.INVALID_KE_PAYLOAD, b"\x00\x13")])
        self.assertEqual(len(self.sa.children), 1)

    def test_rekey_ike_sa_moves_children_and_virtual_ip(self):
        (child,) = self.sa.children
        address = self.sa.virtual_ip
        nonce = crypto.new_nonce()
        dh = crypto.DiffieHellman.generate(31)
        new_spi_i = crypto.new_spi()
        proposal = dataclasses.replace(parse_proposal("aes256-sha256-x25519"), spi=new_spi_i)
        inner = self.exchange(ExchangeType.CREATE_CHILD_SA, [SecurityAssociation((proposal,)), Nonce(nonce),
                                                             KeyExchange(31, dh.public_value)])
        reply = payload(inner, SecurityAssociation).proposals[0]
        new = self.harness.responder.ike_sa(reply.spi)
        self.assertEqual((new.spi_i, new.children, new.virtual_ip), (new_spi_i, [child], address))
        keys = crypto.rekey_ike_sa_keys(self.initiator.keys, Algorithms.from_proposal(proposal),
                                        dh.shared_secret(payload(inner, KeyExchange).data), nonce,
                                        payload(inner, Nonce).data, new_spi_i, reply.spi)
        self.assertEqual(new.keys.sk_d, keys.sk_d)
        # the peer deletes the old IKE SA: the CHILD_SA and the address stay with the new one
        self.exchange(ExchangeType.INFORMATIONAL, [Delete(ProtocolId.IKE)])
        self.assertEqual(self.harness.responder.ike_sas, [new])
        self.assertEqual(self.pool.online, 1)
        self.assertEqual(self.recorded, [install_commands(child)])
        # and the new IKE SA works, message IDs from 0
        rekeyed = ScriptedInitiator(eap_peer=None)
        rekeyed.spi_i, rekeyed.spi_r, rekeyed.keys, rekeyed.mid = new_spi_i, reply.spi, keys, 0
        self.assertEqual(rekeyed.receive(self.harness.deliver_all(
            rekeyed.request(ExchangeType.INFORMATIONAL, []))), ())

    def test_lifetimes(self):
        harness = self.harness
        settings = harness.responder.settings
        (child,) = self.sa.children
        harness.now += settings.child_lifetime + 1
        before = len(harness.sent)
        harness.responder.expire(harness.now)
        self.assertEqual(self.sa.children, [])
        # the peer is told with an INFORMATIONAL request carrying our SPI
        message = IkeMessage.parse(harness.sent[before].data)
        self.assertFalse(message.response)
        self.assertEqual(message.unseal(self.initiator.keys.responder_sk),
                         (Delete(ProtocolId.ESP, (child.inbound_spi,)),))
        harness.now += settings.ike_lifetime
        harness.responder.expire(harness.now)
        self.assertEqual(harness.responder.ike_sas, [])
        message = IkeMessage.parse(harness.sent[-1].data)
        self.assertEqual(message.unseal(self.initiator.keys.responder_sk), (Delete(ProtocolId.IKE),))
        self.assertEqual(self.pool.online, 0)

    def test_close_deletes_every_sa(self):
        self.harness.responder.close()
        message = IkeMessage.parse(self.harness.sent[-1].data)
        self.assertEqual(message.unseal(self.initiator.keys.responder_sk), (Delete(ProtocolId.IKE),))
        self.assertEqual(self.harness.responder.ike_sas, [])
        self.assertEqual(self.pool.online, 0)

    def test_ike_auth_after_establishment_is_ignored(self):
        self.assertEqual(self.harness.deliver_all(self.initiator.request(ExchangeType.IKE_AUTH, [])), [])


# -- bad input -----------------------------------------------------------------------------------


class RandomInputTests(ResponderMixin, unittest.TestCase):
    @hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.binary(max_size=200), max_size=5), st.sampled_from([500, 4500]))
    def test_random_datagrams_never_crash(self, datagrams, port):
        harness = self.gateway()
        errors = []
        observer = lambda event: errors.append(event) if event.get("log_failure") else None  # noqa: E731
        globalLogPublisher.addObserver(observer)
        try:
            for data in datagrams:
                harness.responder.datagram_received(data, ("127.0.0.1", port), CLIENT, harness.now)
        finally:
            globalLogPublisher.removeObserver(observer)
        self.assertEqual(errors, [])
        for datagram in harness.sent:
            IkeMessage.parse(unframe_nat_t(datagram.data)[1] if port == 4500 else datagram.data)

    @hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(min_size=1, max_size=300))
    def test_random_inner_payloads_of_a_valid_sa(self, garbage):
        harness = self.gateway()
        initiator = self.md5_initiator()
        initiator.receive_init(harness.deliver(initiator.ike_sa_init())[0])
        # an SK payload that verifies, around random bytes claiming to be a payload chain
        first, plaintext = (garbage[0] % 60) or 1, garbage[1:]
        cipher = initiator.keys.initiator_sk
        size = cipher.sealed_size(len(plaintext))
        header = IkeMessage(initiator.spi_i, initiator.spi_r, ExchangeType.IKE_AUTH, 1, initiator=True)
        aad = header.encode_header(PayloadType.SK, 28 + 4 + size) + bytes((first, 0)) + (4 + size).to_bytes(2, "big")
        datagram = aad + cipher.seal(aad, plaintext)
        errors = []
        observer = lambda event: errors.append(event) if event.get("log_failure") else None  # noqa: E731
        globalLogPublisher.addObserver(observer)
        try:
            for out in harness.deliver(datagram):
                IkeMessage.parse(out)
        finally:
            globalLogPublisher.removeObserver(observer)
        self.assertEqual(errors, [])


class SecretsTests(ResponderMixin, unittest.TestCase):
    def test_no_key_or_password_in_any_log_line(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        try:
            harness = self.gateway(eap=self.ttls_factory())
            initiator = ScriptedInitiator(eap_peer=self.peer())
            establish(self, harness, initiator)
        finally:
            globalLogPublisher.removeObserver(events.append)
        text = "\n".join(formatEvent(e) or "" for e in events)
        self.assertIn("IKE_SA ikev2[1] established", text)
        self.assertIn("CHILD_SA ikev2{1} established", text)
        sa = harness.responder.ike_sas[0]
        secrets = [PASSWORDS["carol"], sa.msk.hex(), sa.keys.sk_d.hex(), sa.keys.sk_ei.hex(),
                   sa.children[0].keys.encryption_i.hex()]
        for secret in secrets:
            self.assertNotIn(secret, text)


# -- traffic selectors, pool, kernel ---------------------------------------------------------------


class TrafficSelectorTests(unittest.TestCase):
    def test_narrowing(self):
        ts = TrafficSelector.from_network
        self.assertEqual(narrow_traffic_selectors([ts("0.0.0.0/0")], [ts("10.1.0.0/16"), ts("10.3.0.0/24")]),
                         (ts("10.1.0.0/16"), ts("10.3.0.0/24")))
        self.assertEqual(narrow_traffic_selectors([ts("10.1.2.0/24")], [ts("10.1.0.0/16")]), (ts("10.1.2.0/24"),))
        self.assertEqual(narrow_traffic_selectors([ts("10.2.0.0/16")], [ts("10.1.0.0/16")]), ())
        self.assertEqual(narrow_traffic_selectors([ts("::/0")], [ts("10.1.0.0/16")]), ())
        self.assertEqual(narrow_traffic_selectors([ts("0.0.0.0/0", 6, 80, 80)], [ts("10.1.0.0/16")]),
                         (ts("10.1.0.0/16", 6, 80, 80),))
        self.assertEqual(narrow_traffic_selectors([ts("0.0.0.0/0", 17)], [ts("10.1.0.0/16", 6)]), ())


class PoolTests(unittest.TestCase):
    def test_leases(self):
        pool = VirtualIpPool("10.10.0.0/30")  # two hosts
        a = pool.acquire("alice")
        self.assertEqual(a, ipaddress.ip_address("10.10.0.1"))
        self.assertEqual(pool.acquire("alice"), a)  # a second IKE SA of alice
        b = pool.acquire("bob")
        self.assertEqual(b, ipaddress.ip_address("10.10.0.2"))
        with self.assertRaises(PoolExhausted):
            pool.acquire("carol")
        pool.release(a)
        with self.assertRaises(PoolExhausted):
            pool.acquire("carol")  # alice is still online once
        pool.release(a)
        self.assertEqual(pool.acquire("carol"), a)  # alice's offline lease reused
        pool.release(b)
        self.assertEqual(pool.acquire("bob"), b)  # bob comes back to his address
        self.assertEqual(pool.online, 2)

    def test_requested_address(self):
        pool = VirtualIpPool("10.10.0.0/24")
        self.assertEqual(pool.acquire("alice", ipaddress.ip_address("10.10.0.77")), ipaddress.ip_address("10.10.0.77"))
        self.assertEqual(pool.acquire("bob", ipaddress.ip_address("10.10.0.77")), ipaddress.ip_address("10.10.0.1"))
        self.assertEqual(pool.acquire("eve", ipaddress.ip_address("192.0.2.1")), ipaddress.ip_address("10.10.0.2"))


class KernelTests(unittest.TestCase):
    def child(self, esp="aes256gcm16", encap=None):
        proposal = parse_proposal(esp, ProtocolId.ESP)
        algorithms = Algorithms.from_proposal(proposal)
        keys = crypto.derive_child_sa_keys(crypto.Prf(5), bytes(32), algorithms, bytes(32), bytes(range(32)))
        from transports.ikev2.sa import ChildSa
        return ChildSa(1, 7, "192.0.2.1", "198.51.100.9", bytes.fromhex("c0000001"), bytes.fromhex("c1000002"),
                       proposal, algorithms, keys, (TrafficSelector.from_network("10.1.0.0/16"),),
                       (TrafficSelector.from_network("10.10.0.1/32"),), encap, 0.0, "allowed"), keys

    def test_gcm_child_sa(self):
        child, keys = self.child()
        self.assertEqual(install_commands(child), [
            "xfrm state add src 198.51.100.9 dst 192.0.2.1 proto esp spi 0xc0000001 "
            f"aead rfc4106(gcm(aes)) 0x{keys.encryption_i.hex()} 128 mode tunnel reqid 7 replay-window 32",
            "xfrm state add src 192.0.2.1 dst 198.51.100.9 proto esp spi 0xc1000002 "
            f"aead rfc4106(gcm(aes)) 0x{keys.encryption_r.hex()} 128 mode tunnel reqid 7 replay-window 32",
            "xfrm policy add src 10.1.0.0/16 dst 10.10.0.1/32 dir out "
            "tmpl src 192.0.2.1 dst 198.51.100.9 proto esp reqid 7 mode tunnel",
            "xfrm policy add src 10.10.0.1/32 dst 10.1.0.0/16 dir in "
            "tmpl src 198.51.100.9 dst 192.0.2.1 proto esp reqid 7 mode tunnel",
            "xfrm policy add src 10.10.0.1/32 dst 10.1.0.0/16 dir fwd "
            "tmpl src 198.51.100.9 dst 192.0.2.1 proto esp reqid 7 mode tunnel",
        ])
        self.assertEqual(len(keys.encryption_i), 36)  # AES-256 key and 4-byte salt
        self.assertEqual(remove_commands(child), [
            "xfrm policy delete src 10.1.0.0/16 dst 10.10.0.1/32 dir out",
            "xfrm policy delete src 10.10.0.1/32 dst 10.1.0.0/16 dir in",
            "xfrm policy delete src 10.10.0.1/32 dst 10.1.0.0/16 dir fwd",
            "xfrm state delete src 198.51.100.9 dst 192.0.2.1 proto esp spi 0xc0000001",
            "xfrm state delete src 192.0.2.1 dst 198.51.100.9 proto esp spi 0xc1000002",
        ])

    def test_cbc_child_sa_with_udp_encapsulation(self):
        child, keys = self.child("aes128-sha256", encap=(4500, 5501))
        inbound, outbound = install_commands(child)[:2]
        self.assertEqual(inbound, "xfrm state add src 198.51.100.9 dst 192.0.2.1 proto esp spi 0xc0000001 "
                                  f"enc cbc(aes) 0x{keys.encryption_i.hex()} auth-trunc hmac(sha256) "
                                  f"0x{keys.integrity_i.hex()} 128 mode tunnel reqid 7 replay-window 32 "
                                  "encap espinudp 5501 4500 0.0.0.0")
        self.assertTrue(outbound.endswith("encap espinudp 4500 5501 0.0.0.0"))
        for line in masked(install_commands(child)):
            for key in (keys.encryption_i, keys.integrity_i, keys.encryption_r, keys.integrity_r):
                self.assertNotIn(key.hex(), line)


# -- the Twisted service ------------------------------------------------------------------------


class _UdpClient(protocol.DatagramProtocol):
    """Sends datagrams and hands back the next ones received."""

    def __init__(self):
        self.queue = defer.DeferredQueue()

    def datagramReceived(self, data, addr):
        self.queue.put((data, addr))


class ServiceTests(ResponderMixin, unittest.TestCase):
    """make_service as twistd builds it, over real UDP sockets on 127.0.0.1."""

    def config(self, **ikev2):
        from tests.nacserver import free_port
        import socket as _socket
        self.port, self.nat_port = free_port(_socket.SOCK_DGRAM), free_port(_socket.SOCK_DGRAM)
        overrides = {("nac", "state_dir"): str(self.state), ("nac", "transports"): "ikev2",
                     ("ikev2", "listen"): "127.0.0.1", ("ikev2", "port"): str(self.port),
                     ("ikev2", "nat_port"): str(self.nat_port), ("eap", "methods"): "md5"}
        overrides.update({("ikev2", k): v for k, v in ikev2.items()})
        return nac_config.load(None, overrides)

    @defer.inlineCallbacks
    def test_ike_sa_established_over_udp_with_the_nat_t_port(self):
        from twisted.internet import reactor
        from zope.interface.verify import verifyObject
        from nac.interfaces import IPostureTransport
        from transports.ikev2.service import make_service

        cfg = self.config()
        service = make_service(cfg, TnccsCore(ImvManager([])), None, eap_factory=self.md5_factory())
        self.assertTrue(verifyObject(IPostureTransport, service))
        self.assertEqual(service.transport_name, "ikev2")
        service.startService()
        self.addCleanup(service.stopService)
        client = _UdpClient()
        listening = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        me = ("127.0.0.1", listening.getHost().port)
        initiator = self.md5_initiator(address=me)

        def send(data, port):
            listening.write(frame_nat_t(data) if port == self.nat_port else data, ("127.0.0.1", port))

        @defer.inlineCallbacks
        def answer(port):
            data, addr = yield client.queue.get()
            self.assertEqual(addr, ("127.0.0.1", port))
            return unframe_nat_t(data)[1] if port == self.nat_port else data

        send(initiator.ike_sa_init(), self.port)
        self.assertEqual(initiator.receive_init((yield answer(self.port))), "ok")
        # like strongSwan when a NAT is seen: IKE_AUTH moves to the NAT-T port with the non-ESP marker
        (request,) = initiator.first_ike_auth()
        send(request, self.nat_port)
        eap_request = initiator.check_first_response(initiator.receive([(yield answer(self.nat_port))]))
        while True:
            response = initiator.eap_peer.respond(eap_request)
            (request,) = initiator.request(ExchangeType.IKE_AUTH, [Eap(response)])
            send(request, self.nat_port)
            inner = initiator.receive([(yield answer(self.nat_port))])
            eap_request = payload(inner, Eap).data
            if eap_request[0] != 1:
                break
        self.assertEqual(eap_request[0], 3)
        (request,) = initiator.final_ike_auth()
        send(request, self.nat_port)
        inner = initiator.receive([(yield answer(self.nat_port))])
        initiator.check_final_response(inner)
        self.assertEqual(payload(inner, TSr).selectors, (TrafficSelector.from_network("10.1.0.0/16"),))
        (sa,) = service.responder.ike_sas
        self.assertEqual((sa.state, sa.local, sa.remote), (IkeSaState.ESTABLISHED, ("127.0.0.1", self.nat_port), me))
        # stopping the service tells the peer
        yield service.stopService()
        data, _ = yield client.queue.get()
        message = IkeMessage.parse(unframe_nat_t(data)[1])
        self.assertEqual(message.unseal(initiator.keys.responder_sk), (Delete(ProtocolId.IKE),))

    def test_settings_from_config(self):
        from transports.ikev2.service import settings_from_config

        cfg = self.config(ike_proposals="aes128gcm16-prfsha256-ecp256", pool="10.99.0.0/28",
                          cookie_threshold="7", fragment_size="1000")
        settings = settings_from_config(cfg)
        self.assertEqual(settings.ike_proposals, parse_proposals(["aes128gcm16-prfsha256-ecp256"]))
        self.assertEqual(str(settings.pool.network), "10.99.0.0/28")
        self.assertEqual((settings.cookie_threshold, settings.fragment_size, settings.nat_port),
                         (7, 1000, self.nat_port))
        # the demo certificate in the state directory, as for PT-TLS and EAP-TTLS
        self.assertEqual(settings.credential.certificate.public_bytes(serialization.Encoding.PEM),
                         self.pki.server_cert.read_bytes())

    def test_unusable_configuration_is_a_config_error(self):
        from transports.ikev2.service import settings_from_config

        with self.assertRaises(nac_config.ConfigError) as caught:
            settings_from_config(self.config(ike_proposals="aes256-sha256-modp1024"))
        self.assertIn("[ikev2] ike_proposals: nac does not implement DH group MODP_1024", str(caught.exception))
        key = Path(self.mktemp())
        key.write_bytes(b"not a key")
        with self.assertRaises(nac_config.ConfigError) as caught:
            settings_from_config(self.config(cert=str(self.pki.server_cert), key=str(key)))
        self.assertIn("[ikev2] key:", str(caught.exception))


class InitialContactTests(ResponderMixin, unittest.TestCase):
    def test_initial_contact_replaces_the_older_ike_sa_of_the_same_identity(self):
        harness = self.gateway()
        first = self.md5_initiator()
        establish(self, harness, first)
        old = harness.responder.ike_sas[0]
        address = old.virtual_ip
        second = self.md5_initiator(address=("127.0.0.1", 5600))
        inner, _ = establish(self, harness, second)
        (sa,) = harness.responder.ike_sas
        self.assertIsNot(sa, old)
        self.assertEqual(old.state, IkeSaState.DELETED)
        # the reconnecting client gets its address back, the old peer was told
        self.assertEqual(payload(inner, Configuration).attributes[0].address, address)
        self.assertEqual(self.pool.online, 1)
        told = [d for d in harness.sent if d.remote == CLIENT and not IkeMessage.parse(d.data).response]
        self.assertEqual(IkeMessage.parse(told[-1].data).unseal(first.keys.responder_sk), (Delete(ProtocolId.IKE),))


class RsaGatewayTests(ResponderMixin, unittest.TestCase):
    """A gateway with an RSA certificate: RFC 7427 PKCS#1 v1.5 with SHA-256,
    or RSA method 1 (SHA-1) for an initiator without SIGNATURE_HASH_ALGORITHMS."""

    def setUp(self):
        super().setUp()
        import datetime
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.test")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("gw.test")]), critical=False)
                .sign(key, hashes.SHA256()))
        self.credential = GatewayCredential(cert, key)

    def test_rfc7427_rsa(self):
        harness = self.gateway()
        initiator = self.md5_initiator(id_r="gw.test")
        establish(self, harness, initiator)
        self.assertEqual(initiator.server_auth.method, AuthMethod.DIGITAL_SIGNATURE)
        self.assertEqual(initiator.id_r_received, IDr.of("gw.test"))

    def test_legacy_rsa_signature(self):
        harness = self.gateway()
        initiator = self.md5_initiator(hashes=False)
        establish(self, harness, initiator)
        self.assertEqual(initiator.server_auth.method, AuthMethod.RSA_DIGITAL_SIGNATURE)

    def test_key_of_another_certificate_is_refused(self):
        with self.assertRaises(ValueError):
            GatewayCredential(self.credential.certificate, ec.generate_private_key(ec.SECP256R1()))
