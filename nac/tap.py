"""``twistd nac``: command-line options and the service tree.

One :class:`NacService` (a MultiService) holds the policy store, the TNCS
core service (:mod:`nac.server`), one service per enabled transport, each
built by its plugin (:mod:`nac.plugins`), and, when a transport asks for
more processes than this one, the supervisor of the worker processes
(:mod:`nac.processes`), which hands the decisions the workers commit to the
store's listeners here.  It knows no transport by name.

Whatever stops nac from starting — a bad value, an unreadable certificate,
an IMV that does not load, a port it cannot listen on — ends it with one
line naming the file, the section and the key (:class:`StartupError`),
never with a traceback or twistd's usage text.  ``--check`` builds the same
service tree without starting it (:func:`check_configuration`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import sys
import tempfile
from pathlib import Path

from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.components import Componentized
from zope.interface import provider

from nac import config as nac_config
from nac import log as nac_log
from nac.log import Logger
from nac.processes import WorkerSupervisor, decision_relay, descriptor_warning
from nac.server import CoreService, StartupError, attach_store, build_core, build_store, one_line  # noqa: F401
from nac.service_user import ServiceUser

log = Logger(namespace="nac")




class Options(usage.Options):
    synopsis = "[nac options]"
    longdesc = (
        "Run nac, a Trusted Network Connect server (TNCS with IMVs) reachable over "
        "PT-TLS (RFC 6876), RADIUS (EAP-TTLS with PT-EAP / EAP-TNC) and IKEv2. "
        "Options given here override the configuration file; `nac-admin config sample` "
        "prints every setting of the file with its default and what it does. Without any "
        "configuration nac starts PT-TLS on port 271 with an SQLite database and "
        "generated demo certificates in the state directory.")
    optFlags = [
        ["check", None, "Check the configuration as start-up would (values, IMVs, certificates, "
                        "database) without starting anything; print 'configuration OK: FILE' or the "
                        "error and exit."],
    ]
    optParameters = [
        ["config", "c", None, "Configuration file (INI); `nac-admin config sample` prints a "
                              "documented one."],
        ["transports", "t", None,
         "Comma-separated transports to enable: pt-tls, radius, ikev2 ([nac] transports)."],
        ["db", None, None, "SQLAlchemy database URL, e.g. sqlite:////var/lib/nac/nac.db or "
                           "postgresql+psycopg://nac@localhost/nac ([nac] db)."],
        ["state-dir", None, None,
         "Directory for the embedded database and generated demo certificates ([nac] state_dir)."],
        ["imvs", None, None, "Comma-separated IMVs to load, by name or dotted path ([nac] imvs)."],
        ["recommendation-policy", None, None,
         "How IMV recommendations combine: default, any or all ([nac] recommendation_policy)."],
        ["log-level", None, None, "Least severe level logged: debug, info, warn, error ([nac] log_level)."],
        ["log-format", None, None,
         "Log lines as text, or as json (one JSON object a line, for log shippers) ([nac] log_format)."],
    ]

    def opt_version(self):
        """Display nac's version and exit."""
        from nac import __version__
        print(f"nac {__version__}")
        sys.exit(0)

    def postOptions(self):
        overrides = {}
        for opt, key in (("transports", "transports"), ("db", "db"), ("state-dir", "state_dir"),
                         ("imvs", "imvs"), ("recommendation-policy", "recommendation_policy"),
                         ("log-level", "log_level"), ("log-format", "log_format")):
            if self[opt] is not None:
                overrides[("nac", key)] = self[opt]
        # kept as given: PT-TLS worker processes load the same file and overrides
        self.nac_overrides = overrides
        try:
            self.nac_config = nac_config.load(self["config"], overrides)
        except nac_config.ConfigError as exc:
            raise StartupError(one_line(exc)) from None
        if self["check"]:
            print(check_configuration(self))
            sys.exit(0)


def worker_processes(cfg) -> dict[str, int]:
    """How many processes each enabled transport asks for (its plugin says:
    ``[pt-tls] workers``, ``[radius] workers``; 1 for the main process only)."""
    return {name: transport_plugin(name).processes(cfg) for name in cfg.transports}


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


def transport_plugin(name: str):
    """The plugin of transport ``name`` (:mod:`nac.plugins`); ConfigError when it is not installed."""
    from nac import plugins

    try:
        return plugins.transport_plugin(name)
    except plugins.TransportPluginError as exc:
        raise nac_config.ConfigError(str(exc)) from None


class NacService(service.MultiService):
    """nac's service tree.  When twistd adds it to its application, it also
    offers twistd the log observer for the file twistd would log to
    (:func:`nac.log.twistd_log_observer`: the same lines, made for less),
    which twistd takes unless ``--logger`` names another.

    A transport that cannot listen (or a ConfigError while starting) ends
    nac with exit status 1 and one line on the standard error nac was
    started with, naming its ``[section] port`` (see :func:`listen_error`);
    so does a worker process that cannot start while nac starts
    (:meth:`worker_config_error`)."""

    def __init__(self, twistd_options=None, config=None):
        super().__init__()
        self.twistd_options = twistd_options
        self.config = config

    def setServiceParent(self, parent):
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver) is None:
            fmt = self.config.get("nac", "log_format") if self.config is not None else "text"
            observer = nac_log.twistd_log_observer(self.twistd_options, fmt)
            if observer is not None:
                if self.config is not None and (fmt != "text" or self.config.instance_named):
                    observer = instance_tagged(observer, self.config.get("nac", "instance"), fmt == "text")
                parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)

    # -- start-up errors: one line, not a traceback ---------------------------------------

    def privilegedStartService(self):
        for child in self:
            self._start(child, child.privilegedStartService)

    def startService(self):
        service.Service.startService(self)
        for child in self:
            self._start(child, child.startService)

    def _start(self, child, start) -> None:
        try:
            start()
        except CannotListenError as exc:
            line = listen_error(self.config, child.name, exc)
        except nac_config.ConfigError as exc:
            line = one_line(exc)
        else:
            return
        # what has started must not keep the process alive (the database threads)
        for other in reversed(list(self)):
            if other.running:
                try:
                    other.stopService()
                except Exception:
                    pass
        self.running = 0
        self._report(line)
        raise SystemExit(1)

    def _report(self, line: str) -> None:
        """Tell the operator why nac stops: in the log, and in one line on the
        standard error nac was started with (twistd sends what is written to
        ``sys.stderr`` once it runs to the log)."""
        log.critical("{line}", line=line)
        options = self.twistd_options if hasattr(self.twistd_options, "get") else {}
        pipe = options.get("statusPipe")
        if pipe is not None:
            # daemonised: twistd's waiting parent prints this for us
            options["statusPipe"] = None
            try:
                os.write(pipe, b"1 " + line.encode("ascii", "backslashreplace")[:98])
                os.close(pipe)
            except OSError:
                pass
        elif sys.__stderr__ is not None:
            try:
                sys.__stderr__.write(line + "\n")
                sys.__stderr__.flush()
            except (OSError, ValueError):
                pass
        pidfile = options.get("pidfile")
        if pidfile:
            try:
                with open(pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(pidfile)
            except (OSError, ValueError):
                pass

    def worker_config_error(self, line: str) -> None:
        """A worker process could not start with the configuration while nac
        was starting: nac stops as if the main process had failed, with
        exit status 1."""
        from twisted.internet import reactor

        if getattr(self, "_failing", False):
            return
        self._failing = True
        self._report(line)
        # twistd exits 0 once the reactor stops: leave with 1 after the services stopped
        reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        try:
            reactor.stop()
        except Exception:  # not running yet: the trigger still ends the process when it stops
            pass


def instance_tagged(observer, instance: str, in_system: bool):
    """``observer`` with every event naming the nac instance
    (``[nac] instance``), so that the lines of several instances sharing a
    database can be told apart and matched with their session rows: an
    ``instance`` field (a JSON line's), and with ``in_system`` (the text
    log, when ``[nac] instance`` is set) the bracket ``[nac-a
    nac.tnccs#info]``.  The worker processes' lines pass through the main
    process's observer and get it there."""

    @provider(ILogObserver)
    def observe(event) -> None:
        tagged = dict(event)
        tagged.setdefault("instance", instance)
        if in_system:
            system = event.get("log_system")
            if system is None:
                level = event.get("log_level")
                system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
            if isinstance(system, str):
                tagged["log_system"] = f"{instance} {system}"
        observer(tagged)

    return observe


def listen_error(cfg, section: str, exc: CannotListenError) -> str:
    """The line for transport ``section`` failing to listen: ``[section]
    port`` (or ``nat_port``, or ``listen`` for an address this host lacks)
    and what to do."""
    number = getattr(exc, "port", None)
    keys = [key for key in ("port", "nat_port") if key in nac_config.SCHEMA.get(section, {})]
    key = next((k for k in keys if cfg is not None and cfg.get(section, k) == number), "port")
    kind = getattr(_plugin_or_none(section), "listen_protocol", "") or "UDP"
    error = getattr(exc, "socketError", None)
    code = getattr(error, "errno", None)
    what = f"cannot listen on {exc.interface or '*'} {kind} port {number}"
    if code == errno.EADDRINUSE:
        reason = "the port is already in use (is nac, or another server, running already?)"
    elif code == errno.EACCES and isinstance(number, int) and 0 < number < 1024:
        reason = ("permission denied: a port below 1024 needs privileges; use a port above 1024, or "
                  "start nac as root with twistd --uid/--gid (it listens, then drops to that user), "
                  "or grant nac CAP_NET_BIND_SERVICE (setcap, or systemd AmbientCapabilities=)")
    elif code == errno.EADDRNOTAVAIL:
        key = "listen"
        reason = f"{exc.interface} is not an address of this host"
    else:
        reason = getattr(error, "strerror", None) or str(error)
    origin = cfg.origin(section, key) if cfg is not None else "defaults"
    return f"{origin}: [{section}] {key}: {what}: {reason}"


def _plugin_or_none(name: str):
    try:
        return transport_plugin(name)
    except nac_config.ConfigError:
        return None


def check_configuration(options) -> str:
    """Build everything ``twistd nac`` with ``options`` would start, as it
    would — configuration, IMVs, certificates and keys, the database and its
    schema revision, each transport — but bind no port, start no service and
    write nothing: what the first start creates (the state directory, the
    demo certificates, an embedded database, the secret key) is checked to
    be creatable, the demo certificates made in a temporary directory.
    Returns the line ``configuration OK: FILE``; StartupError otherwise."""
    cfg = options.nac_config
    with tempfile.TemporaryDirectory(prefix="nac-check-") as scratch:
        try:
            stand_in = _state_stand_in(cfg, scratch, getattr(options, "nac_overrides", {}))
        except nac_config.ConfigError as exc:
            raise StartupError(one_line(exc)) from None
        if stand_in is not None:
            options.nac_config = stand_in
        options.nac_checking = True
        try:
            top = makeService(options)
        finally:
            options.nac_config = cfg
            options.nac_checking = False
        for child in top:
            if hasattr(child, "db") and hasattr(child, "stop"):  # the policy store
                child.stop()
                child.db.engine.dispose()
    return f"configuration OK: {cfg.source or 'built-in defaults'}"


def _state_stand_in(cfg, scratch: str, overrides):
    """For a check: None when the state directory holds the demo
    certificates (or some of them, which start-up refuses), else the
    configuration with ``scratch`` as state directory (keeping the database
    and the secret key file where they are), once the real one is known to
    be creatable."""
    from nac.certs import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY

    state = Path(cfg.state_dir)
    if state.is_dir():
        prepare_state_dir(cfg)  # writable?
        if any((state / name).exists() for name in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)):
            return None
    else:
        ancestor = next(parent for parent in state.parents if parent.exists())
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise StartupError(f"{cfg.origin('nac', 'state_dir')}: [nac] state_dir: cannot create "
                               f"{state}: {ancestor} is not writable")
    kept = {("nac", "state_dir"): scratch, ("nac", "db"): cfg.db_url,
            ("nac", "secret_key_file"): cfg.get("nac", "secret_key_file")}
    stand_in = nac_config.load(cfg.source, {**overrides, **kept})
    # errors name where these came from, not the stand-in's "command line"
    stand_in._origins.update({key: cfg.origin(*key) for key in kept})
    return stand_in


def makeService(options) -> service.MultiService:
    cfg = options.nac_config
    nac_log.set_level(cfg.get("nac", "log_level"))
    checking = getattr(options, "nac_checking", False)
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
        store = build_store(cfg, check=checking)
        # the main process is number 0 of nac's processes
        counts = worker_processes(cfg)
        processes = max(counts.values(), default=1)
        short = descriptor_warning(cfg, counts)
        if short:
            log.warn("{warning}", warning=short)
        if user is not None and processes > 1:
            check_config_readable(cfg, user)
        core = build_core(cfg, connection_ids=(1, processes))
        attach_store(core, store)
        top = NacService(getattr(options, "parent", None), config=cfg)
        nac_log.RepeatSummaryService().setServiceParent(top)
        if store is not None:  # None: --check of an embedded database start-up will create
            store.setServiceParent(top)
        CoreService(core).setServiceParent(top)
        if store is not None and cfg.get("nac", "reevaluate_interval") > 0:
            from nac.reevaluate import Reevaluator

            Reevaluator(core, store, interval=cfg.get("nac", "reevaluate_interval"),
                        max_devices=cfg.get("nac", "reevaluate_max"),
                        instance=getattr(store, "instance", None)).setServiceParent(top)
        workers = None
        if processes > 1:
            workers = WorkerSupervisor(cfg.source, getattr(options, "nac_overrides", {}), processes)
            workers.on_config_error = top.worker_config_error
            if store is not None:
                # the decisions of the workers reach this process's listeners (RADIUS CoA)
                workers.on_control["decided"] = decision_relay(store)
        for name in cfg.transports:
            transport = transport_plugin(name).make_service(cfg, core, store, workers)
            transport.setServiceParent(top)
        if workers is not None:
            # started after the transports, which hand it their sockets
            workers.setServiceParent(top)
    except nac_config.ConfigError as exc:
        raise StartupError(_as_user(one_line(exc), user)) from None
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
