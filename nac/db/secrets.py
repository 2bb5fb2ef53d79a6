"""Reversibly stored secrets: EAP passwords.

EAP-MD5 and EAP-MSCHAPv2 prove knowledge of the password itself, so unlike
SASL PLAIN (checked against a scrypt hash) they need it back.  nac keeps such
secrets sealed with AES-256-GCM under a key that lives in a file beside the
server (``[nac] secret_key_file``, default ``<state_dir>/secret.key``, mode
0600), never in the database: a copy of the database alone reveals nothing.
Every nac process and nac-admin sharing a database must use the same key file.

Sealed form: ``aes256gcm$<nonce base64>$<ciphertext+tag base64>``; the user
name is bound in as associated data, so a sealed secret copied to another
user's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SecretBox", "SecretKeyError", "load_or_create_key"]

SCHEME = "aes256gcm"
KEY_LENGTH = 32
NONCE_LENGTH = 12


class SecretKeyError(Exception):
    """The key file is missing, unreadable or malformed, or a secret does not open."""


def load_or_create_key(path: str | Path, *, create: bool = True, strict_owner: bool = True) -> bytes:
    """The 32-byte key in ``path`` (base64 text); created (0600) when absent and ``create``.

    Whoever can read the key opens every stored EAP password, so a key file
    that its group or others may read or write is refused, as is one owned
    by another user than the one reading it (or root) when ``strict_owner``
    (the server; nac-admin run by root reads the service user's file)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            _check_protected(path, os.fstat(f.fileno()), strict_owner)
            text = f.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        if not create:
            raise SecretKeyError(f"{path}: no secret key file") from None
        key = os.urandom(KEY_LENGTH)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode("ascii") + "\n")
        return key
    except OSError as exc:
        raise SecretKeyError(f"{path}: {exc.strerror}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_LENGTH:
        raise SecretKeyError(f"{path}: not a base64 {KEY_LENGTH}-byte key")
    return key


def _check_protected(path: Path, st: os.stat_result, strict_owner: bool) -> None:
    mode = st.st_mode & 0o777
    if mode & 0o077:
        raise SecretKeyError(f"{path}: its group or others may use it (mode {mode:04o}), yet it opens every "
                             f"stored EAP password: chmod 600 {path}")
    me = os.geteuid()
    if strict_owner and st.st_uid not in (me, 0):
        raise SecretKeyError(f"{path}: owned by {_user(st.st_uid)}, not by {_user(me)} who runs nac (or root): "
                             f"chown {_user(me)} {path}")


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class SecretBox:
    """Seals and opens secrets of named users under one key."""

    def __init__(self, key: bytes):
        if len(key) != KEY_LENGTH:
            raise SecretKeyError(f"the secret key must be {KEY_LENGTH} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, name: str, secret: str) -> str:
        nonce = os.urandom(NONCE_LENGTH)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), name.encode("utf-8"))
        return f"{SCHEME}${base64.b64encode(nonce).decode()}${base64.b64encode(sealed).decode()}"

    def open(self, name: str, stored: str) -> str:
        """The secret; SecretKeyError when ``stored`` is malformed or was sealed
        under another key or for another user (the message never holds it)."""
        fields = stored.split("$") if isinstance(stored, str) else []
        if len(fields) != 3 or fields[0] != SCHEME:
            raise SecretKeyError(f"the stored EAP secret of {name!r} is not in a known form")
        try:
            nonce = base64.b64decode(fields[1], validate=True)
            sealed = base64.b64decode(fields[2], validate=True)
            return self._aead.decrypt(nonce, sealed, name.encode("utf-8")).decode("utf-8")
        except (ValueError, binascii.Error, InvalidTag, UnicodeDecodeError):
            raise SecretKeyError(f"the stored EAP secret of {name!r} does not open with this key "
                                 "(wrong [nac] secret_key_file?)") from None
