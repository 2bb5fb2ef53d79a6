"""nac's logger: twisted.logger's, with a process-wide level threshold.

``[nac] log_level`` drops events below the threshold where they are made,
before an event dict is built or a format string rendered, so the per-packet
debug lines cost next to nothing on a busy server.  Observers still see
everything at or above the threshold, as twistd configures them.
"""

from __future__ import annotations

from twisted.logger import Logger as _TwistedLogger
from twisted.logger import LogLevel

__all__ = ["Logger", "LogLevel", "set_level"]

_ORDER = (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical)


class Logger(_TwistedLogger):
    enabled: frozenset = frozenset(_ORDER[1:])

    def emit(self, level, format=None, **kwargs):
        if level in Logger.enabled:
            super().emit(level, format, **kwargs)


def set_level(name: str | LogLevel) -> None:
    """Log events of this level and more severe ones ('debug', 'info', 'warn', 'error')."""
    level = name if isinstance(name, type(LogLevel.info)) else LogLevel.levelWithName(name)
    Logger.enabled = frozenset(_ORDER[_ORDER.index(level):])
