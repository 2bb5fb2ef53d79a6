"""Output of nac's command-line programs (nac-admin, nac-decode, the
clients) to the operator: what they print survives a reader that stops
early (``nac-admin sessions list | head``) without a traceback."""

from __future__ import annotations

import os
import sys

__all__ = ["print_output"]


def print_output(text: str) -> bool:
    """Write ``text`` and a newline to standard output and flush it; False
    when the reader has gone (a closed pipe), which is not an error: the
    program ends as it would have, printing nothing more."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit and would report the pipe
        # there: point it at /dev/null first
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return False
    return True
