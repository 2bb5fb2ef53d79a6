"""PB-TNC / PA-TNC codec throughput on captured strongSwan batches.

    python bench/codec.py [--samples N] [--check]

One operation = parse the PB-TNC batch, parse every PA-TNC message inside
its PB-PA messages, build those PA messages again and build the batch.
Measured on one core with ``time.perf_counter``: the median time per
operation over many samples, and operations per second.  Batches measured:
the largest PB-TNC batch in the vectors (strongSwan's 19,344-byte CDATA with
installed packages and SWIMA) and a typical small CDATA batch (the one closest
to 300 bytes).  ``--check`` exits 1 when a target is missed.

Targets: big batch ≤ 1 ms median; small batches ≥ 30,000 per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nac.pb import PbBatch, PbPa

BIG_TARGET_S = 1e-3
SMALL_TARGET_OPS = 30_000


def vectors_dir() -> Path:
    env = os.environ.get("NAC_VECTORS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "vectors"


def captured_batches() -> list[bytes]:
    found = []
    for path in sorted(vectors_dir().glob("**/*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("layer") == "pb-tnc":
                    found.append(bytes.fromhex(record["hex"]))
    return found


def pa_codec():
    try:
        from nac.pa import PaMessage
    except ImportError:
        return None
    return PaMessage


def pb_only(data: bytes) -> Callable[[], bytes]:
    parse = PbBatch.parse

    def op() -> bytes:
        return parse(data).build()

    return op


def pb_and_pa(data: bytes, pa_message) -> Callable[[], bytes]:
    parse_batch = PbBatch.parse
    parse_pa = pa_message.parse

    def op() -> bytes:
        batch = parse_batch(data)
        for message in batch.messages:
            if type(message) is PbPa:
                parse_pa(message.body).build()
        return batch.build()

    return op


def measure(op: Callable[[], object], samples: int, budget_s: float = 0.02) -> tuple[float, float]:
    """Median seconds per operation and operations per second."""
    # calibrate how many calls make one sample of about ``budget_s``
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < budget_s:
        op()
        calls += 1
    per_sample = max(1, calls)
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(per_sample):
            op()
        timings.append((time.perf_counter() - start) / per_sample)
    median = statistics.median(timings)
    return median, 1.0 / median


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60, help="samples per measurement (default 60)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    batches = captured_batches()
    if not batches:
        print(f"no pb-tnc records under {vectors_dir()} (set NAC_VECTORS)", file=sys.stderr)
        return 2
    big = max(batches, key=len)
    cdata = [b for b in batches if PbBatch.parse(b).batch_type == 1]
    small = min(cdata, key=lambda b: abs(len(b) - 300))
    pa_message = pa_codec()

    for data in (big, small):
        batch = PbBatch.parse(data)
        assert batch.build() == data, "PB-TNC round trip failed"
        if pa_message is not None:
            for m in batch.messages:
                if isinstance(m, PbPa):
                    assert pa_message.parse(m.body).build() == m.body, "PA-TNC round trip failed"

    print(f"python {sys.version.split()[0]}, one core, {args.samples} samples, median per operation")
    print(f"{'batch':<34}{'median':>13}{'ops/s':>12}")
    rows = []
    for label, data in ((f"big CDATA {len(big):,} B", big), (f"small CDATA {len(small):,} B", small)):
        median, ops = measure(pb_only(data), args.samples)
        print(f"{label + ', PB only':<34}{fmt(median):>13}{ops:>12,.0f}")
        if pa_message is not None:
            median, ops = measure(pb_and_pa(data, pa_message), args.samples)
            print(f"{label + ', PB + PA':<34}{fmt(median):>13}{ops:>12,.0f}")
        rows.append((median, ops))
    if pa_message is None:
        print("nac.pa is not importable: PA-TNC parsing not measured")

    (big_median, _), (_, small_ops) = rows
    scope = "PB + PA" if pa_message is not None else "PB only"
    big_ok = big_median <= BIG_TARGET_S
    small_ok = small_ops >= SMALL_TARGET_OPS
    print(f"target big batch ≤ 1 ms ({scope}): {'met' if big_ok else 'MISSED'} ({fmt(big_median).strip()})")
    print(f"target small batches ≥ {SMALL_TARGET_OPS:,}/s ({scope}): "
          f"{'met' if small_ok else 'MISSED'} ({small_ops:,.0f}/s)")
    return 1 if args.check and not (big_ok and small_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
