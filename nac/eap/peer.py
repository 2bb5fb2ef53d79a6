"""The EAP peer (RFC 3748 §2, the supplicant's side), sans-IO.

:class:`EapPeer` is one conversation seen from the endpoint: every EAP
packet from the authenticator goes to :meth:`EapPeer.receive`, which returns
a :class:`PeerStep` with the response to send (if any) and whether the
conversation goes on, succeeded or failed.  No socket, no clock, no
Deferred: the methods below answer at once.

Methods, each the client half of a server method in :mod:`nac.eap`, built
on the same codecs:

* Identity and Notification (RFC 3748 §5.1-5.2), a legacy or Expanded Nak
  (§5.3) for any method not enabled;
* EAP-MD5-Challenge (:class:`Md5ChallengePeer`, RFC 3748 §5.4);
* EAP-MSCHAPv2 (:class:`MsChapV2Peer`, draft-kamath with RFC 2759), which
  checks the server's authenticator response and derives the MSK as the
  server does;
* EAP-TTLS v0 (:class:`TtlsPeer`, RFC 5281, RFC 9427 for TLS 1.3): a
  pyOpenSSL client over memory BIOs, L/M/S fragments both ways, then phase 2
  in Diameter AVPs: an inner EAP-MD5 or EAP-MSCHAPv2 after the inner
  Identity, or PAP, or the non-EAP MS-CHAP-V2; then the posture method the server starts inside the
  tunnel; MSK and EMSK from the TLS exporter;
* PT-EAP (:class:`PtEapPeer`, RFC 7171) and, for PB-TNC only, EAP-TNC
  (:class:`EapTncPeer`): the endpoint's PB-TNC client
  (:class:`nac.client.pb_client.PbTncClient`) with its collectors.

An EAP-Success is believed only when the method has reached a point where
the server may end it (RFC 3748 §7.16 "protected result indications" are
not available, so the peer at least refuses a Success before it
authenticated); an EAP-Failure always ends the conversation.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from OpenSSL import SSL

from nac.eap.avp import VENDOR_MICROSOFT, Avp, AvpCode, AvpError, MicrosoftAvpCode, build_avps, parse_avps
from nac.eap.fragments import EAP_TNC, EAP_TTLS, PT_EAP, FragmentChannel, FragmentError, Framing
from nac.eap.md5 import Md5ChallengeData, md5_response
from nac.eap.mschapv2 import (
    CHALLENGE_SIZE,
    MsChapV2OpCode,
    MsChapV2Packet,
    MsChapV2Response,
    authenticator_response,
    generate_nt_response,
    msk as mschapv2_msk,
    nt_password_hash,
    strip_domain,
)
from nac.eap.packet import EXPANDED_NAK, EapCode, EapError, EapPacket, EapType, type_name
from nac.eap.tls import TlsError, TlsTunnel, peer_context
from nac.eap.tnc import EAP_TNC_LIMITS, MAX_TNC_MESSAGE
from nac.eap.ttls import CHALLENGE_LABEL, ttls_keys
from nac.log import Logger, LogLevel

__all__ = [
    "DEFAULT_FRAGMENT_SIZE",
    "EapPeer",
    "EapTncPeer",
    "INNER_METHOD_NAMES",
    "Md5ChallengePeer",
    "MsChapV2Peer",
    "OUTER_METHOD_NAMES",
    "POSTURE_METHOD_NAMES",
    "PeerError",
    "PeerMethod",
    "PeerSettings",
    "PeerStatus",
    "PeerStep",
    "PtEapPeer",
    "TtlsPeer",
    "peer_context",
]

log = Logger(namespace="nac.eap.peer")

OUTER_METHOD_NAMES = ("ttls", "md5", "mschapv2")
INNER_METHOD_NAMES = ("md5", "mschapv2", "pap", "ttls-mschapv2")
POSTURE_METHOD_NAMES = ("pt-eap", "eap-tnc", "none")
DEFAULT_FRAGMENT_SIZE = 1398
"""wpa_supplicant's EAP fragment_size: an 802.1X supplicant's fragments fill an
Ethernet frame.  strongSwan's 1024 needs about a third more fragments, each a
RADIUS round trip, for a large posture report."""



class PeerStatus(enum.Enum):
    CONTINUE = "continue"
    """``response`` goes to the authenticator; wait for its next packet."""
    SUCCESS = "success"
    """EAP-Success accepted: the peer's ``msk``/``emsk`` are set for key-generating methods."""
    FAILURE = "failure"
    """EAP-Failure, or a Success the peer refused; ``reason`` says which."""
    DISCARD = "discard"
    """The packet was silently discarded (RFC 3748 §4.1); nothing changed."""


@dataclass(frozen=True, slots=True)
class PeerStep:
    status: PeerStatus
    response: bytes | None = None
    reason: str = ""


class PeerError(Exception):
    """The peer gives up on the method: the server misbehaved, or could not
    be trusted.  ``response`` is type-data still worth sending (a TLS alert),
    ``tls`` marks a failed TLS handshake or certificate check;
    ``after_decision``: the server ended the method itself once its posture
    decision had arrived (no fault of either side)."""

    def __init__(self, reason: str, *, response: bytes | None = None, tls: bool = False,
                 after_decision: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.response = response
        self.tls = tls
        self.after_decision = after_decision


@dataclass(frozen=True)
class PeerSettings:
    """What one peer conversation is configured with."""

    identity: str
    """Who authenticates: the inner identity of EAP-TTLS, the identity of MD5 and MSCHAPv2."""
    password: str = field(repr=False)
    outer_identity: str | None = None
    """The EAP-Response/Identity outside the tunnel (an anonymous NAI);
    None: ``identity`` itself."""
    methods: tuple[str, ...] = ("ttls",)
    """Outer methods the peer accepts, most preferred first (what its Nak proposes)."""
    inner: str = "md5"
    """EAP-TTLS phase 2: 'md5', 'mschapv2' (inner EAP methods), 'pap' or
    'ttls-mschapv2' (the non-EAP MS-CHAP-V2 of RFC 5281 §11.2.4)."""
    tls_context: SSL.Context | None = None
    """From :func:`peer_context`; required for EAP-TTLS."""
    server_name: str | None = None
    """A DNS name or IP address the server certificate must carry; None: any
    certificate chaining to the CA."""
    fragment_size: int = DEFAULT_FRAGMENT_SIZE
    """Largest EAP-TTLS type-data the peer sends (flags and length included)."""
    posture_fragment_size: int | None = None
    """Largest PT-EAP / EAP-TNC type-data inside the tunnel; None: whole batches."""
    max_message_size: int = 65536
    """Largest EAP-TTLS message reassembled from the server's fragments."""
    tnc: str = "pt-eap"
    """Posture method answered inside EAP-TTLS: 'pt-eap', 'eap-tnc' (PB-TNC) or 'none' (Nak)."""
    imcs: tuple = ()
    """IMC objects (nac.client.collectors) for the PB-TNC client; they may be shared."""
    mutual_imvs: tuple = ()
    """IMV objects judging the server: when given, the PB-TNC client asks
    for mutual PB-TNC (nac.client.mutual)."""
    language: str = "en"
    phase2_with_finished: bool = True
    """TLS 1.3: send the start of phase 2 with the client Finished (saves a round trip)."""
    max_rounds: int = 500
    """Most requests answered in one conversation (fragments and ACKs count)."""
    trace: Callable[[str, bytes], None] | None = field(default=None, compare=False)
    """``trace(direction, packet)`` for every inner EAP packet of EAP-TTLS
    ('s2c' or 'c2s'), for tests and debugging."""

    @property
    def eap_identity(self) -> str:
        return self.identity if self.outer_identity is None else self.outer_identity


# -- methods ---------------------------------------------------------------------------------

class PeerMethod:
    """Base of the peer side of one EAP method in one conversation.

    :meth:`process` takes each Request of the method's type and returns the
    type-data of the Response, or raises :class:`PeerError`.
    """

    TYPE: ClassVar[EapType]

    def __init__(self, settings: PeerSettings, random: Callable[[int], bytes]):
        self.settings = settings
        self.random = random
        self.msk: bytes | None = None
        self.emsk: bytes | None = None

    @property
    def failure(self) -> str | None:
        """Why the server refused us, when the method learnt it (MSCHAPv2's E=691)."""
        return None

    @property
    def label(self) -> str:
        return self.TYPE.label

    @property
    def may_succeed(self) -> bool:
        """Whether an EAP-Success now is believable (the peer has authenticated)."""
        return False

    @property
    def posture(self):
        """The nac.client.pb_client.AssessmentOutcome of a posture exchange, or None."""
        return None

    def process(self, request: EapPacket) -> bytes:
        raise NotImplementedError

    def succeeded(self) -> None:
        """The conversation ended in EAP-Success: derive keys, release state."""

    def close(self, reason: str) -> None:
        """The conversation ended otherwise: release what the method holds."""


class Md5ChallengePeer(PeerMethod):
    """EAP-MD5-Challenge (RFC 3748 §5.4): MD5(Identifier | secret | challenge)."""

    TYPE = EapType.MD5_CHALLENGE

    def __init__(self, settings: PeerSettings, random: Callable[[int], bytes]):
        super().__init__(settings, random)
        self._answered = False

    @property
    def may_succeed(self) -> bool:
        return self._answered

    def process(self, request: EapPacket) -> bytes:
        try:
            challenge = Md5ChallengeData.parse(request.type_data)
        except EapError as err:
            raise PeerError(f"invalid EAP-MD5 request: {err}") from None
        self._answered = True
        value = md5_response(request.identifier, self.settings.password.encode("utf-8"), challenge.value)
        return Md5ChallengeData(value).build()


class MsChapV2Peer(PeerMethod):
    """EAP-MSCHAPv2, peer side (draft-kamath-pppext-eap-mschapv2 §2, RFC 2759).

    Challenge → Response (NT-Response over the password hash); Success
    Request → the authenticator response must be the one the password
    gives, then a Success Response; Failure Request → Failure Response.
    The MSK is the one the server derives (:func:`nac.eap.mschapv2.msk`).
    """

    TYPE = EapType.MSCHAPV2

    def __init__(self, settings: PeerSettings, random: Callable[[int], bytes]):
        super().__init__(settings, random)
        self._state = "challenge"  # challenge, response-sent, done
        self._expected: bytes | None = None
        self._pending_msk: bytes | None = None
        self._failure: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def may_succeed(self) -> bool:
        return self._state == "done" and self._pending_msk is not None and self._failure is None

    def process(self, request: EapPacket) -> bytes:
        try:
            packet = MsChapV2Packet.parse(request.type_data)
        except EapError as err:
            raise PeerError(f"invalid EAP-MSCHAPv2 request: {err}") from None
        opcode = packet.opcode
        if opcode == MsChapV2OpCode.CHALLENGE and self._state == "challenge" and not packet.short:
            return self._respond(packet)
        if opcode == MsChapV2OpCode.SUCCESS and self._state == "response-sent" and not packet.short:
            self._state = "done"
            if packet.data[:42] != self._expected:
                self._failure = "the server's EAP-MSCHAPv2 authenticator response is wrong"
                self._pending_msk = None
                log.warn("{reason}: the server does not know the password", reason=self._failure)
                return MsChapV2Packet(MsChapV2OpCode.FAILURE, short=True).build()
            return MsChapV2Packet(MsChapV2OpCode.SUCCESS, short=True).build()
        if opcode == MsChapV2OpCode.FAILURE and self._state == "response-sent" and not packet.short:
            self._state = "done"
            self._pending_msk = None
            message = packet.data.decode("ascii", "replace")
            code = message.split(" ", 1)[0] if message.startswith("E=") else "E=?"
            self._failure = f"EAP-MSCHAPv2 authentication failed ({code})"
            log.info("{reason}", reason=self._failure)
            return MsChapV2Packet(MsChapV2OpCode.FAILURE, short=True).build()
        raise PeerError(f"unexpected EAP-MSCHAPv2 OpCode {opcode} in state '{self._state}'")

    def _respond(self, packet: MsChapV2Packet) -> bytes:
        data = packet.data
        if not data or data[0] != CHALLENGE_SIZE or len(data) < 1 + CHALLENGE_SIZE:
            raise PeerError("EAP-MSCHAPv2 Challenge without a 16-byte challenge")
        challenge = bytes(data[1:1 + CHALLENGE_SIZE])
        name = self.settings.identity.encode("utf-8")
        user = strip_domain(name)
        password_hash = nt_password_hash(self.settings.password)
        peer_challenge = self.random(CHALLENGE_SIZE)
        nt_response = generate_nt_response(challenge, peer_challenge, user, password_hash)
        self._expected = authenticator_response(password_hash, nt_response, peer_challenge, challenge, user)
        self._pending_msk = mschapv2_msk(password_hash, nt_response)
        self._state = "response-sent"
        value = MsChapV2Response(peer_challenge, nt_response, 0, name).build()
        return MsChapV2Packet(MsChapV2OpCode.RESPONSE, packet.mschapv2_id, value).build()

    def succeeded(self) -> None:
        self.msk = self._pending_msk

    def close(self, reason: str) -> None:
        self._pending_msk = None


class PtEapPeer(PeerMethod):
    """PT-EAP (RFC 7171), peer side: the endpoint's PB-TNC client behind
    the Start flag 0x80, version 1, fragments acknowledged both ways.

    ``client`` is a nac.client.pb_client.PbTncClient; by default one is made
    with the settings' IMCs and the batch limits strongSwan's PT-EAP uses
    (a nac.client.mutual.MutualPbTncClient with the settings' mutual IMVs
    when there are any).
    """

    TYPE = EapType.PT_EAP
    FRAMING: ClassVar[Framing] = PT_EAP

    def __init__(self, settings: PeerSettings, random: Callable[[int], bytes], client=None):
        super().__init__(settings, random)
        if client is None and settings.mutual_imvs:
            from nac.client.mutual import MutualPbTncClient

            client = MutualPbTncClient(list(settings.imcs), list(settings.mutual_imvs),
                                       max_batch_size=EAP_TNC_LIMITS.max_batch_size,
                                       max_message_size=EAP_TNC_LIMITS.max_message_size, language=settings.language)
        elif client is None:
            from nac.client.pb_client import PbTncClient

            client = PbTncClient(list(settings.imcs), max_batch_size=EAP_TNC_LIMITS.max_batch_size,
                                 max_message_size=EAP_TNC_LIMITS.max_message_size, language=settings.language)
        self.client = client
        self._channel = FragmentChannel(self.FRAMING, fragment_size=settings.posture_fragment_size,
                                        max_message_size=MAX_TNC_MESSAGE)
        self._started = False

    @property
    def finished(self) -> bool:
        return self.client.finished

    @property
    def may_succeed(self) -> bool:
        return self.client.finished

    @property
    def posture(self):
        return self.client.outcome if self._started else None

    def process(self, request: EapPacket) -> bytes:
        framing = self.FRAMING
        try:
            fragment = framing.parse(request.type_data)
            if framing.is_start(fragment):
                if self._started:
                    raise PeerError(f"{self.label} Start in the middle of the exchange")
                if fragment.flags & 0x07 != framing.version:
                    raise PeerError(f"{self.label} version {fragment.flags & 0x07} is not supported")
                self._started = True
                return self._channel.send(self.client.start())
            if not self._started:
                raise PeerError(f"{self.label} request before its Start")
            received = self._channel.receive(request.type_data)
        except FragmentError as err:
            raise PeerError(f"invalid {self.label} request: {err}") from None
        if received.send is not None:
            return received.send
        if not received.message or self.client.finished:
            # nothing to answer but an acknowledgement (after the server's CLOSE)
            return framing.ack()
        step = self.client.receive_batch(received.message)
        if step.batch is not None:
            return self._channel.send(step.batch)
        return framing.ack()

    def close(self, reason: str) -> None:
        if self._started and not self.client.finished:
            self.client.abort(reason)


class EapTncPeer(PtEapPeer):
    """EAP-TNC (type 38) carrying PB-TNC, as strongSwan's eap-tnc client does."""

    TYPE = EapType.TNC
    FRAMING = EAP_TNC


class TtlsPeer(PeerMethod):
    """EAP-TTLS v0, peer side (RFC 5281; RFC 9427 for TLS 1.3).

    Phase 1: the TLS handshake over :class:`nac.eap.tls.TlsTunnel` in the
    client role, records fragmented with :class:`FragmentChannel`.  Phase 2
    starts with :meth:`phase2_start` (the inner EAP-Response/Identity, PAP's
    User-Name and User-Password, or MS-CHAP-V2's AVPs) and answers the
    server's phase 2 data with :meth:`phase2`.  ``INNER_METHODS`` maps the
    inner method names to peer classes; :meth:`posture_class` picks the
    class answering a posture method the server starts.
    """

    TYPE = EapType.TTLS
    INNER_METHODS: ClassVar[dict[str, type[PeerMethod]]] = {"md5": Md5ChallengePeer, "mschapv2": MsChapV2Peer}
    POSTURE_METHODS: ClassVar[dict[str, type[PeerMethod]]] = {"pt-eap": PtEapPeer, "eap-tnc": EapTncPeer}

    def __init__(self, settings: PeerSettings, random: Callable[[int], bytes]):
        super().__init__(settings, random)
        if settings.tls_context is None:
            raise ValueError("EAP-TTLS needs a TLS context (peer_context)")
        self._channel = FragmentChannel(EAP_TTLS, fragment_size=settings.fragment_size,
                                        max_message_size=settings.max_message_size)
        self._tunnel: TlsTunnel | None = None
        self._state = "start"  # start, handshake, phase2, done
        self._inner: PeerMethod | None = None
        self._posture: PeerMethod | None = None
        self._phase2_started = False
        # the non-EAP MS-CHAP-V2: the MS-CHAP2-Success value expected, and the outcome
        self._ms_expected: bytes | None = None
        self._ms_verified = False
        self._ms_failure: str | None = None

    # -- what the conversation sees -------------------------------------------------------

    @property
    def may_succeed(self) -> bool:
        # the server proved itself in the handshake; an inner method that
        # authenticates the server (MSCHAPv2) must have done so, and a
        # posture exchange must have reached its result
        if self._state != "phase2" or not self._phase2_started:
            return False
        if self._inner is not None and not self._inner.may_succeed:
            return False
        if self._ms_expected is not None and not self._ms_verified:
            return False
        return self._posture is None or self._posture.may_succeed

    @property
    def failure(self) -> str | None:
        return self._inner.failure if self._inner is not None else self._ms_failure

    @property
    def posture(self):
        return self._posture.posture if self._posture is not None else None

    @property
    def tls_version(self) -> str | None:
        return self._tunnel.version if self._tunnel is not None else None

    def succeeded(self) -> None:
        self.msk, self.emsk = ttls_keys(self._tunnel)
        self._end("EAP-Success")

    def close(self, reason: str) -> None:
        self._end(reason)

    def _end(self, reason: str) -> None:
        self._state = "done"
        self._tunnel = None  # free OpenSSL's state now
        for method in (self._inner, self._posture):
            if method is not None:
                method.close(reason)

    # -- phase 1 --------------------------------------------------------------------------

    def process(self, request: EapPacket) -> bytes:
        if self._state == "done":
            raise PeerError("EAP-TTLS request after the method ended")
        try:
            fragment = EAP_TTLS.parse(request.type_data)
            if EAP_TTLS.is_start(fragment):
                return self._start()
            if self._state == "start":
                raise PeerError("EAP-TTLS request before its Start")
            received = self._channel.receive(request.type_data)
        except FragmentError as err:
            raise PeerError(f"invalid EAP-TTLS request: {err}") from None
        if received.send is not None:
            return received.send
        try:
            if received.message:
                self._tunnel.receive(received.message)
            if self._state == "handshake":
                return self._handshake()
            data = self._tunnel.read()
        except TlsError as err:
            posture = self.posture
            if err.peer_closed and posture is not None and posture.completed:
                # strongSwan's PDP denies so: the PB-TNC result, then the TLS
                # tunnel closed inside an Access-Challenge, no EAP-Failure
                raise PeerError(f"the server closed the TLS tunnel after its decision "
                                f"({posture.recommendation_label})", after_decision=True) from None
            raise self._tls_failure(str(err)) from None
        if data:
            return self._tunnel_send(self.phase2(data))
        if not self._phase2_started:
            # the server's answer to our Finished (TLS 1.3 tickets, or nothing)
            return self._tunnel_send(self._begin_phase2())
        raise PeerError("empty EAP-TTLS request in phase 2")

    def _start(self) -> bytes:
        if self._state != "start":
            raise PeerError("EAP-TTLS Start in the middle of the method")
        self._state = "handshake"
        self._tunnel = TlsTunnel(self.settings.tls_context, client=True)
        self._tunnel.receive(b"")
        return self._channel.send(self._tunnel.data_to_send())

    def _handshake(self) -> bytes:
        tunnel = self._tunnel
        if not tunnel.handshake_done:
            return self._channel.send(tunnel.data_to_send())
        self._state = "phase2"
        self._check_server_name()
        log.info("negotiated {version} using suite {cipher}", version=tunnel.version, cipher=tunnel.cipher)
        flight = tunnel.data_to_send()
        if flight and not (tunnel.is_tls13 and self.settings.phase2_with_finished):
            # TLS 1.3 Finished alone; phase 2 starts on the server's next request
            return self._channel.send(flight)
        data = tunnel.read()
        return self._tunnel_send(self.phase2(data) if data else self._begin_phase2(), flight)

    def _check_server_name(self) -> None:
        name = self.settings.server_name
        if name is None:
            return
        from service_identity import CertificateError, VerificationError
        from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

        cert = self._tunnel.peer_certificate()
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            address = None
        try:
            if address is not None:
                verify_certificate_ip_address(cert, address)
            else:
                verify_certificate_hostname(cert, name)
        except (VerificationError, CertificateError):
            raise PeerError(f"the server certificate is not for '{name}'", tls=True) from None

    def _tls_failure(self, reason: str) -> PeerError:
        alert = self._tunnel.data_to_send() if self._tunnel is not None else b""
        response = None
        if alert and not self._channel.sending:
            # the alert tells the server why; the server ends the conversation
            response = self._channel.send(alert)
        return PeerError(f"EAP-TTLS: {reason}", response=response, tls=True)

    def _tunnel_send(self, payload: bytes, flight: bytes = b"") -> bytes:
        """``payload`` encrypted, after the handshake records in ``flight``."""
        try:
            if payload:
                self._tunnel.write(payload)
        except TlsError as err:
            raise self._tls_failure(str(err)) from None
        return self._channel.send(flight + self._tunnel.data_to_send())

    # -- phase 2 --------------------------------------------------------------------------

    def _begin_phase2(self) -> bytes:
        self._phase2_started = True
        return self.phase2_start()

    def phase2_start(self) -> bytes:
        """The first phase 2 payload (RFC 5281 §11.2): PAP's User-Name and
        User-Password, or the inner EAP-Response/Identity (identifier 0, as
        wpa_supplicant sends it)."""
        identity = self.settings.identity.encode("utf-8")
        if self.settings.inner == "pap":
            password = self.settings.password.encode("utf-8")
            # §11.2.5: padded with NULs to a multiple of 16 octets
            password += b"\x00" * (-len(password) % 16 if password else 16)
            log.info("sending EAP-TTLS/PAP credentials of '{identity}'", identity=self.settings.identity)
            return build_avps((Avp(AvpCode.USER_NAME, identity), Avp(AvpCode.USER_PASSWORD, password)))
        if self.settings.inner == "ttls-mschapv2":
            return self._ms_chap_v2(identity)
        return self.tunnel_eap(EapPacket.response(0, EapType.IDENTITY, identity))

    def _ms_chap_v2(self, name: bytes) -> bytes:
        """RFC 5281 §11.2.4: the challenge and Ident come from the tunnel's keys."""
        implicit = self._tunnel.export(CHALLENGE_LABEL, 17)
        challenge, ident = implicit[:16], implicit[16]
        user = strip_domain(name)
        password_hash = nt_password_hash(self.settings.password)
        peer_challenge = self.random(CHALLENGE_SIZE)
        nt_response = generate_nt_response(challenge, peer_challenge, user, password_hash)
        self._ms_expected = bytes((ident,)) + authenticator_response(password_hash, nt_response, peer_challenge,
                                                                     challenge, user)
        response = bytes((ident, 0)) + peer_challenge + bytes(8) + nt_response
        log.info("sending EAP-TTLS/MSCHAPV2 response of '{identity}'", identity=self.settings.identity)
        return build_avps((Avp(AvpCode.USER_NAME, name),
                           Avp(MicrosoftAvpCode.MS_CHAP_CHALLENGE, challenge, VENDOR_MICROSOFT),
                           Avp(MicrosoftAvpCode.MS_CHAP2_RESPONSE, response, VENDOR_MICROSOFT)))

    def phase2(self, data: bytes) -> bytes:
        """The payload answering the server's phase 2 data ``data``."""
        if not self._phase2_started:
            # the server asked for the identity before the peer offered it
            self._phase2_started = True
        try:
            avps = parse_avps(data)
        except AvpError as err:
            raise PeerError(f"invalid phase 2 AVPs from the server: {err}") from None
        parts = []
        found = {}
        for avp in avps:
            known = avp.known
            if known is AvpCode.EAP_MESSAGE:
                parts.append(avp.data)
            elif known is not None:
                found[known] = avp.data
            elif avp.mandatory:
                raise PeerError(f"unsupported mandatory AVP {avp.code} (vendor {avp.vendor_id or 0}) "
                                "from the server")
        if not parts:
            if self._ms_expected is not None and not self._ms_verified and self._ms_failure is None:
                return self._ms_chap_v2_result(found)
            raise PeerError("phase 2 data from the server without an EAP-Message AVP")
        eap = b"".join(parts)
        try:
            packet = EapPacket.parse(eap)
        except EapError as err:
            raise PeerError(f"invalid tunnelled EAP packet: {err}") from None
        self._trace("s2c", eap)
        if LogLevel.debug in Logger.enabled:
            log.debug("received tunneled EAP-TTLS AVP [{what}]", what=packet.describe())
        if packet.code == EapCode.SUCCESS:
            # not sent by hostapd or nac; an empty response lets the outer Success come
            return b""
        if packet.code == EapCode.FAILURE:
            raise PeerError("the server sent a tunnelled EAP-Failure")
        if packet.code != EapCode.REQUEST:
            raise PeerError(f"tunnelled {packet.describe()} from the server")
        return self.tunnel_eap(self._inner_answer(packet))

    def _ms_chap_v2_result(self, found: dict) -> bytes:
        success = found.get(MicrosoftAvpCode.MS_CHAP2_SUCCESS)
        if success is not None:
            if success[:len(self._ms_expected)] == self._ms_expected:
                self._ms_verified = True
            else:
                self._ms_failure = "the server's MS-CHAP2-Success authenticator response is wrong"
                log.warn("{reason}: the server does not know the password", reason=self._ms_failure)
        elif MicrosoftAvpCode.MS_CHAP_ERROR in found:
            error = found[MicrosoftAvpCode.MS_CHAP_ERROR][1:].decode("ascii", "replace")
            self._ms_failure = f"EAP-TTLS/MSCHAPV2 authentication failed ({error.split(' ', 1)[0]})"
            log.info("{reason}", reason=self._ms_failure)
        else:
            raise PeerError("phase 2 data from the server without EAP-Message or MS-CHAP-V2 result")
        # an empty response acknowledges the result; the server ends the conversation
        return b""

    def _inner_answer(self, request: EapPacket) -> EapPacket:
        eap_type = request.type
        if eap_type == EapType.IDENTITY:
            return EapPacket.response(request.identifier, EapType.IDENTITY,
                                      self.settings.identity.encode("utf-8"))
        if eap_type == EapType.NOTIFICATION:
            return EapPacket.response(request.identifier, EapType.NOTIFICATION)
        posture = _posture_name(eap_type)
        if posture is not None:
            return self._posture_answer(request, posture)
        method = self._inner
        if method is None or method.TYPE != eap_type:
            cls = self.INNER_METHODS.get(self.settings.inner)  # None for PAP
            if method is not None or cls is None or cls.TYPE != eap_type:
                # propose our inner method while none has run; RFC 3748 §5.3.1 "0": no alternative
                ours = cls.TYPE if cls is not None and method is None else 0
                log.info("server requested {method} in phase 2, sending Nak", method=type_name(eap_type))
                return EapPacket.response(request.identifier, EapType.NAK, bytes((ours,)))
            method = self._inner = cls(self.settings, self.random)
            log.info("server requested {method} authentication in phase 2", method=method.label)
        return EapPacket.response(request.identifier, method.TYPE, method.process(request))

    def posture_class(self, name: str) -> type[PeerMethod] | None:
        """The class answering the posture method ``name`` ('pt-eap' or
        'eap-tnc') the server started, or None to refuse it with a Nak."""
        return self.POSTURE_METHODS.get(name) if self.settings.tnc == name else None

    def _posture_answer(self, request: EapPacket, name: str) -> EapPacket:
        if self._posture is None:
            cls = self.posture_class(name)
            if cls is None:
                log.info("server requested {method} in phase 2, sending Nak", method=type_name(request.type))
                return EapPacket.response(request.identifier, EapType.NAK, b"\x00")
            self._posture = cls(self.settings, self.random)
            log.info("server requested {method} in phase 2", method=self._posture.label)
        elif self._posture.TYPE != request.type:
            raise PeerError(f"tunnelled {type_name(request.type)} request during {self._posture.label}")
        return EapPacket.response(request.identifier, self._posture.TYPE, self._posture.process(request))

    def tunnel_eap(self, packet: EapPacket) -> bytes:
        """The EAP-Message AVP carrying the inner ``packet`` (traced)."""
        data = packet.build()
        self._trace("c2s", data)
        if LogLevel.debug in Logger.enabled:
            log.debug("sending tunneled EAP-TTLS AVP [{what}]", what=packet.describe())
        return Avp(AvpCode.EAP_MESSAGE, data).build()

    def _trace(self, direction: str, packet: bytes) -> None:
        if self.settings.trace is not None:
            self.settings.trace(direction, packet)


def _posture_name(eap_type) -> str | None:
    if eap_type == EapType.PT_EAP:
        return "pt-eap"
    if eap_type == EapType.TNC:
        return "eap-tnc"
    return None


# -- the conversation -------------------------------------------------------------------------

class EapPeer:
    """One EAP conversation, peer side.

    ``METHODS`` maps the outer method names of ``settings.methods`` to peer
    classes.  After SUCCESS, ``msk``/``emsk`` hold the peer's own keys (for
    key-generating methods) and :attr:`posture` the posture outcome.
    """

    METHODS: ClassVar[dict[str, type[PeerMethod]]] = {
        "ttls": TtlsPeer, "md5": Md5ChallengePeer, "mschapv2": MsChapV2Peer}

    def __init__(self, settings: PeerSettings, *, random: Callable[[int], bytes] = os.urandom):
        unknown = [m for m in settings.methods if m not in self.METHODS]
        if unknown or not settings.methods:
            raise ValueError(f"unknown EAP method(s) {', '.join(unknown) or 'none'}; "
                             f"choose from {', '.join(self.METHODS)}")
        if settings.inner not in INNER_METHOD_NAMES:
            raise ValueError(f"unknown inner method {settings.inner!r}; choose from {', '.join(INNER_METHOD_NAMES)}")
        if settings.tnc not in POSTURE_METHOD_NAMES:
            raise ValueError(f"unknown posture method {settings.tnc!r}; "
                             f"choose from {', '.join(POSTURE_METHOD_NAMES)}")
        self.settings = settings
        self.random = random
        self.status = PeerStatus.CONTINUE
        self.method: PeerMethod | None = None
        self._answered = False
        self.rounds = 0
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.error: str | None = None
        """Why the peer gave up on its side (server not trusted, protocol violation)."""
        self.tls_error = False
        self.reason = ""
        """Why the conversation failed."""
        self._last: tuple[bytes, bytes] | None = None

    @property
    def finished(self) -> bool:
        return self.status in (PeerStatus.SUCCESS, PeerStatus.FAILURE)

    @property
    def posture(self):
        """The posture outcome (nac.client.pb_client.AssessmentOutcome), or
        None when no posture exchange took place."""
        return self.method.posture if self.method is not None else None

    @property
    def method_label(self) -> str | None:
        return self.method.label if self.method is not None else None

    def identity_response(self, identifier: int = 0) -> bytes:
        """The EAP-Response/Identity a NAS puts in its first Access-Request
        (RFC 3579 §2.1: the NAS asked for it over the link)."""
        return EapPacket.response(identifier, EapType.IDENTITY, self.settings.eap_identity.encode("utf-8")).build()

    def receive(self, data: bytes) -> PeerStep:
        """One packet from the authenticator; what to answer."""
        if self.finished:
            return self._discard("the conversation has ended")
        try:
            packet = EapPacket.parse(bytes(data))
        except EapError as err:
            return self._discard(f"invalid EAP packet: {err}")
        if packet.code == EapCode.SUCCESS:
            return self._success()
        if packet.code == EapCode.FAILURE:
            return self._failure(self.error or "the server sent EAP-Failure", server=True)
        if packet.code != EapCode.REQUEST:
            return self._discard(f"{packet.describe()} received by the peer")
        if self._last is not None and self._last[0] == data:
            # RFC 3748 §4.1: a retransmitted Request gets the same Response, unprocessed
            return PeerStep(PeerStatus.CONTINUE, self._last[1])
        self.rounds += 1
        if self.rounds > self.settings.max_rounds:
            return self._failure(f"more than {self.settings.max_rounds} EAP requests")
        step = self._respond(packet)
        if step.status is PeerStatus.CONTINUE:
            self._last = (bytes(data), step.response)
        return step

    def abort(self, reason: str) -> None:
        """The transport gave up (timeout, no server): end without another packet."""
        if not self.finished:
            self._failure(reason)

    # -- requests ---------------------------------------------------------------------------

    def _respond(self, request: EapPacket) -> PeerStep:
        eap_type = request.type
        if eap_type == EapType.IDENTITY:
            log.info("server requested {type} (id 0x{id:02X}), sending '{identity}'", type="EAP_IDENTITY",
                     id=request.identifier, identity=self.settings.eap_identity)
            return self._send(self.identity_response(request.identifier))
        if eap_type == EapType.NOTIFICATION:
            log.info("EAP notification from the server: {text}",
                     text=request.type_data.decode("utf-8", "replace"))
            return self._send(EapPacket.response(request.identifier, EapType.NOTIFICATION).build())
        if eap_type == EapType.NAK:
            return self._discard("a Nak in a Request")
        if eap_type == EapType.EXPANDED:
            return self._send(self._nak(request, expanded=True))
        method = self.method
        if method is None or method.TYPE != eap_type:
            if method is not None and self._answered:
                return self._discard(f"{type_name(eap_type)} request in the middle of {method.label}")
            name = next((n for n in self.settings.methods if self.METHODS[n].TYPE == eap_type), None)
            if name is None:
                return self._send(self._nak(request))
            if method is not None:
                method.close("the server changed the method")
            method = self.method = self.METHODS[name](self.settings, self.random)
            self._answered = False
            log.info("server requested {method} authentication (id 0x{id:02X})", method=method.label,
                     id=request.identifier)
        try:
            type_data = method.process(request)
        except PeerError as err:
            if err.after_decision:
                log.info("{method}: {reason}", method=method.label, reason=err.reason)
                return self._failure(err.reason)
            self.error, self.tls_error = err.reason, err.tls
            log.warn("{method} failed: {reason}", method=method.label, reason=err.reason)
            if err.response is None:
                return self._failure(err.reason)
            # the server reads why from what we send (a TLS alert) and ends the conversation
            return self._send(EapPacket.response(request.identifier, eap_type, err.response).build())
        self._answered = True
        return self._send(EapPacket.response(request.identifier, eap_type, type_data).build())

    @staticmethod
    def _send(response: bytes) -> PeerStep:
        return PeerStep(PeerStatus.CONTINUE, response)

    def _nak(self, request: EapPacket, *, expanded: bool = False) -> bytes:
        ours = [int(self.METHODS[name].TYPE) for name in self.settings.methods]
        log.info("server requested {method}, sending Nak proposing {ours}", method=type_name(request.type),
                 ours=", ".join(type_name(t) for t in ours) or "nothing")
        if not expanded:
            return EapPacket.response(request.identifier, EapType.NAK, bytes(ours or (0,))).build()
        # RFC 3748 §5.3.2: Expanded Nak, one 8-byte Expanded Type entry per method
        entries = b"".join(bytes((EapType.EXPANDED,)) + (0).to_bytes(3, "big") + t.to_bytes(4, "big")
                           for t in ours or (0,))
        head = EXPANDED_NAK[0].to_bytes(3, "big") + EXPANDED_NAK[1].to_bytes(4, "big")
        return EapPacket.response(request.identifier, EapType.EXPANDED, head + entries).build()

    # -- the end -----------------------------------------------------------------------------

    def _success(self) -> PeerStep:
        method = self.method
        if method is None or not method.may_succeed or self.error is not None:
            reason = self.error or ("EAP-Success before the peer authenticated" if method is None
                                    else f"EAP-Success before {method.label} completed")
            log.warn("refusing EAP-Success: {reason}", reason=reason)
            return self._failure(reason)
        method.succeeded()
        self.msk, self.emsk = method.msk, method.emsk
        self.status = PeerStatus.SUCCESS
        log.info("EAP method {method} succeeded, {msk}MSK established", method=method.label,
                 msk="" if self.msk else "no ")
        return PeerStep(PeerStatus.SUCCESS)

    def _failure(self, reason: str, *, server: bool = False) -> PeerStep:
        if server and self.method is not None and self.method.failure:
            reason = self.method.failure
        self._end_method(reason)
        self.status = PeerStatus.FAILURE
        self.reason = reason
        log.info("EAP conversation failed: {reason}", reason=reason)
        return PeerStep(PeerStatus.FAILURE, reason=reason)

    def _end_method(self, reason: str) -> None:
        if self.method is not None:
            self.method.close(reason)

    def _discard(self, reason: str) -> PeerStep:
        log.info("discarding EAP packet: {reason}", reason=reason)
        return PeerStep(PeerStatus.DISCARD, reason=reason)
