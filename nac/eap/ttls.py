"""EAP-TTLS version 0, server side (RFC 5281), with TLS 1.3 as RFC 9427 has it.

Phase 1 is a TLS handshake whose records travel in EAP-TTLS packets
(fragmented as :mod:`nac.eap.fragments` does, ACKs both ways).  Phase 2
runs inside the tunnel as Diameter AVPs (:mod:`nac.eap.avp`):

* the peer starts it with its inner EAP-Response/Identity (RFC 5281 §11.2.1;
  a peer that sends nothing is asked with an inner EAP-Request/Identity);
* then an inner EAP method in the configured order (EAP-MD5, EAP-MSCHAPv2;
  a Nak picks the next one the peer proposes), or the non-EAP PAP
  (User-Name + User-Password, §11.2.5) or MS-CHAP-V2 (§11.2.4) the peer
  chose itself;
* then, when a posture method is configured, PT-EAP or EAP-TNC as a second
  inner EAP method;
* and the outer EAP-Success.  No inner EAP-Success is sent: hostapd and
  strongSwan end phase 2 with the outer Success (see the hostapd vectors:
  EAP-TNC Start follows the MD5 Response directly, the outer Success follows
  the client's last TNC acknowledgement).

A Nak that proposes the very method it refuses fails at once, its cause
named (:data:`STALE_PHASE2`): offering the method again would loop.

Keys: MSK and EMSK are the two halves of 128 bytes from the TLS exporter,
labelled "ttls keying material" for TLS 1.2 and below (RFC 5281 §8) and
"EXPORTER_EAP_TLS_Key_Material" with the type octet 0x15 as context for
TLS 1.3 (RFC 9427 §2.1; hostapd does the same).  TLS 1.3 needs no
protected success indication here (RFC 9427 §2.5 leaves that to EAP-TLS):
phase 2 itself shows the server is done.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from OpenSSL import SSL
from twisted.internet import defer
from twisted.python.failure import Failure

from nac.auth_throttle import LoginOutcome, Logins
from nac.certs import certificate_identity
from nac.eap.avp import (
    VENDOR_MICROSOFT,
    Avp,
    AvpCode,
    AvpError,
    MicrosoftAvpCode,
    parse_avps,
)
from nac.eap.fragments import EAP_TTLS, FragmentChannel, FragmentError
from nac.eap.md5 import Md5Challenge
from nac.eap.method import (
    CheckPassword,
    Credentials,
    EapMethod,
    MethodResult,
    MethodStep,
    as_deferred,
    no_credentials,
)
from nac.eap.mschapv2 import (
    MsChapV2Method,
    authenticator_response,
    generate_nt_response,
    nt_password_hash,
    strip_domain,
)
from nac.eap.logins import LOCKED_OUT, LoginGuard, direct_source
from nac.eap.packet import EapCode, EapError, EapPacket, EapType, nak_types, next_identifier, type_name
from nac.eap.tls import TlsError, TlsTunnel
from nac.escape import printable
from nac.log import Logger, LogLevel
from nac.tnccs.assessment import address_of

__all__ = ["INNER_EAP_METHODS", "INNER_METHOD_NAMES", "TtlsServer", "TtlsSettings", "ttls_keys"]

log = Logger(namespace="nac.eap")

INNER_EAP_METHODS: dict[str, type[EapMethod]] = {"md5": Md5Challenge, "mschapv2": MsChapV2Method}
"""Inner EAP methods by configuration name."""

INNER_METHOD_NAMES = ("md5", "mschapv2", "pap")
"""What ``inner_methods`` may list: 'mschapv2' admits EAP-MSCHAPv2 and the
non-EAP MS-CHAP-V2 of RFC 5281 §11.2.4; 'pap' the User-Password AVP."""

KEY_MATERIAL_SIZE = 128
TTLS_LABEL = b"ttls keying material"
TLS13_LABEL = b"EXPORTER_EAP_TLS_Key_Material"
CHALLENGE_LABEL = b"ttls challenge"

STALE_PHASE2 = ("it still holds the phase 2 method of its last authentication (wpa_supplicant's fast "
                "re-authentication after EAP-TNC; fast_reauth=0 in its configuration avoids it)")
"""Why a peer Naks the inner method it proposes: wpa_supplicant 2.10 keeps
its EAP-TTLS state for fast re-authentication, its phase 2 method type still
EAP-TNC; it Naks every other inner method and ignores a new EAP-TNC Start."""


def ttls_keys(tunnel: TlsTunnel) -> tuple[bytes, bytes]:
    """(MSK, EMSK) of an established tunnel (RFC 5281 §8, RFC 9427 §2.1)."""
    if tunnel.is_tls13:
        material = tunnel.export(TLS13_LABEL, KEY_MATERIAL_SIZE, bytes((EapType.TTLS,)))
    else:
        material = tunnel.export(TTLS_LABEL, KEY_MATERIAL_SIZE)
    return material[:64], material[64:]


@dataclass(frozen=True)
class TtlsSettings:
    """What every EAP-TTLS conversation of one configuration shares."""

    context: SSL.Context
    inner_methods: tuple[str, ...] = ("md5", "mschapv2", "pap")
    credentials: Credentials = no_credentials
    check_password: CheckPassword | None = None
    posture: Callable | None = None
    """``posture(peer_info)`` → a nac.eap.tnc.PostureMethod, or None: no posture exchange."""
    fragment_size: int = 1024
    max_message_size: int = 65536
    client_cert_auth: bool = False
    """A verified client certificate authenticates the peer; phase 2 then
    only learns the identity and runs the posture exchange (strongSwan's
    eap-ttls request_peer_auth)."""
    max_avps: int = 32
    logins: Logins | None = None
    """The failed-login throttle and bounded password checks (None: neither)."""
    login_source: Callable = direct_source
    """``login_source(peer)`` → the :class:`nac.auth_throttle.LoginSource` a conversation counts as."""

    @property
    def inner_eap(self) -> tuple[str, ...]:
        return tuple(name for name in self.inner_methods if name in INNER_EAP_METHODS)


class TtlsServer(EapMethod):
    """One EAP-TTLS conversation, server side.

    ``peer`` is the transport's nac.tnccs.assessment.PeerInfo; the posture
    exchange gets a copy with the authenticated identity.
    """

    TYPE = EapType.TTLS
    KEY_GENERATING = True

    def __init__(self, settings: TtlsSettings, peer, *, random: Callable[[int], bytes] = os.urandom):
        super().__init__()
        self.settings = settings
        self.peer = peer
        self._random = random
        self._tunnel = TlsTunnel(settings.context)
        self._channel = FragmentChannel(EAP_TTLS, fragment_size=settings.fragment_size,
                                        max_message_size=settings.max_message_size)
        self._state = "start"  # start, handshake, phase2, done
        self._phase = "identity"  # identity, method, mschapv2-success, mschapv2-error, posture
        self._inner: EapMethod | None = None
        self._inner_answered = False
        self._inner_id = random(1)[0]
        self._tried: set[str] = set()
        self._inner_identity: str | None = None
        self._cert_identity: str | None = None
        self._posture: EapMethod | None = None
        self._ms_ident = 0
        self._identity_requested = False
        self._guard = LoginGuard(settings.logins, settings.login_source(peer)) \
            if settings.logins is not None else None
        self._login: defer.Deferred | None = None

    # -- EapMethod ---------------------------------------------------------------------

    def initiate(self) -> bytes:
        return EAP_TTLS.start_packet()

    def process(self, response: EapPacket) -> defer.Deferred:
        return as_deferred(self.respond(response))

    def respond(self, response: EapPacket):
        try:
            step = self._process(response)
        except Exception:
            return self._crashed(Failure())
        if isinstance(step, defer.Deferred):
            step.addErrback(self._crashed)
        return step

    def abort(self, reason: str) -> None:
        self._state = "done"
        self._tunnel = None
        if self._guard is not None:
            self._guard.abort()
        login, self._login = self._login, None
        if login is not None:
            login.cancel()  # a password check still waiting is dropped
        for method in (self._inner, self._posture):
            if method is not None:
                method.abort(reason)

    # -- phase 1 -----------------------------------------------------------------------

    def _process(self, response: EapPacket):
        if self._state == "done":
            return MethodStep.failure("EAP-TTLS response after the method ended")
        try:
            received = self._channel.receive(response.type_data)
        except FragmentError as err:
            return self._fail(f"invalid EAP-TTLS packet: {err}")
        if received.send is not None:
            return MethodStep.send(received.send)
        message = received.message
        try:
            if self._state in ("start", "handshake"):
                return self._handshake(message)
            if message:
                self._tunnel.receive(message)
            data = self._tunnel.read()
        except TlsError as err:
            if err.peer_closed and self._phase == "posture":
                # strongSwan's client does so after a fatal PB-TNC error
                return self._fail(f"{err} during the posture assessment ({self._posture.label})")
            return self._fail(str(err))
        if not data:
            return self._phase2_empty()
        return self._phase2(data)

    def _handshake(self, message: bytes):
        if not message:
            return self._fail("empty EAP-TTLS message during the TLS handshake")
        self._state = "handshake"
        self._tunnel.receive(message)
        if not self._tunnel.handshake_done:
            out = self._tunnel.data_to_send()
            if not out:
                return self._fail("the peer's EAP-TTLS message completed no TLS flight")
            return MethodStep.send(self._channel.send(out))
        self._state = "phase2"
        log.info("negotiated {version} using suite {cipher}", version=self._tunnel.version,
                 cipher=self._tunnel.cipher)
        cert = self._tunnel.peer_certificate()
        if cert is not None:
            self._cert_identity = certificate_identity(cert)
            log.info("received client certificate of '{identity}'", identity=self._cert_identity)
        # TLS 1.3: the peer's phase 2 may come with its Finished
        data = self._tunnel.read()
        if data:
            return self._phase2(data)
        # the rest of our flight (TLS 1.3 tickets) or an empty request: the
        # peer answers with its inner EAP-Response/Identity
        return MethodStep.send(self._channel.send(self._tunnel.data_to_send()))

    # -- phase 2 -----------------------------------------------------------------------

    def _phase2_empty(self):
        if self._phase == "mschapv2-success":
            return self._authenticated(self._inner_identity, "MSCHAPV2")
        if self._phase == "mschapv2-error":
            return self._fail("EAP-TTLS/MSCHAPV2 verification failed", quiet=True)
        if self._phase == "identity" and self._inner is None and not self._identity_requested:
            # the peer waits to be asked (strongSwan's phase2_piggyback shape)
            self._identity_requested = True
            return self._send_inner(EapType.IDENTITY, b"")
        return self._fail("empty EAP-TTLS message in phase 2")

    def _phase2(self, data: bytes):
        try:
            avps = parse_avps(data, max_count=self.settings.max_avps)
        except AvpError as err:
            return self._fail(f"invalid phase 2 AVPs: {err}")
        eap_parts: list[bytes] = []
        found: dict[object, bytes] = {}
        for avp in avps:
            known = avp.known
            if known is AvpCode.EAP_MESSAGE:
                eap_parts.append(avp.data)
            elif known is not None:
                found[known] = avp.data
            elif avp.mandatory:
                return self._fail(f"unsupported mandatory AVP {avp.code} (vendor {avp.vendor_id or 0})")
            else:
                log.debug("ignoring AVP {code} (vendor {vendor})", code=avp.code, vendor=avp.vendor_id or 0)
        if eap_parts:
            return self._inner_eap(b"".join(eap_parts))
        if AvpCode.USER_PASSWORD in found:
            return self._pap(found.get(AvpCode.USER_NAME), found[AvpCode.USER_PASSWORD])
        if MicrosoftAvpCode.MS_CHAP2_RESPONSE in found:
            return self._ttls_mschapv2(found.get(AvpCode.USER_NAME),
                                       found.get(MicrosoftAvpCode.MS_CHAP_CHALLENGE),
                                       found[MicrosoftAvpCode.MS_CHAP2_RESPONSE])
        return self._fail("phase 2 data without EAP-Message, User-Password or MS-CHAP2-Response")

    def _inner_eap(self, data: bytes):
        try:
            packet = EapPacket.parse(data)
        except EapError as err:
            return self._fail(f"invalid tunneled EAP packet: {err}")
        if LogLevel.debug in Logger.enabled:
            log.debug("received tunneled EAP-TTLS AVP [{what}]", what=packet.describe())
        if packet.code != EapCode.RESPONSE:
            return self._fail(f"{EapCode(packet.code).name.title()} received inside the tunnel")
        if self._phase == "identity":
            if self._identity_requested and packet.identifier != self._inner_id:
                return self._fail("tunneled EAP-Response/Identity with the wrong identifier")
            if packet.type != EapType.IDENTITY:
                return self._fail(f"tunneled {type_name(packet.type)} before the EAP identity")
            self._inner_identity = _identity(packet.type_data)
            log.info("received EAP identity '{identity}'", identity=self._inner_identity)
            if self.settings.client_cert_auth and self._cert_identity is not None:
                return self._authenticated(self._cert_identity, "TLS")
            return self._start_inner(())
        if self._phase not in ("method", "posture"):
            return self._fail("unexpected tunneled EAP message")
        method = self._inner if self._phase == "method" else self._posture
        if packet.identifier != self._inner_id:
            return self._fail(f"tunneled EAP response with identifier {packet.identifier}, "
                              f"{self._inner_id} expected")
        if packet.is_nak:
            proposed = nak_types(packet)
            if int(method.TYPE) in proposed:
                return self._fail(f"the peer Naks {method.label} and proposes it: {STALE_PHASE2}")
            log.info("peer does not support {method}", method=method.label)
            if self._phase == "method" and not self._inner_answered:
                method.abort("Nak")
                return self._start_inner(proposed)
            return self._fail(f"the peer refused {method.label}")
        if packet.type != method.TYPE:
            return self._fail(f"tunneled {type_name(packet.type)} response, {method.label} expected")
        first, self._inner_answered = not self._inner_answered, True
        if first and self._guard is not None and method.CHECKS_CREDENTIALS:
            step = self._guard.respond(method, packet, self._inner_identity or "")
        else:
            step = method.respond(packet)
        if isinstance(step, defer.Deferred):
            return step.addCallback(self._inner_step, method)
        return self._inner_step(step, method)

    def _start_inner(self, proposed: tuple[int, ...]):
        for name in self.settings.inner_eap:
            method_cls = INNER_EAP_METHODS[name]
            if name in self._tried or (proposed and int(method_cls.TYPE) not in proposed):
                continue
            self._tried.add(name)
            method = method_cls(self._inner_identity, self.settings.credentials, random=self._random)
            self._inner, self._inner_answered, self._phase = method, False, "method"
            log.info("phase2 method {method} selected", method=method.label)
            return self._send_inner(method.TYPE, method.initiate())
        if proposed:
            return self._fail("no phase2 method the peer proposed ("
                              + ", ".join(type_name(t) for t in proposed) + ") is enabled")
        return self._fail("no phase2 EAP method is enabled")

    def _inner_step(self, step: MethodStep, method: EapMethod):
        if self._state == "done":
            return MethodStep.failure("EAP-TTLS aborted")
        if step.result is MethodResult.CONTINUE:
            return self._send_inner(method.TYPE, step.type_data)
        if method is self._posture:
            self.decision = method.decision
            if step.result is MethodResult.SUCCESS:
                return self._succeed()
            return self._fail(step.reason, quiet=True)
        if step.result is MethodResult.SUCCESS:
            return self._authenticated(method.identity, method.label.removeprefix("EAP_"))
        return self._fail(step.reason, quiet=True)

    def _authenticated(self, identity: str | None, how: str):
        self.identity = identity
        log.info("EAP_TTLS phase2 authentication of '{identity}' with {how} successful",
                 identity=identity, how=f"EAP_{how}" if how not in ("PAP", "TLS") else how)
        if self.settings.posture is None:
            return self._succeed()
        peer = dataclasses.replace(self.peer, identity=identity, auth_method=f"eap-ttls/{how.lower()}")
        self._posture = self.settings.posture(peer)
        self._phase = "posture"
        log.info("phase2 method {method} selected", method=self._posture.label)
        return self._send_inner(self._posture.TYPE, self._posture.initiate())

    # -- non-EAP phase 2 -----------------------------------------------------------------

    def _pap(self, user_name: bytes | None, password: bytes):
        if self._phase != "identity" or self._inner is not None:
            return self._fail("User-Password AVP after phase 2 began")
        if "pap" not in self.settings.inner_methods or self.settings.check_password is None:
            return self._fail("EAP-TTLS/PAP is not enabled")
        if not user_name:
            return self._fail("EAP-TTLS/PAP without a User-Name AVP")
        identity = user_name.decode("utf-8", "replace")
        self._inner_identity = identity
        # RFC 5281 §11.2.5: the password is padded with NULs to a multiple of 16
        secret = password.rstrip(b"\x00").decode("utf-8", "replace")
        if self.settings.logins is not None:
            return self._pap_login(identity, secret)
        d = defer.maybeDeferred(self.settings.check_password, identity, secret)

        def checked(ok):
            if self._state == "done":
                return MethodStep.failure("EAP-TTLS aborted")
            if not ok:
                log.info("EAP-TTLS/PAP authentication of '{identity}' failed", identity=identity)
                return self._fail("EAP-TTLS/PAP verification failed", quiet=True)
            return self._authenticated(identity, "PAP")

        def check_failed(failure):
            # the failure's text stays out of the log: it might echo the password
            log.error("checking the password of '{identity}' failed: {error}", identity=identity,
                      error=failure.type.__name__)
            return self._fail("the password check failed", quiet=True)

        d.addCallbacks(checked, check_failed)
        return d

    def _pap_login(self, identity: str, secret: str):
        d = self._login = self.settings.logins.check_password(self._guard.source, identity, secret)

        def checked(outcome):
            self._login = None
            if self._state == "done":
                return MethodStep.failure("EAP-TTLS aborted")
            if outcome is LoginOutcome.ACCEPTED:
                return self._authenticated(identity, "PAP")
            if outcome is LoginOutcome.REJECTED:
                log.info("EAP-TTLS/PAP authentication of '{identity}' failed", identity=printable(identity))
                return self._fail("EAP-TTLS/PAP verification failed", quiet=True)
            if outcome is LoginOutcome.LOCKED_OUT:
                return self._fail(f"EAP-TTLS/PAP login {LOCKED_OUT}", quiet=True)
            return self._fail("EAP-TTLS/PAP login refused: no room for another password check", quiet=True)

        def check_failed(failure):
            self._login = None
            if failure.check(defer.CancelledError):
                return MethodStep.failure("EAP-TTLS aborted")
            # the failure's text stays out of the log: it might echo the password
            log.error("checking the password of '{identity}' failed: {error}", identity=printable(identity),
                      error=failure.type.__name__)
            return self._fail("the password check failed", quiet=True)

        return d.addCallbacks(checked, check_failed)

    def _ttls_mschapv2(self, user_name: bytes | None, challenge: bytes | None, response: bytes):
        if self._phase != "identity" or self._inner is not None:
            return self._fail("MS-CHAP2-Response AVP after phase 2 began")
        if "mschapv2" not in self.settings.inner_methods:
            return self._fail("EAP-TTLS/MSCHAPV2 is not enabled")
        if not user_name or challenge is None or len(response) != 50:
            return self._fail("EAP-TTLS/MSCHAPV2 needs User-Name, MS-CHAP-Challenge and a "
                              "50-byte MS-CHAP2-Response")
        # RFC 5281 §11.1: the challenge and the Ident come from the tunnel's keys
        implicit = self._tunnel.export(CHALLENGE_LABEL, 17)
        if not hmac.compare_digest(implicit[:16], challenge) or response[0] != implicit[16]:
            return self._fail("EAP-TTLS/MSCHAPV2 challenge does not match the implicit challenge")
        identity = user_name.decode("utf-8", "replace")
        self._inner_identity = identity
        self._ms_ident = response[0]
        peer_challenge, nt_response = response[2:18], response[26:50]
        guard = self._guard

        def verify(secret):
            if self._state == "done":
                return MethodStep.failure("EAP-TTLS aborted")
            user = strip_domain(user_name)
            if secret is not None:
                password_hash = nt_password_hash(secret)
                expected = generate_nt_response(challenge, peer_challenge, user, password_hash)
                if hmac.compare_digest(expected, nt_response):
                    if guard is not None:
                        guard.record(identity, True)
                    self._phase = "mschapv2-success"
                    value = bytes((self._ms_ident,)) + authenticator_response(
                        password_hash, nt_response, peer_challenge, challenge, user)
                    return self._tunnel_send(Avp(MicrosoftAvpCode.MS_CHAP2_SUCCESS, value,
                                                 VENDOR_MICROSOFT).build())
            else:
                log.info("no EAP key found for '{peer}'", peer=identity)
            if guard is not None:
                guard.record(identity, False)
            log.info("EAP-TTLS/MSCHAPV2 verification failed for '{identity}'", identity=identity)
            self._phase = "mschapv2-error"
            error = bytes((self._ms_ident,)) + b"E=691 R=0 V=3"
            return self._tunnel_send(Avp(MicrosoftAvpCode.MS_CHAP_ERROR, error, VENDOR_MICROSOFT).build())

        def look_up():
            return defer.maybeDeferred(self.settings.credentials, identity).addCallback(verify)

        if guard is None:
            return look_up()
        step = guard.then(identity, look_up)
        if isinstance(step, MethodStep) and step.result is MethodResult.FAILURE:
            return self._fail(f"EAP-TTLS/MSCHAPV2 login {LOCKED_OUT}", quiet=True)
        return step

    # -- sending -----------------------------------------------------------------------

    def _send_inner(self, eap_type: EapType, type_data: bytes) -> MethodStep:
        self._inner_id = next_identifier(self._inner_id)
        packet = EapPacket.request(self._inner_id, eap_type, type_data)
        if LogLevel.debug in Logger.enabled:
            log.debug("sending tunneled EAP-TTLS AVP [{what}]", what=packet.describe())
        return self._tunnel_send(Avp(AvpCode.EAP_MESSAGE, packet.build()).build())

    def _tunnel_send(self, payload: bytes) -> MethodStep:
        try:
            self._tunnel.write(payload)
        except TlsError as err:
            return self._fail(str(err))
        return MethodStep.send(self._channel.send(self._tunnel.data_to_send()))

    def _succeed(self) -> MethodStep:
        self._state = "done"
        self.msk, self.emsk = ttls_keys(self._tunnel)
        self._tunnel = None  # nothing more goes through it: free OpenSSL's state now
        return MethodStep.success()

    def _fail(self, reason: str, *, quiet: bool = False) -> MethodStep:
        if not quiet:
            log.warn("EAP_TTLS: {reason}", reason=reason,
                     log_limit=("EAP-TTLS failure", address_of(self.peer)))
        self.abort(reason)
        return MethodStep.failure(reason)

    def _crashed(self, failure) -> MethodStep:
        log.failure("EAP-TTLS failed unexpectedly", failure)
        self.abort("internal error")
        return MethodStep.failure("internal error in EAP-TTLS")


def _identity(type_data: bytes) -> str:
    """An EAP-Response/Identity value: UTF-8 (RFC 7542), up to the first NUL
    (RFC 3748 §5.1 lets options follow one)."""
    return type_data.split(b"\x00", 1)[0].decode("utf-8", "replace")
