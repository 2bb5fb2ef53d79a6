"""Text from the network made safe for one log line: identities, names and
strings an endpoint, a NAS or an IKE peer chose.

A control character (C0, DEL, C1) could end a log line early or forge the
next one, and a terminal would act on escape sequences: each becomes
``\\xNN``.  So do the characters that viewers take for line breaks or that
reorder what they show (U+2028/U+2029, the bidirectional controls:
``\\uNNNN``), and lone surrogates, which is what bytes that are no UTF-8
become when decoded with ``surrogateescape`` (U+DC80-U+DCFF: ``\\xNN``, the
byte) and which no UTF-8 encoder writes.  Printable Unicode is kept as it
is, and so are backslashes (``CORP\\carol`` is a common EAP identity).

:mod:`nac.log` applies :func:`printable` to every field of every log line
(and :func:`printable_lines` to tracebacks), so a call site cannot forget.
"""

from __future__ import annotations

import re

__all__ = ["UNPRINTABLE", "printable", "printable_lines"]

#: C0 controls, DEL, C1 controls, the Arabic letter mark, left-to-right and
#: right-to-left marks, line and paragraph separators, bidirectional
#: embeddings, overrides and isolates, and surrogates
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_UNPRINTABLE_BUT_LINE_FEED = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character named above escaped."""
    return UNPRINTABLE.sub(_escaped, text) if UNPRINTABLE.search(text) else text


def printable_lines(text: str) -> str:
    """:func:`printable` but for line feeds, which stay (a traceback's lines)."""
    return _UNPRINTABLE_BUT_LINE_FEED.sub(_escaped, text)
