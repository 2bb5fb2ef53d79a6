"""Random values for protocol fields (RADIUS State, PA-TNC message ids).

``os.urandom`` read a block at a time: a value then costs a slice, not a
system call, which also hands the GIL to the database threads and stalls
the reactor thread under load.  Each value is a part of the block nobody
else gets; a forked child (a PT-TLS worker) starts a block of its own.
"""

from __future__ import annotations

import os
import threading

__all__ = ["RandomPool", "random_bytes", "random_id32"]


class RandomPool:
    """``os.urandom`` read ``block`` bytes at a time; safe to share between threads."""

    def __init__(self, block: int = 4096):
        self.block = block
        self._data = b""
        self._pos = 0
        self._lock = threading.Lock()

    def __call__(self, n: int) -> bytes:
        if n > self.block:
            return os.urandom(n)
        with self._lock:
            pos, end = self._pos, self._pos + n
            if end > len(self._data):
                self._data = os.urandom(self.block)
                pos, end = 0, n
            self._pos = end
            return self._data[pos:end]

    def forget(self) -> None:
        """Drop the block (after a fork: the parent hands out the same bytes)."""
        with self._lock:
            self._data = b""
            self._pos = 0


random_bytes = RandomPool()
os.register_at_fork(after_in_child=random_bytes.forget)


def random_id32() -> int:
    """A random 32-bit identifier (what ``secrets.randbits(32)`` gives)."""
    return int.from_bytes(random_bytes(4), "big")
