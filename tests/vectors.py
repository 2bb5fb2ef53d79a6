"""The captured sessions in ``tests/data/vectors/`` (its README is the index):
bytes that strongSwan, wpa_supplicant/hostapd and the other reference peers
put on the wire, kept in the repository so that every test reading them runs
on every clone.  A missing file is an error here, never a skip."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "data" / "vectors"


def vector_path(relative: str) -> Path:
    """``tests/data/vectors/<relative>``, which must exist."""
    path = VECTORS / relative
    if not path.exists():
        raise FileNotFoundError(f"captured vector {relative} is missing from {VECTORS}")
    return path


def records(relative: str) -> list[dict]:
    """The records of one capture file (``folder/name.jsonl``), in wire order."""
    return [json.loads(line) for line in vector_path(relative).read_text().splitlines() if line.strip()]


def record_files() -> list[Path]:
    """Every capture file of every folder."""
    return sorted(VECTORS.glob("*/*.jsonl"))


@lru_cache(maxsize=None)
def layer_records(layer: str) -> tuple[tuple[str, dict], ...]:
    """(file name, record) of every record of ``layer`` (``pb-tnc``,
    ``pt-tls``, ``tnccs-1.1``, ``eap``, ``radius``) in every capture file."""
    return tuple((path.name, record) for path in record_files() for record in records(str(path.relative_to(VECTORS)))
                 if record.get("layer") == layer)


def log_text(relative: str) -> str:
    """A captured program log (``folder/name.log``), kept gzip-compressed."""
    return gzip.decompress(vector_path(relative + ".gz").read_bytes()).decode("utf-8", "replace")


def log_texts() -> list[tuple[str, str]]:
    """(``folder/name.log``, text) of every captured log."""
    return [(str(path.relative_to(VECTORS))[:-3], gzip.decompress(path.read_bytes()).decode("utf-8", "replace"))
            for path in sorted(VECTORS.glob("*/*.log.gz"))]
