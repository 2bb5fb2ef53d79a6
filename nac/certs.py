"""The demo PKI: a CA and a server certificate generated on first start.

So that one command starts a working server, nac creates in its state
directory a self-signed CA (``ca.pem``/``ca.key``) and a server certificate
issued by it (``server.pem``/``server.key``) when no certificate is
configured.  The server certificate carries the serverAuth extended key usage
for PT-TLS and EAP-TTLS and the IKE intermediate one (RFC 4945 §5.1.3.12) so
that strongSwan accepts it for IKEv2 too.

Existing files are never overwritten.  A set that is only partly present (a
certificate without its key, say) is an error to be fixed by hand rather than
silently replaced: clients may already trust the old CA.

:func:`certificate_identity` is the identity a verified client certificate
proves, the same for every TLS transport (PT-TLS, EAP-TTLS).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "DemoPki",
    "OID_IKE_INTERMEDIATE",
    "PkiError",
    "SERVER_VALIDITY",
    "certificate_identity",
    "ensure_demo_pki",
    "issue_certificate",
]

CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=730)
# tolerate peers whose clock is a little behind ours
_BACKDATE = datetime.timedelta(hours=1)

#: id-kp-ipsecIKE's predecessor "iKEIntermediate", which strongSwan and
#: Windows look for on IKEv2 server certificates.
OID_IKE_INTERMEDIATE = x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"
KEY_TYPES = ("ecdsa", "rsa")

_KEY_MODE = 0o600
_CERT_MODE = 0o644


class PkiError(Exception):
    """The demo PKI files cannot be created or used; the message names the file."""


@dataclass(frozen=True, slots=True)
class DemoPki:
    """Paths of the demo PKI.

    ``ca_key`` may be absent if the operator moved it away after the server
    certificate was issued; it is only needed to issue certificates.
    ``created`` says whether this call generated anything.
    """

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    created: bool


def certificate_identity(certificate) -> str | None:
    """The identity a client certificate proves: its first subjectAltName
    (e-mail, DNS, URI, in that order) or else its subject common name, as
    strongSwan uses.  ``certificate`` is a cryptography certificate, a
    pyOpenSSL ``X509`` (what Twisted's ``getPeerCertificate`` gives) or None."""
    if certificate is None:
        return None
    cert = certificate.to_cryptography() if hasattr(certificate, "to_cryptography") else certificate
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for kind in (x509.RFC822Name, x509.DNSName, x509.UniformResourceIdentifier):
            values = san.get_values_for_type(kind)
            if values:
                return values[0]
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    return cert.subject.rfc4514_string() or None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key(key_type: str):
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type {key_type!r} is not one of: {', '.join(KEY_TYPES)}")


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; never replaces an existing file (O_EXCL)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise PkiError(f"{path}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise PkiError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed or the mode; be exact
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_pair(cert_path: Path, cert: x509.Certificate, key_path: Path, key, *, replace: bool = False) -> None:
    if replace:
        _replace_pair(cert_path, cert, key_path, key)
        return
    # the key first, and withdrawn again if the certificate cannot be written,
    # so a failure does not leave half a pair behind
    _write_new(key_path, _key_pem(key), _KEY_MODE)
    try:
        _write_new(cert_path, _cert_pem(cert), _CERT_MODE)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise


def _replace_pair(cert_path: Path, cert: x509.Certificate, key_path: Path, key) -> None:
    """Write the pair beside the old files, then rename them over it: the
    new key is never readable by others (created 0600), and a failure leaves
    the old pair as it was.  A symbolic link is replaced, not followed."""
    for path in (cert_path, key_path):
        if path.is_dir():
            raise PkiError(f"{path}: is a directory")
    suffix = f".new-{os.getpid()}"
    new_key, new_cert = key_path.with_name(key_path.name + suffix), cert_path.with_name(cert_path.name + suffix)
    for stale in (new_key, new_cert):
        stale.unlink(missing_ok=True)
    try:
        _write_new(new_key, _key_pem(key), _KEY_MODE)
        _write_new(new_cert, _cert_pem(cert), _CERT_MODE)
        try:
            os.replace(new_key, key_path)
            os.replace(new_cert, cert_path)
        except OSError as exc:
            raise PkiError(f"{exc.filename2 or exc.filename}: cannot replace: {exc.strerror}") from None
    finally:
        for leftover in (new_key, new_cert):
            leftover.unlink(missing_ok=True)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise PkiError(f"{path}: not a PEM certificate") from None


def _read_key(path: Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise PkiError(f"{path}: not an unencrypted PEM private key") from None


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_pair(cert_path: Path, key_path: Path) -> None:
    if _public_der(_read_cert(cert_path).public_key()) != _public_der(_read_key(key_path).public_key()):
        raise PkiError(f"{key_path}: does not belong to the certificate {cert_path}")


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    return value if value is not None else cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _make_ca(key) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nac demo"),
        x509.NameAttribute(NameOID.COMMON_NAME, "nac demo CA"),
    ])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


#: subjectAltName entries by an explicit kind (``email:carol@example.net``)
_SAN_KINDS = {"dns": "DNS name", "ip": "IP address", "email": "e-mail address", "uri": "URI"}


def _san_entry(name: str) -> x509.GeneralName:
    """``name`` as a subjectAltName entry: ``email:``, ``uri:``, ``dns:`` or
    ``ip:`` say which kind; otherwise an IP literal is an IP address, a
    name with ``@`` an e-mail address, anything else a DNS name."""
    kind, colon, value = name.partition(":")
    kind = kind.lower()
    if not colon or kind not in _SAN_KINDS:
        kind, value = ("email" if "@" in name else None), name
    if not value:
        raise PkiError(f"{name!r}: no {_SAN_KINDS.get(kind, 'name')} after the colon")
    if kind == "email":
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in value):
            raise PkiError(f"{value!r} is not an e-mail address")
        try:
            return x509.RFC822Name(f"{local}@{domain.encode('idna').decode('ascii')}")
        except (UnicodeError, ValueError):
            raise PkiError(f"{value!r} is not an e-mail address for a certificate") from None
    if kind == "uri":
        if not value.isascii() or any(c.isspace() for c in value) or ":" not in value:
            raise PkiError(f"{value!r} is not a URI (scheme:...)")
        return x509.UniformResourceIdentifier(value)
    if kind in (None, "ip"):
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            if kind == "ip":
                raise PkiError(f"{value!r} is not an IP address") from None
    name = value
    try:
        # DNSName wants the ASCII (A-label) form of internationalised names
        return x509.DNSName(name.encode("idna").decode("ascii"))
    except UnicodeError:
        raise PkiError(f"{name!r} is not a valid DNS name for a certificate") from None


def _issue(ca_cert: x509.Certificate, ca_key, common_name: str, key, *, client: bool,
           san: Iterable[str], validity: datetime.timedelta) -> x509.Certificate:
    if not common_name:
        raise PkiError("a certificate needs a non-empty common name")
    entries: list[x509.GeneralName] = []
    for name in san:
        entry = _san_entry(name)
        if entry not in entries:
            entries.append(entry)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH, OID_IKE_INTERMEDIATE]
    now = _now()
    builder = (
        x509.CertificateBuilder()
        # the issuer's organisation ("nac demo" for the demo CA)
        .subject_name(x509.Name([
            *ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        # a certificate must not outlive its issuer
        .not_valid_after(min(now + validity, _not_after(ca_cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            # RSA key transport in TLS 1.2 RSA-kx suites
            key_encipherment=isinstance(key, rsa.RSAPrivateKey),
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if entries:
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    try:
        return builder.sign(ca_key, hashes.SHA256())
    except (ValueError, TypeError) as exc:
        raise PkiError(f"cannot sign the certificate for {common_name!r}: {exc}") from None


def _check_ca_pair(ca_cert: x509.Certificate, ca_key, ca_cert_path: Path, ca_key_path: Path) -> None:
    if _public_der(ca_cert.public_key()) != _public_der(ca_key.public_key()):
        raise PkiError(f"{ca_key_path}: does not belong to the CA certificate {ca_cert_path}")


def ensure_demo_pki(state_dir: Path, server_name: str = "nac.test", *, key_type: str = "ecdsa") -> DemoPki:
    """Create the demo CA and server certificate in ``state_dir`` unless present.

    ``state_dir`` is created (mode 0700) if missing.  Keys are written with
    mode 0600.  When the CA exists but the server pair does not, a new server
    certificate is issued by the existing CA.  Raises :class:`PkiError` for a
    partly present set, a key that does not match its certificate, or
    unwritable files.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type {key_type!r} is not one of: {', '.join(KEY_TYPES)}")
    state_dir = Path(state_dir)
    if not state_dir.exists():
        try:
            state_dir.mkdir(mode=0o700, parents=True)
            state_dir.chmod(0o700)
        except OSError as exc:
            raise PkiError(f"{state_dir}: cannot create the state directory: {exc.strerror}") from None
    ca_cert_path, ca_key_path = state_dir / CA_CERT, state_dir / CA_KEY
    server_cert_path, server_key_path = state_dir / SERVER_CERT, state_dir / SERVER_KEY
    pki = DemoPki(ca_cert_path, ca_key_path, server_cert_path, server_key_path, created=False)
    have = {p: p.exists() for p in (ca_cert_path, ca_key_path, server_cert_path, server_key_path)}
    remedy = "restore it, or remove the demo files (ca.*, server.*) to have a new set generated"

    if have[server_cert_path] != have[server_key_path]:
        present, absent = ((server_cert_path, server_key_path) if have[server_cert_path]
                           else (server_key_path, server_cert_path))
        raise PkiError(f"{absent}: missing although {present.name} exists; {remedy}")
    if have[ca_key_path] and not have[ca_cert_path]:
        raise PkiError(f"{ca_cert_path}: missing although {ca_key_path.name} exists; {remedy}")

    if have[server_cert_path]:
        if not have[ca_cert_path]:
            raise PkiError(f"{ca_cert_path}: missing although the server certificate exists "
                           f"(clients need it to trust {server_cert_path.name}); {remedy}")
        _check_pair(server_cert_path, server_key_path)
        return pki

    if have[ca_cert_path]:
        if not have[ca_key_path]:
            raise PkiError(f"{ca_key_path}: missing, so no server certificate can be issued; {remedy}")
        ca_cert, ca_key = _read_cert(ca_cert_path), _read_key(ca_key_path)
        _check_ca_pair(ca_cert, ca_key, ca_cert_path, ca_key_path)
    else:
        ca_key = _new_key(key_type)
        ca_cert = _make_ca(ca_key)
        _write_pair(ca_cert_path, ca_cert, ca_key_path, ca_key)

    key = _new_key(key_type)
    cert = _issue(ca_cert, ca_key, server_name, key, client=False,
                  san=(server_name, "localhost", "127.0.0.1", "::1"), validity=SERVER_VALIDITY)
    _write_pair(server_cert_path, cert, server_key_path, key)
    return DemoPki(ca_cert_path, ca_key_path, server_cert_path, server_key_path, created=True)


def issue_certificate(ca_cert_path, ca_key_path, common_name: str, out_cert, out_key, *,
                      client: bool = True, san_dns: Iterable[str] = (), key_type: str = "ecdsa",
                      validity: datetime.timedelta = SERVER_VALIDITY, replace: bool = False) -> tuple[Path, Path]:
    """Issue a certificate signed by the CA at ``ca_cert_path``/``ca_key_path``.

    ``client`` selects the clientAuth extended key usage (else serverAuth
    plus IKE intermediate); ``san_dns`` entries go into subjectAltName (see
    :func:`_san_entry`: IP literals become IP address entries, names with
    ``@`` e-mail addresses, ``uri:``/``email:``/``dns:``/``ip:`` prefixes
    say the kind).  ``out_cert``/``out_key`` must not exist unless
    ``replace``.  The key file is created with mode 0600.  Returns
    ``(out_cert, out_key)`` as paths.
    """
    ca_cert_path, ca_key_path = Path(ca_cert_path), Path(ca_key_path)
    out_cert, out_key = Path(out_cert), Path(out_key)
    for out in (out_cert, out_key):
        if not replace and (out.exists() or out.is_symlink()):
            raise PkiError(f"{out}: already exists; refusing to overwrite it")
    ca_cert, ca_key = _read_cert(ca_cert_path), _read_key(ca_key_path)
    _check_ca_pair(ca_cert, ca_key, ca_cert_path, ca_key_path)
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(f"{ca_cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    if _not_after(ca_cert) <= _now():
        raise PkiError(f"{ca_cert_path}: the CA certificate has expired")
    key = _new_key(key_type)
    cert = _issue(ca_cert, ca_key, common_name, key, client=client, san=tuple(san_dns), validity=validity)
    _write_pair(out_cert, cert, out_key, key, replace=replace)
    return out_cert, out_key
