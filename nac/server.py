"""What every nac process builds, the main one and each worker process: the
policy store of ``[nac] db`` and the TNCS core with the IMVs of ``[nac]
imvs``; and the one-line error that ends a start-up (:class:`StartupError`).

It knows no transport and no process model: :mod:`nac.tap` composes the
main process, :mod:`nac.processes` the workers.
"""

from __future__ import annotations

import os

from twisted.application import service

from nac import config as nac_config
from nac.client.mutual import CollectorClients
from nac.ifimv import RecommendationPolicy
from nac.log import Logger
from nac.tnccs.core import TnccsCore
from nac.tnccs.imv_manager import ImvLoadError, ImvManager, load_imv

__all__ = ["CoreService", "StartupError", "attach_store", "build_core", "build_store", "mutual_client", "one_line"]

log = Logger(namespace="nac")


class StartupError(SystemExit):
    """nac cannot start; ``line`` says why in one line (``file: [section]
    key: problem``).

    A SystemExit, so that twistd, which reports any other exception with a
    traceback and an option error with its usage text, lets it through and
    Python exits with status 1 printing just the line."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def one_line(error: BaseException) -> str:
    """An error's message as one line: a ConfigError's problems joined by
    '; ', a driver's message of several lines joined by blanks."""
    problems = getattr(error, "problems", None) or (str(error),)
    return "; ".join(" ".join(p.split()) for p in problems if p.strip()) or type(error).__name__

# transport name -> "module:factory"; factory(config, core) returns an IService


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
        if self.core.mutual is not None:
            log.info("mutual PB-TNC enabled: collectors {names} answer the IMVs of endpoints asking for it",
                     names=", ".join(self.core.mutual.collectors))

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
                     connection_ids=connection_ids, segment_memory=cfg.get("nac", "segment_memory"),
                     segment_memory_per_connection=cfg.get("nac", "segment_memory_per_connection"),
                     segment_timeout=cfg.get("nac", "segment_timeout"),
                     mutual=mutual_client(cfg, languages))


def mutual_client(cfg, languages: tuple[str, ...]):
    """nac's TNC client role for mutual PB-TNC (``[nac] mutual``), with the
    collectors of ``[nac] mutual_collectors``; None when it is off."""
    if not cfg.get("nac", "mutual"):
        return None
    return CollectorClients(cfg.get("nac", "mutual_collectors"), language=", ".join(languages))


def attach_store(core: TnccsCore, store) -> None:
    """Give the core its policy store and the group policy read from it
    (:class:`nac.policy.PolicySource`; none without a store)."""
    from nac.policy import PolicySource

    core.store = store
    core.policy_source = PolicySource(store) if store is not None else None


def build_store(cfg, *, migrate: bool = True, check: bool = False, process: int = 0):
    """The policy store of ``[nac] db``.

    The embedded SQLite database is created or upgraded on start, so that one
    command gives a working server; a shared server database (PostgreSQL) is
    only checked: its schema belongs to `nac-admin init`, run once by the
    operator, not to whichever nac instance starts first.  ``migrate=False``
    (PT-TLS worker processes, started after the main process migrated) only
    checks SQLite too.  ``check`` (``--check``) changes nothing: an embedded
    database start-up would create or upgrade passes if it could be (None
    when there is none yet), and the secret key file is only read.
    ``process``: which of nac's processes the store serves (0 the main
    one), recorded with its sessions.
    """
    from nac.db.engine import DatabaseUnavailable, SchemaError, check_schema, display_url, \
        make_engine, sqlite_path, upgrade
    from nac.db.store import PolicyStore

    where = f"{cfg.origin('nac', 'db')}: [nac] db"
    embedded = sqlite_path(cfg.db_url)
    if check and embedded is not None and not os.path.exists(embedded):
        folder = os.path.dirname(os.path.abspath(embedded))
        if not os.access(folder if os.path.isdir(folder) else cfg.state_dir, os.W_OK):
            raise nac_config.ConfigError(f"{where}: cannot create {embedded}: {folder} is not writable")
        return None
    try:
        engine = make_engine(cfg.db_url, timeout=cfg.get("nac", "db_timeout"))
    except Exception as exc:  # bad driver, bad URL syntax the parser let through
        raise nac_config.ConfigError(f"{where}: {one_line(exc)}") from exc
    shown = display_url(engine.url)
    try:
        if check and embedded is not None:
            revision = _upgradable(engine)
        elif migrate and embedded is not None:
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
        raise nac_config.ConfigError(f"{where}: {shown} is not usable: {one_line(exc)}") from exc
    except Exception as exc:  # driver errors: unreachable server, permissions
        engine.dispose()
        # the driver's own message, without SQLAlchemy's statement and link
        reason = one_line(getattr(exc, "orig", None) or exc)
        raise nac_config.ConfigError(f"{where}: cannot open {shown}: {reason}") from exc
    from nac.db.secrets import SecretBox, SecretKeyError, load_or_create_key

    key_file = cfg.get("nac", "secret_key_file")
    try:
        if check and not os.path.exists(key_file):
            key = bytes(32)  # start-up creates it
        else:
            key = load_or_create_key(key_file)
        secrets = SecretBox(key)
    except SecretKeyError as exc:
        engine.dispose()
        raise nac_config.ConfigError(f"{cfg.origin('nac', 'secret_key_file')}: [nac] secret_key_file: "
                                     f"{exc}") from exc
    return PolicyStore(engine, credential_cache_ttl=cfg.get("nac", "credential_cache_ttl"), secrets=secrets,
                       inline=cfg.get("nac", "db_inline"), instance=cfg.get("nac", "instance"),
                       process=process, wait=cfg.get("nac", "db_wait"), timeout=cfg.get("nac", "db_timeout"),
                       max_queued=cfg.get("nac", "db_queue"))


def _upgradable(engine) -> str | None:
    """The schema revision of an embedded database, which start-up would
    upgrade; SchemaError when this nac does not know it (a newer nac's)."""
    from alembic.script import ScriptDirectory

    from nac.db.engine import alembic_config, check_schema, current_revision

    revision = current_revision(engine)
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if revision is not None and revision not in known:
        check_schema(engine)  # raises the "unknown revision" SchemaError
    return revision
