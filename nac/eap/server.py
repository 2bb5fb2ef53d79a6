"""The EAP authenticator (RFC 3748 §2, server side) and the factory the
transports call.

:class:`EapServerSession` is one conversation: EAP-Request/Identity (or the
NAS's EAP-Response/Identity, for RADIUS), then the outer methods in the
configured order (a Nak moves to the next one the peer proposes), then
EAP-Success or EAP-Failure.  Identifiers follow RFC 3748 §4.1: each
Request has a new one, a Response that does not match the outstanding
Request is silently discarded, and Success/Failure carry the identifier of
the Response they answer.  Rounds are capped.

:func:`session_factory` reads ``[eap]`` once (the TLS context, the method
table) and returns the callable that makes a session per peer.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from nac.auth_throttle import Logins, logins_for
from nac.eap.fragments import MIN_FRAGMENT_SIZE
from nac.eap.logins import LoginGuard, direct_source, relayed_source
from nac.eap.method import CheckPassword, Credentials, EapMethod, MethodResult, MethodStep, no_credentials
from nac.eap.md5 import Md5Challenge
from nac.eap.mschapv2 import MsChapV2Method
from nac.eap.outcome import EapOutcome, EapStatus
from nac.eap.packet import (
    EAP_HEADER_SIZE,
    EapCode,
    EapError,
    EapPacket,
    EapType,
    nak_types,
    next_identifier,
    type_name,
)
from nac.eap.tls import server_context
from nac.eap.tnc import EapTnc, PtEap
from nac.eap.ttls import TtlsServer, TtlsSettings
from nac.interfaces import IEapSession
from nac.log import Logger
from nac.tnccs.assessment import address_of

__all__ = ["EapServerSession", "EapSettings", "OUTER_METHOD_NAMES", "session_factory"]

log = Logger(namespace="nac.eap")

OUTER_METHOD_NAMES = ("ttls", "md5", "mschapv2")
POSTURE_METHODS = {"pt-eap": PtEap, "eap-tnc": EapTnc}
MAX_IDENTITY = 253
"""Longest identity kept (RFC 7542 §2.2 sizes NAIs for a RADIUS User-Name)."""


@dataclass(frozen=True)
class EapSettings:
    """What every conversation of one transport shares."""

    methods: tuple[str, ...] = ("ttls",)
    """Outer methods, most preferred first: 'ttls', 'md5', 'mschapv2'."""
    ttls: TtlsSettings | None = None
    credentials: Credentials = no_credentials
    max_rounds: int = 200
    """Most Requests in one conversation (fragments and ACKs count)."""
    max_packet_size: int = 0xFFFF
    logins: Logins | None = None
    """The failed-login throttle for the outer EAP-MD5 / EAP-MSCHAPv2 (None: none)."""
    login_source: Callable = direct_source
    """``login_source(peer)`` → the source a conversation counts as."""


def _make_method(name: str, settings: EapSettings, identity: str, peer, random,
                 max_request: int | None = None) -> EapMethod:
    if name == "ttls":
        if settings.ttls is None:
            raise ValueError("EAP-TTLS is enabled without TLS settings")
        ttls = settings.ttls
        if max_request is not None:
            # the EAP header and Type take 5 bytes; FreeRADIUS likewise only lowers its fragment size
            fragment_size = max(MIN_FRAGMENT_SIZE, max_request - EAP_HEADER_SIZE - 1)
            if fragment_size < ttls.fragment_size:
                ttls = dataclasses.replace(ttls, fragment_size=fragment_size)
        return TtlsServer(ttls, peer, random=random)
    if name == "md5":
        return Md5Challenge(identity, settings.credentials, random=random)
    if name == "mschapv2":
        return MsChapV2Method(identity, settings.credentials, random=random)
    raise ValueError(f"unknown EAP method {name!r}")


_METHOD_TYPES = {"ttls": EapType.TTLS, "md5": EapType.MD5_CHALLENGE, "mschapv2": EapType.MSCHAPV2}


@implementer(IEapSession)
class EapServerSession:
    """One EAP conversation, authenticator side (sans-IO apart from the
    Deferreds its methods return)."""

    def __init__(self, peer, settings: EapSettings, *, random: Callable[[int], bytes] = os.urandom):
        self.peer = peer
        self.settings = settings
        self._random = random
        self._identifier: int | None = None
        """Identifier of the outstanding Request, None before the first."""
        self._state = "idle"  # idle, identity, method, done
        self.identity: str | None = None
        """The EAP-Response/Identity value."""
        self._method: EapMethod | None = None
        self._method_name = ""
        self._answered = False
        self._tried: set[str] = set()
        self.rounds = 0
        self._busy = False
        """A packet waits for something outside (password store, TNCS core)."""
        self._waiting: deque[tuple[bytes, defer.Deferred]] = deque()
        self._max_request: int | None = None
        self._guard = LoginGuard(settings.logins, settings.login_source(peer)) \
            if settings.logins is not None else None

    @property
    def finished(self) -> bool:
        return self._state == "done"

    # -- IEapSession -------------------------------------------------------------------

    def start(self) -> bytes:
        if self._state != "idle":
            raise RuntimeError("the EAP conversation has already started")
        self._state = "identity"
        self._identifier = self._random(1)[0]
        self.rounds += 1
        return EapPacket.request(self._identifier, EapType.IDENTITY).build()

    def receive(self, packet: bytes) -> defer.Deferred:
        outcome = self.answer(packet)
        if isinstance(outcome, defer.Deferred):
            return outcome
        return defer.succeed(outcome)

    def answer(self, packet: bytes) -> EapOutcome | defer.Deferred:
        """:meth:`receive` without a Deferred where none is needed: the
        outcome itself when it is ready at once (fragments, acknowledgements,
        TLS flights), else a Deferred firing with it once what it waits on
        (password store, TNCS core) has answered."""
        if self._busy:
            # answered in order, once the packet before has been
            d = defer.Deferred()
            self._waiting.append((bytes(packet), d))
            return d
        return self._run(bytes(packet))

    def limit_request_size(self, size: int) -> None:
        """The carrier says no EAP packet to the peer may exceed ``size``
        bytes (RADIUS: Framed-MTU - 4, RFC 3580 §3.17); methods started
        afterwards fragment to fit, when that is smaller than configured."""
        self._max_request = size

    def _run(self, data: bytes) -> EapOutcome | defer.Deferred:
        # most packets (fragments, acknowledgements, TLS flights) are
        # answered at once: the outcome itself, no Deferred
        try:
            outcome = self._receive(data)
        except Exception:
            outcome = self._crashed(Failure())
        if not isinstance(outcome, defer.Deferred):
            return outcome
        self._busy = True
        done = defer.Deferred()
        outcome.addErrback(self._crashed)
        outcome.addCallback(self._ran, done)
        return done

    def _ran(self, outcome: EapOutcome, done: defer.Deferred) -> None:
        # still busy while the caller handles the outcome: a packet it passes
        # meanwhile queues behind the ones already waiting
        done.callback(outcome)
        self._busy = False
        waiting = self._waiting
        while waiting and not self._busy:
            data, d = waiting.popleft()
            outcome = self._run(data)
            if isinstance(outcome, defer.Deferred):
                outcome.chainDeferred(d)
            else:
                d.callback(outcome)

    def abort(self, reason: str) -> None:
        if self._state == "done":
            return
        log.info("EAP conversation with {peer} aborted: {reason}", peer=self._who(), reason=reason)
        self._end(reason)

    # -- receiving -----------------------------------------------------------------------

    def _receive(self, data: bytes):
        if self._state == "done":
            return self._discard("the conversation has ended")
        try:
            packet = EapPacket.parse(data, max_size=self.settings.max_packet_size)
        except EapError as err:
            return self._discard(f"invalid EAP packet: {err}")
        if packet.code != EapCode.RESPONSE:
            return self._discard(f"{_code_name(packet.code)} received by the authenticator")
        if self._identifier is None:
            # RADIUS: the NAS asked for the identity; its Response opens the conversation
            if packet.type != EapType.IDENTITY:
                return self._discard(f"{type_name(packet.type)} response without a conversation")
            return self._on_identity(packet)
        if packet.identifier != self._identifier:
            return self._discard(f"response identifier {packet.identifier} does not match "
                                 f"the request's {self._identifier}")
        if self._state == "identity":
            if packet.type != EapType.IDENTITY:
                return self._discard(f"{type_name(packet.type)} response to the Identity request")
            return self._on_identity(packet)
        method = self._method
        if packet.is_nak:
            if self._answered:
                return self._discard(f"Nak in the middle of {method.label}")
            log.info("peer does not support {method}", method=method.label)
            method.abort("Nak")
            return self._start_method(packet, nak_types(packet))
        if packet.type != method.TYPE:
            return self._discard(f"{type_name(packet.type)} response, {method.label} expected")
        first, self._answered = not self._answered, True
        if first and self._guard is not None and method.CHECKS_CREDENTIALS:
            step = self._guard.respond(method, packet, self.identity or "")
        else:
            step = method.respond(packet)
        if isinstance(step, defer.Deferred):
            return step.addCallback(self._step, packet, method)
        return self._step(step, packet, method)

    def _on_identity(self, packet: EapPacket):
        raw = packet.type_data.split(b"\x00", 1)[0][:MAX_IDENTITY]
        self.identity = raw.decode("utf-8", "replace")
        log.info("received EAP identity '{identity}' from {peer}", identity=self.identity,
                 peer=self.peer.address if self.peer is not None else "?")
        return self._start_method(packet, ())

    def _start_method(self, response: EapPacket, proposed: tuple[int, ...]):
        for name in self.settings.methods:
            eap_type = _METHOD_TYPES[name]
            if name in self._tried or (proposed and int(eap_type) not in proposed):
                continue
            self._tried.add(name)
            method = _make_method(name, self.settings, self.identity, self.peer, self._random,
                                  self._max_request)
            self._method, self._method_name, self._answered = method, name, False
            self._state = "method"
            return self._continue(eap_type, method.initiate(), response, initiating=True)
        if proposed:
            reason = ("the peer accepts none of the enabled methods (it proposed "
                      + ", ".join(type_name(t) for t in proposed) + ")")
        else:
            reason = "no EAP method is enabled"
        return self._failure(response, reason)

    def _step(self, step: MethodStep, response: EapPacket, method: EapMethod):
        if self._state == "done" or method is not self._method:
            return self._discard("the conversation was aborted")
        if step.result is MethodResult.CONTINUE:
            return self._continue(method.TYPE, step.type_data, response)
        if step.result is MethodResult.SUCCESS:
            return self._success(response, method)
        return self._failure(response, step.reason or f"{method.label} failed", method)

    # -- answering -----------------------------------------------------------------------

    def _request(self, eap_type, type_data: bytes) -> bytes:
        self._identifier = next_identifier(self._identifier)
        self.rounds += 1
        return EapPacket.request(self._identifier, eap_type, type_data).build()

    def _continue(self, eap_type, type_data: bytes, response: EapPacket, *, initiating: bool = False):
        if self.rounds >= self.settings.max_rounds:
            return self._failure(response, f"more than {self.settings.max_rounds} EAP rounds", self._method)
        if self._identifier is None:
            # the first Request follows the NAS's Identity exchange
            self._identifier = response.identifier
        packet = self._request(eap_type, type_data)
        if initiating:
            log.info("initiating {method} method (id 0x{id:02X})", method=type_name(eap_type),
                     id=self._identifier)
        return EapOutcome(EapStatus.CONTINUE, packet, identity=self.identity)

    def _success(self, response: EapPacket, method: EapMethod) -> EapOutcome:
        msk = method.msk if method.KEY_GENERATING else None
        log.info("EAP method {method} succeeded, {msk}MSK established", method=method.label,
                 msk="" if msk else "no ")
        outcome = EapOutcome(EapStatus.SUCCESS, EapPacket.success(response.identifier).build(),
                             msk=msk, emsk=method.emsk if msk else None,
                             identity=method.identity or self.identity, decision=method.decision)
        self._end(None)
        return outcome

    def _failure(self, response: EapPacket, reason: str, method: EapMethod | None = None) -> EapOutcome:
        label = method.label if method is not None else "EAP"
        log.info("EAP method {method} failed for peer {peer}: {reason}", method=label,
                 peer=self._who(), reason=reason)
        outcome = EapOutcome(EapStatus.FAILURE, EapPacket.failure(response.identifier).build(),
                             identity=(method.identity if method is not None else None) or self.identity,
                             decision=method.decision if method is not None else None, reason=reason)
        self._end(reason)
        return outcome

    def _discard(self, reason: str) -> EapOutcome:
        log.info("discarding EAP packet from {peer}: {reason}", peer=self._who(), reason=reason,
                 log_limit=("discarded EAP packet", address_of(self.peer)))
        return EapOutcome(EapStatus.DISCARD, identity=self.identity, reason=reason)

    def _crashed(self, failure) -> EapOutcome:
        log.failure("EAP conversation with {peer} failed unexpectedly", failure, peer=self._who())
        identifier = self._identifier or 0
        self._end("internal error")
        return EapOutcome(EapStatus.FAILURE, EapPacket.failure(identifier).build(),
                          identity=self.identity, reason="internal error")

    def _end(self, reason: str | None) -> None:
        self._state = "done"
        if self._guard is not None:
            self._guard.abort()
        method, self._method = self._method, None
        if method is not None and reason is not None:
            method.abort(reason)

    def _who(self) -> str:
        if self.identity:
            return f"'{self.identity}'"
        return str(self.peer.address) if self.peer is not None else "peer"


def _code_name(code) -> str:
    try:
        return EapCode(code).name.title()
    except ValueError:
        return f"code {code}"


# -- configuration ---------------------------------------------------------------------------

# transports whose own section sets the EAP fragment size, and the key
_TRANSPORT_FRAGMENT_SIZE = {"radius": "fragment_size"}
# transports whose peers come through a relay (a RADIUS NAS), not from their own address
_RELAYED_TRANSPORTS = {"radius"}


def session_factory(cfg, core, store, section: str, *, credentials: Credentials | None = None,
                    check_password: CheckPassword | None = None,
                    random: Callable[[int], bytes] = os.urandom) -> Callable[[object], EapServerSession]:
    """The session maker for transport ``section`` ('radius' or 'ikev2').

    Reads ``[eap]`` (and ``[radius] fragment_size``, the EAP fragment size a
    RADIUS deployment tunes with its NAS; IKEv2's ``fragment_size`` is IKE
    message fragmentation, not EAP's) once; the TLS context is built here, not per session.
    ``credentials(identity)`` gives cleartext EAP secrets (EAP-MD5,
    MSCHAPv2), ``check_password(identity, password)`` checks PAP passwords;
    by default the store's ``eap_secret`` and ``check_password`` when it
    has them.  Raises nac.config.ConfigError for unusable settings.
    """
    from nac.config import SCHEMA, ConfigError

    opts = cfg.section("eap")
    origin = cfg.source or "defaults"
    if credentials is None:
        credentials = getattr(store, "eap_secret", None) or _no_secrets
    logins = None
    if check_password is None:
        check_password = getattr(store, "check_password", None)
        if check_password is not None:
            # the one of this process, shared with the other transports
            logins = logins_for(cfg, store)
    else:
        logins = logins_for(cfg, check_password=check_password)
    login_source = relayed_source if section in _RELAYED_TRANSPORTS else direct_source
    fragment_size = opts["fragment_size"]
    if section in _TRANSPORT_FRAGMENT_SIZE and _TRANSPORT_FRAGMENT_SIZE[section] in SCHEMA.get(section, {}):
        fragment_size = cfg.get(section, _TRANSPORT_FRAGMENT_SIZE[section])

    methods = tuple(opts["methods"])
    ttls = None
    if "ttls" in methods:
        cert, key, ca = opts["cert"], opts["key"], opts["ca"]
        if (cert is None) != (key is None):
            raise ConfigError(f"{origin}: [eap] cert/key: set both, or neither to use the demo certificate")
        if cert is None or (ca is None and opts["client_cert"] != "none"):
            from nac.certs import PkiError, ensure_demo_pki
            try:
                pki = ensure_demo_pki(Path(cfg.state_dir))
            except PkiError as exc:
                raise ConfigError(f"{origin}: [eap] cert: {exc}") from None
            if cert is None:
                cert, key = pki.server_cert, pki.server_key
            ca = ca or pki.ca_cert
        try:
            context = server_context(cert=Path(cert), key=Path(key), ca=Path(ca) if ca else None,
                                     client_cert=opts["client_cert"],
                                     min_tls_version=opts["min_tls_version"],
                                     max_tls_version=opts["max_tls_version"],
                                     ciphers=opts["ciphers"] or None)
        except ValueError as exc:
            raise ConfigError(f"{origin}: [eap] {getattr(exc, 'setting', 'cert')}: {exc}") from None
        posture = None
        tnc = opts["tnc"]
        if tnc != "none":
            posture_cls = POSTURE_METHODS[tnc]
            posture_fragment = opts["posture_fragment_size"] or None
            if posture_fragment is not None and posture_fragment < 16:
                raise ConfigError(f"{origin}: [eap] posture_fragment_size: {posture_fragment} leaves no "
                                  "room for data (0, or at least 16)")

            def posture(peer, _cls=posture_cls):
                return _cls(core, peer, fragment_size=posture_fragment)
        ttls = TtlsSettings(context=context, inner_methods=tuple(opts["inner_methods"]),
                            credentials=credentials, check_password=check_password, posture=posture,
                            fragment_size=fragment_size, max_message_size=opts["max_message_size"],
                            client_cert_auth=opts["client_cert"] != "none", logins=logins,
                            login_source=login_source)
    settings = EapSettings(methods=methods, ttls=ttls, credentials=credentials,
                           max_rounds=opts["max_rounds"], logins=logins, login_source=login_source)
    log.info("EAP methods for {section}: {methods}", section=section, methods=", ".join(methods))

    def make_session(peer) -> EapServerSession:
        return EapServerSession(peer, settings, random=random)

    return make_session


def _no_secrets(identity: str) -> defer.Deferred:
    log.warn("no EAP secret for '{identity}': the policy store keeps no cleartext EAP secrets",
             identity=identity)
    return defer.succeed(None)
