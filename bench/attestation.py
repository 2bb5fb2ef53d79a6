"""Attestation bench: server CPU to judge one attestation with a large IMA list
against a large reference database, and (``--full``) whole attestations next
to an OS + Scanner assessment.

    python bench/attestation.py [--entries 10000] [--references 100000] [--count 10] \\
        [--target-ms 20] [--full [--full-entries 2000] [--full-count 20] [--installed 1000]] \\
        [--json] [--check]

**Judgement.**  A migrated temporary SQLite database holds ``--references``
reference digests (SHA-256) of one product, imported as ``nac-admin attest
import`` does, and a trusted AIK of that product.  An endpoint's evidence
is made up as nac's collector sends it: the 17 events of a BIOS log and
``--entries`` IMA entries (``ima-ng``, files among the references) in the
SHA-256 bank, and a TPM 2.0 quote of PCR 0-7 and 10 over a fresh nonce,
signed by an RSA-2048 key standing in for the TPM; the attributes are
built and parsed, as the verifier gets them.  Timed is what the
attestation IMV runs in the database thread, ``AttestationImv._check``:
the AIK lookup, the references of the entries' files (its reference
cache), the replay, the quote's signature and PCR digest, each IMA entry
against the template hashes its references give.  *Cold*: the first
attestation after a change to the references (one imported before each);
*warm*: the next ones, from the cache.  Figures: CPU time
(``process_time``), median over ``--count`` runs of each.  ``--check``
exits 1 when the warm figure misses ``--target-ms`` (the issue's budget:
20 ms for 10,000 entries against 100,000 references).

**Full attestations** (``--full``).  The real server core (TnccsCore, the
IMV manager, a started PolicyStore) and nac's TNC client (PbTncClient)
talk PB-TNC in this process, one assessment after another.  Attestation:
the AttestationImv against nac's attestation collector (AttestationImc)
reading a BIOS log and an IMA list of ``--full-entries`` entries from
files, its TPM a Python stand-in (the logs' PCRs, quotes signed with
RSA-2048), every file known to the references.  OS + Scanner: OsImv and
ScannerImv against nac's OS and Scanner collectors reading fixture files
(os-release, /proc, a dpkg status database of ``--installed`` packages of
the Debian-like policy bench/imv_os.py makes: some outdated, blacklisted or
unknown, so denied; the same list each time, as hosts from one image send,
which the OS IMV's package report cache serves).  Server CPU per assessment: the
process's CPU time (all threads) less the client's (``thread_time`` of
its calls, in this thread), median of ``--full-count`` assessments after
a warm-up; wall time per assessment includes the client; "per CPU second"
is 1000 / server CPU ms (one core).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from imvs.attestation import AttestationImv  # noqa: E402
from nac.db import attestation as attest_db  # noqa: E402
from nac.db.engine import make_engine, upgrade  # noqa: E402
from nac.db.store import PolicyDb  # noqa: E402
from nac.pa.message import PaMessage  # noqa: E402
from nac.pa.tcg_pts import (  # noqa: E402
    AttestationIdentityKey,
    ComponentValidation,
    PcrTransform,
    QuoteMode,
    SimpleComponentEvidence,
    SimpleEvidenceFinal,
)
from nac.pts.evidence import BIOS_COMPONENT, IMA_COMPONENT, FileStatus  # noqa: E402
from nac.pts.exchange import _Collected  # noqa: E402
from nac.pts.hashes import SHA256  # noqa: E402
from nac.pts.ima import template_hash  # noqa: E402
from nac.pts.pcr import PcrBank  # noqa: E402
from nac.pts.tpm2 import TPM_ALG_RSASSA, Attest, PcrSelection, pcr_digest  # noqa: E402

PRODUCT = "Debian 12 x86_64"
TIME = "2026-12-07T12:04:47Z"


def references(count: int) -> list[tuple[str, str, str]]:
    return [(f"/usr/lib/pkg{i // 50}/file{i}", "sha256", hashlib.sha256(b"file %d" % i).hexdigest())
            for i in range(count)]


def sign_quote(key, bank_hash, bank: PcrBank, pcrs, nonce: bytes) -> tuple[Attest, bytes]:
    """TPMS_ATTEST of ``pcrs`` of ``bank`` over ``nonce``, and its RSASSA signature."""
    selection = PcrSelection.of(bank_hash.tpm_alg, pcrs)
    attest = Attest(b"\x00\x0b" + bytes(32), nonce, bytes(17), bytes(8), selection,
                    pcr_digest(bank_hash, bank.values_of(pcrs)))
    return attest, key.sign(attest.to_bytes(), padding.PKCS1v15(), hashes.SHA256())


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
    attest, signature = sign_quote(key, SHA256, bank, (*range(8), 10), secret)
    final = SimpleEvidenceFinal(QuoteMode.TPM2, SHA256.pts, attest.pcr_digest, attest.qualified_signer,
                                attest.clock_info, attest.firmware_version, attest.pcr_select.to_bytes(), signature)
    # as the verifier has them: parsed from the collector's attributes
    sent = [*items, final]
    *items, final = (attribute for start in range(0, len(sent), 1000)
                     for attribute in PaMessage.parse(PaMessage(1, tuple(sent[start:start + 1000])).build()).attributes)
    return items, final


@dataclass
class Exchange:
    """What ``AttestationImv._check`` reads of a finished PtsVerifier."""

    collected: _Collected
    secret: bytes


def judgement(args) -> dict:
    directory = tempfile.mkdtemp(prefix="nac-bench-attest-")
    try:
        engine = make_engine(f"sqlite:///{directory}/nac.db")
        upgrade(engine)
        db = PolicyDb(engine)
        known = references(args.references)
        db.run(attest_db.import_file_hashes, PRODUCT, known)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        db.run(attest_db.register_aik, der, device="bench-host", product=PRODUCT, trusted=True)
        secret = os.urandom(32)
        items, final = evidence(args.entries, known, key, secret)
        imv = AttestationImv({})
        aik, problem = imv._aik(AttestationIdentityKey(der))
        exchange = Exchange(_Collected(measurement_algorithm=SHA256, evidence=items, final=final), secret)
        files = len({item.policy_uri for item in items if item.policy_uri})

        def attest() -> float:
            start = time.process_time()
            findings = db.run(imv._check, exchange, aik, problem)
            used = (time.process_time() - start) * 1000
            report = findings.report
            assert findings.trusted and report.quote_ok and report.counts()[FileStatus.OK.value] == files, (
                report.quote_error, report.counts())
            return used

        colds, warms = [], []
        for run in range(args.count):
            # a change to the references: the next attestation finds nothing kept
            db.run(attest_db.import_file_hashes, "Other OS 1", [(f"/opt/changed{run}", "sha256", "00" * 32)])
            colds.append(attest())
            warms.append(attest())
        for _ in range(args.count):
            warms.append(attest())
        engine.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"entries": args.entries, "references": args.references, "count": args.count,
            "cold_cpu_ms": round(statistics.median(colds), 2), "warm_cpu_ms": round(statistics.median(warms), 2),
            "target_ms": args.target_ms}


# -- full attestations through the server core --------------------------------------------------


class BenchTpm:
    """An ITpm in Python for nac's attestation collector: the PCRs its logs
    replay to (SHA-256 bank), quotes signed with an RSA key."""

    def __init__(self, bios_log: Path, ima_log: Path):
        from nac.pts.eventlog import parse_event_log
        from nac.pts.ima import parse_ima_log, replay

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.bank = parse_event_log(bios_log.read_bytes()).replay(SHA256)
        replay(parse_ima_log(ima_log.read_bytes()), SHA256, bank=self.bank)

    def version_info(self):
        return ("BNCH", 164, 2026)

    def pcr_banks(self):
        return ["sha256"]

    def aik_public_key(self):
        return self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def aik_signature_hash(self):
        return "sha256"

    def read_pcrs(self, bank, pcrs):
        return {pcr: self.bank.value(pcr) for pcr in pcrs}

    def quote(self, bank, pcrs, nonce):
        attest, signature = sign_quote(self.key, SHA256, self.bank, sorted(pcrs), nonce)
        return (attest.to_bytes(),
                struct.pack(">HHH", TPM_ALG_RSASSA, SHA256.tpm_alg, len(signature)) + signature)


def attested_host(directory: Path, entries: int) -> tuple[Path, Path, list[tuple[str, str, str]]]:
    """A BIOS log, an IMA list of ``entries`` files (after the boot aggregate) and their references."""
    from nac.pts.eventlog import EV_SEPARATOR, build_event2, build_spec_id_event
    from nac.pts.ima import build_entry

    bios = build_spec_id_event({SHA256.tpm_alg: SHA256.size})
    bank = PcrBank(SHA256)
    for pcr, payload in ((0, b"S-CRTM"), (0, b"POST"), (1, b"config"), (4, b"shim"), (4, b"grub"), (7, b"db"),
                         *((pcr, bytes(4)) for pcr in range(8))):
        digest = SHA256.hash(payload)
        bank.extend(pcr, digest)
        bios += build_event2(pcr, EV_SEPARATOR if payload == bytes(4) else 0x1, {SHA256.tpm_alg: digest}, payload)
    aggregate = SHA256.hash(*bank.values_of(range(10)))
    known = [(f"/usr/lib/pkg{i // 50}/file{i}", "sha256", hashlib.sha256(b"file %d" % i).hexdigest())
             for i in range(entries)]
    ima = build_entry("ima-ng", "sha256", aggregate, "boot_aggregate")
    ima += b"".join(build_entry("ima-ng", "sha256", bytes.fromhex(digest), path) for path, _, digest in known)
    (directory / "bios").write_bytes(bios)
    (directory / "ima").write_bytes(ima)
    return directory / "bios", directory / "ima", known


def _peer():
    from nac.tnccs.assessment import PeerInfo

    return PeerInfo("pt-tls", "127.0.0.1", 40000, "carol", auth_method="sasl-plain")


class ClientClock:
    """CPU time of the client's calls (this thread's)."""

    def __init__(self):
        self.seconds = 0.0

    def call(self, fn, *args):
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.seconds += time.thread_time() - start


def assessment(core, store, imcs, clock: ClientClock):
    """One assessment of ``imcs`` (nac's TNC client) by ``core``: the decision."""
    from imv_os import run_client

    return run_client(core, store, imcs, clock.call).addCallback(lambda done: done[1])


def _verdicts(decision):
    return decision.access, tuple((v.imv_name, v.evaluation.label, v.reason) for v in decision.imv_results)


def full(reactor, args, out: dict):
    """Full attestations and OS + Scanner assessments, each through the server core."""
    from twisted.internet import defer

    from imv_os import DrainingStore, make_policy, populate
    from imvs.os import OsImv
    from imvs.scanner import ScannerImv
    from nac.client.collectors.attestation import AttestationImc
    from nac.tnccs.core import TnccsCore
    from nac.tnccs.imv_manager import ImvManager
    from tests.test_collectors import Host

    @defer.inlineCallbacks
    def measure(name, imvs, imcs, store):
        core = TnccsCore(ImvManager(imvs), store=store)
        expected = None
        for _ in range(args.warmup):
            decision = yield assessment(core, store, imcs(), ClientClock())
            expected = _verdicts(decision)
        servers, walls = [], []
        for _ in range(args.full_count):
            clock = ClientClock()
            began, cpu = time.perf_counter(), time.process_time()
            decision = yield assessment(core, store, imcs(), clock)
            walls.append((time.perf_counter() - began) * 1000)
            servers.append((time.process_time() - cpu - clock.seconds) * 1000)
            if _verdicts(decision) != expected:
                raise RuntimeError(f"{name}: {_verdicts(decision)}, not {expected}")
        server = statistics.median(servers)
        return {"verdict": expected[0], "server_cpu_ms": round(server, 2),
                "per_cpu_second": round(1000 / server, 1), "wall_ms": round(statistics.median(walls), 2),
                "assessments": args.full_count}

    directory = Path(tempfile.mkdtemp(prefix="nac-bench-full-"))
    stores = []
    try:
        def store_at(name):
            engine = make_engine(f"sqlite:///{directory}/{name}.db")
            upgrade(engine)
            store = DrainingStore(engine)
            stores.append((store, engine))
            return store

        # attestation: a trusted AIK, every file known
        bios, ima, known = attested_host(directory, args.full_entries)
        tpm = BenchTpm(bios, ima)
        store = store_at("attestation")
        store.db.run(attest_db.import_file_hashes, PRODUCT, known)
        store.db.run(attest_db.register_aik, tpm.aik_public_key(), device="bench-host", product=PRODUCT,
                     trusted=True)
        store.start()
        out["attestation"] = yield measure(
            "attestation", [AttestationImv({"hash_algorithms": ["sha256"]})],
            lambda: [AttestationImc(tpm=tpm, bios_log=bios, ima_log=ima)], store)
        out["attestation"]["ima_entries"] = args.full_entries

        # OS + Scanner: the endpoint's packages all releases the policy knows
        policy = make_policy(max(args.installed * 4, 1000), args.installed)
        store = store_at("os")
        populate(store.db, policy)
        store.start()
        host = Host(directory / "host", policy.installed)
        out["os_scanner"] = yield measure(
            "OS + Scanner", [OsImv({}), ScannerImv({})], lambda: [host.os_imc(), host.scanner_imc()], store)
        out["os_scanner"]["installed_packages"] = len(policy.installed)
    finally:
        for store, engine in stores:
            store.stop()
            engine.dispose()
        shutil.rmtree(directory, ignore_errors=True)


def run_full(args, out: dict) -> None:
    from twisted.internet import defer

    from imv_os import run_in_reactor

    failure = run_in_reactor(defer.inlineCallbacks(full), args, out)
    if failure is not None:
        failure.raiseException()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--entries", type=int, default=10_000, help="IMA entries judged (default: %(default)s)")
    parser.add_argument("--references", type=int, default=100_000,
                        help="reference digests in the database (default: %(default)s)")
    parser.add_argument("--count", type=int, default=10, help="cold and warm runs (default: %(default)s)")
    parser.add_argument("--target-ms", type=float, default=20.0,
                        help="warm CPU to meet (default: %(default)s)")
    parser.add_argument("--full", action="store_true", help="also full attestations and OS + Scanner")
    parser.add_argument("--full-entries", type=int, default=2000,
                        help="IMA entries of a full attestation (default: %(default)s)")
    parser.add_argument("--full-count", type=int, default=20,
                        help="timed full assessments of each kind (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed full assessments first (default: %(default)s)")
    parser.add_argument("--installed", type=int, default=1000,
                        help="packages of the OS + Scanner endpoint (default: %(default)s)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when the warm figure misses the target")
    args = parser.parse_args(argv)
    if min(args.entries, args.references, args.count, args.full_entries, args.full_count, args.installed,
           args.warmup) < 1:
        parser.error("counts must be positive")

    figures = {"judgement": judgement(args)}
    if args.full:
        run_full(args, figures)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        j = figures["judgement"]
        print(f"{j['entries']} IMA entries against {j['references']} references (AttestationImv._check, "
              f"median of {j['count']}): cold (first after a reference change) {j['cold_cpu_ms']} ms CPU, "
              f"warm (references cached) {j['warm_cpu_ms']} ms CPU (target {j['target_ms']:g} ms)")
        if args.full:
            a, o = figures["attestation"], figures["os_scanner"]
            rows = [(f"attestation, {a['ima_entries']} IMA entries", a),
                    (f"OS + Scanner, {o['installed_packages']} packages", o)]
            print(f"\n{'assessment':<36} {'server CPU ms':>13} {'per CPU second':>14} {'wall ms':>8}  verdict")
            for label, row in rows:
                print(f"{label:<36} {row['server_cpu_ms']:>13} {row['per_cpu_second']:>14} {row['wall_ms']:>8}  "
                      f"{row['verdict']}")
    return 1 if args.check and figures["judgement"]["warm_cpu_ms"] > args.target_ms else 0


if __name__ == "__main__":
    sys.exit(main())
