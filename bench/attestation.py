"""Attestation bench: server CPU to judge one attestation with a large IMA list
against a large reference database.

    python bench/attestation.py [--entries 10000] [--references 100000] [--count 10] \\
        [--target-ms 20] [--json] [--check]

A migrated temporary SQLite database holds ``--references`` reference
digests (SHA-256) of one product, imported as ``nac-admin attest import``
does.  An endpoint's evidence is made up as nac's collector sends it: the
17 events of a BIOS log and ``--entries`` IMA entries (``ima-ng``, files
among the references) in the SHA-256 bank, and a TPM 2.0 quote of PCR 0-7
and 10 over a fresh nonce, signed by an RSA-2048 key standing in for the
TPM (the verifier cannot tell, and the TPM's time is not the server's).

Timed, as the attestation IMV runs it in the database thread
(``AttestationImv._check``): the reference lookup of the entries' files,
then the judgement (replay, quote signature and PCR digest, each IMA entry
rebuilt from its reference digest).  Figures: CPU time (``process_time``)
of each and of both, median over ``--count`` runs.  ``--check`` exits 1
when the whole misses ``--target-ms`` (the issue's budget: 20 ms for
10,000 entries against 100,000 references).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from nac.db import attestation as attest_db  # noqa: E402
from nac.db.engine import make_engine, upgrade  # noqa: E402
from nac.db.store import PolicyDb  # noqa: E402
from nac.pa.tcg_pts import (  # noqa: E402
    ComponentValidation,
    PcrTransform,
    QuoteMode,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
)
from nac.pts.evidence import BIOS_COMPONENT, IMA_COMPONENT, check_evidence, ima_file  # noqa: E402
from nac.pts.hashes import SHA256  # noqa: E402
from nac.pts.ima import template_hash  # noqa: E402
from nac.pts.pcr import PcrBank  # noqa: E402
from nac.pts.tpm2 import Attest, PcrSelection, pcr_digest  # noqa: E402

PRODUCT = "Debian 12 x86_64"
TIME = "2026-12-07T12:04:47Z"


def references(count: int) -> list[tuple[str, str, str]]:
    return [(f"/usr/lib/pkg{i // 50}/file{i}", "sha256", hashlib.sha256(b"file %d" % i).hexdigest())
            for i in range(count)]


def evidence(entries: int, known: list[tuple[str, str, str]], key, secret: bytes):
    bank = PcrBank(SHA256)
    items = []
    for pcr in (0, 0, 1, 2, 4, 4, 4, 5, 7, *range(8)):
        digest = hashlib.sha256(b"bios event %d" % len(items)).digest()
        bank.extend(pcr, digest)
        items.append(SimpleComponentEvidence(BIOS_COMPONENT, pcr, digest, SHA256.pts, PcrTransform.MATCH, TIME))
    step = max(1, len(known) // max(entries, 1))
    for i in range(entries):
        path, _, hexdigest = known[(i * step) % len(known)]
        measurement = template_hash(SHA256, "ima-ng", "sha256", bytes.fromhex(hexdigest), path)
        bank.extend(10, measurement)
        items.append(SimpleComponentEvidence(IMA_COMPONENT, 10, measurement, SHA256.pts, PcrTransform.MATCH, TIME,
                                             validation=ComponentValidation.PASSED, policy_uri=f"sha256:{path}"))
    pcrs = (*range(8), 10)
    selection = PcrSelection.of(SHA256.tpm_alg, pcrs)
    digest = pcr_digest(SHA256, bank.values_of(pcrs))
    attest = Attest(b"\x00\x0b" + bytes(32), secret, bytes(17), bytes(8), selection, digest)
    signature = key.sign(attest.to_bytes(), padding.PKCS1v15(), hashes.SHA256())
    final = SimpleEvidenceFinal(QuoteMode.TPM2, SHA256.pts, digest, attest.qualified_signer, attest.clock_info,
                                attest.firmware_version, selection.to_bytes(), signature)
    return items, final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--target-ms", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="nac-bench-attest-")
    try:
        engine = make_engine(f"sqlite:///{directory}/nac.db")
        upgrade(engine)
        db = PolicyDb(engine)
        known = references(args.references)
        db.run(attest_db.import_file_hashes, PRODUCT, known)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        secret = os.urandom(32)
        items, final = evidence(args.entries, known, key, secret)
        names = {found[1] for found in map(ima_file, items) if found is not None}

        lookups, judgements, wholes = [], [], []
        for _ in range(args.count):
            start = time.process_time()
            refs = db.run(attest_db.reference_digests, PRODUCT, names)
            middle = time.process_time()
            report = check_evidence(items, final, aik=key.public_key(), secret=secret, measurement_hash=SHA256,
                                    references=refs)
            end = time.process_time()
            assert report.quote_ok and report.counts()["ok"] == len(names), (report.quote_error, report.counts())
            lookups.append((middle - start) * 1000)
            judgements.append((end - middle) * 1000)
            wholes.append((end - start) * 1000)
        figures = {"entries": args.entries, "references": args.references, "count": args.count,
                   "lookup_cpu_ms": round(statistics.median(lookups), 2),
                   "judgement_cpu_ms": round(statistics.median(judgements), 2),
                   "total_cpu_ms": round(statistics.median(wholes), 2), "target_ms": args.target_ms}
        engine.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{args.entries} IMA entries against {args.references} references: reference lookup "
              f"{figures['lookup_cpu_ms']} ms CPU, judgement {figures['judgement_cpu_ms']} ms CPU, "
              f"total {figures['total_cpu_ms']} ms CPU (target {args.target_ms} ms)")
    return 1 if args.check and figures["total_cpu_ms"] > args.target_ms else 0


if __name__ == "__main__":
    sys.exit(main())
