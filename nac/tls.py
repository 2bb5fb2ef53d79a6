"""TLS server settings from a transport's configuration section
(pyOpenSSL through twisted.internet.ssl), shared by the TLS transports
(PT-TLS, HTTP): certificate and key, client certificates, versions and
ciphers, each error one line naming the section and key."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet import ssl

from nac.config import ConfigError

__all__ = ["server_context"]

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _read(path: Path, what: str, section: str, key: str, origin: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{origin}: [{section}] {key}: cannot read {what} {path}: {exc.strerror}")


def server_context(*, cert: Path, key: Path, ca: Path | None, client_cert: str,
                   min_tls_version: str, ciphers: str | None, origin: str = "config",
                   section: str = "pt-tls") -> ssl.CertificateOptions:
    """CertificateOptions for a TLS server with an RSA or ECDSA certificate.

    ``client_cert``: ``none`` (no certificate requested), ``optional`` (asked
    for, verified against ``ca`` when sent) or ``required``.
    """
    cert_pem = _read(cert, "certificate", section, "cert", origin)
    key_pem = _read(key, "private key", section, "key", origin)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
        certificate = crypto.X509.from_cryptography(chain[0])
        extra = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    except Exception:
        raise ConfigError(f"{origin}: [{section}] cert: {cert} holds no PEM certificate") from None
    try:
        private_key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except Exception:
        raise ConfigError(f"{origin}: [{section}] key: {key} holds no PEM private key "
                          "(or an encrypted one, which nac cannot use)") from None
    ca_certs = []
    if client_cert != "none":
        if ca is None:
            raise ConfigError(f"{origin}: [{section}] ca: client_cert = {client_cert} needs a CA "
                              "to verify client certificates")
        try:
            ca_certs = [crypto.X509.from_cryptography(c)
                        for c in x509.load_pem_x509_certificates(_read(ca, "CA", section, "ca", origin))]
        except ConfigError:
            raise
        except Exception:
            raise ConfigError(f"{origin}: [{section}] ca: {ca} holds no PEM certificate") from None
    kwargs = {}
    if ciphers:
        kwargs["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(ciphers)
    options = ssl.CertificateOptions(
        privateKey=private_key, certificate=certificate, extraCertChain=extra,
        verify=bool(ca_certs), caCerts=ca_certs or None,
        requireCertificate=client_cert == "required",
        raiseMinimumTo=_TLS_VERSIONS[min_tls_version],
        enableSessions=False, **kwargs)
    try:
        # made now rather than at the first connection, which would fail each handshake
        options.getContext()
    except SSL.Error:
        raise ConfigError(f"{origin}: [{section}] key: {key} is not the private key of the "
                          f"certificate {cert}") from None
    return options
