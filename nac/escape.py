"""Text from the network made safe for one log line: identities, names and
strings an endpoint, a NAS or an IKE peer chose.

A control character (C0, DEL, C1) could end a log line early or forge the
next one, and a terminal would act on escape sequences: each becomes
``\\xNN``.  Printable Unicode is kept as it is, and so are backslashes
(``CORP\\carol`` is a common EAP identity).
"""

from __future__ import annotations

import re

__all__ = ["CONTROL_CHARACTERS", "printable"]

#: C0 controls, DEL and the C1 controls
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escaped(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped as ``\\xNN``."""
    return CONTROL_CHARACTERS.sub(_escaped, text) if CONTROL_CHARACTERS.search(text) else text
