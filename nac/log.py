"""nac's logger: twisted.logger's, with a process-wide level threshold, a
limit on repeated warnings, and observers that escape what the network sent.

``[nac] log_level`` drops events below the threshold where they are made,
before an event dict is built or a format string rendered, so the per-packet
debug lines cost next to nothing on a busy server.  Observers still see
everything at or above the threshold.

A line about bad input from the network (a malformed datagram, a failed
integrity check, an invalid batch) names its kind and its peer
(``log_limit=(kind, peer)``): :data:`repeats` lets the first one of each
(kind, peer) through and counts the rest for ``interval`` seconds, then
writes one summary line (``… 12,345 more like this from 192.0.2.1 in the
last 10 s``), so a flood costs a few lines, not one a packet.

Every line is written with the value of each of its fields escaped
(:func:`nac.escape.printable`): an identity holding a line feed or a
terminal escape sequence shows as ``\\x0a``, ``\\x1b``, whatever the call
site passed (:func:`event_text`).

:class:`ClassicFileObserver` writes twistd's log file in twistd's format for
less; the nac plugin offers it to twistd (:func:`twistd_log_observer`).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import string
import sys
import threading
import time

from twisted.application import service
from twisted.logger import ILogObserver
from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel, formatEvent, formatTime, timeFormatRFC3339
from twisted.python import threadable
from twisted.python.compat import ioType
from twisted.python.logfile import LogFile
from zope.interface import implementer

from nac.escape import UNPRINTABLE, printable, printable_lines

__all__ = ["ClassicFileObserver", "JsonLineObserver", "LOG_FORMATS", "Logger", "LogLevel", "ReopeningLogFile",
           "RepeatLimiter", "RepeatSummaryService", "event_text", "message_text", "plain_text", "repeats",
           "set_level", "twistd_log_observer"]

_ORDER = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


class Logger(_TwistedLogger):
    """twisted.logger's Logger, with :func:`set_level`'s threshold and, for
    lines about input from the network, ``log_limit=(kind, peer)``: such
    a line goes through :data:`repeats` (``kind``, a fixed phrase naming
    what is wrong, e.g. "invalid RADIUS message"; ``peer``, the address
    it came from)."""

    enabled: frozenset = frozenset(_ORDER[1:])

    def emit(self, level, format=None, **kwargs):
        if level not in Logger.enabled:
            if level not in _ORDER:  # not a level at all: Twisted's emit reports that
                kwargs.pop("log_limit", None)
                super().emit(level, format, **kwargs)
            return
        limit = kwargs.pop("log_limit", None)
        if limit is not None and not repeats.allow(limit[0], limit[1], self, level):
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


# -- repeated warnings ---------------------------------------------------------------------


class _Window:
    __slots__ = ("start", "held", "logger", "level")

    def __init__(self, start: float, logger, level):
        self.start = start
        self.held = 0
        self.logger = logger
        self.level = level


class RepeatLimiter:
    """One line per (kind, peer) every ``interval`` seconds, and a summary
    of the lines held back.

    The first line of a (kind, peer) opens a window of ``interval``
    seconds; the lines of that kind from that peer within it are counted,
    not written, and when it ends one line says how many there were, at
    the level and in the namespace of the first (``invalid RADIUS message:
    … 12,345 more like this from 192.0.2.1 in the last 10 s``).  Then the
    next line goes through again: a steady flood costs two lines per
    ``interval``.

    At most ``max_keys`` windows are open: a peer that is new while all are
    taken (a flood from spoofed addresses) counts towards one window per
    kind for every other peer ("from other peers"), so memory and lines
    stay bounded however many addresses send.  Windows end when a line of
    any kind is logged after them, or at :meth:`flush` (every second, see
    :class:`RepeatSummaryService`).  ``clock``: something with
    ``seconds()`` (a reactor; ``twisted.internet.task.Clock`` in tests),
    by default the monotonic clock.  Thread-safe.
    """

    def __init__(self, interval: float = 10.0, max_keys: int = 1000, clock=None):
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        # (kind, peer) -> window, in the order they opened (so the first ends first)
        self._windows: dict[tuple, _Window] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else time.monotonic()

    def allow(self, kind: str, peer, logger, level) -> bool:
        """Whether the line about ``kind`` from ``peer`` is written (else it is counted)."""
        now = self._now()
        with self._lock:
            ended = self._ended(now)
            windows = self._windows
            key = (kind, peer)
            window = windows.get(key)
            if window is None and len(windows) >= self.max_keys:
                key = (kind, None)  # one window for every peer there is no room for
                window = windows.get(key)
            if window is None:
                windows[key] = _Window(now, logger, level)
                allowed = True
            else:
                window.held += 1
                allowed = False
        self._summarise(ended, now)
        return allowed

    def flush(self, everything: bool = False) -> None:
        """Write the summaries of the windows that ended (with
        ``everything``, of all: nac stops) and forget those windows."""
        now = self._now()
        with self._lock:
            if everything:
                ended, self._windows = list(self._windows.items()), {}
            else:
                ended = self._ended(now)
        self._summarise(ended, now)

    def reset(self) -> None:
        """Forget every window without a summary (tests start afresh)."""
        with self._lock:
            self._windows.clear()

    def _ended(self, now: float) -> list:
        windows = self._windows
        ended = []
        while windows:
            key = next(iter(windows))
            if now - windows[key].start < self.interval:
                break
            ended.append((key, windows.pop(key)))
        return ended

    def _summarise(self, ended: list, now: float) -> None:
        for (kind, peer), window in ended:
            if window.held:
                seconds = max(1, math.ceil(min(now - window.start, self.interval)))
                window.logger.emit(window.level, "{kind}: … {repeated:,} more like this from {peer} in the last "
                                   "{seconds} s", kind=kind, repeated=window.held, seconds=seconds,
                                   peer="other peers" if peer is None else peer)


#: The limiter of every ``log_limit`` line of this process.
repeats = RepeatLimiter()


class RepeatSummaryService(service.Service):
    """Writes :data:`repeats`' summaries once a second, so a flood that
    stopped is summed up in time, and those still open when nac stops."""

    name = "log-repeats"

    def __init__(self, limiter: RepeatLimiter | None = None, clock=None):
        self.limiter = limiter or repeats
        self.clock = clock
        self._loop = None

    def startService(self):
        from twisted.internet.task import LoopingCall

        super().startService()
        self._loop = LoopingCall(self.limiter.flush)
        if self.clock is not None:
            self._loop.clock = self.clock
        self._loop.start(1.0, now=False)

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.limiter.flush(everything=True)
        return super().stopService()


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


class _EscapingFormatter(string.Formatter):
    """``str.format`` with Twisted's ``{x()}`` calls, each field's text
    made :func:`~nac.escape.printable`; the format's own text is kept."""

    def get_value(self, key, args, kwargs):
        if isinstance(key, str) and key.endswith("()"):
            return kwargs[key[:-2]]()
        return super().get_value(key, args, kwargs)

    def format_field(self, value, format_spec):
        return printable(format(value, format_spec))


_ESCAPING = _EscapingFormatter()


def message_text(event) -> str:
    """What a log line says for ``event`` (Twisted's ``formatEvent``), with
    every field's value escaped: nothing from the network can end the line
    or send a terminal escape sequence.  A line break the format itself
    holds stays (the text log indents what follows it)."""
    text = plain_text(event)
    if text is None:
        text = formatEvent(event)
    if not UNPRINTABLE.search(text):
        return text
    fmt = event.get("log_format")
    if type(fmt) is str and "log_flattened" not in event:
        try:
            return _ESCAPING.vformat(fmt, (), event)
        except Exception:  # Twisted's text says it cannot format the event: escaped whole below
            pass
    return printable(text)


def _traceback(failure) -> str:
    try:
        text = failure.getTraceback()
    except BaseException as exc:  # as Twisted's text log says it
        text = "(UNABLE TO OBTAIN TRACEBACK FROM EVENT):" + str(exc)
    return printable_lines(text)


def event_text(event) -> str:
    """:func:`message_text` and, for a logged failure, its traceback on the
    lines after it (as the JSON log and the worker processes carry it)."""
    text = message_text(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{_traceback(failure)}".rstrip("\n")
    return text


def _system(event) -> str:
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        return f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
    if type(system) is not str:
        try:
            system = str(system)
        except Exception:
            return "UNFORMATTABLE"
    return printable(system)


@implementer(ILogObserver)
class ClassicFileObserver:
    """Writes events as twistd's text observer does, ``<time> [<system>]
    <text>``, byte for byte, for a fraction of its cost.

    twistd's observer works out the time zone and formats the time stamp
    anew for every event and renders the text through a call-aware
    formatter; a busy server logs a dozen milestones per assessment.  Here
    the time stamp is made once per second and plain events (a ``log_format``
    of named fields) are rendered with ``str.format``; anything else
    (``{x()}`` calls, legacy events) goes through Twisted's own formatter.
    Field values are escaped (:func:`message_text`), which is all that
    differs from twistd's lines.
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
        text = message_text(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{_traceback(failure)}"
        if not text:
            return None
        if "\n" in text:
            text = text.replace("\n", "\n\t")
        return f"{self._time(event.get('log_time'))} [{_system(event)}] {text}\n"

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
    ASCII and ends at its only newline.

    Text from the network is escaped as in the text log (:func:`message_text`,
    field values too): decoded, ``message`` is the text log's line, and no
    string holds a control character a shipper's viewer would act on
    (only a traceback's line breaks)."""

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
        text = event_text(event)
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
            record[key] = printable(value) if type(value) is str else value
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
