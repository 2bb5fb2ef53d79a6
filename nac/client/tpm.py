"""The TPM 2.0 of nac's client, through the tpm2-tools programs.

Why the programs and not a Python TSS binding: Debian ships ``tpm2-tools``
(and the TSS libraries under it) as packages, so a host that has a TPM
usually has them, and nac's client stays pure Python (``tpm2-pytss`` would
have to be compiled against the TSS headers at install time).  The TCTI
(``device:/dev/tpmrm0``, ``tabrmd``, ``swtpm:host=…,port=…``) is passed in
``TPM2TOOLS_TCTI``.  The attestation key (AIK) is one made beforehand and
kept at a persistent handle, as strongSwan's collector expects
(``tpm2_createek``, ``tpm2_createak``, ``tpm2_evictcontrol``; 0x81010003
by default), so nothing transient is left loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from zope.interface import implementer

from nac.interfaces import ITpm

__all__ = ["DEFAULT_AIK_HANDLE", "Tpm2Tools", "TpmError"]

DEFAULT_AIK_HANDLE = 0x81010003
#: How long one tpm2-tools command may take (key creation on a slow TPM included).
COMMAND_TIMEOUT = 60
_RETRY = ("0x922", "0x00000922")  # TPM_RC_RETRY: swtpm answers a first quote so


class TpmError(Exception):
    """The TPM (or the tpm2-tools programs) could not do what was asked."""


def _yaml_value(text: str, key: str) -> str | None:
    """The ``value:`` (or ``raw:``) under ``key:`` in tpm2-tools' YAML output."""
    match = re.search(rf"^{re.escape(key)}:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if match is None:
        return None
    block = match.group(1)
    found = re.search(r"^\s+value:\s*(.*)$", block, re.M) or re.search(r"^\s+raw:\s*(.*)$", block, re.M)
    return found.group(1).strip().strip('"') if found else None


@implementer(ITpm)
class Tpm2Tools:
    """A TPM 2.0 reached through tpm2-tools with ``tcti`` (None: the tools' default)."""

    def __init__(self, tcti: str | None = None, aik_handle: int = DEFAULT_AIK_HANDLE) -> None:
        self.tcti = tcti
        self.aik_handle = aik_handle

    def _run(self, *argv: str, directory: Path | None = None) -> str:
        if shutil.which(argv[0]) is None:
            raise TpmError(f"{argv[0]} is not installed (Debian package tpm2-tools)")
        env = dict(os.environ)
        if self.tcti:
            env["TPM2TOOLS_TCTI"] = self.tcti
        for _ in range(3):
            try:
                done = subprocess.run(argv, env=env, cwd=directory, capture_output=True, text=True,
                                      timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise TpmError(f"{argv[0]} did not finish within {COMMAND_TIMEOUT} s") from None
            if done.returncode == 0:
                return done.stdout
            if not any(code in done.stderr for code in _RETRY):
                break
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
        raise TpmError(f"{argv[0]} failed: {(lines[-1] if lines else f'exit status {done.returncode}').strip()}")

    def version_info(self) -> tuple[str, int, int]:
        text = self._run("tpm2_getcap", "properties-fixed")
        manufacturer = _yaml_value(text, "TPM2_PT_MANUFACTURER") or ""
        revision = _yaml_value(text, "TPM2_PT_REVISION") or "0"
        year = _yaml_value(text, "TPM2_PT_YEAR") or "0"
        try:
            number = round(float(revision) * 100) if "." in revision else int(revision, 0)
            return manufacturer, number, int(year, 0)
        except ValueError:
            raise TpmError(f"tpm2_getcap gave revision {revision!r}, year {year!r}") from None

    def pcr_banks(self) -> tuple[str, ...]:
        text = self._run("tpm2_getcap", "pcrs")
        return tuple(bank for bank, pcrs in re.findall(r"^\s*-\s*(\w+):\s*\[(.*)\]", text, re.M) if pcrs.strip())

    def _public(self) -> tuple[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="nac-tpm-") as directory:
            out = Path(directory) / "aik.pem"
            text = self._run("tpm2_readpublic", "-c", f"0x{self.aik_handle:08x}", "-f", "pem", "-o", str(out))
            return text, out.read_bytes()

    def aik_public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        _, pem = self._public()
        key = serialization.load_pem_public_key(pem)
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def aik_signature_hash(self) -> str:
        text, _ = self._public()
        return _yaml_value(text, "scheme-halg") or "sha256"

    def read_pcrs(self, bank: str, pcrs) -> dict[int, bytes]:
        pcrs = sorted(set(pcrs))
        if not pcrs:
            return {}
        with tempfile.TemporaryDirectory(prefix="nac-tpm-") as directory:
            out = Path(directory) / "pcrs"
            self._run("tpm2_pcrread", f"{bank}:{','.join(map(str, pcrs))}", "-o", str(out))
            data = out.read_bytes()
        size = len(data) // len(pcrs)
        return {pcr: data[i * size:(i + 1) * size] for i, pcr in enumerate(pcrs)}

    def quote(self, bank: str, pcrs, nonce: bytes) -> tuple[bytes, bytes]:
        signature_hash = self.aik_signature_hash()
        with tempfile.TemporaryDirectory(prefix="nac-tpm-") as directory:
            d = Path(directory)
            self._run("tpm2_quote", "-c", f"0x{self.aik_handle:08x}", "-l",
                      f"{bank}:{','.join(map(str, sorted(set(pcrs))))}", "-q", nonce.hex(), "-m", "quote.msg",
                      "-s", "quote.sig", "-g", signature_hash, directory=d)
            return (d / "quote.msg").read_bytes(), (d / "quote.sig").read_bytes()
