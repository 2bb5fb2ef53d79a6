"""Collectors that measure the host nac's client runs on, as strongSwan's
IMCs do: OS (``os``), open ports (``scanner``) and software inventory
(``swima``)."""

from __future__ import annotations

from collections.abc import Iterable

from nac.client.collectors.os import OsImc
from nac.client.collectors.scanner import ScannerImc
from nac.client.collectors.swima import SwimaImc

__all__ = ["COLLECTORS", "DEFAULT_COLLECTORS", "OsImc", "ScannerImc", "SwimaImc", "make_collectors"]

#: Collector names accepted by ``nac-pt-tls-client --collectors``, in strongSwan's load order.
COLLECTORS = {"os": OsImc, "scanner": ScannerImc, "swima": SwimaImc}
DEFAULT_COLLECTORS = ("os", "scanner", "swima")


def make_collectors(names: Iterable[str] = DEFAULT_COLLECTORS) -> list:
    """One IMC per name, reading this host, in the order given.

    Unknown or repeated names raise ValueError with the valid choices.
    """
    imcs, seen = [], set()
    for name in names:
        key = name.strip().lower()
        if key not in COLLECTORS:
            raise ValueError(f"unknown collector {name!r}; choose from {', '.join(COLLECTORS)}")
        if key in seen:
            raise ValueError(f"collector {name!r} given twice")
        seen.add(key)
        imcs.append(COLLECTORS[key]())
    return imcs
