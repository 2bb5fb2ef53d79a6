"""The IKEv2 responder: IKE SA and CHILD_SA state machines, sans-IO (RFC 7296).

:class:`IkeResponder` is everything a VPN gateway's IKE daemon does for
initiators, without sockets or clocks.  Feed it every datagram with
:meth:`IkeResponder.datagram_received` (bytes, our address and port, the
peer's, the time); it hands the datagrams to send to the ``send`` callable
it was built with, as :class:`OutgoingDatagram` values (NAT-T framing
included).  Call :meth:`IkeResponder.expire` with the time now and then:
timeouts and lifetimes run there.  The only asynchronous part is the EAP
conversation (an :class:`nac.interfaces.IEapSession` returns Deferreds); its
answers are sent when they arrive.

What it does:

* IKE_SA_INIT (§1.2): proposal selection from ``ike_proposals`` (strongSwan's
  rules, the initiator's KE group preferred when acceptable), INVALID_KE_PAYLOAD
  (§1.2), NO_PROPOSAL_CHOSEN, stateless COOKIEs once ``cookie_threshold``
  IKE SAs are half-open and silence beyond ``max_half_open`` (§2.6), NAT
  detection (§2.23), SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4),
  IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3); retransmitted requests get
  the same response.
* IKE_AUTH (§1.2, §2.16): the initiator's IDi; the gateway authenticates
  with its certificate (RFC 7427 signature, or RFC 4754 / PKCS#1 when the
  initiator sent no SIGNATURE_HASH_ALGORITHMS) or, when the initiator sent
  EAP_ONLY_AUTHENTICATION and ``eap_only`` allows it, by EAP alone (RFC
  5998); the EAP conversation (EAP-TTLS with PT-EAP inside, EAP-MD5 …) in as
  many IKE_AUTH exchanges as it takes; AUTH from the MSK (or SK_pi/SK_pr for
  methods without one) both ways; the first CHILD_SA with a virtual IP.
  EAP-Failure or a denied posture end it with the EAP-Failure alone (as
  strongSwan's responder: the client reports the EAP failure), a wrong AUTH
  with AUTHENTICATION_FAILED, and every trace of the IKE SA is removed.
  INITIAL_CONTACT replaces the older IKE SAs of the same identities.
* CHILD_SAs: ESP proposal selection from ``esp_proposals`` (with PFS in
  CREATE_CHILD_SA), traffic selectors narrowed to ``allow_ts`` or, when the
  posture decision is Isolate, ``isolate_ts`` (§2.9) — or the networks the
  endpoint's groups set (the decision's group enforcement) —, the configuration
  payload (§2.19, a virtual IP from the pool and DNS servers), installation
  through a kernel object (``transports.ikev2.kernel``).
* INFORMATIONAL (§1.4): DELETE of the IKE SA or CHILD_SAs, liveness checks.
* CREATE_CHILD_SA (§1.3) as responder: new and rekeyed CHILD_SAs, rekeyed IKE
  SAs (§2.18; the CHILD_SAs, virtual IP and decision move to the new SA).
* Message IDs (§2.2): one request at a time, retransmissions (same bytes,
  or same first fragment, RFC 7383 §2.6.1) answered from the cached response,
  anything else ignored; responses larger than the path allows are sent in
  RFC 7383 fragments when the initiator supports them.
* Bad input: a malformed IKE_SA_INIT gets an unprotected INVALID_SYNTAX /
  UNSUPPORTED_CRITICAL_PAYLOAD / INVALID_MAJOR_VERSION notify; a protected
  request whose ICV verifies but whose content is bad gets the notify inside
  SK (and IKE_AUTH ends); messages that fail the integrity check, for
  unknown SPIs or with unexpected message IDs are dropped, with a log line.
* Time: half-open IKE SAs live ``half_open_timeout`` seconds, an IKE_AUTH
  phase waits ``auth_timeout`` for the next request; established IKE SAs and
  CHILD_SAs are deleted (with a DELETE sent to the peer) after their
  lifetimes.

Log lines use strongSwan's words where strongSwan logs the same event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from twisted.internet import defer

from nac.eap.outcome import EapOutcome, EapStatus
from nac.log import Logger, LogLevel, repeats
from nac.tnccs.assessment import PeerInfo
from transports.ikev2 import crypto
from transports.ikev2.fragment import (
    DEFAULT_FRAGMENT_SIZE,
    FragmentBudget,
    FragmentReassembly,
    InvalidFragment,
    fragment_message,
    message_budget,
)
from transports.ikev2.kernel import NoKernel
from transports.ikev2.message import (
    HEADER_SIZE,
    AuthMethod,
    Authentication,
    CertEncoding,
    Certificate,
    CertRequest,
    CfgType,
    Configuration,
    ConfigurationAttribute,
    ConfigurationAttributeType,
    Delete,
    Eap,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    IkeHeader,
    IkeMessage,
    IkeProtocolError,
    IntegrityCheckFailed,
    InvalidMajorVersion,
    InvalidSyntax,
    KeyExchange,
    NatTKind,
    Nonce,
    Notify,
    NotifyType,
    Payload,
    PayloadType,
    Proposal,
    ProtocolId,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    TSr,
    build_payloads,
    find_payload,
    frame_nat_t,
    unframe_nat_t,
)
from transports.ikev2.pool import PoolExhausted, VirtualIpPool
from transports.ikev2.transforms import Algorithms, TransformType, describe_proposal, select_proposal

__all__ = [
    "ChildSa",
    "GatewayCredential",
    "IkeResponder",
    "IkeSa",
    "IkeSaState",
    "OutgoingDatagram",
    "ResponderCounters",
    "ResponderSettings",
    "narrow_traffic_selectors",
]

log = Logger(namespace="nac.ikev2")

_ZERO_SPI = bytes(8)
# strongSwan's charon.max_packet: the largest datagram it accepts
DEFAULT_MAX_MESSAGE_SIZE = 10000
# a fragmented request reassembles to at most this much
MAX_REASSEMBLED_SIZE = 65535


# -- configuration ------------------------------------------------------------------------------


class GatewayCredential:
    """The gateway's certificate and private key, for its AUTH (RFC 7296 §2.15)
    and the identities the certificate vouches for (subjectAltName entries and
    the subject DN)."""

    __slots__ = ("certificate", "private_key", "chain", "_der", "_chain_der", "_ids", "default_id")

    def __init__(self, certificate: x509.Certificate, private_key, chain: Sequence[x509.Certificate] = ()) -> None:
        public = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        if public != certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("the private key does not belong to the certificate")
        self.certificate = certificate
        self.private_key = private_key
        self.chain = tuple(chain)
        self._der = certificate.public_bytes(serialization.Encoding.DER)
        self._chain_der = tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)
        ids: set[tuple[int, bytes]] = {(IdType.ID_DER_ASN1_DN, certificate.subject.public_bytes())}
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        if san is not None:
            for name in san.get_values_for_type(x509.DNSName):
                ids.add((IdType.ID_FQDN, name.lower().encode()))
            for name in san.get_values_for_type(x509.RFC822Name):
                ids.add((IdType.ID_RFC822_ADDR, name.lower().encode()))
            for address in san.get_values_for_type(x509.IPAddress):
                ids.add((IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR, address.packed))
        self._ids = frozenset(ids)
        # strongSwan's default IDr for a certificate: its subject DN
        self.default_id = IDr(IdType.ID_DER_ASN1_DN, certificate.subject.public_bytes())

    @classmethod
    def from_pem(cls, certificate_pem: bytes, key_pem: bytes) -> GatewayCredential:
        """From PEM data: the certificate first, any further certificates are the chain."""
        certs = x509.load_pem_x509_certificates(certificate_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        return cls(certs[0], key, certs[1:])

    def vouches_for(self, identity: IDi | IDr) -> bool:
        data = identity.data.lower() if identity.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR) \
            else identity.data
        return (identity.id_type, data) in self._ids

    def certificate_payloads(self) -> list[Certificate]:
        return [Certificate(CertEncoding.X509_CERT_SIGNATURE, der) for der in (self._der, *self._chain_der)]


@dataclass(frozen=True)
class ResponderSettings:
    """What every IKE SA of one gateway shares (``[ikev2]``)."""

    ike_proposals: tuple[Proposal, ...]
    esp_proposals: tuple[Proposal, ...]
    allow_ts: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (ipaddress.ip_network("10.1.0.0/16"),)
    isolate_ts: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (ipaddress.ip_network("10.1.0.16/28"),)
    credential: GatewayCredential | None = None
    """Certificate and key of the gateway; None allows only EAP-only authentication."""
    eap_only: str = "auto"
    """Authenticate the gateway by EAP alone (RFC 5998) when the initiator
    offers it: 'yes', 'no', or 'auto': when ``eap_authenticates_gateway``
    and the initiator sent no CERTREQ (or there is no ``credential``)."""
    eap_authenticates_gateway: bool = False
    """The first EAP method offered authenticates the gateway and makes
    keys (EAP-TTLS), as EAP-only authentication needs (RFC 5998 §4)."""
    pool: VirtualIpPool | None = None
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    nat_port: int = 4500
    cookie_threshold: int = 50
    max_half_open: int = 10000
    max_half_open_per_peer: int = 10
    """Half-open IKE SAs (no IKE_AUTH done yet) one peer address may have
    (strongSwan's block_threshold): one address cannot take the table."""
    max_fragment_memory: int = 16 * 1024 * 1024
    """Bytes all IKE SAs together may hold of unfinished fragmented messages."""
    fragment_size: int = DEFAULT_FRAGMENT_SIZE
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    half_open_timeout: float = 30.0
    """strongSwan's charon.half_open_timeout: IKE_SA_INIT answered, no IKE_AUTH."""
    auth_timeout: float = 60.0
    """Most seconds between two IKE_AUTH requests of one EAP conversation."""
    max_auth_time: float = 300.0
    """Most seconds from IKE_SA_INIT to the IKE SA established."""
    ike_lifetime: float = 24 * 3600.0
    child_lifetime: float = 8 * 3600.0
    max_child_sas: int = 16
    """CHILD_SAs per IKE SA; more get NO_ADDITIONAL_SAS."""
    name: str = "ikev2"


@dataclass(slots=True)
class ResponderCounters:
    """Counters, in the spirit of strongSwan's counters plugin."""

    ike_sa_init_requests: int = 0
    ike_sa_init_responses: int = 0
    cookies_sent: int = 0
    invalid_ke_sent: int = 0
    no_proposal_chosen: int = 0
    half_open_dropped: int = 0
    half_open_peer_dropped: int = 0
    """IKE_SA_INIT requests ignored because their address had its share of half-open IKE SAs."""
    retransmits_answered: int = 0
    integrity_failures: int = 0
    malformed: int = 0
    unknown_spi: int = 0
    established: int = 0
    authentication_failures: int = 0
    child_sas: int = 0
    ike_rekeys: int = 0
    child_rekeys: int = 0


@dataclass(frozen=True, slots=True)
class OutgoingDatagram:
    """A datagram to send from our port ``local_port`` to ``remote``."""

    data: bytes
    local_port: int
    remote: tuple[str, int]


# -- state --------------------------------------------------------------------------------------


class IkeSaState(Enum):
    HALF_OPEN = "half-open"
    """IKE_SA_INIT answered, no IKE_AUTH yet."""
    AUTHENTICATING = "authenticating"
    """IKE_AUTH exchanges running (EAP)."""
    ESTABLISHED = "established"
    DELETED = "deleted"


@dataclass(eq=False, slots=True)
class ChildSa:
    """One negotiated CHILD_SA pair (RFC 7296 §2.17): what the kernel
    installs (see ``transports.ikev2.kernel.KernelChildSa``)."""

    unique_id: int
    reqid: int
    local: str
    remote: str
    inbound_spi: bytes
    """Our SPI: the peer sends ESP with it."""
    outbound_spi: bytes
    """The peer's SPI: we send ESP with it."""
    proposal: Proposal
    algorithms: Algorithms
    keys: crypto.ChildSaKeys = field(repr=False)
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    encap: tuple[int, int] | None
    created: float
    access: str


@dataclass(eq=False, slots=True)
class IkeSa:
    """One IKE SA as responder.  Everything the responder keeps for an initiator."""

    unique_id: int
    spi_i: bytes
    spi_r: bytes
    remote: tuple[str, int]
    local: tuple[str, int]
    created: float
    state: IkeSaState = IkeSaState.HALF_OPEN
    last_seen: float = 0.0
    established_at: float = 0.0
    keys: crypto.IkeSaKeys | None = field(default=None, repr=False)
    proposal: Proposal | None = None
    init_request: bytes = field(default=b"", repr=False)
    init_response: bytes = field(default=b"", repr=False)
    nonce_i: bytes = field(default=b"", repr=False)
    nonce_r: bytes = field(default=b"", repr=False)
    peer_fragmentation: bool = False
    peer_hashes: tuple[int, ...] = ()
    peer_behind_nat: bool = False
    local_behind_nat: bool = False
    # message IDs (§2.2): the next request expected, the last response sent
    next_mid: int = 0
    last_request_hash: bytes = b""
    last_response: tuple[bytes, ...] = ()
    busy: bool = False
    reassembly: FragmentReassembly | None = field(default=None, repr=False)
    first_fragment_hash: bytes = b""
    half_open_peer: str | None = None
    """The peer address this SA counts against while not established."""
    # our own requests (DELETE on expiry)
    own_mid: int = 0
    # IKE_AUTH
    id_i: IDi | None = None
    id_r: IDr | None = None
    eap_only: bool = False
    eap: object = field(default=None, repr=False)
    eap_done: bool = False
    msk: bytes | None = field(default=None, repr=False)
    octets_i: bytes = field(default=b"", repr=False)
    octets_r: bytes = field(default=b"", repr=False)
    child_request: tuple = field(default=(), repr=False)
    identity: str = ""
    decision: object = None
    virtual_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    children: list[ChildSa] = field(default_factory=list)
    delete_after_response: bool = False
    init_key: tuple = ()
    initial_contact: bool = False

    @property
    def name(self) -> str:
        return f"[{self.unique_id}]"

    @property
    def half_open(self) -> bool:
        return self.state in (IkeSaState.HALF_OPEN, IkeSaState.AUTHENTICATING)


# -- traffic selectors --------------------------------------------------------------------------


def narrow_traffic_selectors(requested: Iterable, ours: Iterable[TrafficSelector]) -> tuple[TrafficSelector, ...]:
    """The parts of the initiator's selectors that ours allow (RFC 7296 §2.9):
    per pair of the same IP version, the intersection of the address ranges,
    protocols (0 is any) and port ranges.  Selectors of other types are
    ignored.  Empty when nothing overlaps (TS_UNACCEPTABLE)."""
    out: list[TrafficSelector] = []
    requested = [ts for ts in requested if isinstance(ts, TrafficSelector)]
    for mine in ours:
        for theirs in requested:
            if mine.start.version != theirs.start.version:
                continue
            if mine.ip_protocol and theirs.ip_protocol and mine.ip_protocol != theirs.ip_protocol:
                continue
            start, end = max(mine.start, theirs.start), min(mine.end, theirs.end)
            start_port, end_port = max(mine.start_port, theirs.start_port), min(mine.end_port, theirs.end_port)
            if start > end or start_port > end_port:
                continue
            narrowed = TrafficSelector(start, end, mine.ip_protocol or theirs.ip_protocol, start_port, end_port)
            if narrowed not in out:
                out.append(narrowed)
    return tuple(out)


def _describe_ts(selectors: Iterable[TrafficSelector]) -> str:
    return " ".join(str(ts) for ts in selectors)


# -- signatures ---------------------------------------------------------------------------------

_RFC4754_BY_CURVE = {256: (AuthMethod.ECDSA_SHA256_P256, hashes.SHA256, 32),
                     384: (AuthMethod.ECDSA_SHA384_P384, hashes.SHA384, 48),
                     521: (AuthMethod.ECDSA_SHA512_P521, hashes.SHA512, 66)}
_SIGNATURE_NAMES = {
    ("ecdsa", crypto.HashAlgorithm.SHA2_256): "ECDSA_WITH_SHA256_DER",
    ("ecdsa", crypto.HashAlgorithm.SHA2_384): "ECDSA_WITH_SHA384_DER",
    ("ecdsa", crypto.HashAlgorithm.SHA2_512): "ECDSA_WITH_SHA512_DER",
    ("rsa", crypto.HashAlgorithm.SHA2_256): "RSA_EMSA_PKCS1_SHA2_256",
    ("rsa", crypto.HashAlgorithm.SHA2_384): "RSA_EMSA_PKCS1_SHA2_384",
    ("rsa", crypto.HashAlgorithm.SHA2_512): "RSA_EMSA_PKCS1_SHA2_512",
}
_OUR_HASHES = (crypto.HashAlgorithm.SHA2_256, crypto.HashAlgorithm.SHA2_384, crypto.HashAlgorithm.SHA2_512)


def gateway_signature(key, octets: bytes, peer_hashes: Sequence[int]) -> tuple[Authentication, str]:
    """The gateway's signature AUTH and its name for the log: RFC 7427 with
    a hash the initiator announced (the key's natural hash first), else the
    RFC 4754 ECDSA method for the key's curve or RSA with SHA-1 (method 1)."""
    if peer_hashes or isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            return crypto.sign_auth(key, octets), "ED25519" if isinstance(key, ed25519.Ed25519PrivateKey) \
                else "ED448"
        preferred = crypto.default_hash_for(key)
        choices = [preferred] + [h for h in _OUR_HASHES if h != preferred]
        chosen = next((h for h in choices if h in peer_hashes), None)
        if chosen is not None:
            kind = "ecdsa" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"
            return crypto.sign_auth(key, octets, hash_algorithm=chosen), _SIGNATURE_NAMES[(kind, chosen)]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        method, digest, size = _RFC4754_BY_CURVE[key.curve.key_size]
        r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(digest())))
        return (Authentication(method, r.to_bytes(size, "big") + s.to_bytes(size, "big")),
                f"ECDSA-{key.curve.key_size} signature")
    if isinstance(key, rsa.RSAPrivateKey):
        return (Authentication(AuthMethod.RSA_DIGITAL_SIGNATURE, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())),
                "RSA signature")
    raise ValueError(f"cannot sign with a {type(key).__name__}")


# -- the responder ------------------------------------------------------------------------------


class _Refused(Exception):
    """A request answered with one error notify (and, in IKE_AUTH, the end
    of the IKE SA)."""

    def __init__(self, notify: NotifyType, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.notify = notify
        self.reason = reason
        self.data = data


def _eap_only_wanted(settings: ResponderSettings, *, asks_certificate: bool) -> bool:
    """Whether the gateway authenticates by EAP alone with an initiator
    that offered it (``[ikev2] eap_only``)."""
    if settings.eap_only == "yes" or settings.credential is None:
        return settings.eap_only != "no"
    # strongSwan initiators offer EAP-only whatever they expect of the
    # gateway; one that wants a certificate AUTH asks for the certificate
    return settings.eap_only == "auto" and settings.eap_authenticates_gateway and not asks_certificate


def _first(payloads: Sequence[Payload], kind: type):
    for payload in payloads:
        if isinstance(payload, kind):
            return payload
    return None


def _notify(payloads: Sequence[Payload], notify_type: int) -> Notify | None:
    for payload in payloads:
        if isinstance(payload, Notify) and payload.notify_type == notify_type:
            return payload
    return None


def _transforms_of(proposal: Proposal, kind: int) -> list[Transform]:
    return [t for t in proposal.transforms if t.transform_type == kind]


def _with_group(proposals: Iterable[Proposal], group: int) -> tuple[Proposal, ...]:
    """The proposals that offer DH ``group``, reduced to that group."""
    out = []
    for proposal in proposals:
        if any(t.transform_id == group for t in _transforms_of(proposal, TransformType.DH)):
            transforms = tuple(t for t in proposal.transforms
                               if t.transform_type != TransformType.DH or t.transform_id == group)
            out.append(dataclasses.replace(proposal, transforms=transforms))
    return tuple(out)


def _select_with_ke(configured: Sequence[Proposal], received: Sequence[Proposal],
                    ke_group: int | None) -> Proposal | None:
    """strongSwan's choice, except that a proposal matching with the group
    of the initiator's KE wins over one that would need INVALID_KE_PAYLOAD."""
    chosen = select_proposal(configured, received)
    if chosen is None or ke_group is None or _dh_group(chosen) in (None, ke_group):
        return chosen
    return select_proposal(_with_group(configured, ke_group), _with_group(received, ke_group)) or chosen


def _dh_group(proposal: Proposal) -> int | None:
    groups = [t.transform_id for t in _transforms_of(proposal, TransformType.DH) if t.transform_id]
    return groups[0] if groups else None


class IkeResponder:
    """All IKE SAs of one gateway (see the module docstring).

    :param settings: the :class:`ResponderSettings`.
    :param eap_factory: ``eap_factory(peer: PeerInfo) -> IEapSession``.
    :param send: called with each :class:`OutgoingDatagram`.
    :param kernel: ``install(child)``/``remove(child)`` for CHILD_SAs
        (``transports.ikev2.kernel``); by default nothing is installed.
    :param now: the time the responder starts at (for the cookie secret).
    """

    def __init__(self, settings: ResponderSettings, eap_factory: Callable, send: Callable[[OutgoingDatagram], None],
                 *, kernel=None, now: float = 0.0, random: Callable[[int], bytes] = os.urandom) -> None:
        self.settings = settings
        self.eap_factory = eap_factory
        self.send = send
        self.kernel = kernel if kernel is not None else NoKernel()
        self.random = random
        self.counters = ResponderCounters()
        self.cookies = crypto.CookieSecret(now)
        self._sas: dict[bytes, IkeSa] = {}
        # IKE SAs without IKE_AUTH yet, oldest first, and those in IKE_AUTH, least recently heard first
        self._half_open: OrderedDict[bytes, IkeSa] = OrderedDict()
        self._authenticating: OrderedDict[bytes, IkeSa] = OrderedDict()
        # (SPIi, host, port) of IKE SAs still connecting, for IKE_SA_INIT retransmits
        self._by_init: dict[tuple[bytes, str, int], IkeSa] = {}
        self._child_spis: set[bytes] = set()
        # peer address -> its IKE SAs not established yet (max_half_open_per_peer)
        self._half_open_by_peer: dict[str, int] = {}
        self.fragment_budget = FragmentBudget(settings.max_fragment_memory)
        self._next_ike_id = 1
        self._next_child_id = 1
        self._next_reqid = 1
        self.now = now
        self.closed = False

    # -- inspection ---------------------------------------------------------------------------

    @property
    def half_open(self) -> int:
        """IKE SAs not yet established (strongSwan's half-open count)."""
        return len(self._half_open) + len(self._authenticating)

    @property
    def ike_sas(self) -> list[IkeSa]:
        return list(self._sas.values())

    def ike_sa(self, spi_r: bytes) -> IkeSa | None:
        return self._sas.get(spi_r)

    # -- input --------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, local: tuple[str, int], remote: tuple[str, int], now: float) -> None:
        """One UDP datagram received on ``local`` (our address and port) from ``remote``."""
        self.now = now
        if self.closed:
            return
        if local[1] == self.settings.nat_port:
            try:
                kind, data = unframe_nat_t(data)
            except InvalidSyntax:
                return
            if kind is not NatTKind.IKE:
                # NAT-keepalives; ESP is the kernel's business when it does ESP-in-UDP
                return
        if len(data) > self.settings.max_message_size:
            self.counters.malformed += 1
            log.info("received message of {size} bytes from {host}[{port}], more than the {limit} accepted, "
                     "dropped", size=len(data), host=remote[0], port=remote[1],
                     limit=self.settings.max_message_size, log_limit=("oversized IKE message", remote[0]))
            return
        try:
            header = IkeHeader.parse(data)
        except InvalidMajorVersion as err:
            self.counters.malformed += 1
            self._answer_major_version(data, err, local, remote)
            return
        except IkeProtocolError as err:
            self.counters.malformed += 1
            log.debug("invalid IKE header from {host}[{port}], dropped: {error}", host=remote[0], port=remote[1],
                      error=str(err))
            return
        if header.response:
            self._response_received(header, remote)
            return
        if header.exchange == ExchangeType.IKE_SA_INIT and header.spi_r == _ZERO_SPI:
            self._ike_sa_init(data, header, local, remote)
            return
        sa = self._sas.get(header.spi_r)
        if sa is None or sa.spi_i != header.spi_i:
            self.counters.unknown_spi += 1
            log.debug("received {exchange} request for unknown IKE_SA from {host}[{port}], ignored",
                      exchange=_exchange_name(header.exchange), host=remote[0], port=remote[1])
            return
        if not header.initiator:
            log.debug("request without the Initiator flag for IKE_SA {name}{sa}, ignored",
                      name=self.settings.name, sa=sa.name)
            return
        self._request(sa, data, header, local, remote)

    def _answer_major_version(self, data: bytes, err: InvalidMajorVersion, local, remote) -> None:
        # RFC 7296 §2.5: answer an IKE_SA_INIT request of another major version, unauthenticated
        if len(data) < HEADER_SIZE or data[19] & 0x20 or data[18] != ExchangeType.IKE_SA_INIT:
            return
        log.info("received IKE version {major}.{minor} message from {host}[{port}], sending "
                 "INVALID_MAJOR_VERSION", major=err.major, minor=err.minor, host=remote[0], port=remote[1],
                 log_limit=("IKE message of another major version", remote[0]))
        answer = IkeMessage(data[:8], bytes(8), ExchangeType.IKE_SA_INIT, int.from_bytes(data[20:24], "big"),
                            (err.to_notify(),), response=True)
        self._emit(answer.build(), local[1], remote)

    # -- IKE_SA_INIT ------------------------------------------------------------------------------

    def _ike_sa_init(self, data: bytes, header: IkeHeader, local, remote) -> None:
        settings = self.settings
        self.counters.ike_sa_init_requests += 1
        init_key = (header.spi_i, remote[0], remote[1])
        existing = self._by_init.get(init_key)
        if existing is not None:
            if existing.init_request == data and existing.init_response:
                self.counters.retransmits_answered += 1
                log.info("received retransmit of request with ID 0, retransmitting response",
                         log_limit=("IKE_SA_INIT retransmit", remote[0]))
                self._emit(existing.init_response, local[1], remote)
            else:
                log.debug("received another IKE_SA_INIT for IKE_SA {name}{sa}, ignored", name=settings.name,
                          sa=existing.name)
            return
        if not header.initiator or header.message_id != 0:
            self.counters.malformed += 1
            return
        half_open = len(self._half_open) + len(self._authenticating)
        if half_open >= settings.max_half_open:
            self.counters.half_open_dropped += 1
            # one window for all addresses: a flood of spoofed ones gets here
            log.warn("ignoring IKE_SA setup from {host}, half open IKE_SA count of {n} exceeds limit of "
                     "{limit}", host=remote[0], n=half_open, limit=settings.max_half_open,
                     log_limit=("IKE_SA_INIT beyond max_half_open dropped", "any address"))
            return
        if half_open >= settings.cookie_threshold and not self._cookie_ok(data, header, local, remote):
            return
        # after the cookie: an address that answers cookies still gets only its share
        if self._half_open_by_peer.get(remote[0], 0) >= settings.max_half_open_per_peer:
            self.counters.half_open_dropped += 1
            self.counters.half_open_peer_dropped += 1
            log.warn("ignoring IKE_SA setup from {host}: it has {n} half-open IKE_SAs, the limit per "
                     "peer", host=remote[0], n=settings.max_half_open_per_peer,
                     log_limit=("IKE_SA_INIT beyond max_half_open_per_peer dropped", remote[0]))
            return
        try:
            request = IkeMessage.parse(data)
        except IkeProtocolError as err:
            self.counters.malformed += 1
            log.info("received invalid IKE_SA_INIT request from {host}[{port}]: {error}; sending {notify}",
                     host=remote[0], port=remote[1], error=str(err), notify=err.notify.name,
                     log_limit=("invalid IKE_SA_INIT request", remote[0]))
            self._init_error(header, err.notify, err.notify_data, local, remote)
            return
        payloads = request.payloads
        sa_payload = _first(payloads, SecurityAssociation)
        ke = _first(payloads, KeyExchange)
        nonce = _first(payloads, Nonce)
        if sa_payload is None or ke is None or nonce is None:
            self.counters.malformed += 1
            log.info("IKE_SA_INIT request from {host}[{port}] lacks {what}, sending INVALID_SYNTAX",
                     host=remote[0], port=remote[1],
                     what=", ".join(n for n, p in (("SA", sa_payload), ("KE", ke), ("Ni", nonce)) if p is None),
                     log_limit=("invalid IKE_SA_INIT request", remote[0]))
            self._init_error(header, NotifyType.INVALID_SYNTAX, b"", local, remote)
            return
        log.debug("parsed {message}", message=_Described(request))
        log.info("{host} is initiating an IKE_SA", host=remote[0])
        chosen = _select_with_ke(settings.ike_proposals,
                                 [p for p in sa_payload.proposals if p.protocol == ProtocolId.IKE], ke.group)
        if chosen is None:
            self.counters.no_proposal_chosen += 1
            if repeats.allow("unacceptable IKE proposals", remote[0], log, LogLevel.info):
                log.info("received proposals: {received}", received=", ".join(
                    describe_proposal(p) for p in sa_payload.proposals))
                log.info("configured proposals: {configured}", configured=", ".join(
                    describe_proposal(p) for p in settings.ike_proposals))
                log.info("received proposals unacceptable, sending NO_PROPOSAL_CHOSEN")
            self._init_error(header, NotifyType.NO_PROPOSAL_CHOSEN, b"", local, remote)
            return
        algorithms = Algorithms.from_proposal(chosen)
        if ke.group != algorithms.dh_group:
            self.counters.invalid_ke_sent += 1
            log.info("DH group {theirs} unacceptable, requesting {ours}", theirs=_group_name(ke.group),
                     ours=_group_name(algorithms.dh_group))
            self._init_error(header, NotifyType.INVALID_KE_PAYLOAD, algorithms.dh_group.to_bytes(2, "big"),
                             local, remote)
            return
        dh = crypto.DiffieHellman.generate(algorithms.dh_group)
        try:
            shared = dh.shared_secret(ke.data)
        except crypto.InvalidKeyExchangeData as err:
            self.counters.no_proposal_chosen += 1
            log.info("applying DH public value failed ({error}), sending NO_PROPOSAL_CHOSEN", error=err.reason,
                     log_limit=("invalid IKE key exchange", remote[0]))
            self._init_error(header, NotifyType.NO_PROPOSAL_CHOSEN, b"", local, remote)
            return
        spi_r = self._new_spi_r()
        nonce_r = crypto.new_nonce()
        keys = crypto.derive_ike_sa_keys(algorithms, shared, nonce.data, nonce_r, header.spi_i, spi_r)
        sa = IkeSa(self._next_ike_id, header.spi_i, spi_r, remote, local, self.now, last_seen=self.now, keys=keys,
                   proposal=chosen, init_request=data, nonce_i=nonce.data, nonce_r=nonce_r)
        self._next_ike_id += 1
        log.info("selected proposal: {proposal}", proposal=_Proposal(chosen))

        response = [SecurityAssociation((chosen,)), KeyExchange(dh.group, dh.public_value), Nonce(nonce_r)]
        natd_source = [p.data for p in payloads
                       if isinstance(p, Notify) and p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
        natd_destination = _notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
        if natd_source or natd_destination is not None:
            peer_hash = crypto.nat_detection_hash(header.spi_i, _ZERO_SPI, remote[0], remote[1])
            sa.peer_behind_nat = peer_hash not in natd_source
            if natd_destination is not None:
                sa.local_behind_nat = natd_destination.data != crypto.nat_detection_hash(
                    header.spi_i, _ZERO_SPI, local[0], local[1])
            if sa.local_behind_nat:
                log.info("local host is behind NAT, sending keep alives")
            if sa.peer_behind_nat:
                log.info("remote host is behind NAT")
            response.append(Notify(NotifyType.NAT_DETECTION_SOURCE_IP,
                                   crypto.nat_detection_hash(header.spi_i, spi_r, local[0], local[1])))
            response.append(Notify(NotifyType.NAT_DETECTION_DESTINATION_IP,
                                   crypto.nat_detection_hash(header.spi_i, spi_r, remote[0], remote[1])))
        if _notify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None:
            sa.peer_fragmentation = True
            sa.reassembly = FragmentReassembly(max_size=MAX_REASSEMBLED_SIZE, budget=self.fragment_budget)
            response.append(Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        hash_algorithms = _notify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
        if hash_algorithms is not None:
            sa.peer_hashes = crypto.parse_signature_hash_algorithms(hash_algorithms.data)
        if settings.credential is not None:
            response.append(crypto.signature_hash_algorithms_notify())
        message = IkeMessage(header.spi_i, spi_r, ExchangeType.IKE_SA_INIT, 0, tuple(response), response=True)
        sa.init_response = message.build()
        sa.last_request_hash = hashlib.sha1(data).digest()
        sa.last_response = (sa.init_response,)
        sa.next_mid = 1
        sa.init_key = init_key
        self._sas[spi_r] = sa
        self._half_open[spi_r] = sa
        sa.half_open_peer = remote[0]
        self._half_open_by_peer[remote[0]] = self._half_open_by_peer.get(remote[0], 0) + 1
        self._by_init[init_key] = sa
        self.counters.ike_sa_init_responses += 1
        log.debug("generating {message}", message=_Described(message))
        self._emit(sa.init_response, local[1], remote)

    def _cookie_ok(self, data: bytes, header: IkeHeader, local, remote) -> bool:
        """Too many half-open SAs: only requests with our cookie go on (§2.6).
        Checked before the request is parsed in full; the COOKIE notify must
        come first, as §2.6 says."""
        nonce = find_payload(data, PayloadType.NONCE)
        if nonce is None:
            self.counters.malformed += 1
            return False
        if data[16] == PayloadType.NOTIFY:
            body = find_payload(data, PayloadType.NOTIFY)
            if body is not None and len(body) >= 4 and int.from_bytes(body[2:4], "big") == NotifyType.COOKIE:
                cookie = body[4 + body[1]:]
                if self.cookies.verify(cookie, nonce, remote[0], header.spi_i, self.now):
                    return True
                log.debug("received invalid cookie from {host}[{port}], sending a new one", host=remote[0],
                          port=remote[1])
        cookie = self.cookies.cookie(nonce, remote[0], header.spi_i, self.now)
        self.counters.cookies_sent += 1
        answer = IkeMessage(header.spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT, 0,
                            (Notify(NotifyType.COOKIE, cookie),), response=True)
        log.debug("sending COOKIE to {host}[{port}], {n} half-open IKE_SAs", host=remote[0], port=remote[1],
                  n=self.half_open)
        self._emit(answer.build(), local[1], remote)
        return False

    def _init_error(self, header: IkeHeader, notify: int, data: bytes, local, remote) -> None:
        # no state: SPIr stays zero, as in the COOKIE and INVALID_KE_PAYLOAD exchanges of §1.2/§2.6
        answer = IkeMessage(header.spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT, header.message_id,
                            (Notify(notify, data),), response=True)
        log.debug("generating {message}", message=_Described(answer))
        self._emit(answer.build(), local[1], remote)

    # -- protected requests ------------------------------------------------------------------------

    def _request(self, sa: IkeSa, data: bytes, header: IkeHeader, local, remote) -> None:
        mid = header.message_id
        if mid != sa.next_mid:
            if mid == sa.next_mid - 1 and sa.last_response and not sa.busy:
                if hashlib.sha1(data).digest() == sa.last_request_hash:
                    self.counters.retransmits_answered += 1
                    log.info("received retransmit of request with ID {mid}, retransmitting response", mid=mid,
                             log_limit=("IKE retransmit", remote[0]))
                    for datagram in sa.last_response:
                        self._emit(datagram, local[1], remote)
                # other fragments of a retransmitted request are not answered (RFC 7383 §2.6.1)
                return
            log.info("received message ID {mid}, expected {expected}, ignored", mid=mid, expected=sa.next_mid,
                     log_limit=("IKE request with an unexpected message ID", remote[0]))
            return
        if sa.busy:
            log.info("ignoring request with ID {mid}, already processing", mid=mid,
                     log_limit=("IKE request while one is processed", remote[0]))
            return
        try:
            message = IkeMessage.parse(data)
        except IkeProtocolError as err:
            # not authenticated yet: nothing may be said in reply (§2.21.2)
            self.counters.malformed += 1
            log.info("message parsing failed for IKE_SA {name}{sa}: {error}, dropped", name=self.settings.name,
                     sa=sa.name, error=str(err), log_limit=("malformed IKE message", remote[0]))
            return
        request_hash = b""
        try:
            if message.fragment is not None:
                if sa.reassembly is None:
                    log.info("received a fragment, but fragmentation was not negotiated, dropped",
                             log_limit=("malformed IKE message", remote[0]))
                    return
                inner = sa.reassembly.add(message, sa.keys.initiator_sk)
                if message.fragment.number == 1:
                    sa.first_fragment_hash = hashlib.sha1(data).digest()
                if inner is None:
                    log.debug("received fragment #{n} of {total}, waiting for complete IKE message",
                              n=message.fragment.number, total=message.fragment.total)
                    return
                request_hash = sa.first_fragment_hash
                log.info("received fragment #{n} of {total}, reassembled fragmented IKE message ({size} bytes)",
                         n=message.fragment.number, total=message.fragment.total, size=_inner_size(inner))
            elif message.encrypted is not None:
                inner = message.unseal(sa.keys.initiator_sk)
                request_hash = hashlib.sha1(data).digest()
            else:
                self.counters.malformed += 1
                log.info("{exchange} request without encrypted payload for IKE_SA {name}{sa}, dropped",
                         exchange=_exchange_name(message.exchange), name=self.settings.name, sa=sa.name,
                         log_limit=("malformed IKE message", remote[0]))
                return
        except IntegrityCheckFailed:
            self.counters.integrity_failures += 1
            log.info("integrity check failed for IKE_SA {name}{sa} from {host}[{port}], message dropped",
                     name=self.settings.name, sa=sa.name, host=remote[0], port=remote[1],
                     log_limit=("IKE integrity check failure", remote[0]))
            return
        except InvalidFragment as err:
            log.info("invalid fragment for IKE_SA {name}{sa}, dropped: {error}", name=self.settings.name,
                     sa=sa.name, error=str(err), log_limit=("invalid IKE fragment", remote[0]))
            return
        except IkeProtocolError as err:
            # the ICV verified: the peer is who it claims, and is told what is wrong
            self.counters.malformed += 1
            log.info("received invalid {exchange} request for IKE_SA {name}{sa}: {error}, sending {notify}",
                     exchange=_exchange_name(message.exchange), name=self.settings.name, sa=sa.name,
                     error=str(err), notify=err.notify.name, log_limit=("invalid IKE request", remote[0]))
            if sa.state is not IkeSaState.ESTABLISHED:
                sa.delete_after_response = True
            sa.remote, sa.local = remote, local
            self._respond(sa, message.exchange, mid, [err.to_notify()], hashlib.sha1(data).digest())
            return
        sa.remote, sa.local = remote, local
        sa.last_seen = self.now
        if sa.spi_r in self._authenticating:
            self._authenticating.move_to_end(sa.spi_r)
        log.info("parsed {message}", message=_Described(message, inner))
        exchange = message.exchange
        try:
            if exchange == ExchangeType.IKE_AUTH and sa.state in (IkeSaState.HALF_OPEN, IkeSaState.AUTHENTICATING):
                result = self._ike_auth(sa, inner)
            elif exchange == ExchangeType.INFORMATIONAL and sa.state is not IkeSaState.HALF_OPEN:
                result = self._informational(sa, inner)
            elif exchange == ExchangeType.CREATE_CHILD_SA and sa.state is IkeSaState.ESTABLISHED:
                result = self._create_child_sa(sa, inner)
            else:
                log.info("{exchange} request not expected in state {state} of IKE_SA {name}{sa}, ignored",
                         exchange=_exchange_name(exchange), state=sa.state.value, name=self.settings.name,
                         sa=sa.name, log_limit=("unexpected IKE request", remote[0]))
                return
        except _Refused as refused:
            result = self._refused(sa, exchange, refused)
        except Exception:
            log.failure("internal error processing {exchange} request for IKE_SA {name}{sa}",
                        exchange=_exchange_name(exchange), name=self.settings.name, sa=sa.name)
            self._remove(sa, "internal error")
            return
        if isinstance(result, defer.Deferred):
            sa.busy = True
            result.addCallbacks(self._answered, self._failed, callbackArgs=(sa, exchange, mid, request_hash),
                                errbackArgs=(sa, exchange))
            return
        self._respond(sa, exchange, mid, result, request_hash)

    def _answered(self, payloads, sa: IkeSa, exchange: int, mid: int, request_hash: bytes) -> None:
        sa.busy = False
        if sa.state is IkeSaState.DELETED or self.closed:
            return
        self._respond(sa, exchange, mid, payloads, request_hash)

    def _failed(self, failure, sa: IkeSa, exchange: int) -> None:
        sa.busy = False
        log.failure("internal error processing {exchange} request for IKE_SA {name}{sa}", failure,
                    exchange=_exchange_name(exchange), name=self.settings.name, sa=sa.name)
        if sa.state is not IkeSaState.DELETED:
            self._remove(sa, "internal error")

    def _refused(self, sa: IkeSa, exchange: int, refused: _Refused) -> list[Payload]:
        if exchange == ExchangeType.IKE_AUTH:
            self.counters.authentication_failures += 1
            sa.delete_after_response = True
        log.info("{reason}, sending {notify}", reason=refused.reason, notify=NotifyType(refused.notify).name)
        return [Notify(refused.notify, refused.data)]

    def _respond(self, sa: IkeSa, exchange: int, mid: int, payloads: Sequence[Payload], request_hash: bytes) -> None:
        header = IkeMessage(sa.spi_i, sa.spi_r, exchange, mid, response=True)
        whole = header.seal(payloads, sa.keys.responder_sk)
        nat_t = sa.local[1] == self.settings.nat_port
        budget = message_budget(self.settings.fragment_size, ipv6=":" in sa.remote[0], nat_t=nat_t)
        log.info("generating {message}", message=_Described(header, payloads))
        if len(whole) > budget and sa.peer_fragmentation:
            datagrams = tuple(fragment_message(header, payloads, sa.keys.responder_sk, budget))
            log.info("splitting IKE message ({size} bytes) into {n} fragments", size=len(whole), n=len(datagrams))
        else:
            datagrams = (whole,)
        sa.next_mid = mid + 1
        sa.last_request_hash = request_hash
        sa.last_response = datagrams
        for datagram in datagrams:
            self._emit(datagram, sa.local[1], sa.remote)
        if sa.delete_after_response:
            self._remove(sa, None)

    def _emit(self, data: bytes, local_port: int, remote) -> None:
        if local_port == self.settings.nat_port:
            data = frame_nat_t(data)
        self.send(OutgoingDatagram(data, local_port, (remote[0], remote[1])))

    # -- IKE_AUTH ---------------------------------------------------------------------------------

    def _ike_auth(self, sa: IkeSa, inner: Sequence[Payload]):
        if sa.state is IkeSaState.HALF_OPEN:
            return self._first_ike_auth(sa, inner)
        if sa.eap_done:
            return self._final_ike_auth(sa, inner)
        eap = _first(inner, Eap)
        if eap is None:
            raise _Refused(NotifyType.AUTHENTICATION_FAILED, f"IKE_AUTH request of IKE_SA {self.settings.name}"
                           f"{sa.name} without EAP payload during EAP")
        d = defer.maybeDeferred(sa.eap.receive, eap.data)
        d.addCallback(self._eap_outcome, sa, eap.data[1])
        return d

    def _first_ike_auth(self, sa: IkeSa, inner: Sequence[Payload]) -> list[Payload]:
        settings = self.settings
        sa.state = IkeSaState.AUTHENTICATING
        self._half_open.pop(sa.spi_r, None)
        self._authenticating[sa.spi_r] = sa
        id_i = _first(inner, IDi)
        if id_i is None:
            raise _Refused(NotifyType.AUTHENTICATION_FAILED, "IDi payload missing")
        sa.id_i = id_i
        sa.identity = str(id_i)
        if _first(inner, Authentication) is not None:
            raise _Refused(NotifyType.AUTHENTICATION_FAILED,
                           f"peer '{id_i}' authenticates with an AUTH payload, only EAP is configured for "
                           "initiators")
        offered = _notify(inner, NotifyType.EAP_ONLY_AUTHENTICATION) is not None
        if offered and _eap_only_wanted(settings, asks_certificate=_first(inner, CertRequest) is not None):
            sa.eap_only = True
        elif settings.credential is None:
            raise _Refused(NotifyType.AUTHENTICATION_FAILED,
                           "configured EAP-only authentication, but peer does not support it" if not offered
                           else "no gateway certificate configured")
        wanted = _first(inner, IDr)
        credential = settings.credential
        if wanted is not None and (credential is None or credential.vouches_for(wanted)):
            id_r = IDr(wanted.id_type, wanted.data)
        elif credential is not None:
            id_r = credential.default_id
        else:
            # strongSwan's default without a certificate: our address
            id_r = IDr.of(ipaddress.ip_address(sa.local[0]))
        sa.id_r = id_r
        keys = sa.keys
        sa.octets_i = crypto.signed_octets(sa.init_request, sa.nonce_r, keys.prf, keys.sk_pi, id_i.build_body())
        sa.octets_r = crypto.signed_octets(sa.init_response, sa.nonce_i, keys.prf, keys.sk_pr, id_r.build_body())
        sa.child_request = (_first(inner, SecurityAssociation), _first(inner, TSi), _first(inner, TSr),
                            _first(inner, Configuration))
        sa.initial_contact = _notify(inner, NotifyType.INITIAL_CONTACT) is not None
        response: list[Payload] = [id_r]
        if not sa.eap_only:
            response += credential.certificate_payloads()
            auth, scheme = gateway_signature(credential.private_key, sa.octets_r, sa.peer_hashes)
            response.append(auth)
            log.info("authentication of '{me}' (myself) with {scheme} successful", me=str(id_r), scheme=scheme)
        else:
            log.info("peer '{peer}' requested EAP-only authentication (RFC 5998), no certificate AUTH sent",
                     peer=str(id_i))
        peer = PeerInfo(transport=settings.name, address=sa.remote[0], port=sa.remote[1], identity=str(id_i))
        sa.eap = self.eap_factory(peer)
        response.append(Eap(sa.eap.start()))
        return response

    def _eap_outcome(self, outcome: EapOutcome, sa: IkeSa, identifier: int) -> list[Payload]:
        if sa.state is IkeSaState.DELETED:
            return []
        status = outcome.status
        if status is EapStatus.CONTINUE:
            return [Eap(outcome.packet)]
        decision = outcome.decision
        # RFC 5998 §4: without a gateway certificate only a mutual, key-generating method
        # (EAP-TTLS) authenticates the gateway; EAP-MD5 would leave it unauthenticated
        weak = status is EapStatus.SUCCESS and sa.eap_only and not outcome.msk
        if status is EapStatus.SUCCESS and not weak and (decision is None or getattr(decision, "access", None)
                                                         in ("allowed", "isolate")):
            sa.eap_done = True
            sa.msk = outcome.msk
            sa.decision = decision
            if outcome.identity:
                sa.identity = outcome.identity
            return [Eap(outcome.packet)]
        # failure, a denied endpoint, or an EAP packet the conversation cannot go on with
        self.counters.authentication_failures += 1
        sa.delete_after_response = True
        if weak:
            reason = "EAP-only authentication (RFC 5998) needs a key-generating EAP method"
        elif status is EapStatus.SUCCESS:
            reason = f"access {getattr(decision, 'access', 'denied')} by the posture assessment"
        else:
            reason = outcome.reason or "EAP authentication failed"
        if outcome.packet and len(outcome.packet) > 1:
            identifier = outcome.packet[1]
        failure = outcome.packet if status is EapStatus.FAILURE and outcome.packet else bytes((4, identifier, 0, 4))
        # no AUTHENTICATION_FAILED beside the EAP-Failure (strongSwan's
        # responder leaves it out too): the client reports the EAP failure
        log.info("EAP authentication of '{peer}' failed: {reason}; sending EAP_FAILURE",
                 peer=outcome.identity or sa.identity, reason=reason)
        return [Eap(failure)]

    def _final_ike_auth(self, sa: IkeSa, inner: Sequence[Payload]) -> list[Payload]:
        auth = _first(inner, Authentication)
        keys = sa.keys
        secret_i = sa.msk if sa.msk else keys.sk_pi
        if auth is None or auth.method != AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE or \
                not hmac.compare_digest(auth.data, crypto.shared_key_auth(keys.prf, secret_i, sa.octets_i)):
            raise _Refused(NotifyType.AUTHENTICATION_FAILED, "verification of AUTH payload with"
                           f"{'' if sa.msk else 'out'} EAP MSK failed")
        log.info("authentication of '{peer}' with EAP successful", peer=str(sa.id_i))
        secret_r = sa.msk if sa.msk else keys.sk_pr
        response: list[Payload] = [Authentication(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                                                  crypto.shared_key_auth(keys.prf, secret_r, sa.octets_r))]
        if sa.eap_only:
            log.info("authentication of '{me}' (myself) with EAP successful", me=str(sa.id_r))
        self._established(sa)
        sa_payload, ts_i, ts_r, cp = sa.child_request
        sa.child_request = ()
        vip_ok = True
        if cp is not None and cp.cfg_type == CfgType.CFG_REQUEST:
            reply = self._configuration(sa, cp)
            if reply is None:
                vip_ok = False
                if sa_payload is not None:
                    response.append(Notify(NotifyType.INTERNAL_ADDRESS_FAILURE))
            else:
                response.append(reply)
        if sa_payload is not None and vip_ok:
            try:
                response += self._new_child(sa, sa_payload, ts_i, ts_r, sa.nonce_i, sa.nonce_r, None, None)
            except _Refused as refused:
                # the IKE SA stands, only the CHILD_SA is refused (§1.2)
                log.info("{reason}, sending {notify}", reason=refused.reason, notify=NotifyType(refused.notify).name)
                response.append(Notify(refused.notify, refused.data))
        return response

    def _established(self, sa: IkeSa) -> None:
        sa.state = IkeSaState.ESTABLISHED
        sa.established_at = self.now
        sa.eap = None
        self._authenticating.pop(sa.spi_r, None)
        self._no_longer_half_open(sa)
        self._by_init.pop(sa.init_key, None)
        sa.init_request = b""  # the AUTH octets are computed; drop the big values
        self.counters.established += 1
        log.info("IKE_SA {name}{sa} established between {local}[{me}]...{remote}[{peer}]", name=self.settings.name,
                 sa=sa.name, local=sa.local[0], me=str(sa.id_r), remote=sa.remote[0], peer=sa.identity)
        if sa.initial_contact:
            # RFC 7296 §2.4: the peer lost its state; its older IKE SAs (strongSwan: same
            # identities) are replaced, so their addresses and CHILD_SAs are free again
            for other in [o for o in self._sas.values() if o is not sa and o.state is IkeSaState.ESTABLISHED
                          and o.identity == sa.identity and o.id_r == sa.id_r]:
                log.info("deleting duplicate IKE_SA {name}{old} for peer '{peer}' due to INITIAL_CONTACT",
                         name=self.settings.name, old=other.name, peer=sa.identity)
                self._send_delete(other, Delete(ProtocolId.IKE))
                self._remove(other, None)

    def _configuration(self, sa: IkeSa, cp: Configuration) -> Configuration | None:
        """CFG_REPLY for a CFG_REQUEST (§2.19), None when an address was asked
        for and none can be given (INTERNAL_ADDRESS_FAILURE)."""
        pool = self.settings.pool
        wants = {ConfigurationAttributeType.INTERNAL_IP4_ADDRESS: 4, ConfigurationAttributeType.INTERNAL_IP6_ADDRESS: 6}
        asked = [a for a in cp.attributes if a.attribute_type in wants]
        attributes: list[ConfigurationAttribute] = []
        if asked:
            if pool is None:
                log.info("no virtual IP found for peer '{peer}': no pool configured", peer=sa.identity)
                return None
            for attribute in asked:
                if wants[attribute.attribute_type] != pool.network.version:
                    continue
                requested = attribute.address
                if requested is not None and int(requested) == 0:
                    requested = None
                try:
                    address = pool.acquire(sa.identity, requested)
                except PoolExhausted as err:
                    log.info("no virtual IP found for {requested} requested by '{peer}': {error}",
                             requested=str(requested or "%any"), peer=sa.identity, error=str(err))
                    return None
                sa.virtual_ip = address
                log.info("assigning virtual IP {address} to peer '{peer}'", address=str(address), peer=sa.identity)
                attributes.append(ConfigurationAttribute.ip4_address(address) if address.version == 4
                                  else ConfigurationAttribute.ip6_address(address))
                break
            if sa.virtual_ip is None:
                log.info("no virtual IP found for peer '{peer}': pool {pool} has no address of the family asked for",
                         peer=sa.identity, pool=str(pool.network))
                return None
        for server in self.settings.dns:
            attributes.append(ConfigurationAttribute.ip4_dns(server) if server.version == 4
                              else ConfigurationAttribute.ip6_dns(server))
        return Configuration(CfgType.CFG_REPLY, tuple(attributes))

    # -- CHILD_SAs --------------------------------------------------------------------------------

    def _access(self, sa: IkeSa) -> str:
        decision = sa.decision
        return "allowed" if decision is None else getattr(decision, "access", "denied")

    def _new_child(self, sa: IkeSa, sa_payload: SecurityAssociation, ts_i: TSi | None, ts_r: TSr | None,
                   nonce_i: bytes, nonce_r: bytes, ke: KeyExchange | None, dh_reply: list | None,
                   replaces: ChildSa | None = None) -> list[Payload]:
        """Select, narrow, key and install a CHILD_SA; the SA, [KE,] TSi and TSr
        payloads of the answer (the caller adds Nr).  ``_Refused`` for
        NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, TS_UNACCEPTABLE."""
        settings = self.settings
        if ts_i is None or ts_r is None:
            raise _Refused(NotifyType.INVALID_SYNTAX, "CHILD_SA request without traffic selectors")
        received = [p for p in sa_payload.proposals if p.protocol == ProtocolId.ESP and len(p.spi) == 4]
        in_ike_auth = dh_reply is None
        if in_ike_auth:
            chosen = select_proposal(settings.esp_proposals, received, skip_dh=True)
        else:
            chosen = _select_with_ke(settings.esp_proposals, received, ke.group if ke is not None else None)
        if chosen is None:
            self.counters.no_proposal_chosen += 1
            raise _Refused(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable proposal found for the CHILD_SA ("
                           f"received {', '.join(describe_proposal(p) for p in sa_payload.proposals)})")
        algorithms = Algorithms.from_proposal(chosen)
        shared = None
        if not in_ike_auth and algorithms.dh_group is not None:
            dh, shared = self._key_exchange(ke, algorithms.dh_group)
            dh_reply.append(KeyExchange(dh.group, dh.public_value))
        access = self._access(sa)
        networks = settings.isolate_ts if access == "isolate" else settings.allow_ts
        group = getattr(sa.decision, "enforcement", None)
        if group is not None:
            # the endpoint's groups may have networks of their own (group policy)
            networks = (group.isolate_ts if access == "isolate" else group.allow_ts) or networks
        ours_r = tuple(TrafficSelector.from_network(n) for n in networks)
        dynamic = sa.virtual_ip if sa.virtual_ip is not None else ipaddress.ip_address(sa.remote[0])
        ours_i = (TrafficSelector(dynamic, dynamic),)
        narrowed_i = narrow_traffic_selectors(ts_i.selectors, ours_i)
        narrowed_r = narrow_traffic_selectors(ts_r.selectors, ours_r)
        if not narrowed_i or not narrowed_r:
            raise _Refused(NotifyType.TS_UNACCEPTABLE, "traffic selectors "
                           f"{_describe_ts(t for t in ts_r.selectors if isinstance(t, TrafficSelector))} === "
                           f"{_describe_ts(t for t in ts_i.selectors if isinstance(t, TrafficSelector))} "
                           f"unacceptable for access '{access}'")
        if len(sa.children) >= settings.max_child_sas:
            raise _Refused(NotifyType.NO_ADDITIONAL_SAS, f"IKE_SA {settings.name}{sa.name} has "
                           f"{len(sa.children)} CHILD_SAs, the most allowed")
        try:
            keys = crypto.derive_child_sa_keys(sa.keys.prf, sa.keys.sk_d, algorithms, nonce_i, nonce_r, shared)
        except ValueError as err:
            raise _Refused(NotifyType.NO_PROPOSAL_CHOSEN, f"cannot key the selected proposal: {err}")
        spi = self._new_child_spi()
        # ESP in UDP (RFC 3948) only when a NAT was detected, not merely because IKE floated to
        # the NAT-T port (strongSwan does that at once when it offers MOBIKE)
        nat = sa.peer_behind_nat or sa.local_behind_nat
        encap = (sa.local[1], sa.remote[1]) if nat else None
        # a rekeyed CHILD_SA keeps its predecessor's reqid, and so its kernel policies
        reqid = replaces.reqid if replaces is not None else self._next_reqid
        child = ChildSa(self._next_child_id, reqid, sa.local[0], sa.remote[0], spi, chosen.spi, chosen,
                        algorithms, keys, narrowed_r, narrowed_i, encap, self.now, access)
        self._next_child_id += 1
        if replaces is None:
            self._next_reqid += 1
        sa.children.append(child)
        self.counters.child_sas += 1
        log.info("selected proposal: {proposal}", proposal=_Proposal(chosen))
        log.info("CHILD_SA {name}{{{id}}} established with SPIs {spi_in}_i {spi_out}_o and TS {ours} === {theirs}",
                 name=settings.name, id=child.unique_id, spi_in=spi.hex(), spi_out=chosen.spi.hex(),
                 ours=_describe_ts(narrowed_r), theirs=_describe_ts(narrowed_i))
        self._install(child, policies=replaces is None)
        reply = dataclasses.replace(chosen, spi=spi)
        return [SecurityAssociation((reply,)), *(dh_reply or ()), TSi(narrowed_i), TSr(narrowed_r)]

    def _new_child_spi(self) -> bytes:
        while True:
            spi = self.random(4)
            # SPIs 1-255 are reserved by IANA (RFC 4303 §2.1)
            if int.from_bytes(spi, "big") >= 256 and spi not in self._child_spis:
                self._child_spis.add(spi)
                return spi

    def _install(self, child: ChildSa, policies: bool) -> None:
        try:
            self.kernel.install(child, policies)
        except Exception:
            log.failure("installing CHILD_SA {name}{{{id}}} failed", name=self.settings.name, id=child.unique_id)

    def _close_child(self, sa: IkeSa, child: ChildSa, reason: str) -> None:
        sa.children.remove(child)
        self._child_spis.discard(child.inbound_spi)
        log.info("closing CHILD_SA {name}{{{id}}} with SPIs {spi_in}_i {spi_out}_o and TS {ours} === {theirs} "
                 "({reason})", name=self.settings.name, id=child.unique_id, spi_in=child.inbound_spi.hex(),
                 spi_out=child.outbound_spi.hex(), ours=_describe_ts(child.local_ts),
                 theirs=_describe_ts(child.remote_ts), reason=reason)
        shared = any(other.reqid == child.reqid for other in sa.children)
        try:
            self.kernel.remove(child, not shared)
        except Exception:
            log.failure("removing CHILD_SA {name}{{{id}}} failed", name=self.settings.name, id=child.unique_id)

    # -- INFORMATIONAL ----------------------------------------------------------------------------

    def _informational(self, sa: IkeSa, inner: Sequence[Payload]) -> list[Payload]:
        response: list[Payload] = []
        for payload in inner:
            if isinstance(payload, Notify) and payload.is_error:
                log.info("received {notify} notify error for IKE_SA {name}{sa}", notify=_notify_name(payload),
                         name=self.settings.name, sa=sa.name)
            if not isinstance(payload, Delete):
                continue
            if payload.protocol == ProtocolId.IKE:
                log.info("received DELETE for IKE_SA {name}{sa}", name=self.settings.name, sa=sa.name)
                sa.delete_after_response = True
                return []
            if payload.protocol in (ProtocolId.ESP, ProtocolId.AH):
                ours = []
                for spi in payload.spis:
                    child = next((c for c in sa.children if c.outbound_spi == spi), None)
                    if child is None:
                        log.info("received DELETE for unknown CHILD_SA with SPI {spi}", spi=spi.hex())
                        continue
                    log.info("received DELETE for {protocol} CHILD_SA with SPI {spi}",
                             protocol=ProtocolId(payload.protocol).name, spi=spi.hex())
                    ours.append(child.inbound_spi)
                    self._close_child(sa, child, "deleted by the peer")
                if ours:
                    response.append(Delete(payload.protocol, tuple(ours)))
        return response

    # -- CREATE_CHILD_SA --------------------------------------------------------------------------

    def _create_child_sa(self, sa: IkeSa, inner: Sequence[Payload]) -> list[Payload]:
        sa_payload = _first(inner, SecurityAssociation)
        nonce = _first(inner, Nonce)
        if sa_payload is None or nonce is None:
            raise _Refused(NotifyType.INVALID_SYNTAX, "CREATE_CHILD_SA request without SA or Ni")
        ke = _first(inner, KeyExchange)
        if any(p.protocol == ProtocolId.IKE for p in sa_payload.proposals):
            return self._rekey_ike_sa(sa, sa_payload, nonce.data, ke)
        rekey = _notify(inner, NotifyType.REKEY_SA)
        old = None
        if rekey is not None:
            old = next((c for c in sa.children if c.outbound_spi == rekey.spi), None)
            if old is None:
                raise _Refused(NotifyType.CHILD_SA_NOT_FOUND, f"CHILD_SA with SPI {rekey.spi.hex()} to rekey not "
                               "found")
        nonce_r = crypto.new_nonce()
        dh_reply: list[Payload] = []
        if old is not None:
            # the CHILD_SA being replaced does not count against the limit
            sa.children.remove(old)
        try:
            child_payloads = self._new_child(sa, sa_payload, _first(inner, TSi), _first(inner, TSr), nonce.data,
                                             nonce_r, ke, dh_reply, old)
        finally:
            if old is not None:
                sa.children.insert(0, old)
        if old is not None:
            self.counters.child_rekeys += 1
            log.info("rekeyed CHILD_SA {name}{{{old}}} with SPIs {spi_in}_i {spi_out}_o, the peer deletes the old "
                     "one", name=self.settings.name, old=old.unique_id, spi_in=old.inbound_spi.hex(),
                     spi_out=old.outbound_spi.hex())
        # SA, [KE,] TSi, TSr from _new_child; Nr goes after SA as strongSwan orders it
        return [child_payloads[0], Nonce(nonce_r), *child_payloads[1:]]

    def _key_exchange(self, ke: KeyExchange | None, group) -> tuple[crypto.DiffieHellman, bytes]:
        """Our DH key and the shared secret of a CREATE_CHILD_SA exchange;
        ``_Refused`` with INVALID_KE_PAYLOAD naming ``group`` when the peer's
        KE is of another group (RFC 7296 §1.3), NO_PROPOSAL_CHOSEN when its
        public value is unusable."""
        if ke is None or ke.group != group:
            self.counters.invalid_ke_sent += 1
            raise _Refused(NotifyType.INVALID_KE_PAYLOAD, f"DH group {_group_name(ke.group if ke else 0)} "
                           f"unacceptable, requesting {_group_name(group)}", group.to_bytes(2, "big"))
        dh = crypto.DiffieHellman.generate(group)
        try:
            return dh, dh.shared_secret(ke.data)
        except crypto.InvalidKeyExchangeData as err:
            raise _Refused(NotifyType.NO_PROPOSAL_CHOSEN, f"applying DH public value failed ({err.reason})")

    def _new_spi_r(self) -> bytes:
        """A responder SPI no IKE SA of ours has."""
        spi_r = crypto.new_spi()
        while spi_r in self._sas:
            spi_r = crypto.new_spi()
        return spi_r

    def _rekey_ike_sa(self, sa: IkeSa, sa_payload: SecurityAssociation, nonce_i: bytes,
                      ke: KeyExchange | None) -> list[Payload]:
        received = [p for p in sa_payload.proposals if p.protocol == ProtocolId.IKE and len(p.spi) == 8]
        chosen = _select_with_ke(self.settings.ike_proposals, received, ke.group if ke is not None else None)
        if chosen is None:
            self.counters.no_proposal_chosen += 1
            raise _Refused(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable proposal found to rekey IKE_SA "
                           f"{self.settings.name}{sa.name}")
        algorithms = Algorithms.from_proposal(chosen)
        dh, shared = self._key_exchange(ke, algorithms.dh_group)
        spi_r = self._new_spi_r()
        nonce_r = crypto.new_nonce()
        keys = crypto.rekey_ike_sa_keys(sa.keys, algorithms, shared, nonce_i, nonce_r, chosen.spi, spi_r)
        new = IkeSa(self._next_ike_id, chosen.spi, spi_r, sa.remote, sa.local, self.now,
                    state=IkeSaState.ESTABLISHED, last_seen=self.now, established_at=self.now, keys=keys,
                    proposal=chosen, nonce_i=nonce_i, nonce_r=nonce_r, peer_fragmentation=sa.peer_fragmentation,
                    peer_hashes=sa.peer_hashes, peer_behind_nat=sa.peer_behind_nat,
                    local_behind_nat=sa.local_behind_nat, id_i=sa.id_i, id_r=sa.id_r, identity=sa.identity,
                    decision=sa.decision, virtual_ip=sa.virtual_ip, children=sa.children)
        if sa.peer_fragmentation:
            new.reassembly = FragmentReassembly(max_size=MAX_REASSEMBLED_SIZE, budget=self.fragment_budget)
        self._next_ike_id += 1
        # the CHILD_SAs and the virtual IP belong to the new IKE SA now
        sa.children = []
        sa.virtual_ip = None
        self._sas[spi_r] = new
        self.counters.ike_rekeys += 1
        log.info("selected proposal: {proposal}", proposal=_Proposal(chosen))
        log.info("IKE_SA {name}{old} rekeyed into {name}{new}, waiting for the peer to delete the old one",
                 name=self.settings.name, old=sa.name, new=new.name)
        return [SecurityAssociation((dataclasses.replace(chosen, spi=spi_r),)), Nonce(nonce_r),
                KeyExchange(dh.group, dh.public_value)]

    # -- our own requests and time ------------------------------------------------------------------

    def _response_received(self, header: IkeHeader, remote) -> None:
        sa = self._sas.get(header.spi_r)
        if sa is None or sa.spi_i != header.spi_i or not header.initiator:
            return
        # the only requests nac sends are DELETEs it does not wait for
        log.debug("received {exchange} response {mid} for IKE_SA {name}{sa}",
                  exchange=_exchange_name(header.exchange), mid=header.message_id, name=self.settings.name,
                  sa=sa.name)

    def _send_delete(self, sa: IkeSa, payload: Delete) -> None:
        """An INFORMATIONAL request with ``payload`` (sent once: the state it
        names is gone here whatever the peer says)."""
        message = IkeMessage(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, sa.own_mid)
        sa.own_mid += 1
        log.info("generating {message}", message=_Described(message, [payload]))
        self._emit(message.seal([payload], sa.keys.responder_sk), sa.local[1], sa.remote)

    def expire(self, now: float) -> None:
        """Time passes: half-open and stalled IKE SAs go, established IKE
        SAs and CHILD_SAs past their lifetime are deleted (the peer is told)."""
        self.now = now
        settings = self.settings
        half_open = self._half_open
        while half_open:
            sa = next(iter(half_open.values()))
            if now - sa.created < settings.half_open_timeout:
                break
            self._remove(sa, "half-open timeout")
        authenticating = self._authenticating
        while authenticating:
            sa = next(iter(authenticating.values()))
            if now - sa.last_seen < settings.auth_timeout:
                break
            self._remove(sa, "IKE_AUTH timeout")
        for sa in [s for s in authenticating.values() if now - s.created >= settings.max_auth_time]:
            self._remove(sa, f"not established within {settings.max_auth_time:g} s")
        for sa in list(self._sas.values()):
            if sa.state is not IkeSaState.ESTABLISHED:
                continue
            if now - sa.established_at >= settings.ike_lifetime:
                log.info("IKE_SA {name}{sa} lifetime of {t:g} s expired, deleting", name=settings.name, sa=sa.name,
                         t=settings.ike_lifetime)
                self._send_delete(sa, Delete(ProtocolId.IKE))
                self._remove(sa, None)
                continue
            for child in [c for c in sa.children if now - c.created >= settings.child_lifetime]:
                self._send_delete(sa, Delete(ProtocolId.ESP, (child.inbound_spi,)))
                self._close_child(sa, child, "lifetime expired")

    def _no_longer_half_open(self, sa: IkeSa) -> None:
        peer, sa.half_open_peer = sa.half_open_peer, None
        if peer is not None:
            left = self._half_open_by_peer.get(peer, 1) - 1
            if left > 0:
                self._half_open_by_peer[peer] = left
            else:
                self._half_open_by_peer.pop(peer, None)

    def _remove(self, sa: IkeSa, abort_reason: str | None) -> None:
        """Forget ``sa``: its CHILD_SAs, virtual IP lease and EAP conversation go too."""
        if sa.state is IkeSaState.DELETED:
            return
        sa.state = IkeSaState.DELETED
        if self._sas.get(sa.spi_r) is sa:
            del self._sas[sa.spi_r]
        self._half_open.pop(sa.spi_r, None)
        self._authenticating.pop(sa.spi_r, None)
        self._no_longer_half_open(sa)
        if sa.reassembly is not None:
            sa.reassembly.clear()  # its fragments go back to the budget
        if self._by_init.get(sa.init_key) is sa:
            del self._by_init[sa.init_key]
        if sa.eap is not None:
            try:
                if not getattr(sa.eap, "finished", False):
                    sa.eap.abort(abort_reason or "IKE_SA deleted")
            except Exception:
                log.failure("aborting the EAP conversation of IKE_SA {name}{sa} failed", name=self.settings.name,
                            sa=sa.name)
            sa.eap = None
        for child in list(sa.children):
            self._close_child(sa, child, "IKE_SA deleted")
        if sa.virtual_ip is not None and self.settings.pool is not None:
            self.settings.pool.release(sa.virtual_ip)
            sa.virtual_ip = None
        if abort_reason is not None:
            log.info("deleting IKE_SA {name}{sa} between {local}[{me}]...{remote}[{peer}]: {reason}",
                     name=self.settings.name, sa=sa.name, local=sa.local[0], me=str(sa.id_r or "%any"),
                     remote=sa.remote[0], peer=sa.identity or "%any", reason=abort_reason)
        else:
            log.info("IKE_SA {name}{sa} deleted", name=self.settings.name, sa=sa.name)

    def close(self, reason: str = "server shutting down") -> None:
        """Delete every IKE SA (telling established peers) and answer nothing more."""
        for sa in list(self._sas.values()):
            if sa.state is IkeSaState.ESTABLISHED:
                self._send_delete(sa, Delete(ProtocolId.IKE))
            self._remove(sa, reason)
        self.closed = True


class _Proposal:
    """strongSwan's proposal notation, made only when a log line is written."""

    __slots__ = ("proposal",)

    def __init__(self, proposal: Proposal) -> None:
        self.proposal = proposal

    def __str__(self) -> str:
        return describe_proposal(self.proposal)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class _Described:
    """strongSwan's message summary, made only when a log line is written."""

    __slots__ = ("message", "payloads")

    def __init__(self, message: IkeMessage, payloads: Sequence[Payload] | None = None) -> None:
        self.message = message
        self.payloads = payloads

    def __str__(self) -> str:
        return self.message.describe(self.payloads)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _inner_size(inner: Sequence[Payload]) -> int:
    return len(build_payloads(inner)[1]) + HEADER_SIZE


def _exchange_name(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return f"exchange type {exchange}"


def _notify_name(notify: Notify) -> str:
    try:
        return NotifyType(notify.notify_type).name
    except ValueError:
        return str(notify.notify_type)


def _group_name(group: int | None) -> str:
    from transports.ikev2.transforms import DhGroup
    if group is None:
        return "NONE"
    try:
        return {31: "CURVE_25519", 32: "CURVE_448"}.get(group) or DhGroup(group).name
    except ValueError:
        return str(group)
