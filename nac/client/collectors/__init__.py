"""Collectors that measure the host nac's client runs on, as strongSwan's
IMCs do: OS (``os``), open ports (``scanner``) and software inventory
(``swima``), remote attestation with the TPM (``attestation``); and two
that report what they are given, to test a
deployment: the ITA test collector (``test``: the verdict to ask for) and
a hardcopy device (``hcd``: a printer described in a file)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nac.client.collectors.attestation import AttestationImc
from nac.client.collectors.hcd import HcdImc
from nac.client.collectors.os import OsImc
from nac.client.collectors.scanner import ScannerImc
from nac.client.collectors.swima import SwimaImc
from nac.client.collectors.test import TestImc

__all__ = ["AttestationImc", "COLLECTORS", "DEFAULT_COLLECTORS", "HcdImc", "OsImc", "ScannerImc", "SwimaImc", "TestImc",
           "make_collectors"]

#: Collector names accepted by ``nac-pt-tls-client --collectors``, in strongSwan's load order.
COLLECTORS = {"os": OsImc, "scanner": ScannerImc, "swima": SwimaImc, "attestation": AttestationImc,
              "test": TestImc, "hcd": HcdImc}
DEFAULT_COLLECTORS = ("os", "scanner", "swima")


def make_collectors(names: Iterable[str] = DEFAULT_COLLECTORS, *,
                    settings: Mapping[str, Mapping[str, Any]] | None = None) -> list:
    """One IMC per name, in the order given; ``settings`` holds keyword
    arguments per collector name (``{"test": {"command": "isolate"}}``;
    ``{"hcd": {"path": FILE}}``, which the HCD collector needs).

    Unknown or repeated names, and settings a collector cannot use, raise
    ValueError saying why.
    """
    settings = settings or {}
    imcs, seen = [], set()
    for name in names:
        key = name.strip().lower()
        if key not in COLLECTORS:
            raise ValueError(f"unknown collector {name!r}; choose from {', '.join(COLLECTORS)}")
        if key in seen:
            raise ValueError(f"collector {name!r} given twice")
        seen.add(key)
        kwargs = dict(settings.get(key, {}))
        if key == "hcd":
            path = kwargs.pop("path", None)
            if path is None:
                raise ValueError("the hcd collector needs a file describing the device (--hcd-attributes)")
            imcs.append(HcdImc.from_file(path))  # HcdFileError is a ValueError
        else:
            imcs.append(COLLECTORS[key](**kwargs))
    return imcs
