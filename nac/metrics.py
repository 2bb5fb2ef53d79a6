"""nac's Prometheus metrics (prometheus-client; every name starts with
``nac_``), served by the HTTP transport at ``/metrics``, summed over nac's
processes.

The TNCS core reports each decision here (:func:`assessment_decided`); this
module, not the sans-IO core, reads the clock for the durations.  What a
transport already counts (the RADIUS server's RFC 4669 counters, PT-TLS
connections open, IKE SAs, the worker processes) is read when the metrics
are collected, from the functions it registers with :func:`add_source`;
nothing in a protocol core knows about metrics.

A worker process answers the main process's request with a
:func:`snapshot` of its metrics (JSON values, over the pipe of
:mod:`nac.processes`); :func:`exposition` sums the snapshots with this
process's own figures, and :func:`retired` keeps the counters of a worker
that ended so that the sums never go back.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric

__all__ = ["REGISTRY", "Snapshot", "add_source", "assessment_decided", "assessment_ended", "assessment_started",
           "exposition", "remove_source", "retired", "snapshot"]

REGISTRY = CollectorRegistry(auto_describe=True)

ASSESSMENTS = Counter("nac_assessments", "Assessments decided, by transport and decision (allowed, isolate, denied)",
                      ["transport", "decision"], registry=REGISTRY)
DURATION = Histogram("nac_assessment_duration_seconds", "Time from an assessment's first batch to its decision",
                     ["transport"], registry=REGISTRY,
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
VERDICTS = Counter("nac_imv_verdicts", "IMV recommendations, by IMV and recommendation", ["imv", "recommendation"],
                   registry=REGISTRY)
OPEN = Gauge("nac_assessments_open", "Assessments in progress", registry=REGISTRY)
DB_LATENCY = Histogram("nac_db_probe_seconds", "Time the policy database took to answer /health and /metrics probes",
                       registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))

#: metric families as JSON values: [[name, type, help, [[sample name, {label: value}, value], ...]], ...]
Snapshot = list

_started: dict[int, float] = {}


def assessment_started(connection_id: int) -> None:
    if connection_id not in _started and len(_started) < 100_000:
        _started[connection_id] = time.monotonic()
        OPEN.inc()


def assessment_decided(connection_id: int, transport: str, decision) -> None:
    ASSESSMENTS.labels(transport, decision.access).inc()
    for verdict in decision.imv_results:
        VERDICTS.labels(verdict.imv_name, verdict.recommendation.label).inc()
    begun = _started.pop(connection_id, None)
    if begun is not None:
        OPEN.dec()
        DURATION.labels(transport).observe(time.monotonic() - begun)


def assessment_ended(connection_id: int) -> None:
    if _started.pop(connection_id, None) is not None:
        OPEN.dec()


# -- what the transports count, read when collected ------------------------------------------

_SOURCES: dict[object, Callable[[], Iterable[Metric]]] = {}


def add_source(key, families: Callable[[], Iterable[Metric]]) -> None:
    """Collect ``families()`` (prometheus-client metric families, e.g.
    ``CounterMetricFamily``) with this process's metrics until
    :func:`remove_source` ``(key)``; families of the same name from several
    sources are summed."""
    _SOURCES[key] = families


def remove_source(key) -> None:
    _SOURCES.pop(key, None)


class _Sources:
    def collect(self):
        return merge(family for source in list(_SOURCES.values()) for family in source())

    def describe(self):
        return []  # the names come and go with the sources


# -- one process's figures, and their sum ------------------------------------------------------


def snapshot() -> Snapshot:
    """This process's metrics as JSON values, without the ``_created``
    samples (a sum over processes has no creation time)."""
    return [[f.name, f.type, f.documentation, [[s.name, dict(s.labels), s.value] for s in f.samples
                                                 if not s.name.endswith("_created")]]
            for f in REGISTRY.collect()]


def _families(snap: Snapshot) -> Iterable[Metric]:
    """The metric families of a snapshot (a worker's: entries that are not
    well-formed are left out)."""
    for entry in snap if isinstance(snap, list) else ():
        try:
            name, kind, documentation, samples = entry
            family = Metric(name, documentation, kind)
            for sample_name, labels, value in samples:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not isinstance(labels, dict):
                    continue
                family.add_sample(str(sample_name), {str(k): str(v) for k, v in labels.items()}, value)
        except (TypeError, ValueError):
            continue
        yield family


def merge(families: Iterable[Metric]) -> list[Metric]:
    """Families of the same name as one, samples of the same name and labels
    summed (counters, histogram buckets, sums and counts, and the gauges
    nac keeps: things open or in progress); ``_created`` samples left out."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for family in families:
        into = merged.get(family.name)
        if into is None:
            into = merged[family.name] = Metric(family.name, family.documentation, family.type)
            values[family.name] = {}
        sums = values[family.name]
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            sums[key] = sums.get(key, 0) + sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


def retired(snap: Snapshot) -> Snapshot:
    """What of a worker's last snapshot still counts once it has ended: its
    counters and histograms (its gauges ended with it)."""
    return [entry for entry in snap if isinstance(entry, list) and len(entry) == 4
            and entry[1] in ("counter", "histogram")]


def sum_snapshots(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Several snapshots as one (the retired workers')."""
    return [[f.name, f.type, f.documentation, [[s.name, dict(s.labels), s.value] for s in f.samples]]
            for f in merge(f for snap in snapshots for f in _families(snap))]


class _Fixed:
    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return self.families


def exposition(snapshots: Iterable[Snapshot] = ()) -> bytes:
    """The text format of this process's metrics summed with ``snapshots``
    (the worker processes')."""
    own = [f for f in REGISTRY.collect()]
    return generate_latest(_Fixed(merge([*own, *(f for snap in snapshots for f in _families(snap))])))


REGISTRY.register(_Sources())
