"""Password hashes for the ``users`` table: scrypt (RFC 7914) from the standard library.

Stored form: ``scrypt$<n>$<r>$<p>$<salt base64>$<key base64>``, so the cost
can be raised later while old hashes still verify.  Nothing here logs,
reprs or raises with a password in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict

__all__ = ["SCHEME", "VerifiedCredentials", "hash_password", "verify_password"]

SCHEME = "scrypt"
N = 2**14
R = 8
P = 1
SALT_LENGTH = 16
KEY_LENGTH = 32

# Stored parameters are bounded so a tampered row cannot make a login
# allocate gigabytes or spin for minutes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_KEY_LENGTH = 64


def _encode(password: str | bytes) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8")
    if isinstance(password, (bytes, bytearray, memoryview)):
        return bytes(password)
    raise TypeError("password must be str or bytes")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # scrypt needs 128 * r * n bytes (plus p blocks); leave headroom over that
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str | bytes) -> str:
    """A new salted scrypt hash of ``password`` in the stored form."""
    salt = os.urandom(SALT_LENGTH)
    key = _scrypt(_encode(password), salt, N, R, P, KEY_LENGTH)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str | bytes, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; False for any malformed ``stored``."""
    try:
        secret = _encode(password)
    except TypeError:
        return False
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    try:
        candidate = _scrypt(secret, salt, n, r, p, len(key))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, key)


def _parse(stored) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(stored, str):
        return None
    fields = stored.split("$")
    if len(fields) != 6 or fields[0] != SCHEME:
        return None
    numbers = fields[1:4]
    if not all(f.isascii() and f.isdigit() and len(f) <= 8 for f in numbers):
        return None
    n, r, p = (int(f) for f in numbers)
    try:
        salt = base64.b64decode(fields[4], validate=True)
        key = base64.b64decode(fields[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    # n must be a power of two greater than 1
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    if not salt or not 16 <= len(key) <= _MAX_KEY_LENGTH:
        return None
    return n, r, p, salt, key


class VerifiedCredentials:
    """Remembers, for ``ttl`` seconds, which passwords were verified against
    which stored hashes, so an endpoint that re-authenticates every few
    minutes (PT-TLS re-assessment, RADIUS re-authentication) does not cost a
    64 ms scrypt each time.

    Only an HMAC of (name, password) under a random per-process key is kept,
    tied to the exact stored hash: changing or deleting the password, or
    disabling the user (checked by the caller on every login), ends the
    shortcut at once.  Failed checks are never cached, so guessing still
    costs a full scrypt per guess.  ``ttl`` 0 disables the cache.
    """

    def __init__(self, ttl: float = 300.0, max_entries: int = 10_000, clock=time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()  # checks run in the database thread pool

    def _tag(self, name: str, password: str | bytes) -> bytes:
        return hmac.new(self._key, name.encode("utf-8") + b"\0" + _encode(password), "sha256").digest()

    def verify(self, name: str, password: str | bytes, stored: str | None) -> bool:
        """Like :func:`verify_password` for user ``name``, from the cache when possible."""
        if self.known(name, password, stored):
            return True
        if not verify_password(password, stored):
            return False
        self.remember(name, password, stored)
        return True

    def known(self, name: str, password: str | bytes, stored: str | None) -> bool:
        """True if this password was verified against ``stored`` within ``ttl``
        (cheap: one HMAC, safe to call on the reactor thread)."""
        if self.ttl <= 0 or stored is None:
            return False
        try:
            tag = self._tag(name, password)
        except TypeError:
            return False
        with self._lock:
            hit = self._entries.get(tag)
            if hit is None:
                return False
            if hit[0] == stored and hit[1] > self._clock():
                return True
            del self._entries[tag]
            return False

    def remember(self, name: str, password: str | bytes, stored: str) -> None:
        """Record a successful :func:`verify_password` of ``password`` against ``stored``."""
        if self.ttl <= 0:
            return
        tag = self._tag(name, password)
        with self._lock:
            self._entries[tag] = (stored, self._clock() + self.ttl)
            self._entries.move_to_end(tag)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
