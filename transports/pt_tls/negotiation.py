"""Sans-IO PT-TLS connections for the NEA Server and the NEA Client (RFC 6876 §3).

In the style of h11: feed the decrypted TLS byte stream to
``receive_data(bytes)``, act on the events it returns, and write out
``data_to_send()``.  Nothing here touches a socket, TLS or a clock.

A session goes through the phases of RFC 6876 §3.3-3.4::

    VERSION  Version Request → Version Response
    AUTH     SASL Mechanisms ⇄ Mechanism Selection / Authentication Data → SASL Result,
             ended by an empty SASL Mechanisms (strongSwan sends the empty list at once
             to a client that authenticated with a TLS certificate)
    DATA     PB-TNC Batch messages both ways
    CLOSED   after a fatal error, a failed authentication or a close

Each side numbers its own messages from 0 (RFC 6876 §3.5), so strongSwan's
server sends Version Response #0, SASL Mechanisms #1, SASL Result #2, the
empty SASL Mechanisms #3 and its first batch as #4.

Errors follow RFC 6876 §3.9: a fatal error queues a PT-TLS Error and ends the
session (``ProtocolError`` then ``Closed``); a message type we do not know is
answered with Type Not Supported, skipped, and the session goes on; a PT-TLS
Error from the peer is never answered with another.  A message longer than
the server accepts (``UNAUTHENTICATED_MAX_MESSAGE_SIZE`` until the data
phase, then ``max_message_size``) is refused from its header with Invalid
Parameter, before its body is waited for.
"""

from __future__ import annotations

import re

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from transports.pt_tls.wire import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HEADER_SIZE,
    IETF_VENDOR,
    MAX_MESSAGE_ID,
    PT_TLS_VERSION,
    PbTncBatch,
    PtTlsError,
    PtTlsErrorCode,
    PtTlsFramer,
    PtTlsMessage,
    PtTlsMessageType,
    PtTlsProtocolError,
    SaslAuthenticationData,
    SaslMechanisms,
    SaslMechanismSelection,
    SaslPlainError,
    SaslPlainResponse,
    SaslResult,
    SaslResultMessage,
    VersionRequest,
    VersionResponse,
    error_code_name,
    error_is_fatal,
)

__all__ = [
    "AUTH_CERTIFICATE",
    "AUTH_NONE",
    "AUTH_SASL_PLAIN",
    "Authenticated",
    "AuthenticationFailed",
    "ClientError",
    "Closed",
    "PbBatchReceived",
    "ProtocolError",
    "PtTlsClient",
    "PtTlsPhase",
    "PtTlsServer",
    "PtTlsStateError",
    "SaslPlainCredentials",
    "ServerError",
    "UNAUTHENTICATED_MAX_MESSAGE_SIZE",
    "VersionNegotiated",
]

SASL_PLAIN = "PLAIN"

UNAUTHENTICATED_MAX_MESSAGE_SIZE = 4096
"""The largest message the server accepts before the data phase, header
included.  Until then a client sends only a Version Request (20 bytes) and
SASL messages: a PLAIN response is at most three 255-byte strings (RFC 4616
§2), strongSwan's with its mechanism name and our header about 800 bytes.
A client that has not authenticated cannot make the server hold
``max_message_size`` (2 MiB) for it."""
AUTH_SASL_PLAIN = "sasl-plain"
AUTH_CERTIFICATE = "certificate"
AUTH_NONE = "none"

Trace = Callable[[str, PtTlsMessage], None]
"""Called with ("received" | "sending", message) for every message, so the
I/O layer can log like strongSwan ("sending PT-TLS message #1 of type ...").
Message values (which may hold a password) are never in a message's repr."""


class PtTlsPhase(enum.Enum):
    """Where a PT-TLS session is (RFC 6876 §3.3-3.4)."""

    VERSION = "version"
    AUTH = "auth"
    DATA = "data"
    CLOSED = "closed"


class PtTlsStateError(RuntimeError):
    """The caller used a connection in a way its phase does not allow
    (a programming error, never caused by the peer)."""


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionNegotiated:
    version: int


@dataclass(frozen=True, slots=True)
class SaslPlainCredentials:
    """The client's SASL PLAIN response, for the I/O layer to check (possibly
    in a thread); answer with ``PtTlsServer.sasl_result(ok)``."""

    authcid: str
    authzid: str | None
    password: str = field(repr=False)

    @property
    def identity(self) -> str:
        return self.authcid


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Client authentication is over and the Data Transport phase begins.

    ``method`` is ``"sasl-plain"``, ``"certificate"`` (the server skipped SASL
    for a TLS client certificate) or ``"none"``.  On the client, ``"none"``
    means the server asked for no SASL (it may have taken the certificate).
    """

    identity: str | None
    method: str


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """SASL ended without success: on the server the result sent (strongSwan
    answers a wrong password with Abort), on the client the result received."""

    result: SaslResult | int
    identity: str | None = None
    #: why, when it was not the password (a malformed response, an authzid
    #: for someone else, an authenticator that raised): for the log
    reason: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PbBatchReceived:
    data: bytes = field(repr=False)

    @property
    def length(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """We found the peer at fault and queued a PT-TLS Error with ``code``."""

    code: PtTlsErrorCode | int
    reason: str
    fatal: bool = True


@dataclass(frozen=True, slots=True)
class _PeerError:
    code: PtTlsErrorCode | int
    vendor: int = IETF_VENDOR
    original_message: bytes = field(default=b"", repr=False)

    @property
    def fatal(self) -> bool:
        return error_is_fatal(self.vendor, self.code)

    @property
    def code_name(self) -> str:
        return error_code_name(self.vendor, self.code)


@dataclass(frozen=True, slots=True)
class ServerError(_PeerError):
    """The server sent a PT-TLS Error (seen by the client)."""


@dataclass(frozen=True, slots=True)
class ClientError(_PeerError):
    """The client sent a PT-TLS Error (seen by the server)."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over; write out ``data_to_send()`` and close TLS."""

    reason: str


Event = (
    VersionNegotiated | SaslPlainCredentials | Authenticated | AuthenticationFailed | PbBatchReceived
    | ProtocolError | ServerError | ClientError | Closed
)


# -- the common machinery -----------------------------------------------------


class _PtTlsConnection:
    _peer: ClassVar[str]
    _peer_error: ClassVar[type[_PeerError]]
    # phase -> {IETF message type -> handler(self, typed value, events)}
    _handlers: ClassVar[dict[PtTlsPhase, dict[PtTlsMessageType, Callable]]]

    def __init__(self, max_message_size: int, trace: Trace | None, first_max_message_size: int | None = None) -> None:
        # the limit until the data phase, when it rises to max_message_size
        self._framer = PtTlsFramer(min(max_message_size, first_max_message_size or max_message_size))
        self._max_message_size = max_message_size
        self._outgoing = bytearray()
        self._next_id = 0
        self._phase = PtTlsPhase.VERSION
        self._trace = trace
        self.version: int | None = None
        self.close_reason: str | None = None

    @property
    def phase(self) -> PtTlsPhase:
        return self._phase

    @property
    def closed(self) -> bool:
        return self._phase is PtTlsPhase.CLOSED

    @property
    def max_message_size(self) -> int:
        """The largest message accepted in the data phase."""
        return self._max_message_size

    @property
    def receive_limit(self) -> int:
        """The largest message accepted now (smaller before the data phase on the server)."""
        return self._framer.max_message_size

    @property
    def max_batch_size(self) -> int:
        """The largest PB-TNC batch a message within our limit carries."""
        return self._max_message_size - HEADER_SIZE

    @property
    def next_message_id(self) -> int:
        return self._next_id

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> list[Event]:
        """Decrypted stream bytes in, events out.  Nothing happens once closed."""
        events: list[Event] = []
        if self.closed:
            return events
        self._framer.receive(data)
        while not self.closed:
            try:
                message = self._framer.next_message()
                if message is None:
                    break
                if self._trace is not None:
                    self._trace("received", message)
                self._dispatch(message, events)
            except PtTlsProtocolError as exc:
                self._report(exc, events)
        return events

    def send_batch(self, data: bytes) -> None:
        """Queue one PB-TNC batch.  Dropped silently once closed (the peer may
        go away while the TNCS core is still working on the reply)."""
        if self.closed:
            return
        if self._phase is not PtTlsPhase.DATA:
            raise PtTlsStateError(f"PB-TNC batches are sent in the data phase, not the {self._phase.value} phase")
        self._send(PbTncBatch(bytes(data)))

    def connection_lost(self, reason: str = "connection closed by peer") -> list[Event]:
        """The transport below went away."""
        events: list[Event] = []
        if not self.closed:
            if self._framer.buffered:
                reason += f" ({self._framer.buffered} bytes of an incomplete PT-TLS message discarded)"
            self._close(reason, events)
        return events

    def close(self, reason: str = "closed locally") -> list[Event]:
        """End the session from our side (a timeout, a decision reached)."""
        events: list[Event] = []
        if not self.closed:
            self._close(reason, events)
        return events

    # -- internals ----------------------------------------------------------

    def _send(self, value) -> None:
        message = value.to_message(self._next_id)
        # RFC 6876 §3.5: the identifier rolls over to zero after 2^32 - 1
        self._next_id = (self._next_id + 1) & MAX_MESSAGE_ID
        if self._trace is not None:
            self._trace("sending", message)
        self._outgoing += message.build()

    def _dispatch(self, message: PtTlsMessage, events: list[Event]) -> None:
        msg_type = message.message_type
        try:
            if msg_type is None:
                raise PtTlsProtocolError(PtTlsErrorCode.TYPE_NOT_SUPPORTED, f"{message.name} is not supported")
            if msg_type is PtTlsMessageType.PT_TLS_ERROR:
                self._on_peer_error(message, events)
                return
            if msg_type is PtTlsMessageType.EXPERIMENTAL:
                # RFC 6876 §3.6: compliant implementations answer Experimental so
                raise PtTlsProtocolError(PtTlsErrorCode.INVALID_MESSAGE, "Experimental messages are not accepted")
            handler = self._handlers[self._phase].get(msg_type)
            if handler is None:
                raise PtTlsProtocolError(
                    PtTlsErrorCode.INVALID_MESSAGE,
                    f"{message.name} from the {self._peer} is not allowed in the {self._phase.value} phase",
                )
            handler(self, message.decode(), events)
        except PtTlsProtocolError as exc:
            raise exc.with_original(message.error_copy()) from None

    def _report(self, exc: PtTlsProtocolError, events: list[Event]) -> None:
        self._send(exc.to_value())
        events.append(ProtocolError(exc.code, str(exc), exc.fatal))
        if exc.fatal:
            self._close(str(exc), events)

    def _on_peer_error(self, message: PtTlsMessage, events: list[Event]) -> None:
        try:
            error = PtTlsError.parse(message.value)
        except PtTlsProtocolError as exc:
            # RFC 6876 §3.9: never answer a PT-TLS Error with another one
            self._close(f"malformed PT-TLS Error from the {self._peer}: {exc}", events)
            return
        events.append(self._peer_error(error.code, error.vendor, error.original_message))
        if error.fatal:
            self._close(f"the {self._peer} sent PT-TLS Error {error.code_name}", events)

    def _close(self, reason: str, events: list[Event]) -> None:
        self._phase = PtTlsPhase.CLOSED
        self.close_reason = reason
        events.append(Closed(reason))


# -- the NEA Server -----------------------------------------------------------


class _ServerAuth(enum.Enum):
    SELECTION = "waiting for a SASL Mechanism Selection"
    RESPONSE = "waiting for the SASL PLAIN response"
    VERIFICATION = "waiting for the credentials check"


class PtTlsServer(_PtTlsConnection):
    """The NEA Server (PT-TLS Responder) side of one PT-TLS session.

    Client authentication, as strongSwan's ``tls-or-sasl`` policy:
    ``client_authenticated_identity`` (from the TLS client certificate) or
    ``sasl_enabled=False`` skip SASL with an empty SASL Mechanisms; otherwise
    SASL PLAIN (RFC 4616) is offered.  The client's response is checked by
    ``authenticator(authcid, password, authzid) -> bool`` when one is given,
    else handed out as a ``SaslPlainCredentials`` event to be answered with
    ``sasl_result(ok)``.  A failed check is answered with SASL Result Abort
    (strongSwan's answer, which lets no client retry) and ends the session.
    """

    _peer = "client"
    _peer_error = ClientError

    def __init__(
        self,
        *,
        authenticator: Callable[[str, str, str | None], bool] | None = None,
        client_authenticated_identity: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        sasl_enabled: bool = True,
        trace: Trace | None = None,
        unauthenticated_max_message_size: int = UNAUTHENTICATED_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(max_message_size, trace, unauthenticated_max_message_size)
        self._authenticator = authenticator
        self._certificate_identity = client_authenticated_identity
        self._sasl_enabled = sasl_enabled
        self._auth: _ServerAuth | None = None
        self._pending: SaslPlainResponse | None = None
        self.identity: str | None = None
        self.auth_method: str | None = None

    def __repr__(self) -> str:
        return f"<PtTlsServer phase={self._phase.value} identity={self.identity!r}>"

    def sasl_result(self, ok: bool) -> list[Event]:
        """Answer a ``SaslPlainCredentials`` event: the password was right or not."""
        events: list[Event] = []
        if self.closed:
            return events  # the client left while its password was checked
        if self._auth is not _ServerAuth.VERIFICATION or self._pending is None:
            raise PtTlsStateError("no SASL PLAIN credentials are waiting for a result")
        credentials, self._pending = self._pending, None
        self._finish_plain(credentials, bool(ok), events)
        return events

    # -- handlers -----------------------------------------------------------

    def _on_version_request(self, request: VersionRequest, events: list[Event]) -> None:
        if not request.accepts(PT_TLS_VERSION):
            raise PtTlsProtocolError(
                PtTlsErrorCode.VERSION_NOT_SUPPORTED,
                f"client offers PT-TLS versions {request.min_version}..{request.max_version}, "
                f"this server supports {PT_TLS_VERSION}",
            )
        self._send(VersionResponse(PT_TLS_VERSION))
        self.version = PT_TLS_VERSION
        events.append(VersionNegotiated(PT_TLS_VERSION))
        self._phase = PtTlsPhase.AUTH
        if self._certificate_identity is not None:
            # "skipping SASL, client already authenticated by TLS certificate"
            self._send(SaslMechanisms(()))
            self._enter_data(self._certificate_identity, AUTH_CERTIFICATE, events)
        elif not self._sasl_enabled:
            self._send(SaslMechanisms(()))
            self._enter_data(None, AUTH_NONE, events)
        else:
            self._send(SaslMechanisms((SASL_PLAIN,)))
            self._auth = _ServerAuth.SELECTION

    def _on_mechanism_selection(self, selection: SaslMechanismSelection, events: list[Event]) -> None:
        if self._auth is not _ServerAuth.SELECTION:
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_MESSAGE, f"SASL Mechanism Selection while {self._auth.value}"
            )
        if selection.name != SASL_PLAIN:
            raise PtTlsProtocolError(
                PtTlsErrorCode.SASL_MECHANISM_ERROR,
                f"client selected SASL mechanism {_mechanism_for_log(selection.name)}, "
                f"only {SASL_PLAIN} was offered",
            )
        if selection.initial is None:
            # RFC 4422 §5: without an initial response the server sends an empty challenge
            self._auth = _ServerAuth.RESPONSE
            self._send(SaslAuthenticationData(b""))
        else:
            self._check_plain(selection.initial, events)

    def _on_authentication_data(self, data: SaslAuthenticationData, events: list[Event]) -> None:
        if self._auth is not _ServerAuth.RESPONSE:
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_MESSAGE, f"SASL Authentication Data while {self._auth.value}"
            )
        self._check_plain(data.data, events)

    def _on_batch(self, batch: PbTncBatch, events: list[Event]) -> None:
        events.append(PbBatchReceived(batch.batch))

    _handlers = {
        PtTlsPhase.VERSION: {PtTlsMessageType.VERSION_REQUEST: _on_version_request},
        PtTlsPhase.AUTH: {
            PtTlsMessageType.SASL_MECHANISM_SELECTION: _on_mechanism_selection,
            PtTlsMessageType.SASL_AUTHENTICATION_DATA: _on_authentication_data,
        },
        PtTlsPhase.DATA: {PtTlsMessageType.PB_TNC_BATCH: _on_batch},
    }

    # -- SASL PLAIN ---------------------------------------------------------

    def _check_plain(self, response: bytes, events: list[Event]) -> None:
        try:
            credentials = SaslPlainResponse.parse(response)
        except SaslPlainError as exc:
            self._fail_sasl(f"SASL PLAIN authentication failed: {exc}", None, events)
            return
        if credentials.authzid and credentials.authzid != credentials.authcid:
            # RFC 4616 §2: the server decides whether the authcid may act as
            # the authzid; nac lets nobody act as another user
            self._fail_sasl(f"SASL PLAIN authorization identity {credentials.authzid!r} differs from "
                            f"the authentication identity {credentials.authcid!r}: refused",
                            credentials.authcid, events)
            return
        if self._authenticator is None:
            self._auth = _ServerAuth.VERIFICATION
            self._pending = credentials
            events.append(SaslPlainCredentials(credentials.authcid, credentials.authzid, credentials.password))
            return
        try:
            ok = bool(self._authenticator(credentials.authcid, credentials.password, credentials.authzid))
        except Exception as exc:  # the text of a foreign exception might quote the password
            self._fail_sasl(
                f"SASL PLAIN authenticator raised {type(exc).__name__} for {credentials.authcid!r}",
                credentials.authcid,
                events,
            )
            return
        self._finish_plain(credentials, ok, events)

    def _finish_plain(self, credentials: SaslPlainResponse, ok: bool, events: list[Event]) -> None:
        self._auth = None
        if not ok:
            self._fail_sasl(
                f"SASL PLAIN authentication of {credentials.authcid!r} failed", credentials.authcid, events,
                wrong_password=True,
            )
            return
        self._send(SaslResultMessage(SaslResult.SUCCESS))
        # strongSwan completes SASL with an empty mechanism list
        self._send(SaslMechanisms(()))
        self._enter_data(credentials.identity, AUTH_SASL_PLAIN, events)

    def _fail_sasl(self, reason: str, identity: str | None, events: list[Event], *,
                   wrong_password: bool = False) -> None:
        self._auth = None
        # Abort, as strongSwan: it does not invite the client to retry
        self._send(SaslResultMessage(SaslResult.ABORT))
        events.append(AuthenticationFailed(SaslResult.ABORT, identity, None if wrong_password else reason))
        self._close(reason, events)

    def _enter_data(self, identity: str | None, method: str, events: list[Event]) -> None:
        self.identity = identity
        self.auth_method = method
        self._phase = PtTlsPhase.DATA
        self._framer.max_message_size = self._max_message_size
        events.append(Authenticated(identity, method))


# -- the NEA Client -----------------------------------------------------------


class _ClientAuth(enum.Enum):
    MECHANISMS = "waiting for SASL Mechanisms"
    CHALLENGE = "waiting for the server's SASL PLAIN challenge"
    RESULT = "waiting for the SASL Result"
    FINAL = "waiting for the SASL Mechanisms that ends authentication"


class PtTlsClient(_PtTlsConnection):
    """The NEA Client (PT-TLS Initiator) side of one PT-TLS session.

    ``start()`` queues the Version Request (version 1 only).  SASL PLAIN is
    done with ``sasl_identity`` / ``sasl_password`` when the server offers
    it; like strongSwan the authzid is left empty and the response goes in
    the Mechanism Selection (``initial_response=False`` waits for the
    server's empty challenge instead).
    """

    _peer = "server"
    _peer_error = ServerError

    def __init__(
        self,
        *,
        sasl_identity: str | None = None,
        sasl_password: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        initial_response: bool = True,
        trace: Trace | None = None,
    ) -> None:
        super().__init__(max_message_size, trace)
        self.sasl_identity = sasl_identity
        self._sasl_password = sasl_password
        self._initial_response = initial_response
        self._started = False
        self._auth: _ClientAuth | None = None
        self._sasl_done = False

    def __repr__(self) -> str:
        return f"<PtTlsClient phase={self._phase.value} sasl_identity={self.sasl_identity!r}>"

    def start(self) -> None:
        """Queue the Version Request that opens the session."""
        if self._started:
            raise PtTlsStateError("the PT-TLS client has already started")
        self._started = True
        self._send(VersionRequest(PT_TLS_VERSION, PT_TLS_VERSION, PT_TLS_VERSION))

    def _plain_response(self) -> bytes:
        return SaslPlainResponse(self.sasl_identity, self._sasl_password).build()

    # -- handlers -----------------------------------------------------------

    def _on_version_response(self, response: VersionResponse, events: list[Event]) -> None:
        if not self._started:
            raise PtTlsProtocolError(PtTlsErrorCode.INVALID_MESSAGE, "Version Response before any Version Request")
        if response.version != PT_TLS_VERSION:
            raise PtTlsProtocolError(
                PtTlsErrorCode.VERSION_NOT_SUPPORTED,
                f"server chose PT-TLS version {response.version}, only {PT_TLS_VERSION} was offered",
            )
        self.version = PT_TLS_VERSION
        events.append(VersionNegotiated(PT_TLS_VERSION))
        self._phase = PtTlsPhase.AUTH
        self._auth = _ClientAuth.MECHANISMS

    def _on_mechanisms(self, mechanisms: SaslMechanisms, events: list[Event]) -> None:
        if self._auth not in (_ClientAuth.MECHANISMS, _ClientAuth.FINAL):
            raise PtTlsProtocolError(PtTlsErrorCode.INVALID_MESSAGE, f"SASL Mechanisms while {self._auth.value}")
        if not mechanisms.names:
            self._auth = None
            self._phase = PtTlsPhase.DATA
            if self._sasl_done:
                events.append(Authenticated(self.sasl_identity, AUTH_SASL_PLAIN))
            else:
                events.append(Authenticated(None, AUTH_NONE))
            return
        if SASL_PLAIN not in mechanisms.names:
            raise PtTlsProtocolError(
                PtTlsErrorCode.SASL_MECHANISM_ERROR,
                f"none of the SASL mechanisms offered ({', '.join(mechanisms.names)}) is supported",
            )
        if self.sasl_identity is None or self._sasl_password is None:
            raise PtTlsProtocolError(
                PtTlsErrorCode.SASL_MECHANISM_ERROR, "server requires SASL PLAIN and no credentials are configured"
            )
        if self._initial_response:
            self._send(SaslMechanismSelection(SASL_PLAIN, self._plain_response()))
            self._auth = _ClientAuth.RESULT
        else:
            self._send(SaslMechanismSelection(SASL_PLAIN))
            self._auth = _ClientAuth.CHALLENGE

    def _on_authentication_data(self, data: SaslAuthenticationData, events: list[Event]) -> None:
        if self._auth is _ClientAuth.CHALLENGE:
            self._send(SaslAuthenticationData(self._plain_response()))
            self._auth = _ClientAuth.RESULT
        elif self._auth is _ClientAuth.RESULT:
            raise PtTlsProtocolError(
                PtTlsErrorCode.SASL_MECHANISM_ERROR, "SASL PLAIN takes no challenge after the client's response"
            )
        else:
            raise PtTlsProtocolError(
                PtTlsErrorCode.INVALID_MESSAGE, f"SASL Authentication Data while {self._auth.value}"
            )

    def _on_result(self, result: SaslResultMessage, events: list[Event]) -> None:
        if self._auth not in (_ClientAuth.RESULT, _ClientAuth.CHALLENGE):
            raise PtTlsProtocolError(PtTlsErrorCode.INVALID_MESSAGE, f"SASL Result while {self._auth.value}")
        if result.result == SaslResult.SUCCESS:
            # authentication completes with the empty SASL Mechanisms that follows
            self._sasl_done = True
            self._auth = _ClientAuth.FINAL
            return
        self._auth = None
        events.append(AuthenticationFailed(result.result, self.sasl_identity))
        name = result.result.name if isinstance(result.result, SaslResult) else str(result.result)
        self._close(f"server answered SASL Result {name}", events)

    def _on_batch(self, batch: PbTncBatch, events: list[Event]) -> None:
        events.append(PbBatchReceived(batch.batch))

    _handlers = {
        PtTlsPhase.VERSION: {PtTlsMessageType.VERSION_RESPONSE: _on_version_response},
        PtTlsPhase.AUTH: {
            PtTlsMessageType.SASL_MECHANISMS: _on_mechanisms,
            PtTlsMessageType.SASL_AUTHENTICATION_DATA: _on_authentication_data,
            PtTlsMessageType.SASL_RESULT: _on_result,
        },
        PtTlsPhase.DATA: {PtTlsMessageType.PB_TNC_BATCH: _on_batch},
    }


_MECHANISM_NAME = re.compile(r"[A-Z0-9_-]{1,20}")


def _mechanism_for_log(name: str) -> str:
    """A selected mechanism name fit for a log line: RFC 4422 §3.1 names are
    1-20 of A-Z 0-9 - _; anything else may be a client that put its
    credentials where the name belongs, so it is not echoed."""
    if _MECHANISM_NAME.fullmatch(name):
        return repr(name)
    return f"with a malformed name ({len(name)} characters)"

