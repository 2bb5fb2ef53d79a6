"""An endpoint to attest, for tests: a software TPM 2.0 (tests/swtpm.py) with an
AIK, a BIOS/UEFI event log and an IMA measurement list written here and
extended into its SHA-1, SHA-256 and SHA-384 PCR banks, and the files the
IMA list measured (their contents made up, their digests computed here)."""

from __future__ import annotations

import hashlib

from nac.client.collectors.attestation import AttestationImc
from nac.client.tpm import Tpm2Tools
from nac.pts.eventlog import EV_SEPARATOR, build_event2, build_spec_id_event
from nac.pts.ima import build_entry, template_data
from tests.posture import tmpdir
from tests.swtpm import started_tpm

BANKS = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C}
BIOS_EVENTS = [(0, 0x8, b"S-CRTM version 1.0"), (0, 0x1, b"POST code"), (1, 0x1, b"platform config"),
               (4, 0x80000003, b"shim.efi"), (4, 0x80000003, b"grubx64.efi"), (7, 0x800000E0, b"db"),
               *((pcr, EV_SEPARATOR, bytes(4)) for pcr in range(8))]
FILES = {"/usr/bin/bash": b"the shell", "/usr/bin/ls": b"list directory contents",
         "/usr/lib/x86_64-linux-gnu/libc.so.6": b"the C library", "/usr/bin/openssl": b"the toolkit"}


def digests(data: bytes) -> dict[str, bytes]:
    return {name: hashlib.new(name, data).digest() for name in BANKS}


class AttestedHost:
    """An endpoint with a TPM whose PCRs its logs replay to (until a test edits them)."""

    def __init__(self, testcase, files: dict[str, bytes] | None = None, *, aik: str = "rsa"):
        self.testcase = testcase
        self.dir = tmpdir(testcase, "nac-host-")
        self.tpm = started_tpm(testcase)
        self.aik_pem = self.tpm.create_aik(aik)
        self.files = dict(FILES if files is None else files)
        self.bios_log = self.dir / "binary_bios_measurements"
        self.ima_log = self.dir / "binary_runtime_measurements"
        self._write_bios()
        self._write_ima()

    @property
    def aik_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_public_key(self.aik_pem)
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def extend(self, pcr: int, values: dict[str, bytes]) -> None:
        self.tpm.extend(pcr, **values)

    def _write_bios(self) -> None:
        data = build_spec_id_event({alg: hashlib.new(name).digest_size for name, alg in BANKS.items()})
        for pcr, event_type, payload in BIOS_EVENTS:
            values = digests(payload)
            data += build_event2(pcr, event_type, {BANKS[name]: value for name, value in values.items()}, payload)
            self.extend(pcr, values)
        self.bios_log.write_bytes(data)

    def _write_ima(self) -> None:
        # the kernel's boot aggregate: SHA-384 over PCR 0-9 of the SHA-384 bank
        pcrs = self.tpm.read_pcrs("sha384", range(10))
        aggregate = hashlib.sha384(b"".join(pcrs[p] for p in range(10))).digest()
        entries = [("sha384", aggregate, "boot_aggregate")]
        entries += [("sha256", hashlib.sha256(content).digest(), path) for path, content in self.files.items()]
        data = b""
        for algorithm, digest, name in entries:
            data += self.ima_entry(algorithm, digest, name)
        self.ima_log.write_bytes(data)

    def ima_entry(self, algorithm: str, digest: bytes, name: str, *, extend: bool = True) -> bytes:
        """An ima-ng entry for a file, extended into PCR 10 of every bank unless ``extend`` is false."""
        hashed = template_data("ima-ng", algorithm, digest, name)
        if extend:
            self.extend(10, {"sha1": hashlib.sha1(hashed).digest(), "sha256": hashlib.sha256(hashed).digest(),
                             "sha384": hashlib.sha384(hashed).digest()})
        return build_entry("ima-ng", algorithm, digest, name)

    def run_file(self, path: str, content: bytes) -> None:
        """The host runs a file: IMA measures it (appended to the list and extended)."""
        with open(self.ima_log, "ab") as log:
            log.write(self.ima_entry("sha256", hashlib.sha256(content).digest(), path))

    def edit_ima_log(self, path: str, content: bytes) -> None:
        """Someone edits the measurement list after the fact: the entry of
        ``path`` says another digest, the TPM keeps the old one."""
        data = self.ima_log.read_bytes()
        old = build_entry("ima-ng", "sha256", hashlib.sha256(self.files[path]).digest(), path)
        new = build_entry("ima-ng", "sha256", hashlib.sha256(content).digest(), path)
        assert old in data
        self.ima_log.write_bytes(data.replace(old, new))

    def references(self, files: dict[str, bytes] | None = None) -> list[tuple[str, str, str]]:
        """(path, algorithm, hex digest) of the files as a known-good host has them."""
        return [(path, "sha256", hashlib.sha256(content).hexdigest())
                for path, content in (self.files if files is None else files).items()]

    def imc(self, **kwargs) -> AttestationImc:
        kwargs.setdefault("bios_log", self.bios_log)
        kwargs.setdefault("ima_log", self.ima_log)
        return AttestationImc(tpm=Tpm2Tools(self.tpm.tcti), **kwargs)

    def client_arguments(self) -> list[str]:
        """nac-pt-tls-client's options for this host's TPM and logs."""
        return ["--collectors", "attestation", "--tpm-tcti", self.tpm.tcti, "--bios-log", str(self.bios_log),
                "--ima-log", str(self.ima_log)]
