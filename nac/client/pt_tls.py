"""PT-TLS (RFC 6876) client over real TLS: Twisted moves the bytes, the
sans-IO cores do the rest (:class:`transports.pt_tls.negotiation.PtTlsClient`
for PT-TLS, :class:`nac.client.pb_client.PbTncClient` for PB-TNC).

:func:`run_assessment` runs one assessment and fires with its
:class:`~nac.client.pb_client.AssessmentOutcome`, or fails with an
:class:`AssessmentError` whose message is one line for an operator.  Many
can run at once on one reactor (a load generator builds the TLS options and
the collectors once and passes them to each call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet import defer, endpoints, protocol, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost, DNSLookupError
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

from nac.client.collectors import DEFAULT_COLLECTORS, make_collectors
from nac.client.mutual import MutualPbTncClient, load_imvs
from nac.client.pb_client import AssessmentOutcome, PbState, PbTncClient
from nac.log import Logger
from transports.pt_tls import negotiation as ptn
from transports.pt_tls.tls import hold_declarations
from transports.pt_tls.wire import DEFAULT_MAX_MESSAGE_SIZE, PtTlsMessage

__all__ = [
    "AssessmentError",
    "AssessmentTimeout",
    "ClientAuthenticationFailed",
    "ClientTls",
    "ConnectionFailed",
    "PT_TLS_PORT",
    "ProtocolFailure",
    "PtTlsClientProtocol",
    "SetupError",
    "client_tls_options",
    "run_assessment",
]

log = Logger(namespace="nac.client.pt-tls")

PT_TLS_PORT = 271
#: PB-TNC batch header + PB-TNC message header + PB-PA header, the room a
#: PA-TNC message loses inside one batch.
_PB_PA_OVERHEAD = 8 + 12 + 12


class AssessmentError(Exception):
    """An assessment that could not complete; ``str()`` is one line.
    ``exit_code`` is what ``nac-pt-tls-client`` exits with."""

    exit_code = 1

    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return self.args[0]


class SetupError(AssessmentError):
    """Local files (CA, certificate, key) unusable."""

    exit_code = 2


class ConnectionFailed(AssessmentError):
    """TCP connection or TLS handshake failed (certificate not trusted, name mismatch...)."""

    exit_code = 3


class ClientAuthenticationFailed(AssessmentError):
    """The server refused our SASL credentials."""

    exit_code = 4


class ProtocolFailure(AssessmentError):
    """PT-TLS or PB-TNC went wrong, or the server ended without a result."""

    exit_code = 5


class AssessmentTimeout(AssessmentError):
    """No result within the time allowed."""

    exit_code = 6


# -- TLS ------------------------------------------------------------------------------


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read {what} {path}: {exc.strerror}") from None


def client_tls_options(*, cacert: str | Path, server_name: str, cert: str | Path | None = None,
                       key: str | Path | None = None) -> "ClientTls":
    """TLS client options: trust only the CA(s) in ``cacert``, check the
    server's certificate names ``server_name`` (service-identity: DNS name
    or IP address), and present ``cert``/``key`` when given."""
    try:
        cas = [ssl.Certificate(crypto.X509.from_cryptography(c))
               for c in x509.load_pem_x509_certificates(_read(cacert, "CA certificate"))]
    except SetupError:
        raise
    except Exception as exc:
        raise SetupError(f"{cacert}: no usable PEM CA certificate ({exc})") from None
    client = None
    if (cert is None) != (key is None):
        raise SetupError("a client certificate needs both a certificate and its private key")
    if cert is not None:
        cert_pem, key_pem = _read(cert, "certificate"), _read(key, "private key")
        try:
            first = x509.load_pem_x509_certificates(cert_pem)[0]
            client = ssl.PrivateCertificate.fromCertificateAndKeyPair(
                ssl.Certificate(crypto.X509.from_cryptography(first)),
                ssl.KeyPair(crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)))
        except Exception as exc:
            raise SetupError(f"cannot load the client certificate {cert} / key {key}: {exc}") from None
        try:
            ctx = SSL.Context(SSL.TLS_METHOD)
            ctx.use_certificate(client.original)
            ctx.use_privatekey(client.privateKey.original)
            ctx.check_privatekey()
        except SSL.Error:
            raise SetupError(f"{key} is not the private key of {cert}") from None
    return ClientTls(server_name, ssl.trustRootFromCertificates(cas), client)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTls:
    """TLS client connections to one server name, as Twisted's
    ``optionsForClientTLS`` makes them (OpenSSL checks the chain, SNI for
    a DNS name, service-identity checks the name), with the per-connection
    Python work left out: Twisted gives every connection a verify callback
    of its own, here one callback on the shared context serves them all,
    and a server certificate whose name matched once is recognised by its
    bytes instead of being checked again.
    """

    _MATCHED_KEPT = 16

    def __init__(self, server_name: str, trust_root, client=None):
        self.server_name = server_name
        kwargs = {}
        if client is not None:
            kwargs = {"privateKey": client.privateKey.original, "certificate": client.original}
        self._context = ssl.CertificateOptions(trustRoot=trust_root, **kwargs).getContext()
        if isIPAddress(server_name) or isIPv6Address(server_name):
            self._sni = None
            self._name_check = lambda certificate: verify_certificate_ip_address(certificate, server_name)
        else:
            self._sni = server_name.encode("idna")
            self._name_check = lambda certificate: verify_certificate_hostname(certificate, server_name)
        self._matched: set[bytes] = set()
        self._context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return self.connection(tlsProtocol)

    def connection(self, app, sock=None) -> SSL.Connection:
        """A client connection over ``sock`` (None: memory BIOs, as Twisted
        uses it); ``app.failVerification(failure)`` hears of a server
        certificate that names someone else."""
        connection = SSL.Connection(self._context, sock)
        connection.set_app_data(app)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        return connection

    def _verify(self, connection, certificate, _errno, depth, ok) -> bool:
        # OpenSSL has checked the chain (``ok``); the name is the server
        # certificate's (depth 0).  An exception must not escape into OpenSSL.
        if not ok or depth:
            return bool(ok)
        try:
            der = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
            if der in self._matched:
                return True
            self._name_check(certificate.to_cryptography())
        except VerificationError:
            connection.get_app_data().failVerification(Failure())
            return False
        except Exception:
            log.failure("while checking the server certificate's name")
            return False
        if len(self._matched) >= self._MATCHED_KEPT:
            self._matched.clear()
        self._matched.add(der)
        return True


def _describe(failure) -> str:
    """One line for why a connection or TLS handshake failed."""
    value = failure.value
    if isinstance(value, SSL.Error):
        details = []
        for entry in (value.args[0] if value.args and isinstance(value.args[0], list) else []):
            if isinstance(entry, tuple) and entry:
                details.append(str(entry[-1]))
        return "; ".join(d for d in details if d) or str(value) or "TLS error"
    name = type(value).__name__
    if name == "VerificationError":  # service_identity: the certificate names someone else
        return "the server certificate does not match the expected server name"
    if isinstance(value, (ConnectionDone, ConnectionLost)):
        return "connection closed by the server"
    text = str(value).strip()
    return text or name


# -- the protocol ----------------------------------------------------------------------


@implementer(IHandshakeListener)
class PtTlsClientProtocol(protocol.Protocol):
    """One PT-TLS session carrying one PB-TNC exchange.

    ``done`` fires with the :class:`AssessmentOutcome` once the server's
    RESULT was answered and the connection closed, or fails with an
    :class:`AssessmentError`.

    With a PB-TNC client that stays (``pb.stay``), each decision goes to
    ``on_decision`` and the connection stays open for the server's next
    assessment (its SRETRY, which ``on_retry`` hears of), until the server
    closes it or ``reassessments`` more decisions came (None: no limit);
    ``done`` then fires with the last decision.
    """

    def __init__(self, pt: ptn.PtTlsClient, pb: PbTncClient | MutualPbTncClient, *, peer: str,
                 on_decision: Callable[[AssessmentOutcome], None] | None = None,
                 on_retry: Callable[[], None] | None = None, reassessments: int | None = None):
        self.pt = pt
        self.pb = pb
        self.peer = peer
        self.done: defer.Deferred = defer.Deferred()
        self.handshake_done = False
        self.decisions = 0
        self._on_decision = on_decision
        self._on_retry = on_retry
        self._reassessments = reassessments
        self._outcome: AssessmentOutcome | None = None
        self._failure: AssessmentError | None = None
        self._closing = False

    # -- connection life ------------------------------------------------------------

    def connectionMade(self):
        # the next connections' TLS wrappers find their declarations made
        hold_declarations(self.transport, getattr(self.transport, "transport", None))
        log.info("connected to {peer}, starting TLS", peer=self.peer)
        self.pt.start()  # the Version Request waits in TLS until the handshake is done
        self._flush()

    def handshakeCompleted(self):
        self.handshake_done = True
        log.info("TLS handshake with {peer} complete", peer=self.peer)

    def dataReceived(self, data: bytes):
        if self._closing:
            return
        try:
            self._handle(self.pt.receive_data(data))
        except Exception as exc:
            log.failure("internal error in the PT-TLS client")
            self._stop(ProtocolFailure(f"internal error: {type(exc).__name__}: {exc}"))

    def connectionLost(self, reason=protocol.connectionDone):
        self.pt.connection_lost()
        if self.done.called:
            return
        if self._outcome is not None:
            if not self.pb.finished:  # the server closed the connection the client stayed on
                self.pb.abort("connection closed")
            if self._outcome.completed:
                self.done.callback(self._outcome)
            else:
                self.done.errback(ProtocolFailure(self._outcome.error or "no assessment result"))
            return
        self.pb.abort("connection lost")
        if self._failure is None:
            if not self.handshake_done:
                self._failure = ConnectionFailed(f"TLS handshake with {self.peer} failed: {_describe(reason)}")
            else:
                self._failure = ProtocolFailure(
                    f"{self.peer} closed the connection before the assessment completed ({_describe(reason)})")
        self.done.errback(self._failure)

    def timeout(self, seconds: float) -> None:
        """Give up: no result within ``seconds``."""
        if not self.done.called and self._outcome is None:
            self._stop(AssessmentTimeout(f"no assessment result from {self.peer} within {seconds:g} s"),
                       abort=True)

    # -- events of the PT-TLS core --------------------------------------------------------

    def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, ptn.VersionNegotiated):
                log.debug("PT-TLS version {v} negotiated", v=event.version)
            elif isinstance(event, ptn.Authenticated):
                log.info("PT-TLS authentication complete ({method})", method=event.method)
                self.pt.send_batch(self.pb.start())
            elif isinstance(event, ptn.AuthenticationFailed):
                name = getattr(event.result, "name", event.result)
                self._failure = ClientAuthenticationFailed(
                    f"SASL authentication as {event.identity!r} failed: the server answered SASL Result {name}")
            elif isinstance(event, ptn.PbBatchReceived):
                stayed = self._outcome is not None and self.pb.state is PbState.DECIDED
                step = self.pb.receive_batch(event.data)
                if stayed and not step.close:
                    # the server's SRETRY: another assessment, answered in step.batch
                    self._outcome = None
                    if self._on_retry is not None:
                        self._on_retry()
                if step.decided:
                    self._decided(step.outcome)
                    if self._closing:
                        return
                    continue
                if step.batch is not None:
                    self.pt.send_batch(step.batch)
                if step.close:
                    self._outcome = step.outcome
                    self._flush()
                    self._close_transport()
                    return
            elif isinstance(event, ptn.ProtocolError):
                if event.fatal and self._failure is None:
                    self._failure = ProtocolFailure(f"PT-TLS error from {self.peer}: {event.reason}")
            elif isinstance(event, ptn.ServerError):
                log.warn("{peer} sent PT-TLS Error {code}", peer=self.peer, code=event.code_name)
                if event.fatal and self._failure is None:
                    self._failure = ProtocolFailure(f"{self.peer} sent PT-TLS Error {event.code_name}")
            elif isinstance(event, ptn.Closed):
                if self._failure is None:
                    self._failure = ProtocolFailure(f"PT-TLS session with {self.peer} ended: {event.reason}")
                self._flush()
                self._close_transport()
                return
        self._flush()

    def _decided(self, outcome: AssessmentOutcome) -> None:
        """A decision the client stays after: report it; close after the last one wanted."""
        self.decisions += 1
        self._outcome = outcome
        if self._on_decision is not None:
            self._on_decision(outcome)
        if self._reassessments is not None and self.decisions > self._reassessments:
            log.info("{n} assessments completed; closing the connection to {peer}", n=self.decisions,
                     peer=self.peer)
            self.pt.send_batch(self.pb.close())
            self._flush()
            self._close_transport()
        else:
            log.info("waiting on the connection to {peer} for the server's next assessment", peer=self.peer)

    # -- plumbing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        data = self.pt.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def _close_transport(self) -> None:
        if not self._closing:
            self._closing = True
            self.transport.loseConnection()

    def _stop(self, failure: AssessmentError, *, abort: bool = False) -> None:
        if self._failure is None:
            self._failure = failure
        self._closing = True
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()


def _trace(direction: str, message) -> None:
    # the name comes quoted, as strongSwan logs it ("'Version Request'")
    log.debug("{direction} PT-TLS message #{mid} of type {name} ({size} bytes)", direction=direction,
              mid=message.message_id, name=message.name, size=16 + len(message.value))


def tcp_endpoint(reactor, host: str, port: int):
    """A TCP client endpoint for ``host``: an address is connected to as it
    is; only a name goes through the resolver (HostnameEndpoint, which
    tries each address it resolves to)."""
    if isIPAddress(host):
        return endpoints.TCP4ClientEndpoint(reactor, host, port)
    if isIPv6Address(host):
        return endpoints.TCP6ClientEndpoint(reactor, host, port)
    return endpoints.HostnameEndpoint(reactor, host, port)


def run_assessment(
    reactor,
    host: str,
    port: int = PT_TLS_PORT,
    *,
    cacert: str | Path | None = None,
    identity: str | None = None,
    password: str | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    server_name: str | None = None,
    collectors: Sequence = DEFAULT_COLLECTORS,
    timeout: float = 30.0,
    language: str = "en",
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    tls_options=None,
    trace: Callable[[str, PtTlsMessage], None] | None = None,
    mutual_imvs: Sequence = (),
    stay: bool = False,
    reassessments: int | None = None,
    on_decision: Callable[[AssessmentOutcome], None] | None = None,
) -> defer.Deferred:
    """Run one assessment against the PT-TLS server at ``host``:``port``.

    ``collectors``: collector names (see :data:`nac.client.collectors.COLLECTORS`)
    or IMC objects, which may be shared by concurrent assessments.
    ``tls_options``: prebuilt :func:`client_tls_options` (then ``cacert``,
    ``cert``, ``key`` and ``server_name`` are not read).  SASL PLAIN uses
    ``identity``/``password`` when the server asks for it.  ``trace`` is
    called with ``"sending"`` or ``"received"`` and each PT-TLS message, in
    the order the client queued and read them (the messages of a session,
    as a load generator replays them).  ``mutual_imvs``: IMV objects (or
    names, see :func:`nac.client.mutual.load_imvs`) judging the server in
    mutual PB-TNC, which the client then asks for.

    ``stay``: keep the connection open after the decision and answer the
    server's SRETRY with a new assessment (fresh measurements), until the
    server closes the connection or, with ``reassessments``, that many
    more decisions came; each decision goes to ``on_decision``.  The
    ``timeout`` then bounds each assessment, not the wait between them.
    Not with ``mutual_imvs``.

    Fires with an :class:`AssessmentOutcome` whose ``completed`` is True
    (whatever the recommendation), or fails with an :class:`AssessmentError`.
    """
    try:
        if tls_options is None:
            if cacert is None:
                raise SetupError("a CA certificate to check the server with is required")
            tls_options = client_tls_options(cacert=cacert, server_name=server_name or host, cert=cert, key=key)
        imcs = make_collectors(collectors) if all(isinstance(c, str) for c in collectors) else list(collectors)
        imvs = load_imvs(mutual_imvs) if all(isinstance(v, str) for v in mutual_imvs) else list(mutual_imvs)
        if imvs and (stay or reassessments is not None):
            raise SetupError("staying for re-assessments does not go with mutual PB-TNC")
    except ValueError as exc:
        return defer.fail(SetupError(str(exc)))
    except AssessmentError as exc:
        return defer.fail(exc)

    peer = f"{host}[{port}]"
    if trace is None:
        traced = _trace
    else:
        def traced(direction: str, message: PtTlsMessage) -> None:
            _trace(direction, message)
            trace(direction, message)
    pt = ptn.PtTlsClient(sasl_identity=identity, sasl_password=password,
                         max_message_size=max_message_size, trace=traced)
    if imvs:
        pb = MutualPbTncClient(imcs, imvs, max_batch_size=pt.max_batch_size,
                               max_message_size=pt.max_batch_size - _PB_PA_OVERHEAD, language=language,
                               server=peer)
    else:
        pb = PbTncClient(imcs, max_batch_size=pt.max_batch_size,
                         max_message_size=pt.max_batch_size - _PB_PA_OVERHEAD, language=language,
                         stay=stay or reassessments is not None)
    timed_out = []

    def on_timeout():
        timed_out.append(True)
        if connecting.called:
            proto.timeout(timeout)
        else:
            connecting.cancel()

    timers = [reactor.callLater(timeout, on_timeout)]

    def decided(outcome):
        # between assessments the server decides when the next one begins
        if timers[0].active():
            timers[0].cancel()
        if on_decision is not None:
            on_decision(outcome)

    def retrying():
        if not timers[0].active():
            timers[0] = reactor.callLater(timeout, on_timeout)

    proto = PtTlsClientProtocol(pt, pb, peer=peer, on_decision=decided, on_retry=retrying,
                                reassessments=reassessments)
    endpoint = endpoints.wrapClientTLS(tls_options, tcp_endpoint(reactor, host, port))
    result: defer.Deferred = defer.Deferred()

    def connect_failed(failure):
        if timed_out:
            raise AssessmentTimeout(f"could not connect to {peer} within {timeout:g} s")
        if failure.check(ConnectError, DNSLookupError):
            raise ConnectionFailed(f"cannot connect to {peer}: {_describe(failure)}")
        return failure

    def finished(value):
        if timers[0].active():
            timers[0].cancel()
        return value

    connecting = endpoints.connectProtocol(endpoint, proto)
    connecting.addCallbacks(lambda _: proto.done, connect_failed)
    connecting.addBoth(finished)
    connecting.chainDeferred(result)
    return result
