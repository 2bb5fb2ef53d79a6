"""A software TPM 2.0 for tests: Debian's ``swtpm`` on loopback TCP ports, with
its state in a temporary directory, driven with ``tpm2-tools`` through the
``swtpm`` TCTI.  Never a system TPM.

``SoftwareTpm.start()`` raises SkipTest when swtpm or tpm2-tools is not
installed (``tests/run.sh`` installs both, as root).  The AIK is made the
usual way (an EK, then ``tpm2_createak``: a restricted signing key under
the endorsement hierarchy) and made persistent, so that the commands after
it load nothing: without a resource manager every transient object a
command loads stays in the TPM until flushed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from tests.nacserver import free_port

SWTPM = "swtpm"
TOOLS = ("tpm2_createek", "tpm2_createak", "tpm2_evictcontrol", "tpm2_flushcontext", "tpm2_pcrextend",
         "tpm2_pcrread", "tpm2_quote", "tpm2_getrandom")
AIK_HANDLE = 0x81010003


def missing_programs() -> str | None:
    """What of swtpm and tpm2-tools this machine lacks, or None."""
    if shutil.which(SWTPM) is None:
        return "swtpm is not installed (Debian swtpm, swtpm-tools)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"tpm2-tools is not installed ({', '.join(missing)} missing)" if missing else None


class SoftwareTpm:
    """One swtpm process; ``tcti`` is what tpm2-tools (and nac's collector) are given."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory or tempfile.mkdtemp(prefix="nac-swtpm-"))
        self.state = self.dir / "state"
        self.state.mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.aik_pem: bytes = b""

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def env(self) -> dict:
        return dict(os.environ, TPM2TOOLS_TCTI=self.tcti)

    def start(self) -> SoftwareTpm:
        why = missing_programs()
        if why:
            raise unittest.SkipTest(why)
        for _ in range(5):
            self.port = free_port()
            log = open(self.dir / "swtpm.log", "ab")
            self.process = subprocess.Popen(
                [SWTPM, "socket", "--tpm2", "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1", "--tpmstate",
                 f"dir={self.state}", "--flags", "startup-clear,not-need-init"],
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                probe = subprocess.run(["tpm2_getrandom", "--hex", "4"], env=self.env(), capture_output=True)
                if probe.returncode == 0:
                    return self
                time.sleep(0.1)
            self.stop()  # the port was taken between choosing and binding it: try another
        raise RuntimeError(f"swtpm did not start: {(self.dir / 'swtpm.log').read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def run(self, *argv: str, input: bytes | None = None) -> bytes:
        """A tpm2-tools command against this TPM; its standard output."""
        for attempt in range(3):
            done = subprocess.run(argv, env=self.env(), cwd=self.dir, capture_output=True, input=input)
            if done.returncode == 0:
                return done.stdout
            if b"0x922" not in done.stderr and b"0x00000922" not in done.stderr:
                break  # only TPM_RC_RETRY (swtpm's first quote) is worth repeating
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")

    def create_aik(self, kind: str = "rsa", handle: int = AIK_HANDLE) -> bytes:
        """An AIK (``rsa``: RSA-2048 RSASSA/SHA-256, ``ecc``: NIST P-256
        ECDSA/SHA-256) made persistent at ``handle``; its public key as PEM."""
        scheme = "rsassa" if kind == "rsa" else "ecdsa"
        self.run("tpm2_createek", "-c", "ek.ctx", "-G", kind, "-u", "ek.pub")
        self.flush()
        self.run("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", kind, "-g", "sha256", "-s", scheme,
                 "-u", "ak.pem", "-f", "pem", "-n", "ak.name")
        self.flush()
        self.run("tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", f"0x{handle:08x}")
        self.flush()
        self.aik_pem = (self.dir / "ak.pem").read_bytes()
        return self.aik_pem

    def flush(self) -> None:
        """Unload every transient object and session (no resource manager does it here)."""
        self.run("tpm2_flushcontext", "-t")
        self.run("tpm2_flushcontext", "-s")

    def extend(self, pcr: int, **digests: bytes) -> None:
        """Extend ``pcr`` of each named bank (``sha256=…``) by the digest."""
        self.run("tpm2_pcrextend", f"{pcr}:" + ",".join(f"{bank}={d.hex()}" for bank, d in digests.items()))

    def read_pcrs(self, bank: str, pcrs) -> dict[int, bytes]:
        """The TPM's values of ``pcrs`` in ``bank`` (``sha256``)."""
        pcrs = sorted(pcrs)
        out = self.dir / "pcrs.bin"
        self.run("tpm2_pcrread", f"{bank}:{','.join(map(str, pcrs))}", "-o", str(out))
        data = out.read_bytes()
        size = len(data) // len(pcrs)
        return {pcr: data[i * size:(i + 1) * size] for i, pcr in enumerate(pcrs)}

    def quote(self, bank: str, pcrs, nonce: bytes, *, handle: int = AIK_HANDLE,
              signature_hash: str = "sha256") -> tuple[bytes, bytes]:
        """TPM2_Quote over ``pcrs`` of ``bank`` with ``nonce`` as qualifying
        data: the TPMS_ATTEST and the TPMT_SIGNATURE, as the TPM returned them."""
        self.run("tpm2_quote", "-c", f"0x{handle:08x}", "-l", f"{bank}:{','.join(map(str, sorted(pcrs)))}",
                 "-q", nonce.hex(), "-m", "quote.msg", "-s", "quote.sig", "-g", signature_hash)
        return (self.dir / "quote.msg").read_bytes(), (self.dir / "quote.sig").read_bytes()


def started_tpm(testcase: unittest.TestCase) -> SoftwareTpm:
    """A running software TPM in a temporary directory, stopped and removed when ``testcase`` ends."""
    tpm = SoftwareTpm()
    testcase.addCleanup(shutil.rmtree, tpm.dir, True)
    tpm.start()
    testcase.addCleanup(tpm.stop)
    return tpm
