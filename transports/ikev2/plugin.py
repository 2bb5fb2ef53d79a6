"""The IKEv2 transport as a plugin (:class:`nac.interfaces.ITransportPlugin`):
its configuration section and what builds it (:mod:`transports.ikev2.service`);
IKEv2 runs in the main process only.  Registered under the
``nac.transports`` entry points as ``ikev2``."""

from __future__ import annotations

import ipaddress
import re

from zope.interface import implementer

from nac.config import (
    listen_option,
    Option,
    byte_size,
    check_tls_pair,
    choice,
    cidr,
    comma_list_of,
    declare_section,
    eap_only_mode,
    int_range,
    ip_literal,
    port,
    positive_int,
    seconds,
    tls_paths,
)
from nac.interfaces import ITransportPlugin

_PROPOSAL = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _proposal(raw: str) -> str:
    value = raw.lower()
    if not _PROPOSAL.fullmatch(value):
        raise ValueError("is not a proposal of '-'-separated algorithm names (e.g. aes256-sha256-x25519)")
    return value


@implementer(ITransportPlugin)
class Ikev2Plugin:
    name = "ikev2"
    label = "IKEv2"
    description = "IKEv2 (RFC 7296) responder: EAP-TTLS with PT-EAP in IKE_AUTH"
    listen_protocol = "UDP"

    def declare_options(self) -> None:
        declare_section("ikev2", help=(
            "IKEv2 (RFC 7296) responder: endpoints authenticate with EAP-TTLS (PT-EAP inside) in IKE_AUTH "
            "and get the traffic selectors of their access group. Enable with "
            "`transports = pt-tls, ikev2`."), options=[
            listen_option(),
            Option("port", port, 500, "UDP port for IKE."),
            Option("nat_port", port, 4500, "UDP port for IKE with NAT traversal (RFC 3948)."),
            Option("ike_proposals", comma_list_of(_proposal, allow_empty=False),
                   ["aes256-sha256-x25519", "aes128-sha256-modp3072", "aes256gcm16-prfsha384-ecp384"],
                   "IKE SA proposals in strongSwan syntax, most preferred first."),
            Option("esp_proposals", comma_list_of(_proposal, allow_empty=False),
                   ["aes256gcm16-aes128gcm16-x25519-ecp256-ecp384-modp3072-modp2048-none",
                    "aes256-aes128-sha256-sha384-sha512-x25519-ecp256-ecp384-modp3072-modp2048-none"],
                   "ESP (CHILD_SA) proposals in strongSwan syntax, most preferred first. The DH groups are for "
                   "CHILD_SAs made or rekeyed with PFS in CREATE_CHILD_SA ('none': without PFS); the CHILD_SA of "
                   "IKE_AUTH has no key exchange of its own."),
            Option("pool", cidr, ipaddress.ip_network("10.10.0.0/24"),
                   "Virtual IP addresses handed out in configuration payloads."),
            Option("allow_ts", comma_list_of(cidr, allow_empty=False), [ipaddress.ip_network("10.1.0.0/16")],
                   "Traffic selectors (networks) for Access Allowed."),
            Option("isolate_ts", comma_list_of(cidr, allow_empty=False), [ipaddress.ip_network("10.1.0.16/28")],
                   "Traffic selectors (networks) for Isolate: the remediation network. The networks an initiator "
                   "asks for are narrowed to these (RFC 7296 §2.9): put them inside what clients ask for (by default "
                   "a part of allow_ts), or an isolated client gets TS_UNACCEPTABLE."),
            Option("kernel", choice("none", "xfrm"), "none",
                   "Install CHILD_SAs in the kernel (xfrm, needs CAP_NET_ADMIN) or only negotiate them (none)."),
            *tls_paths("server"),
            Option("eap_only", eap_only_mode, "auto",
                   "Authenticate the gateway by EAP alone (RFC 5998, no certificate AUTH) when the initiator offers it "
                   "(EAP_ONLY_AUTHENTICATION): yes; never: no; auto: when the first of [eap] methods authenticates "
                   "the gateway itself (ttls) and the initiator asks for no certificate (no CERTREQ, as strongSwan "
                   "clients with 'remote { auth = eap-ttls }' and send_certreq = no) or there is none to show. "
                   "strongSwan clients offer it whatever they expect, so their CERTREQ tells the two apart."),
            Option("cookie_threshold", positive_int, 50,
                   "Half-open IKE SAs from which IKE_SA_INIT requires a cookie."),
            Option("max_half_open", positive_int, 10000,
                   "Most half-open IKE SAs kept; further IKE_SA_INIT requests are dropped (bounds memory under a flood)."),
            Option("max_half_open_per_peer", positive_int, 10,
                   "Most half-open IKE SAs (IKE_AUTH not done) of one peer address, as strongSwan's block_threshold: "
                   "an address that answers cookies still cannot take the table from the others."),
            Option("max_fragment_memory", byte_size(64 * 1024, 1024 * 1024 * 1024), 16 * 1024 * 1024,
                   "Memory all IKE SAs together may hold for fragmented messages not yet complete (RFC 7383); a "
                   "fragment beyond it is dropped."),
            Option("fragment_size", int_range(576, 65535), 1280,
                   "Largest IP datagram of an IKE message fragment (RFC 7383), like strongSwan's charon.fragment_size."),
            Option("dns", comma_list_of(ip_literal), [],
                   "DNS servers handed out with the virtual IP (configuration payload)."),
            Option("half_open_timeout", seconds, 30.0, "A half-open IKE SA (IKE_SA_INIT done, no IKE_AUTH) is dropped after this."),
            Option("auth_timeout", seconds, 60.0, "IKE_AUTH (all EAP rounds and the posture exchange) must end within this."),
            Option("ike_lifetime", seconds, 86400.0, "An IKE SA not rekeyed by the initiator within this is deleted."),
            Option("child_lifetime", seconds, 28800.0, "A CHILD_SA not rekeyed within this is deleted."),
        ])

    def check(self, cfg) -> list[str]:
        problems = check_tls_pair(cfg, self.name)
        if cfg.get("ikev2", "port") == cfg.get("ikev2", "nat_port"):
            problems.append(f"{cfg.origin('ikev2', 'nat_port')}: [ikev2] nat_port: "
                            f"'{cfg.get('ikev2', 'nat_port')}' is the same as [ikev2] port; it must differ")
        return problems

    def processes(self, cfg) -> int:
        return 1

    def make_service(self, cfg, core, store, workers):
        from transports.ikev2.service import make_service

        return make_service(cfg, core, store)

    def make_worker_service(self, cfg, core, store, share):
        raise NotImplementedError("IKEv2 runs in the main process only")


transport = Ikev2Plugin()
