"""The PT-TLS transport as a plugin (:class:`nac.interfaces.ITransportPlugin`):
its configuration section and what builds it in the main process and in a
worker process (:mod:`transports.pt_tls.service`).  Registered under the
``nac.transports`` entry points as ``pt-tls``."""

from __future__ import annotations

from zope.interface import implementer

from nac.config import (
    listen_option,
    Option,
    non_negative_seconds,
    byte_size,
    check_tls_pair,
    choice,
    cipher_string,
    declare_section,
    optional,
    path,
    port,
    positive_int,
    seconds,
    tls_paths,
    tls_version,
    workers_setting,
)
from nac.interfaces import ITransportPlugin
from nac.processes import WorkerTransportPlugin


@implementer(ITransportPlugin)
class PtTlsPlugin(WorkerTransportPlugin):
    service_module = "transports.pt_tls.service"
    name = "pt-tls"
    label = "PT-TLS"
    description = "PT-TLS (RFC 6876): TNC over TLS on TCP 271"
    listen_protocol = "TCP"

    def declare_options(self) -> None:
        declare_section("pt-tls", help=(
            "PT-TLS (RFC 6876): TNC over TLS on TCP, for pt-tls-client and other endpoints that connect "
            "directly."), options=[
            listen_option(),
            Option("port", port, 271, "TCP port (IANA-assigned 271 for PT-TLS, RFC 6876)."),
            *tls_paths("server"),
            Option("ca", optional(path), None,
                   "CA certificates (PEM) that client certificates must chain to. Empty: the demo CA, "
                   "ca.pem in state_dir."),
            Option("client_cert", choice("none", "optional", "required"), "optional",
                   "Client certificates: none (never asked for), optional (clients without one "
                   "authenticate with SASL), required."),
            Option("min_tls_version", tls_version, "1.2", "Lowest TLS version accepted: 1.2 or 1.3."),
            Option("ciphers", cipher_string, "",
                   "OpenSSL cipher string for TLS 1.2 (see `openssl ciphers`). Empty: OpenSSL's default."),
            # strongSwan sizes its PT-TLS receive buffer at 128 TLS records (2 MiB,
            # header included) and its PB-TNC batches to fit, so accept as much.
            Option("max_message_size", byte_size(4096, 2**32 - 1), 2 * 1024 * 1024,
                   "Largest PT-TLS message accepted, 16-byte header included. strongSwan sends PB-TNC "
                   "batches of up to 2M."),
            Option("handshake_timeout", seconds, 10.0, "Time allowed for the TLS handshake."),
            Option("negotiation_timeout", seconds, 30.0,
                   "Time allowed for the version exchange and the client's authentication."),
            Option("idle_timeout", seconds, 300.0, "A connection without any message for this long is closed."),
            Option("reassess_interval", non_negative_seconds, 0.0,
                   "Seconds after a decision at which a client that keeps its PT-TLS connection open is "
                   "assessed again on it: the server sends a PB-TNC SRETRY batch (RFC 5793 §3.2) and runs a "
                   "new assessment, recorded as a session of its own; 0: never. A group's session_timeout "
                   "(nac-admin / API) replaces it for its members, as it replaces [radius] session_timeout, "
                   "so that they are assessed again on one schedule whichever transport they use (0 there: "
                   "never). While it waits the connection is not idle; a client that does not answer the "
                   "SRETRY within idle_timeout is closed. Clients that close after their decision "
                   "(strongSwan's pt-tls-client, nac-pt-tls-client without --stay) are never asked."),
            Option("max_connections", positive_int, 1000,
                   "Most PT-TLS connections open at once, shared out evenly among the processes serving "
                   "PT-TLS."),
            Option("max_unauthenticated", positive_int, 256,
                   "Most of those connections that have not yet authenticated (TLS handshake, version "
                   "exchange, client certificate or SASL), shared out like max_connections, so that "
                   "connections that never authenticate cannot take the room of those that did. When "
                   "all are taken, a new connection from an address holding fewer of them than the "
                   "address holding the most takes the place of that address's oldest; otherwise it "
                   "is closed at once. Refused connections are logged at most once per address every "
                   "10 s, with their number."),
            Option("max_unauthenticated_per_source", positive_int, 32,
                   "Most unauthenticated connections from one address (an IPv6 address counts as its "
                   "/64) in each process serving PT-TLS; more are closed at once. Clients behind one NAT "
                   "share it: they authenticate in well under a second each, so it limits how many "
                   "start at the same moment, not how many are served."),
            Option("busy_timeout", seconds, 3.0,
                   "When three quarters of max_unauthenticated are taken, the time an unauthenticated "
                   "connection has from its start to authenticate, instead of handshake_timeout plus "
                   "negotiation_timeout (a connection whose password is being checked keeps "
                   "negotiation_timeout)."),
            Option("workers", workers_setting, "auto",
                   "Processes serving PT-TLS: auto (one per CPU nac may run on) or a number. With more "
                   "than one, the main process spawns worker processes that accept on the same listening "
                   "socket, each with its own TNCS core, IMVs and database connection, so that one nac "
                   "instance uses every core. Their log lines go to nac's log, marked \"worker N\"; a "
                   "worker that dies is restarted, and one that cannot start with the configuration while "
                   "nac starts stops nac. 1 serves everything in the main process."),
            Option("sasl", optional(choice("plain")), "plain",
                   "SASL mechanism offered to clients that did not present a certificate: plain (RFC "
                   "4616). Empty disables SASL."),
        ])

    def check(self, cfg) -> list[str]:
        return check_tls_pair(cfg, self.name)


transport = PtTlsPlugin()
