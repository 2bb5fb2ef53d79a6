"""The HTTP service as a transport plugin (``transports = ..., http``): the
``[http]`` section and the service of the main process (REST API,
sw-collector endpoints, ``/metrics`` summed over nac's processes,
``/health``) over HTTPS with the PT-TLS-like certificate options (the demo
certificate by default)."""

from __future__ import annotations

import time
from pathlib import Path

from twisted.application import service
from zope.interface import implementer

from nac import metrics
from nac.config import (
    ConfigError,
    Option,
    boolean,
    byte_size,
    check_tls_pair,
    declare_section,
    int_range,
    listen_option,
    non_negative_int,
    port,
    positive_int,
    seconds,
    tls_paths,
    tls_version,
)
from nac.dualstack import listen_address
from nac.interfaces import IRunningSessionControl, ITransportPlugin
from nac.log import Logger
from nac.tls import server_context
from transports.http.api import ApiResource, ApiSettings, ApiSite
from transports.http.console import ConsoleResource, ConsoleSettings

log = Logger(namespace="nac.http")


@implementer(ITransportPlugin)
class HttpPlugin:
    name = "http"
    label = "HTTP"
    description = "HTTP API (REST over HTTPS, sw-collector endpoints, /metrics, /health) and the web console"
    listen_protocol = "TCP"

    def declare_options(self) -> None:
        declare_section("http", help=(
            "The HTTP API over HTTPS: devices, sessions, groups, policies, enforcements, products and packages, "
            "users (JSON REST, OpenAPI document at /api/openapi.json), strongSwan's sw-collector endpoints, "
            "/metrics (Prometheus) and /health. Clients authenticate with API tokens made by `nac-admin token "
            "add NAME --role read|collector|admin` (Authorization: Bearer TOKEN, or HTTP basic with the token "
            "as password)."), options=[
            listen_option(),
            Option("port", port, 8443, "TCP port of the HTTPS listener."),
            *tls_paths("server"),
            Option("min_tls_version", tls_version, "1.2", "Lowest TLS version accepted: 1.2 or 1.3."),
            Option("max_body_size", byte_size(1024, 256 * 1024 * 1024), 4 * 1024 * 1024,
                   "Largest request body accepted (413 beyond); sw-collector's tag uploads are the largest."),
            Option("max_page_size", int_range(1, 10000), 500,
                   "Most items one page of a list may ask for (limit); more is a 400 naming limit."),
            Option("rate_limit", non_negative_int, 50,
                   "Requests per second allowed to one token (or, before authentication, one peer address), "
                   "beyond a burst of rate_burst; more get 429. 0: no limit."),
            Option("rate_burst", positive_int, 100, "Requests one token or peer may make at once before rate_limit "
                                                    "counts."),
            Option("console", boolean, True,
                   "Serve the web console for operators at https://HOST:PORT/console/ (people log in with "
                   "`nac-admin console-user add NAME --role read|admin`)."),
            Option("console_max_failures", int_range(1, 100), 3,
                   "Wrong passwords for one console user name (from the sources that sent them) before that "
                   "name is locked out there for console_lockout."),
            Option("console_lockout", seconds, 300.0, "How long a console login stays locked out."),
            Option("console_idle_timeout", seconds, 1800.0,
                   "A console session ends after this long without a request."),
        ])

    def check(self, cfg) -> list[str]:
        return check_tls_pair(cfg, self.name)

    def processes(self, cfg) -> int:
        return 1

    def make_service(self, cfg, core, store, workers):
        if store is None:
            raise ConfigError(f"{cfg.origin('nac', 'transports')}: [nac] transports: http needs the policy database")
        sec = cfg.section("http")
        settings = ApiSettings(max_body_size=sec["max_body_size"], max_page_size=sec["max_page_size"],
                               rate=float(sec["rate_limit"]), burst=sec["rate_burst"])
        console = None
        if sec["console"]:
            console = ConsoleSettings(max_failures=sec["console_max_failures"], lockout=sec["console_lockout"],
                                      idle_timeout=sec["console_idle_timeout"])
        return HttpService(cfg, store, settings, tls_context(cfg), sec["port"], sec["listen"], workers=workers,
                           console=console)

    def make_worker_service(self, cfg, core, store, share):
        raise NotImplementedError("the HTTP API runs in the main process only")


def tls_context(cfg):
    from nac.certs import PkiError, ensure_demo_pki

    sec = cfg.section("http")
    cert, key = sec["cert"], sec["key"]
    if cert is None:
        try:
            pki = ensure_demo_pki(Path(cfg.state_dir))
        except PkiError as exc:
            raise ConfigError(f"{cfg.origin('http', 'cert')}: [http] cert: {exc}") from None
        cert, key = pki.server_cert, pki.server_key
    return server_context(cert=Path(cert), key=Path(key), ca=None, client_cert="none",
                          min_tls_version=sec["min_tls_version"], ciphers=None, origin=cfg.source or "defaults",
                          section="http")


class HttpService(service.Service):
    name = "http"

    def __init__(self, cfg, store, settings: ApiSettings, context, port_number: int, interface: str, reactor=None,
                 workers=None, console: ConsoleSettings | None = None):
        self.store = store
        #: nac's worker processes (IWorkerProcesses), whose metrics /metrics sums with this process's
        self.workers = workers
        self.context = context
        self.port_number = port_number
        self.interface = interface
        self.api = ApiResource(store, settings, metrics=self.metrics, health=self.health,
                               session_control=self.session_control)
        self.console = None if console is None else ConsoleResource(store, console, clock=reactor,
                                                                    session_control=self.session_control)
        self.site = ApiSite(self.api, self.console)
        self.listener = None
        self._reactor = reactor

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def privilegedStartService(self):
        if self.listener is None:
            self.interface = listen_address(self.interface, what="HTTP")
            self.listener = self.reactor.listenSSL(self.port_number, self.site, self.context,
                                                   interface=self.interface)
            host = self.listener.getHost()
            log.info("HTTP API listening on {where}", where=f"{host.host}[{host.port}]")
            if self.console is not None:
                log.info("web console at https://{where}/console/", where=f"{host.host}:{host.port}")
        super().privilegedStartService()

    def startService(self):
        self.privilegedStartService() if self.listener is None else None
        super().startService()

    def stopService(self):
        super().stopService()
        if self.listener is not None:
            listener, self.listener = self.listener, None
            return listener.stopListening()
        return None

    def session_control(self):
        """The running service that sends CoA / Disconnect for an operator
        (:class:`~nac.interfaces.IRunningSessionControl`: RADIUS, when
        enabled), found among this service's siblings; None if none is."""
        parent = self.parent
        for sibling in parent if parent is not None else ():
            if sibling is not self and IRunningSessionControl.providedBy(sibling):
                return sibling
        return None

    async def metrics(self) -> bytes:
        snapshots = await self.workers.metrics() if self.workers is not None else []
        return metrics.exposition(snapshots)

    async def health(self):
        begun = time.monotonic()
        try:
            await self.store.read(lambda connection: connection.exec_driver_sql("SELECT 1").scalar())
        except Exception as exc:
            return 503, {"status": "failing", "database": type(exc).__name__, "listening": self.listener is not None}
        latency = time.monotonic() - begun
        metrics.DB_LATENCY.observe(latency)
        status = 200 if self.listener is not None else 503
        return status, {"status": "ok" if status == 200 else "failing", "database": "ok",
                        "database_ms": round(latency * 1000, 3), "listening": self.listener is not None}


transport = HttpPlugin()
