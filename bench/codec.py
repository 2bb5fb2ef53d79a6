"""PB-TNC / PA-TNC codec throughput on captured strongSwan batches.

    python bench/codec.py [--rounds R] [--samples N] [--check] [--against REV]

One operation = parse the PB-TNC batch, parse every PA-TNC message inside
its PB-PA messages, build those PA messages again and build the batch.
Batches measured, from strongSwan's pt-tls-client session
``tests/data/vectors/strongswan-pt-tls/carol-sasl-allowed.jsonl``: its
largest PB-TNC batch (the 19,344-byte CDATA with installed packages) and a
typical small CDATA batch (the one closest to 300 bytes), each also PB-TNC
only.  The parser's
memory of package lists seen before is off: the figures are those of a list
never seen.

The machine is shared, so each figure is taken the way that holds up under
other load: short samples (about 1 ms, shorter than a scheduler time
slice, so many run undisturbed), taken round-robin over every
measurement (a burst of load hits all of them alike); the median of each
round's samples; the best of those medians over the rounds, i.e. the speed
of one core when the round had it to itself.  Operations per second are
1 / that time.  On a busy machine, raise ``--rounds``.

``--against REV`` measures the ``nac`` package of a git revision (extracted
with ``git archive``) in the same run, interleaved with the working tree,
and prints the speed-up: compare codecs that way, not across runs.
``--check`` exits 1 when a target is missed.

Targets: big batch ≤ 1 ms median; small batches ≥ 30,000 per second.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

# Measure this checkout's nac, not whatever copy is installed in site-packages
# (running ``python bench/codec.py`` puts bench/ first on the path, not the root).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BIG_TARGET_S = 1e-3
SMALL_TARGET_OPS = 30_000
SAMPLE_S = 0.001


SESSION = REPO / "tests" / "data" / "vectors" / "strongswan-pt-tls" / "carol-sasl-allowed.jsonl"


def captured_batches() -> list[bytes]:
    found = []
    for line in SESSION.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("layer") == "pb-tnc":
                found.append(bytes.fromhex(record["hex"]))
    return found


# -- the codecs measured ------------------------------------------------------


def load_codec(root: Path = REPO) -> SimpleNamespace:
    """``PbBatch``, ``PbPa`` and ``PaMessage`` (None if absent) of the nac under ``root``.

    Another revision's copy is imported and then taken out of
    ``sys.modules`` again (its modules keep their own globals), so codecs of
    two revisions live side by side in one process.
    """
    other = root != REPO
    if other:
        sys.path.insert(0, str(root))
    try:
        pb = importlib.import_module("nac.pb")
        try:
            pa_message = importlib.import_module("nac.pa").PaMessage
            # every operation walks the whole package list: the parser's
            # memory of lists it saw before would make this a dict lookup
            ietf = importlib.import_module("nac.pa.ietf")
            if hasattr(ietf, "PARSED_LISTS_KEPT"):
                ietf.PARSED_LISTS_KEPT = 0
        except ImportError:
            pa_message = None
        return SimpleNamespace(root=root, PbBatch=pb.PbBatch, PbPa=pb.PbPa, PaMessage=pa_message)
    finally:
        if other:
            sys.path.remove(str(root))
            for name in [n for n in sys.modules if n == "nac" or n.startswith("nac.")]:
                del sys.modules[name]


def extract_revision(rev: str, into: Path) -> Path:
    """The ``nac`` package of git revision ``rev``, unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "nac"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python before 3.11.4; the archive is our own repository's
            tar.extractall(into)
    return into


def pb_only(codec: SimpleNamespace, data: bytes) -> Callable[[], bytes]:
    parse = codec.PbBatch.parse

    def op() -> bytes:
        return parse(data).build()

    return op


def pb_and_pa(codec: SimpleNamespace, data: bytes) -> Callable[[], bytes]:
    parse_batch = codec.PbBatch.parse
    parse_pa = codec.PaMessage.parse
    pb_pa = codec.PbPa

    def op() -> bytes:
        batch = parse_batch(data)
        for message in batch.messages:
            if type(message) is pb_pa:
                parse_pa(message.body).build()
        return batch.build()

    return op


def check_round_trip(codec: SimpleNamespace, data: bytes) -> None:
    batch = codec.PbBatch.parse(data)
    if batch.build() != data:
        raise SystemExit(f"{codec.root}: PB-TNC round trip failed")
    if codec.PaMessage is not None:
        for message in batch.messages:
            if type(message) is codec.PbPa and codec.PaMessage.parse(message.body).build() != message.body:
                raise SystemExit(f"{codec.root}: PA-TNC round trip failed")


# -- timing -------------------------------------------------------------------


def calls_per_sample(op: Callable[[], object]) -> int:
    """How many calls of ``op`` take about ``SAMPLE_S`` (at the fastest seen)."""
    op()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        op()
        best = min(best, time.perf_counter() - start)
    return max(1, int(SAMPLE_S / max(best, 1e-9)))


def measure(ops: list[Callable[[], object]], rounds: int, samples: int) -> list[float]:
    """Seconds per call of each op: the best over ``rounds`` of the median sample.

    Samples go round-robin over ``ops`` so that load from elsewhere on the
    machine falls on all of them alike.
    """
    counts = [calls_per_sample(op) for op in ops]
    best = [float("inf")] * len(ops)
    for _ in range(rounds):
        timings: list[list[float]] = [[] for _ in ops]
        for _ in range(samples):
            for index, (op, count) in enumerate(zip(ops, counts)):
                calls = range(count)
                start = time.perf_counter()
                for _ in calls:
                    op()
                timings[index].append((time.perf_counter() - start) / count)
        for index, series in enumerate(timings):
            best[index] = min(best[index], statistics.median(series))
    return best


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds of samples (default 40)")
    parser.add_argument("--samples", type=int, default=15, help="samples per round and measurement (default 15)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--against", metavar="REV", help="also measure nac at git revision REV, interleaved")
    args = parser.parse_args(argv)

    batches = captured_batches()
    if not batches:
        print(f"no pb-tnc records in {SESSION}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        codecs = []
        if args.against:  # first, while no nac is imported yet
            codecs.append((args.against, load_codec(extract_revision(args.against, Path(tmp)))))
        codecs.append(("now", load_codec()))
        current = codecs[-1][1]

        big = max(batches, key=len)
        cdata = [b for b in batches if current.PbBatch.parse(b).batch_type == 1]
        small = min(cdata, key=lambda b: abs(len(b) - 300))
        cases = [(f"big CDATA {len(big):,} B", big), (f"small CDATA {len(small):,} B", small)]

        rows, ops = [], []
        for label, data in cases:
            for scope, make in (("PB only", pb_only), ("PB + PA", pb_and_pa)):
                if scope == "PB + PA" and any(c.PaMessage is None for _, c in codecs):
                    continue
                rows.append((f"{label}, {scope}", scope))
                for _, codec in codecs:
                    check_round_trip(codec, data)
                    ops.append(make(codec, data))
        seconds = measure(ops, args.rounds, args.samples)

    per_row = len(codecs)
    print(f"python {sys.version.split()[0]}, nac from {current.root}, {args.rounds} rounds × {args.samples} samples;")
    print("time per operation = best over the rounds of the median sample")
    header = f"{'batch':<30}" + "".join(f"{name + ' time':>14}{'ops/s':>10}" for name, _ in codecs)
    print(header + (f"{'speed-up':>10}" if per_row > 1 else ""))
    results = {}
    for index, (label, scope) in enumerate(rows):
        times = seconds[index * per_row:(index + 1) * per_row]
        line = f"{label:<30}" + "".join(f"{fmt(t):>14}{1 / t:>10,.0f}" for t in times)
        if per_row > 1:
            line += f"{times[0] / times[-1]:>9.1f}×"
        print(line)
        results[label] = times[-1]

    scope = "PB + PA" if current.PaMessage is not None else "PB only"
    big_s = results[f"{cases[0][0]}, {scope}"]
    small_ops = 1 / results[f"{cases[1][0]}, {scope}"]
    big_ok = big_s <= BIG_TARGET_S
    small_ok = small_ops >= SMALL_TARGET_OPS
    print(f"target big batch ≤ 1 ms ({scope}): {'met' if big_ok else 'MISSED'} ({fmt(big_s)})")
    print(f"target small batches ≥ {SMALL_TARGET_OPS:,}/s ({scope}): "
          f"{'met' if small_ok else 'MISSED'} ({small_ops:,.0f}/s)")
    return 1 if args.check and not (big_ok and small_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
