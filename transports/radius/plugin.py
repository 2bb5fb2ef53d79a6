"""The RADIUS transport as a plugin (:class:`nac.interfaces.ITransportPlugin`):
its configuration sections (``[radius]`` and one ``[radius-client:NAME]`` per
NAS), the checks that span them, and what builds it in the main process and
in a worker process (:mod:`transports.radius.service`).  Registered under
the ``nac.transports`` entry points as ``radius``."""

from __future__ import annotations

import ipaddress
from typing import Any

from zope.interface import implementer

from nac.config import (
    listen_option,
    SCHEMA,
    Option,
    address,
    tls_version,
    choice,
    cidr,
    comma_list_of,
    declare_named_section,
    declare_section,
    int_range,
    non_negative_int,
    optional,
    path,
    port,
    positive_int,
    secret_text,
    seconds,
    text,
    workers_setting,
)
from nac.interfaces import ISessionControl, ITransportPlugin
from nac.processes import WorkerTransportPlugin
from transports.radius.clients import CLIENT_SECTION

def _vlan(raw: str) -> str:
    # RADIUS Tunnel-Private-Group-Id (RFC 2868 §3.6): usually the VLAN number,
    # but switches also accept VLAN names; one attribute holds at most 253 bytes
    value = raw.strip()
    if value.isdigit() and not 1 <= int(value) <= 4094:
        raise ValueError("is not a VLAN id (1-4094) or name")
    if len(value.encode()) > 250:
        raise ValueError("is too long for a RADIUS attribute")
    return value



def _radsec_name(raw: str) -> str:
    value = text(raw).strip()
    if not value or any(c.isspace() or c == "," for c in value):
        raise ValueError("is not one certificate name (no spaces or commas)")
    return value


def _radius_text(raw: str) -> str:
    value = text(raw)
    if len(value.encode()) > 253:
        raise ValueError("is too long for a RADIUS attribute (at most 253 bytes)")
    return value


def _nas_network(raw: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # an IPv4-mapped IPv6 address is the IPv4 NAS it stands for (a socket
    # bound to :: reports IPv4 senders so, and they are matched as IPv4)
    net = cidr(raw)
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
        return ipaddress.IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))
    return net


@implementer(ITransportPlugin, ISessionControl)
class RadiusPlugin(WorkerTransportPlugin):
    service_module = "transports.radius.service"
    name = "radius"
    label = "RADIUS"
    description = "RADIUS (RFC 2865, 3579): EAP-TTLS with PT-EAP or EAP-TNC relayed by a NAS"
    listen_protocol = "UDP"

    def declare_options(self) -> None:
        declare_section("radius", help=(
            "RADIUS (RFC 2865, 3579): a NAS, 802.1X switch or VPN gateway relays the endpoint's EAP-TTLS "
            "(with PT-EAP or EAP-TNC inside) to nac. Enable with `transports = pt-tls, radius`.\n"
            "NASes (RADIUS clients) are best given one [radius-client:NAME] section each (below), with a "
            "secret of their own. The older way still works: the addresses or networks (CIDR) of "
            "`clients` all share `secret`. A request from an address that neither holds is dropped, with a "
            "log line naming the address (at most one a minute per address)."), options=[
            listen_option(),
            Option("port", port, 1812, "UDP authentication port."),
            Option("acct_port", int_range(0, 65535), 1813,
                   "UDP accounting port (RFC 2866), on the same address; 0: no accounting. Accounting-Requests "
                   "of the NASes (Start, Interim-Update, Stop, Accounting-On/Off) are kept in the database "
                   "(`nac-admin accounting list`, /api/accounting) and answered once committed; they tell nac "
                   "where an endpoint's session is, for CoA and Disconnect."),
            Option("acct_max_pending", positive_int, 1024,
                   "Most Accounting-Requests being recorded at once (one NAS: three quarters of them); more "
                   "are discarded, and the NAS sends them again."),
            Option("acct_rate", positive_int, 10000,
                   "Most Accounting-Requests a second from all NASes together (bursts of twice as many); more "
                   "are discarded, and the NASes send them again."),
            Option("acct_rate_per_nas", positive_int, 1000,
                   "Most Accounting-Requests a second from one NAS (bursts of twice as many); more are "
                   "discarded, and the NAS sends them again."),
            Option("secret", optional(secret_text), None,
                   "Shared secret of the `clients`, the same as configured on them. No default: required when "
                   "radius is enabled and no [radius-client:NAME] section names a NAS. Never shown in logs or "
                   "error messages.", secret=True),
            Option("clients", comma_list_of(_nas_network), [ipaddress.ip_network("127.0.0.1/32")],
                   "Addresses or networks (CIDR) of the NASes sharing `secret` (only used with it); NASes "
                   "with a secret of their own have [radius-client:NAME] sections."),
            Option("coa", choice("coa", "disconnect", "none"), "coa",
                   "What a NAS is sent when the decision for an endpoint it admitted changes (RFC 5176), for the "
                   "sessions its accounting told of: coa (a CoA-Request with the new decision's Filter-Id / VLAN; "
                   "Access Denied is always a Disconnect-Request), disconnect (a Disconnect-Request: the endpoint "
                   "authenticates again) or none. Per NAS in [radius-client:NAME]."),
            Option("coa_port", port, 3799, "UDP port of the NASes' Dynamic Authorization Server (RFC 5176)."),
            Option("coa_timeout", seconds, 2.0,
                   "How long nac waits for a CoA-ACK / NAK before sending the request again; the wait doubles "
                   "with each try, up to 16 s. On a NAS's RadSec connection a request is sent once and waits "
                   "as long as all the UDP tries would."),
            Option("coa_attempts", int_range(1, 10), 5,
                   "How many times a CoA-Request or Disconnect-Request is sent before nac gives up (and records "
                   "it as unanswered)."),
            Option("filter_id_allow", optional(_radius_text), "allow",
                   "Filter-Id sent with Access-Accept for Access Allowed. Empty: no Filter-Id."),
            Option("filter_id_isolate", optional(_radius_text), "isolate",
                   "Filter-Id sent with Access-Accept for Isolate. Empty: no Filter-Id."),
            Option("vlan_allow", optional(_vlan), None,
                   "VLAN (Tunnel-Private-Group-Id, sent with Tunnel-Type VLAN and Tunnel-Medium-Type 802) "
                   "for Access Allowed. Empty: no VLAN attributes."),
            Option("vlan_isolate", optional(_vlan), None,
                   "VLAN for Isolate. Empty: no VLAN attributes."),
            Option("session_timeout", non_negative_int, 0, "Session-Timeout in seconds sent with Access-Accept; 0: none. "
                   "A group's session_timeout (nac-admin / API) replaces it for its members."),
            Option("session_timeout_action", choice("terminate", "reauthenticate"), "reauthenticate",
                   "What the NAS does when Session-Timeout runs out: reauthenticate (Termination-Action = "
                   "RADIUS-Request beside Session-Timeout: the NAS authenticates the endpoint again, and nac "
                   "assesses it again, periodically) or terminate (no Termination-Action: the session ends)."),
            Option("filter_id_tunnel_type", choice("none", "esp"), "none",
                   "esp: send Tunnel-Type = ESP (untagged) with the Filter-Id, for IPsec gateways: strongSwan's "
                   "eap-radius makes the Filter-Id the client's group (connections with groups = allow / isolate) "
                   "only then. none: the Filter-Id alone, for switches and access points."),
            Option("fragment_size", int_range(64, 4000), 1024,
                   "Largest EAP-TTLS / PT-EAP fragment per EAP message, in bytes; it must fit one RADIUS "
                   "packet (at most 4000). A Framed-MTU in the NAS's first Access-Request lowers it for "
                   "that conversation, so that EAP packets fit Framed-MTU - 4 bytes (RFC 3580); it never "
                   "raises it."),
            Option("conversation_timeout", seconds, 30.0,
                   "An EAP conversation without a new request for this long is forgotten."),
            Option("max_conversations", positive_int, 4096,
                   "Most EAP conversations in progress at once, shared out among the worker processes. When "
                   "they are all taken, the oldest unfinished conversation of the client with the most is ended "
                   "to make room: a new authentication is never refused for want of room."),
            Option("max_conversations_per_nas", optional(positive_int), None,
                   "Most conversations of one client (NAS); a newer one ends its oldest unfinished one. Empty: "
                   "three quarters of max_conversations, so that a flood through one NAS leaves room for the "
                   "others."),
            Option("max_conversations_per_station", positive_int, 4,
                   "Most conversations of one endpoint (the Calling-Station-Id a NAS sends: a MAC address, or "
                   "an address and port); a newer one ends its oldest unfinished one."),
            Option("radsec_port", int_range(0, 65535), 0,
                   "RadSec (RFC 6614, RADIUS over TLS) TCP port; 0 (the default): no RadSec; IANA's port is "
                   "2083. NASes authenticate with TLS client certificates issued by radsec_ca, each named by "
                   "the radsec_name of a [radius-client:NAME] section; the RADIUS secret on RadSec is "
                   "\"radsec\" (RFC 6614 §2.3). The main process serves RadSec with the same RADIUS server "
                   "core as UDP (EAP, Status-Server keep-alives per RFC 5997) and, when acct_port is not 0, "
                   "records Accounting-Requests as the accounting port does."),
            Option("radsec_listen", address, "::",
                   "Address RadSec listens on. :: (the default): every address, IPv6 and IPv4."),
            Option("radsec_cert", optional(path), None,
                   "RadSec server certificate (PEM), with any intermediate CA certificates after it. Empty: "
                   "the demo certificate server.pem in state_dir (as PT-TLS's). Set both radsec_cert and "
                   "radsec_key, or neither."),
            Option("radsec_key", optional(path), None,
                   "Private key of radsec_cert (PEM, unencrypted). Empty: the demo key server.key in state_dir."),
            Option("radsec_ca", optional(path), None,
                   "CA certificates (PEM) that NAS client certificates must chain to. Required when "
                   "radsec_port is set: a NAS without a certificate from it is refused in the TLS handshake."),
            Option("radsec_min_tls_version", tls_version, "1.2", "Lowest TLS version RadSec accepts: 1.2 or 1.3."),
            Option("radsec_handshake_timeout", seconds, 10.0,
                   "Time allowed for a RadSec connection's TLS handshake (and NAS identification)."),
            Option("radsec_idle_timeout", seconds, 300.0,
                   "A RadSec connection without a request for this long is closed (NASes keep theirs open "
                   "with Status-Server)."),
            Option("radsec_max_connections", positive_int, 256, "Most RadSec connections at once."),
            Option("radsec_max_connections_per_source", positive_int, 16,
                   "Most RadSec connections at once from one IP address."),
            Option("workers", workers_setting, "auto",
                   "Processes serving RADIUS: auto (one per CPU nac may run on) or a number. With more than "
                   "one, worker processes (the same ones as PT-TLS's, when both have more than one) serve "
                   "RADIUS too, each with its own TNCS core, IMVs and database connection. The main process "
                   "reads the UDP socket and hands each worker the requests of its conversations: a new "
                   "conversation goes to the process its Request Authenticator selects, so they are spread "
                   "evenly whatever source ports the NAS uses, and a conversation stays with one process. "
                   "Workers answer from the same address and port. 1 serves everything in the main "
                   "process."),
        ])



        declare_named_section(CLIENT_SECTION, help=(
            "One NAS, as in FreeRADIUS's clients.conf. NAME (a short name: letters, digits, '.', '_', '-') "
            "names the NAS in the log and in the session records (`nac-admin sessions list`). A request "
            "belongs to the NAS with the most specific address holding its source (the longest prefix; a "
            "[radius-client:NAME] before a `clients` entry of the same network); IPv4 NASes seen by a server "
            "listening on :: count as IPv4. A key not given keeps the [radius] value. For example:\n"
            "\n"
            "  [radius-client:sw-floor2]\n"
            "  address = 192.0.2.10\n"
            "  secret_file = /etc/nac/sw-floor2.secret\n"
            "  vlan_allow = 10\n"
            "  vlan_isolate = 20\n"
            "\n"
            "  [radius-client:vpn-gw]\n"
            "  address = 2001:db8:0:1::/64, 198.51.100.0/28\n"
            "  secret = another-secret\n"
            "  filter_id_allow = vpn-full"), options=[
            Option("address", comma_list_of(_nas_network, allow_empty=False, unique=True), None,
                   "The NAS's IP address or network (CIDR), IPv4 or IPv6; several separated by commas. "
                   "Required, except for a NAS that only speaks RadSec (radsec_name)."),
            Option("radsec_name", optional(_radsec_name), None,
                   "RadSec (RFC 6614): the name the NAS's TLS client certificate proves, a dNSName of its "
                   "subjectAltName or its subject common name (compared without regard to case); a RadSec "
                   "connection whose certificate (issued by [radius] radsec_ca) names no NAS is closed. The "
                   "NAS's secret there is \"radsec\" (RFC 6614 §2.3); address and secret are then only needed "
                   "for UDP RADIUS. CoA and Disconnect go on its open RadSec connection, else over UDP when it "
                   "has an address."),
            Option("secret", optional(secret_text), None,
                   "Its shared secret (never shown in logs or errors). Give secret or secret_file.", secret=True),
            Option("secret_file", optional(path), None,
                   "A file (best mode 0600) whose first line is the shared secret of this NAS, read at "
                   "start-up by every nac process."),
            # per-NAS enforcement: the [radius] key of the same name when absent
            *(SCHEMA["radius"][key] for key in ("filter_id_allow", "filter_id_isolate", "vlan_allow", "vlan_isolate",
                                                "session_timeout", "session_timeout_action", "filter_id_tunnel_type",
                                                "coa", "coa_port")),
        ])

    def check(self, cfg) -> list[str]:
        return _check_radius_clients(cfg)

    def change_session(self, cfg, db, session_id: int, access: str | None):
        from transports.radius.dynamic import change_session
        return change_session(cfg, db, session_id, access)


def _check_radius_clients(cfg) -> list[str]:
    """The NASes: ``[radius-client:NAME]`` sections, each with an address
    and one secret, no network twice; and ``[radius] clients``, which share
    ``[radius] secret``."""
    problems = []
    named = cfg.named_sections(CLIENT_SECTION)
    owners: dict[Any, str] = {}
    lower: dict[str, str] = {}
    radsec_names: dict[str, str] = {}
    for name, values in named.items():
        section = f"{CLIENT_SECTION}:{name}"
        origin = cfg.origin(section, "address")
        if name.lower() in lower:
            problems.append(f"{origin}: [{section}]: the same name as [{CLIENT_SECTION}:"
                            f"{lower[name.lower()]}] but for upper and lower case; names must differ")
        lower.setdefault(name.lower(), name)
        radsec_only = values.get("address") is None and values.get("radsec_name")
        if values.get("address") is None and not radsec_only:
            problems.append(f"{origin}: [{section}] address: required (the NAS's IP address or network), "
                            "or radsec_name for a NAS that only speaks RadSec")
        name_key = (values.get("radsec_name") or "").lower()
        if name_key and name_key in radsec_names:
            problems.append(f"{cfg.origin(section, 'radsec_name')}: [{section}] radsec_name: already the "
                            f"radsec_name of [{CLIENT_SECTION}:{radsec_names[name_key]}]")
        elif name_key:
            radsec_names[name_key] = name
        for net in values.get("address") or ():
            if net in owners:
                problems.append(f"{origin}: [{section}] address: {net} is already the address of "
                                f"[{CLIENT_SECTION}:{owners[net]}]")
            owners.setdefault(net, name)
        given = [key for key in ("secret", "secret_file") if values.get(key) is not None]
        if not given and not radsec_only:
            problems.append(f"{origin}: [{section}] secret: required (or secret_file), the shared secret "
                            "also configured on the NAS")
        elif len(given) == 2:
            problems.append(f"{cfg.origin(section, 'secret_file')}: [{section}] secret_file: give secret or "
                            "secret_file, not both")
    secret = cfg.get("radius", "secret")
    if "radius" in cfg.transports and cfg.get("radius", "radsec_port"):
        if cfg.get("radius", "radsec_ca") is None:
            problems.append(f"{cfg.origin('radius', 'radsec_port')}: [radius] radsec_ca: required because "
                            "radsec_port is set (the CA that issues the NASes' client certificates)")
        if (cfg.get("radius", "radsec_cert") is None) != (cfg.get("radius", "radsec_key") is None):
            problems.append(f"{cfg.origin('radius', 'radsec_port')}: [radius] radsec_cert, radsec_key: set both, "
                            "or neither to use the demo certificate")
        if not radsec_names:
            problems.append(f"{cfg.origin('radius', 'radsec_port')}: [radius] radsec_port: no "
                            "[radius-client:NAME] section has a radsec_name, so no NAS could use RadSec")
    if "radius" in cfg.transports:
        if secret is None and ("radius", "clients") in cfg._origins:
            problems.append(f"{cfg.origin('radius', 'clients')}: [radius] clients: these NASes need [radius] "
                            "secret, their shared secret (or give each a [radius-client:NAME] section)")
        if secret is None and not named and not radsec_names:
            problems.append(f"{cfg.origin('radius', 'secret')}: [radius] secret: required because 'radius' is "
                            "in [nac] transports and no [radius-client:NAME] section names a NAS (the shared "
                            "secret also configured on the NAS)")
        if secret is not None and not named and not cfg.get("radius", "clients"):
            problems.append(f"{cfg.origin('radius', 'clients')}: [radius] clients: is empty; 'radius' in "
                            "[nac] transports needs at least one client address or network")
    return problems


transport = RadiusPlugin()
