"""``twistd nac``: command-line options and the service tree.

One :class:`NacService` (a MultiService) holds the TNCS core service and
one service per enabled transport.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import pwd
from pathlib import Path

from twisted.application import service
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.components import Componentized

from nac import config as nac_config
from nac import log as nac_log
from nac.log import Logger
from nac.service_user import ServiceUser
from nac.ifimv import RecommendationPolicy
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvLoadError, ImvManager, load_imv

log = Logger(namespace="nac")

# transport name -> "module:factory"; factory(config, core) returns an IService
TRANSPORTS = {
    "pt-tls": "transports.pt_tls.service:make_service",
    "radius": "transports.radius.service:make_service",
    "ikev2": "transports.ikev2.service:make_service",
}


class Options(usage.Options):
    synopsis = "[nac options]"
    longdesc = (
        "Run nac, a Trusted Network Connect server (TNCS with IMVs) reachable over "
        "PT-TLS (RFC 6876), RADIUS (EAP-TTLS with PT-EAP / EAP-TNC) and IKEv2. "
        "Options given here override the configuration file. Without any "
        "configuration nac starts PT-TLS on port 271 with an SQLite database and "
        "generated demo certificates in the state directory.")
    optParameters = [
        ["config", "c", None, "Configuration file (INI). See etc/nac.conf for every setting."],
        ["transports", "t", None,
         "Comma-separated transports to enable: pt-tls, radius, ikev2 ([nac] transports)."],
        ["db", None, None, "SQLAlchemy database URL, e.g. sqlite:////var/lib/nac/nac.db or "
                           "postgresql+psycopg://nac@localhost/nac ([nac] db)."],
        ["state-dir", None, None,
         "Directory for the embedded database and generated demo certificates ([nac] state_dir)."],
        ["imvs", None, None, "Comma-separated IMVs to load, by name or dotted path ([nac] imvs)."],
        ["recommendation-policy", None, None,
         "How IMV recommendations combine: default, any or all ([nac] recommendation_policy)."],
    ]

    def postOptions(self):
        overrides = {}
        for opt, key in (("transports", "transports"), ("db", "db"), ("state-dir", "state_dir"),
                         ("imvs", "imvs"), ("recommendation-policy", "recommendation_policy")):
            if self[opt] is not None:
                overrides[("nac", key)] = self[opt]
        # kept as given: PT-TLS worker processes load the same file and overrides
        self.nac_overrides = overrides
        try:
            self.nac_config = nac_config.load(self["config"], overrides)
        except nac_config.ConfigError as exc:
            raise usage.UsageError(str(exc))


class CoreService(service.Service):
    """Owns the TNCS core; aborts open assessments when the server stops."""

    name = "tnccs"

    def __init__(self, core: TnccsCore):
        self.core = core

    def startService(self):
        super().startService()
        names = ", ".join(imv.name for imv in self.core.imvs) or "none"
        log.info("TNCS core ready: IMVs {imvs}, recommendation policy '{policy}'",
                 imvs=names, policy=self.core.policy.value)
        if not len(self.core.imvs):
            log.warn("no IMVs are configured ([nac] imvs): every assessment ends in "
                     "'no recommendation', which is Access Denied")

    def stopService(self):
        for conn in list(self.core.connections.values()):
            conn.abort("server shutting down")
        return super().stopService()


def build_core(cfg, connection_ids: tuple[int, int] = (1, 1)) -> TnccsCore:
    """The TNCS core with the IMVs of ``[nac] imvs``; ``connection_ids`` is
    the (first, step) of its Connection IDs (see :class:`TnccsCore`)."""
    manager = ImvManager()
    for spec in cfg.imvs:
        try:
            manager.add(load_imv(spec, cfg.imv_options))
        except ImvLoadError as exc:
            raise nac_config.ConfigError(f"{cfg.source or 'defaults'}: [nac] imvs: {exc}") from exc
    languages = tuple(x for x in cfg.get("nac", "language")) if isinstance(
        cfg.get("nac", "language"), (list, tuple)) else (cfg.get("nac", "language"),)
    return TnccsCore(manager, policy=RecommendationPolicy(cfg.get("nac", "recommendation_policy")),
                     languages=languages, max_rounds=cfg.get("nac", "max_rounds"),
                     connection_ids=connection_ids)


def worker_processes(cfg) -> dict[str, int]:
    """How many processes serve each transport that can have worker
    processes (``[pt-tls] workers``, ``[radius] workers``; 1 when the
    transport is off)."""
    from transports.pt_tls.workers import process_count
    return {name: process_count(cfg.get(name, "workers")) if name in cfg.transports else 1
            for name in ("pt-tls", "radius")}


def prepare_state_dir(cfg, user=None) -> Path:
    """The state directory, created (0700) if missing and checked writable;
    with ``user`` (the :class:`~nac.service_user.ServiceUser` twistd
    switches to) a directory created here is that user's, and an existing
    one must be writable by that user."""
    state = Path(cfg.state_dir)
    where = f"{cfg.source or 'defaults'}: [nac] state_dir"
    try:
        if user is not None:
            user.create_directory(state)
        else:
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise nac_config.ConfigError(f"{where}: cannot create {state}: {exc.strerror}")
    if user is not None:
        if not user.may_write(state):
            # left to the operator: the directory may be shared or misconfigured
            try:
                owner = pwd.getpwuid(state.stat().st_uid).pw_name
            except (KeyError, OSError):
                owner = "another user"
            raise nac_config.ConfigError(
                f"{where}: {state} is not writable by the service user {user.name} (it belongs to "
                f"{owner}); give it to that user: chown -R {user.description} {state}")
    elif not os.access(state, os.W_OK):
        raise nac_config.ConfigError(f"{where}: {state} is not writable")
    return state


def check_config_readable(cfg, user) -> None:
    """The worker processes load the configuration file again, as ``user``:
    it must be readable by that user (run as it)."""
    if not cfg.source:
        return
    try:
        with open(cfg.source, "rb"):
            pass
    except OSError as exc:
        raise nac_config.ConfigError(
            f"{cfg.source}: cannot be read by the service user {user.name}, as whom the worker "
            f"processes load it: {exc.strerror}")


def transport_factory(name: str):
    module_name, _, attr = TRANSPORTS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise nac_config.ConfigError(f"transport {name!r} is not available in this build: {exc}")
    return getattr(module, attr)


def build_store(cfg, *, migrate: bool = True):
    """The policy store of ``[nac] db``.

    The embedded SQLite database is created or upgraded on start, so that one
    command gives a working server; a shared server database (PostgreSQL) is
    only checked: its schema belongs to `nac-admin init`, run once by the
    operator, not to whichever nac instance starts first.  ``migrate=False``
    (PT-TLS worker processes, started after the main process migrated) only
    checks SQLite too.
    """
    from nac.db.engine import DatabaseUnavailable, SchemaError, check_schema, display_url, \
        make_engine, sqlite_path, upgrade
    from nac.db.store import PolicyStore

    where = f"{cfg.source or 'defaults'}: [nac] db"
    try:
        engine = make_engine(cfg.db_url)
    except Exception as exc:  # bad driver, bad URL syntax the parser let through
        raise nac_config.ConfigError(f"{where}: {exc}") from exc
    shown = display_url(engine.url)
    try:
        if migrate and sqlite_path(cfg.db_url) is not None:
            revision = upgrade(engine)
            log.info("policy database {db} at schema revision {revision}", db=shown, revision=revision)
        else:
            revision = check_schema(engine)
            log.info("policy database {db} at schema revision {revision}", db=shown, revision=revision)
    except SchemaError as exc:
        engine.dispose()
        raise nac_config.ConfigError(f"{where}: {exc}") from exc
    except (DatabaseUnavailable, OSError) as exc:
        engine.dispose()
        raise nac_config.ConfigError(f"{where}: {shown} is not usable: {exc}") from exc
    except Exception as exc:  # driver errors: unreachable server, permissions
        engine.dispose()
        raise nac_config.ConfigError(f"{where}: cannot open {shown}: {exc}") from exc
    from nac.db.secrets import SecretBox, SecretKeyError, load_or_create_key

    try:
        secrets = SecretBox(load_or_create_key(cfg.get("nac", "secret_key_file")))
    except SecretKeyError as exc:
        engine.dispose()
        raise nac_config.ConfigError(f"{cfg.source or 'defaults'}: [nac] secret_key_file: {exc}") from exc
    return PolicyStore(engine, credential_cache_ttl=cfg.get("nac", "credential_cache_ttl"), secrets=secrets,
                       inline=cfg.get("nac", "db_inline"))


class NacService(service.MultiService):
    """nac's service tree.  When twistd adds it to its application, it also
    offers twistd the log observer for the file twistd would log to
    (:func:`nac.log.twistd_log_observer`: the same lines, made for less),
    which twistd takes unless ``--logger`` names another."""

    def __init__(self, twistd_options=None):
        super().__init__()
        self.twistd_options = twistd_options

    def setServiceParent(self, parent):
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver) is None:
            observer = nac_log.twistd_log_observer(self.twistd_options)
            if observer is not None:
                parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)


def makeService(options) -> service.MultiService:
    cfg = options.nac_config
    nac_log.set_level(cfg.get("nac", "log_level"))
    # twistd --uid/--gid: what nac creates is the service user's (nac.service_user)
    user = ServiceUser.from_twistd(getattr(options, "parent", None))
    as_user = contextlib.ExitStack()
    try:
        prepare_state_dir(cfg, user)
        if user is not None:
            as_user.enter_context(user.acting())
            why = user.cannot_run_nac()
            if why:
                raise nac_config.ConfigError(why)
        store = build_store(cfg)
        # the main process is number 0 of nac's processes
        counts = worker_processes(cfg)
        processes = max(counts.values())
        if user is not None and processes > 1:
            check_config_readable(cfg, user)
        core = build_core(cfg, connection_ids=(1, processes))
        core.store = store
        top = NacService(getattr(options, "parent", None))
        store.setServiceParent(top)
        CoreService(core).setServiceParent(top)
        workers = None
        if processes > 1:
            from transports.pt_tls.workers import WorkerSupervisor
            workers = WorkerSupervisor(cfg.source, getattr(options, "nac_overrides", {}), processes)
        for name in cfg.transports:
            make = transport_factory(name)
            if name == "pt-tls":
                transport = make(cfg, core, store, overrides=getattr(options, "nac_overrides", {}),
                                 workers=workers)
            elif name == "radius":
                transport = make(cfg, core, store, workers=workers)
            else:
                transport = make(cfg, core, store)
            transport.setServiceParent(top)
        if workers is not None:
            # started after the transports, which hand it their sockets
            workers.setServiceParent(top)
    except nac_config.ConfigError as exc:
        raise usage.UsageError(_as_user(str(exc), user))
    finally:
        as_user.close()
    log.info("nac configured from {source}; state in {state}",
             source=cfg.source or "built-in defaults", state=cfg.state_dir)
    if user is not None:
        log.info("files nac creates in {state} belong to {user}, whom twistd switches to once the "
                 "ports are bound", state=cfg.state_dir, user=user.description)
    return top


def _as_user(message: str, user) -> str:
    """A start-up error that may come from running as the service user says so."""
    if user is not None and os.strerror(errno.EACCES) in message:
        return f"{message} (nac runs as {user.name}: twistd --uid)"
    return message
