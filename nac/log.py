"""nac's logger: twisted.logger's, with a process-wide level threshold.

``[nac] log_level`` drops events below the threshold where they are made,
before an event dict is built or a format string rendered, so the per-packet
debug lines cost next to nothing on a busy server.  Observers still see
everything at or above the threshold.

:class:`ClassicFileObserver` writes twistd's log file in twistd's format for
less; the nac plugin offers it to twistd (:func:`twistd_log_observer`).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time

from twisted.logger import ILogObserver
from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel, formatEvent, formatEventAsClassicLogText, formatTime, timeFormatRFC3339
from twisted.python import threadable
from twisted.python.compat import ioType
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = ["ClassicFileObserver", "JsonLineObserver", "LOG_FORMATS", "Logger", "LogLevel", "ReopeningLogFile",
           "plain_text", "set_level", "twistd_log_observer"]

_ORDER = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


class Logger(_TwistedLogger):
    enabled: frozenset = frozenset(_ORDER[1:])

    def emit(self, level, format=None, **kwargs):
        if level not in Logger.enabled:
            if level not in _ORDER:  # not a level at all: Twisted's emit reports that
                super().emit(level, format, **kwargs)
            return
        # the event Twisted's Logger.emit makes, without it checking the
        # level against every LogLevel constant (sorted anew each time)
        kwargs.update(log_logger=self, log_level=level, log_namespace=self.namespace,
                      log_source=self.source, log_format=format, log_time=time.time())
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))
        self.observer(kwargs)


def set_level(name: str | LogLevel) -> None:
    """Log events of this level and more severe ones ('debug', 'info', 'warn', 'error')."""
    level = name if isinstance(name, type(LogLevel.info)) else LogLevel.levelWithName(name)
    Logger.enabled = frozenset(_ORDER[_ORDER.index(level):])


# -- twistd's log file, written with less work --------------------------------------------


def plain_text(event) -> str | None:
    """The text of an event whose ``log_format`` names plain fields, by
    ``str.format``, as Twisted's ``formatEvent`` renders it for about a
    tenth of the work; None for anything else (``{x()}`` calls, legacy or
    flattened events, a format that fails), which Twisted renders."""
    fmt = event.get("log_format")
    if type(fmt) is not str or "log_flattened" in event:
        return None
    try:
        return fmt.format(**event)
    except Exception:
        return None


@implementer(ILogObserver)
class ClassicFileObserver:
    """Writes events as twistd's text observer does, ``<time> [<system>]
    <text>``, byte for byte, for a fraction of its cost.

    twistd's observer works out the time zone and formats the time stamp
    anew for every event and renders the text through a call-aware
    formatter; a busy server logs a dozen milestones per assessment.  Here
    the time stamp is made once per second and plain events (a ``log_format``
    of named fields, no failure) are rendered with ``str.format``; anything
    else (tracebacks, ``{x()}`` calls, legacy events) goes through Twisted's
    own formatter.
    """

    def __init__(self, out, time_format: str = timeFormatRFC3339):
        self._out = out
        self._encode = ioType(out) is not str
        self._time_format = time_format
        self._second: int | None = None
        self._stamp = "-"

    def _time(self, when) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._stamp = formatTime(second, self._time_format)
            self._second = second
        return self._stamp

    def format(self, event) -> str | None:
        """The line for ``event`` (None when there is nothing to write)."""
        text = None if "log_failure" in event else plain_text(event)
        if text is None:
            return formatEventAsClassicLogText(event, self._time)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        elif type(system) is not str:
            return formatEventAsClassicLogText(event, self._time)
        if "\n" in text:
            text = text.replace("\n", "\n\t")
        return f"{self._time(event.get('log_time'))} [{system}] {text}\n"

    def __call__(self, event) -> None:
        if event.get("log_level", LogLevel.info) not in Logger.enabled:
            return  # Twisted's own loggers know nothing of [nac] log_level
        text = self.format(event)
        if text:
            self._out.write(text.encode("utf-8") if self._encode else text)
            self._out.flush()


class ReopeningLogFile(LogFile):
    """twistd's log file, which an external rotator may move away.

    logrotate renames the file (and may create a new, empty one) and then
    sends SIGUSR1 (``postrotate``): :meth:`reopen_or_rotate` finds the path
    no longer names the file being written and opens it anew, so the lines
    written in between are in the renamed file and none is lost.  When the
    path still names the open file, SIGUSR1 rotates it as twistd does
    (``nac.log`` to ``nac.log.1``).  Writes, rotation and reopening take one
    lock: the database threads log too.

    Unlike twistd's, the file is not cut every megabyte (``rotateLength``
    None): twistd never deletes those pieces either, so they only got in
    the way of logrotate's numbering and retention.
    """

    synchronized = ["reopen_or_rotate"]

    def __init__(self, name, directory, rotateLength=None, defaultMode=None, maxRotatedFiles=None):
        super().__init__(name, directory, rotateLength, defaultMode, maxRotatedFiles)

    def moved(self) -> bool:
        """Whether the path no longer names the file being written."""
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return True
        mine = os.fstat(self._file.fileno())
        return (at_path.st_dev, at_path.st_ino) != (mine.st_dev, mine.st_ino)

    def reopen_or_rotate(self) -> str:
        """'reopened' or 'rotated'; OSError (the old file still written) when
        the path cannot be opened."""
        if not self.moved():
            self.rotate()
            return "rotated"
        old = self._file
        self._openFile()  # replaces self._file only once the new one is open
        old.close()
        return "reopened"


threadable.synchronize(ReopeningLogFile)


def _reopen_or_rotate(log_file: ReopeningLogFile) -> None:
    try:
        done = log_file.reopen_or_rotate()
    except OSError as exc:
        _log.error("cannot open the log file {path} again: {error}; still writing to the file it was",
                   path=log_file.path, error=exc.strerror or str(exc))
        return
    if done == "reopened":
        _log.info("log file {path} opened again (SIGUSR1)", path=log_file.path)


_log = Logger(namespace="nac")


# keys of events made by twisted.python.log (legacy events)
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure", "printed"})
# a field so named is left out whatever it holds (the text never holds a secret either)
_SECRET_FIELD = re.compile(r"(?:^|[_-])(?:secret|password|passphrase|psk|token)s?$", re.IGNORECASE)
_SCALARS = (str, int, bool, type(None))


@implementer(ILogObserver)
class JsonLineObserver:
    """Writes each event as one JSON object on a line, for log shippers:
    ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``namespace``,
    ``system`` (what the text log shows in brackets, ``… worker N`` for a
    worker process's line), ``message`` (the text the text log shows, with
    the traceback of a logged failure) and then the event's own fields whose
    values are strings, numbers, booleans or null (``connection_id``,
    ``peer``, ``identity``, ``worker`` …).  A field named like a secret
    (``password``, ``secret`` …) is left out; one named like the keys
    above does not replace them.  Non-ASCII text is escaped, so a line is
    ASCII and ends at its only newline."""

    def __init__(self, out):
        self._out = out
        self._encode = ioType(out) is not str
        self._second: int | None = None
        self._stamp = ""

    def _time(self, when) -> str:
        if not isinstance(when, (int, float)):
            when = time.time()
        second = int(when)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{min(999, int((when - second) * 1000)):03d}Z"

    def format(self, event) -> str | None:
        """The line for ``event`` (None when it has no text)."""
        failure = event.get("log_failure")
        text = None if failure is not None else plain_text(event)
        if text is None:
            text = formatEvent(event)
        if failure is not None:
            try:
                text = f"{text}\n{failure.getTraceback()}".rstrip("\n")
            except Exception:  # a failure that cannot render its traceback still has its text
                pass
        if not text:
            return None
        level = event.get("log_level")
        level_name = getattr(level, "name", "info")
        namespace = str(event.get("log_namespace", "-"))
        system = event.get("log_system")
        if not isinstance(system, str):
            system = f"{namespace}#{level_name}"
        record = {"time": self._time(event.get("log_time")), "level": level_name, "namespace": namespace,
                  "system": system, "message": text}
        # keys of a twisted.python.log event are its form, not its fields
        legacy = _LEGACY_KEYS if "isError" in event or isinstance(event.get("message"), tuple) else ()
        for key, value in event.items():
            if type(value) is float:
                if not math.isfinite(value):
                    value = str(value)
            elif not isinstance(value, _SCALARS):
                continue
            if key.startswith("log_") or key in record or key in legacy or _SECRET_FIELD.search(key):
                continue
            record[key] = value
        return json.dumps(record, ensure_ascii=True) + "\n"

    def __call__(self, event) -> None:
        if event.get("log_level", LogLevel.info) not in Logger.enabled:
            return
        line = self.format(event)
        if line:
            self._out.write(line.encode("ascii") if self._encode else line)
            self._out.flush()


#: ``[nac] log_format``: the observer class writing each format.
LOG_FORMATS = {"text": ClassicFileObserver, "json": JsonLineObserver}


def twistd_log_observer(server_options, log_format: str = "text"):
    """The observer (``log_format``: text or json) for the file twistd
    would log to with ``server_options`` (its command line: ``--logfile``,
    ``--nodaemon``), or None where twistd should choose (``--syslog``,
    ``--logger``, options of another kind)."""
    observer = LOG_FORMATS[log_format]
    get = getattr(server_options, "get", None)
    if get is None or get("syslog") or get("logger") or "logfile" not in server_options:
        return None
    name, nodaemon = get("logfile"), get("nodaemon")
    if name == "-":
        if not nodaemon:
            return None  # twistd refuses this itself
        return observer(sys.stdout)
    if nodaemon and not name:
        return observer(sys.stdout)
    log_file = ReopeningLogFile.fromFullPath(name or "twistd.log")
    # SIGUSR1: open the file again after logrotate moved it, else rotate it
    # as twistd does, unless someone else took the signal
    if not signal.getsignal(signal.SIGUSR1):
        def rotate(_signum, _frame):
            from twisted.internet import reactor
            reactor.callFromThread(_reopen_or_rotate, log_file)

        signal.signal(signal.SIGUSR1, rotate)
    return observer(log_file)
