"""TLS for the EAP-TTLS tunnel: pyOpenSSL over memory BIOs, sans-IO.

One :func:`server_context` (or, for the peer, :func:`peer_context`) per
configuration (certificate loading and context set-up are the expensive
part), one :class:`TlsTunnel` per conversation: TLS records in with :meth:`TlsTunnel.receive`, records out
with :meth:`TlsTunnel.data_to_send`, no socket anywhere.

Sessions are not resumed: EAP-TTLS here always runs phase 2, and a resumed
TLS session would let a peer skip it in some implementations.  OpenSSL's
TLS 1.3 server still sends NewSessionTicket messages (pyOpenSSL has no
``SSL_CTX_set_num_tickets``); with the session cache off they cannot be
used, and peers simply ignore them.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from OpenSSL import SSL

__all__ = ["TlsError", "TlsSettingError", "TlsTunnel", "peer_context", "server_context"]

_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
_READ_SIZE = 65536


class TlsSettingError(ValueError):
    """A server TLS setting cannot be used; ``setting`` names its key
    (``cert``, ``key``, ``ca``, ``ciphers``, ``min_tls_version``)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


class TlsError(Exception):
    """The TLS layer failed (handshake failure, alert, close); the message
    is OpenSSL's reason, which never holds key material.  ``peer_closed``:
    the other end ended the connection (close_notify or a fatal alert)."""

    def __init__(self, message: str, *, peer_closed: bool = False):
        super().__init__(message)
        self.peer_closed = peer_closed


def server_context(*, cert: Path, key: Path, ca: Path | None = None, client_cert: str = "none",
                   min_tls_version: str = "1.2", max_tls_version: str = "1.3",
                   ciphers: str | None = None) -> SSL.Context:
    """The TLS server context for EAP-TTLS.

    ``client_cert``: ``none`` (never requested), ``optional`` (requested and
    verified against ``ca`` when sent) or ``required``.  Raises ``ValueError``
    with a message naming the file that could not be used.
    """
    if _VERSIONS[min_tls_version] > _VERSIONS[max_tls_version]:
        raise TlsSettingError("min_tls_version", f"min_tls_version {min_tls_version} is above max_tls_version {max_tls_version}")
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_VERSIONS[min_tls_version])
    ctx.set_max_proto_version(_VERSIONS[max_tls_version])
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
                    | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    for setting, path in (("cert", cert), ("key", key)):
        try:
            Path(path).read_bytes()  # OpenSSL names a file it cannot read only "system lib"
        except OSError as exc:
            raise TlsSettingError(setting, f"cannot read {path}: {exc.strerror}") from None
    try:
        ctx.use_certificate_chain_file(str(cert))
    except (SSL.Error, OSError) as exc:
        raise TlsSettingError("cert", f"cannot load the certificate {cert}: {_reason(exc)}") from None
    try:
        ctx.use_privatekey_file(str(key))
        ctx.check_privatekey()
    except (SSL.Error, OSError) as exc:
        raise TlsSettingError("key", f"cannot use the private key {key} with {cert}: {_reason(exc)}") from None
    if ciphers:
        try:
            ctx.set_cipher_list(ciphers.encode("ascii"))
        except SSL.Error:
            raise TlsSettingError("ciphers", f"the cipher string {ciphers!r} selects no cipher") from None
    if client_cert != "none":
        if ca is None:
            raise TlsSettingError("ca", f"client_cert = {client_cert} needs a CA to verify client certificates")
        try:
            ctx.load_verify_locations(str(ca))
            # the CA names the CertificateRequest lists
            ctx.load_client_ca(str(ca).encode())
        except (SSL.Error, OSError, ValueError) as exc:
            raise TlsSettingError("ca", f"cannot load the CA {ca}: {_reason(exc)}") from None
        mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if client_cert == "required" else 0)
        ctx.set_verify(mode)
    return ctx


def peer_context(*, cacert: str | Path, min_tls_version: str = "1.2", max_tls_version: str = "1.3",
                 cert: str | Path | None = None, key: str | Path | None = None) -> SSL.Context:
    """The TLS client context of EAP-TTLS: trust the CA(s) in ``cacert`` and
    nothing else; present ``cert``/``key`` when given.  Raises ``ValueError``
    naming the file that could not be used."""
    if _VERSIONS[min_tls_version] > _VERSIONS[max_tls_version]:
        raise ValueError(f"min_tls_version {min_tls_version} is above max_tls_version {max_tls_version}")
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSIONS[min_tls_version])
    ctx.set_max_proto_version(_VERSIONS[max_tls_version])
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    try:
        ctx.load_verify_locations(str(cacert))
    except (SSL.Error, OSError) as exc:
        raise ValueError(f"cannot load the CA certificate {cacert}: {_reason(exc)}") from None
    ctx.set_verify(SSL.VERIFY_PEER)
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both a certificate and its private key")
    if cert is not None:
        try:
            ctx.use_certificate_chain_file(str(cert))
            ctx.use_privatekey_file(str(key))
            ctx.check_privatekey()
        except (SSL.Error, OSError) as exc:
            raise ValueError(f"cannot use the client certificate {cert} with key {key}: "
                             f"{_reason(exc)}") from None
    return ctx


def _reason(exc: Exception, default: str = "OpenSSL error") -> str:
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        return "; ".join(str(e[-1]) for e in exc.args[0] if e and e[-1]) or default
    return getattr(exc, "strerror", None) or str(exc) or default


def _tls_error(exc: SSL.Error, conn: SSL.Connection, doing: str) -> TlsError:
    """The TlsError for ``exc`` raised while ``doing``: a peer that ended the
    connection is named as such.  strongSwan closes its tunnels with a
    close_notify of level fatal, which OpenSSL reports (TLS 1.2) as an error
    without a reason, not as the end of the data."""
    if isinstance(exc, SSL.ZeroReturnError):
        return TlsError("the peer closed the TLS connection (close_notify)", peer_closed=True)
    if conn.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
        reason = _reason(exc, default="")
        if not reason:
            return TlsError("the peer closed the TLS connection (close_notify as a fatal alert)",
                            peer_closed=True)
        return TlsError(f"the peer ended the TLS connection with a fatal alert: {reason}", peer_closed=True)
    return TlsError(f"{doing}: {_reason(exc)}")


class TlsTunnel:
    """One end of a TLS connection whose records travel in EAP: the server
    (EAP-TTLS authenticator) or, with ``client=True``, the peer, which
    starts the handshake."""

    def __init__(self, context: SSL.Context, *, client: bool = False):
        self._conn = SSL.Connection(context, None)
        if client:
            self._conn.set_connect_state()
        else:
            self._conn.set_accept_state()
        self.handshake_done = False
        self.closed = False

    # -- records ----------------------------------------------------------------

    def receive(self, records: bytes) -> None:
        """TLS records from the peer; advances the handshake.  Raises TlsError."""
        if self.closed:
            raise TlsError("the TLS connection is closed")
        if records:
            self._conn.bio_write(records)
        if not self.handshake_done:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                return
            except SSL.Error as exc:
                self.closed = True
                raise _tls_error(exc, self._conn, "TLS handshake failed") from None
            self.handshake_done = True

    def data_to_send(self) -> bytes:
        """Every TLS record waiting to go to the peer."""
        chunks = []
        while True:
            try:
                chunk = self._conn.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _READ_SIZE:
                break  # a memory BIO hands out all it holds: no need to be told it is empty
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- application data ------------------------------------------------------------

    def read(self) -> bytes:
        """Application data received so far (after the handshake)."""
        if not self.handshake_done:
            return b""
        chunks = []
        while True:
            try:
                chunks.append(self._conn.recv(_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.Error as exc:
                self.closed = True
                raise _tls_error(exc, self._conn, "TLS error") from None
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Encrypt application data; the records come out of :meth:`data_to_send`."""
        try:
            self._conn.sendall(data)
        except SSL.Error as exc:
            self.closed = True
            raise _tls_error(exc, self._conn, "TLS error") from None

    # -- what was negotiated -------------------------------------------------------------

    @property
    def version(self) -> str:
        """'TLSv1.2' or 'TLSv1.3'."""
        return self._conn.get_protocol_version_name()

    @property
    def is_tls13(self) -> bool:
        return self._conn.get_protocol_version() == SSL.TLS1_3_VERSION

    @property
    def cipher(self) -> str:
        return self._conn.get_cipher_name() or ""

    def export(self, label: bytes, length: int, context: bytes | None = None) -> bytes:
        """RFC 5705 / RFC 8446 §7.5 keying material exporter."""
        return self._conn.export_keying_material(label, length, context)

    def peer_certificate(self) -> x509.Certificate | None:
        """The other end's certificate, verified against the CA when one was configured."""
        cert = self._conn.get_peer_certificate()
        return cert.to_cryptography() if cert is not None else None
