"""The NASes a RADIUS server answers, and which one a datagram comes from.

Each NAS (RADIUS client, RFC 2865 §3) is known by its address or network,
its own shared secret and a short name for the log and the session records,
as FreeRADIUS's ``clients.conf`` has them: ``[radius-client:NAME]``
sections.  The older ``[radius] clients`` list with the one ``[radius]
secret`` still works; its entries are named by the address they send from.
A datagram belongs to the client with the most specific network holding its
source address (longest prefix; a named client before an old-style entry of
the same network).  IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, what a
socket bound to ``::`` reports for IPv4 senders) are matched as the IPv4
address they carry, in the table and in the configuration alike.

Per-NAS settings (today the enforcement attributes, :class:`RadiusClient`'s
``enforcement``) override ``[radius]`` for that NAS only; a key absent from
the section keeps the ``[radius]`` value.

A NAS that speaks RadSec (RFC 6614) is known by its TLS client certificate
instead: ``radsec_name`` in its section is a dNSName of the certificate's
subjectAltName or its subject common name (:func:`certificate_names`), and
its secret on that connection is "radsec" (RFC 6614 §2.3).  Such a NAS needs
no ``address`` nor ``secret`` unless it also sends UDP RADIUS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from nac import config as nac_config
from transports.radius.enforcement import RadiusEnforcement

__all__ = [
    "CLIENT_SECTION",
    "ENFORCEMENT_KEYS",
    "RadiusClient",
    "RadiusClientTable",
    "certificate_names",
    "client_table",
    "radsec_clients",
    "ip_address",
    "network",
]

#: ``[radius-client:NAME]``
CLIENT_SECTION = "radius-client"
#: what a NAS may have of its own instead of ``[radius]``'s
ENFORCEMENT_KEYS = ("filter_id_allow", "filter_id_isolate", "vlan_allow", "vlan_isolate", "session_timeout",
                    "filter_id_tunnel_type", "session_timeout_action")
#: addresses remembered by a table (spoofed sources must not grow it without bound)
MAX_CACHED_ADDRESSES = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a datagram's source ``host`` as a socket reports it
    (an IPv6 zone dropped, an IPv4-mapped address as IPv4); None if it is
    none."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def network(net: Network) -> Network:
    """``net`` with IPv4-mapped IPv6 networks (inside ``::ffff:0:0/96``) as
    the IPv4 network they stand for, as :func:`ip_address` sees senders."""
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
        return ipaddress.IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))
    return net


@dataclass(frozen=True, slots=True)
class RadiusClient:
    """A NAS allowed to send requests, by address or network, with its
    shared secret.  ``name`` names it in the log and the session records
    (empty: the sending address does); ``enforcement`` replaces the
    server's for its replies (None: the server's)."""

    network: Network
    secret: bytes = field(repr=False)
    name: str = ""
    enforcement: RadiusEnforcement | None = field(default=None, repr=False, compare=False)
    #: what a decision change sends it (RFC 5176): "coa", "disconnect" or "none"
    coa: str = field(default="coa", compare=False)
    #: the UDP port its Dynamic Authorization Server listens on
    coa_port: int = field(default=3799, compare=False)

    def __post_init__(self):
        if not self.secret:
            raise ValueError("a RADIUS client needs a shared secret")
        object.__setattr__(self, "network", network(self.network))

    def label(self, host: str) -> str:
        """How the log names this client when it sends from ``host``."""
        return self.name or host


class RadiusClientTable:
    """Finds the client a datagram comes from: the most specific network wins.

    Addresses seen are remembered, so the per-packet cost is a dict lookup.
    """

    def __init__(self, clients: Iterable[RadiusClient]):
        # longest prefix first; of the same network, a named client first (stable sort)
        self.clients = sorted(clients, key=lambda c: (c.network.prefixlen, bool(c.name)), reverse=True)
        self._cache: dict[str, RadiusClient | None] = {}

    def __len__(self) -> int:
        return len(self.clients)

    def find(self, host: str) -> RadiusClient | None:
        try:
            return self._cache[host]
        except KeyError:
            pass
        addr = ip_address(host)
        found = None
        if addr is not None:
            for client in self.clients:
                if addr.version == client.network.version and addr in client.network:
                    found = client
                    break
        if len(self._cache) >= MAX_CACHED_ADDRESSES:
            self._cache.clear()
        self._cache[host] = found
        return found


# -- from the configuration --------------------------------------------------------------


def _read_secret(path: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            first = f.readline(4097)
    except OSError as exc:
        raise nac_config.ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    secret = first.rstrip(b"\r\n")
    if not secret:
        raise nac_config.ConfigError(f"{where}: {path} holds no secret (its first line is empty)")
    if len(secret) > 4096:
        raise nac_config.ConfigError(f"{where}: {path}: the secret's line is longer than 4096 bytes")
    return secret


def client_table(cfg) -> RadiusClientTable:
    """The clients of ``[radius-client:NAME]`` sections and of ``[radius]
    clients`` (with ``[radius] secret``); secret files are read here.
    ConfigError with one line per problem (the configuration checked the
    rest when it was loaded)."""
    sec = cfg.section("radius")
    clients = []
    for name, values in cfg.named_sections(CLIENT_SECTION).items():
        section = f"{CLIENT_SECTION}:{name}"
        if values.get("secret") is not None:
            secret = values["secret"].encode("utf-8")
        elif values.get("secret_file") is None:
            continue  # a RadSec-only NAS (radsec_clients)
        else:
            secret = _read_secret(values["secret_file"],
                                  f"{cfg.origin(section, 'secret_file')}: [{section}] secret_file")
        enforcement = None
        if any(key in values for key in ENFORCEMENT_KEYS):
            enforcement = RadiusEnforcement.from_config({key: values.get(key, sec[key]) for key in ENFORCEMENT_KEYS})
        coa = values.get("coa", sec["coa"])
        coa_port = values.get("coa_port", sec["coa_port"])
        for net in values.get("address") or ():
            clients.append(RadiusClient(net, secret, name, enforcement, coa, coa_port))
    if sec["secret"] is not None:
        secret = sec["secret"].encode("utf-8")
        clients += [RadiusClient(net, secret, coa=sec["coa"], coa_port=sec["coa_port"]) for net in sec["clients"]]
    return RadiusClientTable(clients)


# -- RadSec: NASes known by their certificate -------------------------------------------

#: stands for "any address" in a RadSec NAS's :class:`RadiusClient` (it is never
#: looked up by address: its TLS certificate says which NAS it is)
ANY_ADDRESS = ipaddress.ip_network("0.0.0.0/0")


def certificate_names(certificate) -> list[str]:
    """The names a RadSec client certificate proves (RFC 6614 §2.4, as
    RFC 6125 does for servers): its subjectAltName dNSNames, then its subject
    common name, lower case.  ``certificate``: cryptography's or pyOpenSSL's."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = certificate.to_cryptography() if hasattr(certificate, "to_cryptography") else certificate
    names = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    names += [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [name.lower() for name in names]


def radsec_clients(cfg, secret: bytes) -> dict[str, RadiusClient]:
    """{certificate name (lower case): the NAS} of the ``[radius-client:NAME]``
    sections with a ``radsec_name``, each with the RadSec ``secret`` and its
    own enforcement settings."""
    sec = cfg.section("radius")
    found: dict[str, RadiusClient] = {}
    for name, values in cfg.named_sections(CLIENT_SECTION).items():
        if not values.get("radsec_name"):
            continue
        enforcement = None
        if any(key in values for key in ENFORCEMENT_KEYS):
            enforcement = RadiusEnforcement.from_config({key: values.get(key, sec[key]) for key in ENFORCEMENT_KEYS})
        found[values["radsec_name"].lower()] = RadiusClient(
            ANY_ADDRESS, secret, name, enforcement, values.get("coa", sec["coa"]), values.get("coa_port", sec["coa_port"]))
    return found
